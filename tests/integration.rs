//! The integration test binary (one binary, ripgrep style): every module
//! drives the real `labctl` binary and its servers with independent clients.

mod architecture;
mod capture;
mod ci_workflow;
mod common;
mod dns;
mod docker;
mod filters;
mod hostile;
mod imap_pop3;
mod imap_store;
mod local_runtime;
mod render;
mod smtp;
mod verify;
