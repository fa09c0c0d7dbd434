//! Independent protocol clients used by `verify`, `send` and `inspect`: SMTP,
//! IMAP, POP3 over TCP with STARTTLS or implicit TLS, TLS trusting only the
//! lab CA, DNS asking only the lab DNS.
//!
//! These are small clients written for the lab's checks, not the mail
//! server's code: they share nothing with `crates/mailserver`. Own clients
//! (instead of mail-send or async-imap) because the checks need the raw reply
//! lines as evidence, the dialogue printed as it happens (`labctl send`), and
//! a client socket bound to a chosen source address (SPF and DKIM checks).
//!
//! Non-features: pipelining, SASL mechanisms other than PLAIN, IMAP literals
//! sent by the client, POP3 APOP.

pub mod conn;
pub mod dns;
pub mod imap;
pub mod pop3;
pub mod smtp;
pub mod tls;

use std::time::Duration;

/// How long one read or write may take before the client gives up.
pub const IO_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a TCP connect may take: lab servers are on a local bridge or on
/// loopback, so a connect that has not completed in this time goes to a
/// stopped container (nobody answers ARP) rather than a slow server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Errors of the clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting failed. The cause is part of the message (verify shows it
    /// as evidence), so it is not also reported as the error's source.
    #[error("cannot connect to {addr}: {error}{}", connect_hint(error))]
    Connect {
        /// Where to.
        addr: std::net::SocketAddr,
        /// The cause.
        error: std::io::Error,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The peer did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The TLS handshake failed (certificate not trusted, wrong name...).
    #[error("TLS handshake with {name} failed: {error}")]
    Tls {
        /// The server name that was expected.
        name: String,
        /// The cause (rustls's error names the certificate problem).
        error: std::io::Error,
    },
    /// TLS setup failed (the CA file).
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// The server answered something the protocol does not allow.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// A DNS lookup failed.
    #[error("DNS: {0}")]
    Dns(String),
}

/// What to do about a refused connection: nothing listens on that address.
fn connect_hint(error: &std::io::Error) -> &'static str {
    if error.kind() == std::io::ErrorKind::ConnectionRefused {
        " (nothing listens there: is the lab up? `labctl status`)"
    } else {
        ""
    }
}
