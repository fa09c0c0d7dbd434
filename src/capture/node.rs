//! The capture inside one node (`labctl capture-node`, hidden): an
//! `AF_PACKET` raw socket for every protocol (packet(7), `ETH_P_ALL`) in the
//! node's network namespace, each frame written to stdout as a record of
//! the [`Frame`] stream that `labctl capture` merges into one pcapng file.
//!
//! Record: kind (1 byte), payload length (u32 LE), timestamp (u64 LE,
//! nanoseconds since the epoch, the host's one clock), payload.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// `ETH_P_ALL` (linux/if_ether.h): every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// The largest frame read: a GRO-merged segment on a veth is up to 64 KiB
/// plus headers.
pub const SNAPLEN: usize = 262_144;
/// The socket's receive buffer asked for (the kernel caps it at rmem_max).
const RECEIVE_BUFFER: usize = 8 << 20;
/// How often the stop flag is looked at while no frame arrives.
const POLL: Duration = Duration::from_millis(100);
/// The longest record payload a reader accepts.
const MAX_PAYLOAD: usize = SNAPLEN + 1024;

/// Errors of the node capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The packet socket cannot be opened (no `CAP_NET_RAW`).
    #[error(
        "cannot open a packet socket: {0} (capturing needs CAP_NET_RAW: run labctl as root or give it the capability: `sudo setcap cap_net_raw+ep $(command -v labctl)`)"
    )]
    Socket(std::io::Error),
    /// Reading the socket or writing the records failed.
    #[error("capture: {0}")]
    Io(#[from] std::io::Error),
    /// The record stream is malformed.
    #[error("capture stream: {0}")]
    Stream(String),
}

/// What the kernel and the capture counted in the node's namespace.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Frames written.
    pub captured: u64,
    /// Packets the kernel received and sent on the namespace's interfaces
    /// while the socket was open (`/proc/net/dev`, rx + tx).
    pub kernel_packets: u64,
    /// Packets the interfaces dropped meanwhile (`/proc/net/dev`, rx + tx drop).
    pub kernel_drops: u64,
}

/// One record of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The socket is open: frames from now on are recorded.
    Ready,
    /// A frame and when it was read.
    Packet {
        /// Nanoseconds since the epoch.
        ts_nanos: u64,
        /// The frame, from its Ethernet header.
        data: Vec<u8>,
    },
    /// The capture ended.
    End(Stats),
}

const READY: u8 = 1;
const PACKET: u8 = 2;
const END: u8 = 3;

/// Appends the record of `frame` to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let (kind, ts, payload): (u8, u64, std::borrow::Cow<'_, [u8]>) = match frame {
        Frame::Ready => (READY, 0, (&[][..]).into()),
        Frame::Packet { ts_nanos, data } => (PACKET, *ts_nanos, data.as_slice().into()),
        Frame::End(stats) => (END, 0, serde_json::to_vec(stats).unwrap_or_default().into()),
    };
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Turns the bytes of a stream, in chunks of any size, back into records.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds `bytes` and returns the records they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, CaptureError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        while self.buf.len() - at >= 13 {
            let kind = self.buf[at];
            let len = u32::from_le_bytes(self.buf[at + 1..at + 5].try_into().unwrap_or_default())
                as usize;
            if len > MAX_PAYLOAD {
                return Err(CaptureError::Stream(format!(
                    "a record of {len} bytes (at most {MAX_PAYLOAD})"
                )));
            }
            if self.buf.len() - at < 13 + len {
                break;
            }
            let ts = u64::from_le_bytes(self.buf[at + 5..at + 13].try_into().unwrap_or_default());
            let payload = &self.buf[at + 13..at + 13 + len];
            out.push(match kind {
                READY => Frame::Ready,
                PACKET => Frame::Packet {
                    ts_nanos: ts,
                    data: payload.to_vec(),
                },
                END => Frame::End(
                    serde_json::from_slice(payload)
                        .map_err(|e| CaptureError::Stream(format!("end record: {e}")))?,
                ),
                other => return Err(CaptureError::Stream(format!("record kind {other}"))),
            });
            at += 13 + len;
        }
        self.buf.drain(..at);
        Ok(out)
    }

    /// Bytes of an unfinished record.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Opens the packet socket (needs `CAP_NET_RAW`).
pub fn open() -> Result<socket2::Socket, CaptureError> {
    use socket2::{Domain, Protocol, Socket, Type};
    // packet(7): the protocol is in network byte order.
    let protocol = Protocol::from(i32::from(ETH_P_ALL.to_be()));
    let socket =
        Socket::new(Domain::PACKET, Type::RAW, Some(protocol)).map_err(CaptureError::Socket)?;
    socket.set_read_timeout(Some(POLL))?;
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    Ok(socket)
}

/// The sum of the packet and drop counters of every interface of this
/// network namespace (`/proc/net/dev`: rx packets, rx drop, tx packets, tx drop).
pub fn kernel_counters() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    parse_net_dev(&text)
}

/// (packets, drops) of a `/proc/net/dev` text, rx and tx together.
fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut packets, mut drops) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((_, fields)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = fields
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() >= 12 {
            // rx: bytes packets errs drop ...(8 fields); tx: bytes packets errs drop ...
            packets += f[1] + f[9];
            drops += f[3] + f[11];
        }
    }
    (packets, drops)
}

/// Reads frames from `socket` and writes their records to `out` until
/// `stop` is set; returns the counts.
pub fn run(
    socket: &socket2::Socket,
    out: &mut impl Write,
    stop: &Arc<AtomicBool>,
) -> Result<Stats, CaptureError> {
    let (packets0, drops0) = kernel_counters();
    let mut record = Vec::new();
    encode(&Frame::Ready, &mut record);
    out.write_all(&record)?;
    out.flush()?;
    let mut buf = vec![0u8; SNAPLEN];
    let mut captured = 0u64;
    let mut reader = socket;
    while !stop.load(Ordering::Relaxed) {
        match reader.read(&mut buf) {
            Ok(n) => {
                let ts_nanos = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                record.clear();
                record.push(PACKET);
                record.extend_from_slice(&(n as u32).to_le_bytes());
                record.extend_from_slice(&ts_nanos.to_le_bytes());
                record.extend_from_slice(&buf[..n]);
                out.write_all(&record)?;
                captured += 1;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                out.flush()?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (packets1, drops1) = kernel_counters();
    let stats = Stats {
        captured,
        kernel_packets: packets1.saturating_sub(packets0),
        kernel_drops: drops1.saturating_sub(drops0),
    };
    record.clear();
    encode(&Frame::End(stats), &mut record);
    out.write_all(&record)?;
    out.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_any_chunking() {
        let frames = vec![
            Frame::Ready,
            Frame::Packet {
                ts_nanos: 1_733_300_000_123_456_789,
                data: vec![1, 2, 3, 4, 5],
            },
            Frame::Packet {
                ts_nanos: 7,
                data: Vec::new(),
            },
            Frame::End(Stats {
                captured: 2,
                kernel_packets: 3,
                kernel_drops: 0,
            }),
        ];
        let mut bytes = Vec::new();
        for f in &frames {
            encode(f, &mut bytes);
        }
        for chunk in [1, 2, 5, 13, 64, bytes.len()] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                got.extend(d.push(piece).unwrap());
            }
            assert_eq!(got, frames, "chunks of {chunk}");
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn a_bad_stream_is_an_error() {
        let mut d = Decoder::default();
        assert!(d.push(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        let mut d = Decoder::default();
        assert!(
            d.push(&[2, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0])
                .is_err()
        );
    }

    #[test]
    fn net_dev_counters_add_up_every_interface() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  eth0:  500000     400    0    2    0     0          0         0   300000     350    0    1    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), (10 + 10 + 400 + 350, 3));
    }
}
