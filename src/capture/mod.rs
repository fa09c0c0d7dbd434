//! `labctl capture` (docs/capture.md): the lab's traffic as one pcapng
//! file that Wireshark and tshark decrypt with no setup.
//!
//! * [`node`]: the packet socket inside each node and its record stream;
//! * [`pcapng`]: the file's blocks, with the TLS secrets in a Decryption
//!   Secrets Block;
//! * [`keylog`]: where the servers and labctl's clients log TLS secrets
//!   while a capture runs (and only then);
//! * [`replay`]: the message that `--replay` sends while recording.

pub mod keylog;
pub mod node;
pub mod pcapng;
pub mod replay;
