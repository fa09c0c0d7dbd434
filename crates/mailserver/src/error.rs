//! The mail server's errors (start-up and fatal ones; protocol errors are replies).

use std::net::SocketAddr;

use crate::auth::{ResolverError, SignerError};
use crate::config::ConfigError;
use crate::filter::malware::ScannerError;
use crate::filter::spam::SetupError as SpamSetupError;
use crate::queue::QueueError;
use crate::store::StoreError;

/// An error that stops the server or a part of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({service}): {source}; is another server using this port?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which service (`smtp`, `imaps`...).
        service: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS material is missing or malformed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Any other I/O failure at start-up.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The DNS resolver could not be built.
    #[error(transparent)]
    Resolver(#[from] ResolverError),
    /// The DKIM signing key could not be loaded.
    #[error(transparent)]
    Dkim(#[from] SignerError),
    /// The malware scanner could not start (its rules).
    #[error("malware scanner: {0}")]
    Scanner(#[from] ScannerError),
    /// The spam filter could not start (its rules, its model).
    #[error("spam filter: {0}")]
    Spam(#[from] SpamSetupError),
    /// The queue could not be opened.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A component failed to start (a setting that contradicts another...).
    #[error("{0}")]
    Setup(String),
}
