//! A client connection of the line protocols IMAP and POP3: buffered line
//! reads with a length limit and a timeout, exact reads of announced
//! literals, and the upgrade to TLS (STARTTLS, RFC 3501 §6.2.1; STLS,
//! RFC 2595 §4). Bytes buffered before the upgrade are discarded, so
//! nothing the client pipelined in clear text is read as protected
//! (the STARTTLS command injection flaw, RFC 3207 §4.2 for SMTP).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The stream under a connection.
enum Io<S> {
    Plain(S),
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
    Closed,
}

/// What a line read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A line, with its CRLF (or LF).
    Line(Vec<u8>),
    /// The line was longer than the limit; it is skipped up to its end.
    TooLong,
    /// The client closed the connection (or it failed).
    Eof,
    /// Nothing arrived within the timeout.
    Timeout,
}

/// A buffered client connection.
pub struct Conn<S> {
    io: Io<S>,
    buf: Vec<u8>,
    skipping: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// The opening shared by IMAP and POP3: logs the connection, refuses it
    /// with `refusal` when over the per-address limit, and does the TLS
    /// handshake on implicit-TLS ports (RFC 8314 §3.2). `None`: session over.
    pub async fn open(
        stream: S,
        peer: std::net::SocketAddr,
        transcript: &crate::transcript::Transcript,
        admitted: bool,
        refusal: &str,
        implicit_tls: Option<&tokio_rustls::TlsAcceptor>,
    ) -> Option<Self> {
        transcript.info(&format!("connect from {peer}"));
        let mut conn = Conn::new(stream);
        if !admitted {
            transcript.server(refusal);
            let _ = conn.write(refusal.as_bytes()).await;
            return None;
        }
        if let Some(acceptor) = implicit_tls {
            if let Err(e) = conn.start_tls(acceptor).await {
                transcript.info(&format!("TLS handshake failed: {e}"));
                return None;
            }
            if let Some((v, c)) = conn.tls_description() {
                transcript.info(&format!("TLS {v} {c}"));
            }
        }
        Some(conn)
    }

    /// A plain connection.
    pub fn new(stream: S) -> Self {
        Self {
            io: Io::Plain(stream),
            buf: Vec::new(),
            skipping: false,
        }
    }

    /// True after a TLS upgrade.
    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// TLS version and cipher suite, for transcripts.
    pub fn tls_description(&self) -> Option<(String, String)> {
        match &self.io {
            Io::Tls(t) => Some(crate::tls::describe(t.get_ref().1)),
            _ => None,
        }
    }

    async fn read_some(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        let n = match &mut self.io {
            Io::Plain(s) => s.read(&mut tmp).await?,
            Io::Tls(s) => s.read(&mut tmp).await?,
            Io::Closed => 0,
        };
        // Appended in the same poll as the read completes: cancel-safe.
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads one line of at most `max` bytes, waiting at most `timeout`.
    /// Cancel-safe (used inside `select!` by IMAP IDLE).
    pub async fn read_line(&mut self, max: usize, timeout: Duration) -> Read {
        match tokio::time::timeout(timeout, self.read_line_inner(max)).await {
            Ok(r) => r,
            Err(_) => Read::Timeout,
        }
    }

    async fn read_line_inner(&mut self, max: usize) -> Read {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                if line.len() > max {
                    return Read::TooLong;
                }
                return Read::Line(line);
            }
            if self.buf.len() > max {
                // Bounded memory: drop what we have and skip to the line end.
                self.buf.clear();
                if !self.skipping {
                    self.skipping = true;
                    return Read::TooLong;
                }
            }
            match self.read_some().await {
                Ok(0) | Err(_) => return Read::Eof,
                Ok(_) => {}
            }
        }
    }

    /// Reads exactly `n` bytes (an IMAP literal whose size the caller
    /// checked against its limit); `None` on EOF or timeout.
    pub async fn read_exact(&mut self, n: usize, timeout: Duration) -> Option<Vec<u8>> {
        let fut = async {
            while self.buf.len() < n {
                match self.read_some().await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
            Some(self.buf.drain(..n).collect())
        };
        tokio::time::timeout(timeout, fut).await.ok().flatten()
    }

    /// Writes and flushes.
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.io {
            Io::Plain(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Io::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Io::Closed => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// Runs the TLS handshake over the plain stream.
    pub async fn start_tls(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> std::io::Result<()> {
        let Io::Plain(s) = std::mem::replace(&mut self.io, Io::Closed) else {
            return Err(std::io::Error::other("TLS is already active"));
        };
        self.buf.clear();
        self.skipping = false;
        let tls = acceptor.accept(s).await?;
        self.io = Io::Tls(Box::new(tls));
        Ok(())
    }

    /// Closes the write side (TLS close_notify).
    pub async fn shutdown(&mut self) {
        let _ = match &mut self.io {
            Io::Plain(s) => s.shutdown().await,
            Io::Tls(s) => s.shutdown().await,
            Io::Closed => Ok(()),
        };
    }
}
