//! The lab's mail server: SMTP MX and submission, queue and relay,
//! DKIM/SPF/DMARC, the filter stage, the Maildir store, IMAP and POP3.
//!
//! `labctl serve-mail --config FILE` runs it; the config is the YAML that
//! `labctl render` writes ([`config::Config`]). [`run`] is the entry point.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod admission;
pub mod auth;
pub mod config;
pub mod conn;
pub mod context;
pub mod error;
pub mod filter;
pub mod fuzzing;
pub mod imap;
pub mod message;
pub mod pop3;
pub mod queue;
pub mod server;
pub mod service;
pub mod smtp;
pub mod store;
pub mod tls;
pub mod transcript;

pub use error::Error;
pub use server::run;
