//! A client connection of the line protocols IMAP and POP3: buffered line
//! reads with a length limit and a timeout (idle phases: an idle pre-login
//! connection may give way, see [`crate::admission`]), exact reads of
//! announced literals, writes with a timeout, and the upgrade to TLS (STARTTLS, RFC 3501 §6.2.1; STLS,
//! RFC 2595 §4). Bytes buffered before the upgrade are discarded, so
//! nothing the client pipelined in clear text is read as protected
//! (the STARTTLS command injection flaw, RFC 3207 §4.2 for SMTP).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use std::net::SocketAddr;

use crate::admission::Life;
use crate::server::{Accepted, Context, TlsActive};
use crate::transcript::Transcript;

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
    /// The idle connection gave way to a new client (connection caps).
    Evicted,
}

/// A buffered client connection.
pub struct Conn<S> {
    io: Io<S>,
    buf: Vec<u8>,
    skipping: bool,
    tls: Option<TlsActive>,
    life: Life,
    write_timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// A connection over `stream`; `tls` is `Some` when the stream is
    /// already TLS (implicit-TLS ports). Reads are idle phases of `life`.
    pub fn new(stream: S, tls: Option<TlsActive>, life: Life, write_timeout: Duration) -> Self {
        Self {
            io: Io::Plain(stream),
            buf: Vec::new(),
            skipping: false,
            tls,
            life,
            write_timeout,
        }
    }

    /// The connection of an admitted client, with the session's
    /// transcript and the client's address; writes time out after the
    /// config's write timeout.
    pub fn accepted(ctx: &Context, a: Accepted<S>) -> (Self, Transcript, SocketAddr) {
        let write_timeout = ctx.config.limits.write_timeout();
        let conn = Self::new(a.stream, a.tls, a.life, write_timeout);
        (conn, a.transcript, a.peer)
    }

    /// The connection's admission handle (the session marks its login).
    pub fn life(&self) -> &Life {
        &self.life
    }

    /// True when TLS is active (implicit or after an upgrade).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// TLS version and cipher suite, for transcripts.
    pub fn tls_description(&self) -> Option<(String, String)> {
        self.tls
            .as_ref()
            .map(|t| (t.version.clone(), t.cipher.clone()))
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
        let life = self.life.clone();
        let read = tokio::time::timeout(timeout, self.read_line_inner(max));
        match life.idle(read).await {
            None => Read::Evicted,
            Some(Ok(r)) => r,
            Some(Err(_)) => Read::Timeout,
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

    /// Appends exactly `n` bytes to `out` (an IMAP literal whose size the
    /// caller checked against its limit and the budget), read straight from
    /// the socket into `out`: the literal is held once, not also in the
    /// connection's buffer (which would keep that capacity for the rest of
    /// the session). False on EOF or timeout.
    pub async fn read_exact_into(
        &mut self,
        out: &mut Vec<u8>,
        n: usize,
        timeout: Duration,
    ) -> bool {
        let life = self.life.clone();
        let fut = async {
            out.reserve_exact(n);
            let buffered = n.min(self.buf.len());
            out.extend(self.buf.drain(..buffered));
            let mut left = n - buffered;
            while left > 0 {
                let want = left as u64;
                let read = match &mut self.io {
                    Io::Plain(s) => s.take(want).read_buf(out).await,
                    Io::Tls(s) => s.take(want).read_buf(out).await,
                    Io::Closed => Ok(0),
                };
                match read {
                    Ok(0) | Err(_) => return false,
                    Ok(got) => left -= got,
                }
            }
            true
        };
        life.idle(tokio::time::timeout(timeout, fut))
            .await
            .and_then(Result::ok)
            .unwrap_or(false)
    }

    /// Writes and flushes, within the write timeout.
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        let write = async {
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
        };
        tokio::time::timeout(self.write_timeout, write)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }

    /// Runs the TLS handshake over the plain stream (bounded, logged; see
    /// [`crate::server::handshake`]). False: the session is over.
    /// `what` names it in the transcript (`STARTTLS`, `STLS`).
    pub async fn start_tls(&mut self, ctx: &Context, transcript: &Transcript, what: &str) -> bool {
        let Io::Plain(s) = std::mem::replace(&mut self.io, Io::Closed) else {
            return false;
        };
        self.buf.clear();
        self.skipping = false;
        match crate::server::handshake(ctx, s, &self.life, transcript, what).await {
            Some((tls, info)) => {
                self.io = Io::Tls(Box::new(tls));
                self.tls = Some(info);
                true
            }
            None => false,
        }
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
