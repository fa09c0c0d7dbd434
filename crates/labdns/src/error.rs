//! The errors of the lab DNS server.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the DNS server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listen address could not be bound (taken, or not an address of this host).
    #[error("cannot listen on {proto} {addr}: {source} (is another DNS server running there?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `UDP` or `TCP`.
        proto: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// No address to listen on was given.
    #[error("no listen address given (pass --listen ADDR:PORT)")]
    NoListen,
    /// The zone folder cannot be read.
    #[error("cannot read the zone folder {dir}: {source}")]
    ZoneDir {
        /// The folder.
        dir: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The zone folder has no `*.zone` file.
    #[error("no zone files (*.zone) in {dir}: render the lab first (labctl render --variant N)")]
    NoZones {
        /// The folder.
        dir: PathBuf,
    },
    /// A zone file is wrong.
    #[error("{}", zone_message(file, *line, reason))]
    Zone {
        /// The zone file.
        file: PathBuf,
        /// The 1-based line the error is on, when it can be told.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// The query log cannot be opened.
    #[error("cannot open the query log {path}: {source}")]
    QueryLog {
        /// The log file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A listener failed while serving.
    #[error("the DNS server failed: {0}")]
    Serve(String),
}

fn zone_message(file: &std::path::Path, line: Option<usize>, reason: &str) -> String {
    match line {
        Some(line) => format!(
            "zone file {}, line {line}: {reason} (fix the file or render the lab again)",
            file.display()
        ),
        None => format!(
            "zone file {}: {reason} (fix the file or render the lab again)",
            file.display()
        ),
    }
}
