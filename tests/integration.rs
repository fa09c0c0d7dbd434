//! The integration test binary (one binary, ripgrep style): every module
//! drives the real `labctl` binary and its servers with independent clients.

mod common;
mod filters;
mod render;
