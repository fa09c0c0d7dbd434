//! The lab's mail server: SMTP MX and submission, queue and relay,
//! DKIM/SPF/DMARC, the filter stage, the Maildir store, IMAP and POP3.
//!
//! `labctl serve-mail --config FILE` runs it; the config is the YAML that
//! `labctl render` writes ([`config::Config`]).
#![forbid(unsafe_code)]

pub mod config;
pub mod filter;
pub mod store;
