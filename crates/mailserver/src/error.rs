//! The mail server's errors (start-up and fatal ones; protocol errors are replies).

use std::net::SocketAddr;

use crate::config::ConfigError;
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
    /// A component failed to start (DKIM key, resolver, filters...).
    #[error("{0}")]
    Setup(String),
}
