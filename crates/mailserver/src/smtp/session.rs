//! The SMTP session: state, line reading with limits, the command
//! dispatcher and the reply writer. Generic over the stream, so the same
//! code runs on plain TCP, on TLS, and over `tokio::io::duplex` in tests.
//!
//! One file per command group implements the handlers (`ehlo.rs`,
//! `mail.rs`, `rcpt.rs`, `data.rs`, `sasl.rs`); this file only reads,
//! parses (with `smtp-proto`) and dispatches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::accounts::Authenticated;
use crate::admission::{Held, Life};
use crate::auth::SpfCheck;
use crate::server::{Context, Service};
use crate::transcript::Transcript;

use super::reply::{self, Reply};

/// Recipients per transaction (RFC 5321 §4.5.3.1.8 asks for at least 100).
pub const MAX_RECIPIENTS: usize = 100;
/// Read chunk size.
const READ_CHUNK: usize = 16 * 1024;

pub use crate::tls::TlsActive;

/// Facts of the connection resolved at connect (and after STARTTLS).
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// The client.
    pub peer: SocketAddr,
    /// Which port the client connected to.
    pub service: Service,
    /// TLS, when active.
    pub tls: Option<TlsActive>,
    /// Longest command line, CRLF included.
    pub max_line: usize,
    /// Largest message.
    pub max_size: usize,
    /// Time to wait for each command or data chunk.
    pub timeout: Duration,
    /// Time to write the replies.
    pub write_timeout: Duration,
}

/// The mail transaction in progress (RFC 5321 §3.3).
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// The reverse-path (empty: null sender).
    pub mail_from: String,
    /// The SPF result of MAIL FROM (inbound only).
    pub spf: Option<SpfCheck>,
    /// Local recipients.
    pub local: Vec<String>,
    /// Remote recipients (authenticated submission only).
    pub remote: Vec<String>,
}

impl Transaction {
    /// All recipients.
    pub fn recipients(&self) -> Vec<String> {
        self.local.iter().chain(&self.remote).cloned().collect()
    }
}

/// What the session knows about the client; cleared by STARTTLS (RFC 3207 §4.2).
#[derive(Debug, Clone, Default)]
pub struct SessionData {
    /// The EHLO/HELO name.
    pub helo: Option<String>,
    /// EHLO (not HELO) was used.
    pub esmtp: bool,
    /// Proof of a successful AUTH.
    pub auth: Option<Authenticated>,
    /// The current transaction.
    pub tx: Option<Transaction>,
    /// Errors so far.
    pub errors: u32,
    /// Junk commands (NOOP, RSET, VRFY) so far.
    pub junk: u32,
    /// Messages accepted in this session.
    pub messages: u32,
}

/// What the session loop does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Continue,
    /// Close the connection.
    Close,
    /// `220` was sent for STARTTLS: hand the stream to the TLS acceptor.
    StartTls,
}

/// Why reading from the client stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection.
    Eof,
    /// No input within the command timeout.
    Timeout,
    /// A line longer than the limit.
    TooLong,
    /// I/O error.
    Io,
    /// The idle connection gave way to a new client (connection caps).
    Evicted,
    /// The server holds too many bytes of all sessions right now.
    Busy,
}

/// An SMTP session over stream `S`.
pub struct Session<S> {
    pub(crate) ctx: Arc<Context>,
    stream: S,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// Per-connection parameters.
    pub params: SessionParams,
    /// Per-client state.
    pub data: SessionData,
    pub(crate) transcript: Transcript,
    /// Idle phases and eviction.
    life: Life,
    /// Bytes of the message being received, from the server's budget.
    held: Held,
    /// Delay before the next write (error replies past the soft limit).
    delay: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// A new session; `tls` is `Some` for implicit TLS or after STARTTLS.
    pub fn new(
        ctx: Arc<Context>,
        stream: S,
        peer: SocketAddr,
        service: Service,
        tls: Option<TlsActive>,
        transcript: Transcript,
    ) -> Self {
        let limits = &ctx.config.limits;
        let params = SessionParams {
            peer,
            service,
            tls,
            max_line: limits.max_line_length.max(512),
            max_size: limits.max_message_size,
            timeout: limits.command_timeout(),
            write_timeout: limits.write_timeout(),
        };
        Self {
            ctx,
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            params,
            data: SessionData::default(),
            transcript,
            life: Life::detached(),
            held: Held::default(),
            delay: Duration::ZERO,
        }
    }

    /// The session's admission handle (idle phases, eviction).
    pub fn with_life(mut self, life: Life) -> Self {
        self.life = life;
        self
    }

    /// Gives the stream back (for STARTTLS). Unread input is dropped: a
    /// client must not pipeline past STARTTLS (RFC 3207 §4.2; the plaintext
    /// injection attack, CVE-2011-0411).
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// True on the submission ports (587, 465).
    pub fn is_submission(&self) -> bool {
        matches!(
            self.params.service,
            Service::Submission | Service::Submissions
        )
    }

    /// Queues a reply (sent when the session needs more input or closes:
    /// RFC 2920 §3.1 pipelining).
    pub fn reply(&mut self, r: &Reply) {
        let wire = r.to_wire();
        for line in wire.lines() {
            self.transcript.server(line);
        }
        self.out.extend_from_slice(wire.as_bytes());
    }

    /// Queues raw reply text (EHLO).
    pub(crate) fn reply_raw(&mut self, wire: &str) {
        for line in wire.lines() {
            self.transcript.server(line);
        }
        self.out.extend_from_slice(wire.as_bytes());
    }

    /// Sends queued replies (after the error delay, if one is due), within
    /// the write timeout.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            // The error delay is an idle phase: a client busy failing may
            // give way to a new one.
            let delay = std::mem::take(&mut self.delay);
            if !delay.is_zero() && self.life.idle(tokio::time::sleep(delay)).await.is_none() {
                return Err(std::io::ErrorKind::ConnectionAborted.into());
            }
            let out = std::mem::take(&mut self.out);
            let write = async {
                self.stream.write_all(&out).await?;
                self.stream.flush().await
            };
            tokio::time::timeout(self.params.write_timeout, write)
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        }
        Ok(())
    }

    /// Reads more input (flushing replies first), with the command timeout.
    /// Waiting for a command outside a transaction and before AUTH is an
    /// idle phase: the connection may give way to a new client.
    async fn fill(&mut self) -> Result<(), ReadError> {
        self.flush().await.map_err(|_| ReadError::Io)?;
        // Straight into the spare capacity of the input buffer: no zeroed
        // chunk allocated and copied per read.
        self.inbuf.reserve(READ_CHUNK);
        self.life
            .set_protected(self.data.auth.is_some() || self.data.tx.is_some());
        let read = tokio::time::timeout(self.params.timeout, self.stream.read_buf(&mut self.inbuf));
        match self.life.idle(read).await {
            None => Err(ReadError::Evicted),
            Some(Err(_)) => Err(ReadError::Timeout),
            Some(Ok(Err(_))) => Err(ReadError::Io),
            Some(Ok(Ok(0))) => Err(ReadError::Eof),
            Some(Ok(Ok(_))) => Ok(()),
        }
    }

    /// Grows `message` so it can take the buffered input, with the bytes
    /// taken from the server's budget first. False: no budget now.
    async fn make_room(&mut self, message: &mut Vec<u8>) -> bool {
        let need = message.len() + 2 * self.inbuf.len() + 2;
        if need <= message.capacity() {
            return true;
        }
        let cap = (message.capacity() * 2)
            .max(need)
            .min(self.params.max_size + 2 * self.inbuf.len() + 2);
        let extra = cap.saturating_sub(self.held.bytes());
        let wait = Duration::from_secs(5);
        if !self.ctx.budget.reserve(&mut self.held, extra, wait).await {
            return false;
        }
        message.reserve_exact(cap - message.len());
        true
    }

    /// Takes `n` more bytes from the server's budget for the filter stage
    /// (the spam analysis holds a decoded copy of the text, as large as the
    /// message), waiting at most 5 s; given back with the message's after
    /// the command. False: no budget now (the caller answers `452 4.3.1`).
    pub(super) async fn reserve_for_filters(&mut self, n: usize) -> bool {
        if self.ctx.filters.is_empty() {
            return true;
        }
        let wait = Duration::from_secs(5);
        self.ctx.budget.reserve(&mut self.held, n, wait).await
    }

    /// Reads one line, LF included. RFC 5321 §4.5.3.1.4: command lines are
    /// limited (the config's `max_line_length`); a longer one is an error.
    pub async fn read_line(&mut self) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(pos) = self.inbuf.iter().position(|&b| b == b'\n') {
                if pos + 1 > self.params.max_line {
                    return Err(ReadError::TooLong);
                }
                return Ok(self.inbuf.drain(..=pos).collect());
            }
            if self.inbuf.len() > self.params.max_line {
                return Err(ReadError::TooLong);
            }
            self.fill().await?;
        }
    }

    /// Reads the message after `354` up to `<CRLF>.<CRLF>`, removing dot
    /// stuffing (RFC 5321 §4.5.2). Past the size limit the rest is read and
    /// dropped; `Ok(None)` then tells the caller to answer `552 5.3.4`
    /// (RFC 1870 §6), so memory stays bounded by the limit.
    ///
    /// Deviation (as mox): a bare LF inside the message is accepted and
    /// stored as CRLF (RFC 5321 §2.3.8 forbids it, real clients send it),
    /// but the end of data is only a `.` line between two CRLFs, so a
    /// `<LF>.<LF>` cannot end the message early (SMTP smuggling).
    pub async fn read_data(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        let limit = self.params.max_size;
        let mut message = Vec::new();
        let mut too_big = false;
        let mut busy = false;
        let mut at_line_start = true;
        let mut prev_crlf = true;
        let push = |message: &mut Vec<u8>, too_big: &mut bool, bytes: &[u8]| {
            if *too_big {
                return;
            }
            if message.len() + bytes.len() > limit {
                *too_big = true;
                *message = Vec::new();
            } else {
                message.extend_from_slice(bytes);
            }
        };
        loop {
            if !too_big && !self.make_room(&mut message).await {
                // Read and drop the rest; the caller answers 452 4.3.1.
                (busy, too_big, message) = (true, true, Vec::new());
            }
            let mut start = 0;
            while let Some(off) = self.inbuf[start..].iter().position(|&b| b == b'\n') {
                let end = start + off + 1;
                let line = &self.inbuf[start..end];
                let crlf = line.ends_with(b"\r\n");
                if at_line_start && prev_crlf && line == b".\r\n" {
                    self.inbuf.drain(..end);
                    if busy {
                        return Err(ReadError::Busy);
                    }
                    return Ok(if too_big { None } else { Some(message) });
                }
                let line = if at_line_start && line.first() == Some(&b'.') {
                    &line[1..]
                } else {
                    line
                };
                if crlf {
                    push(&mut message, &mut too_big, line);
                } else {
                    push(&mut message, &mut too_big, &line[..line.len() - 1]);
                    push(&mut message, &mut too_big, b"\r\n");
                }
                at_line_start = true;
                prev_crlf = crlf;
                start = end;
            }
            // A long partial line: move it out so the buffer stays small.
            let rest = &self.inbuf[start..];
            if rest.len() > 1024 {
                let rest = if at_line_start && rest.first() == Some(&b'.') {
                    &rest[1..]
                } else {
                    rest
                };
                // Keep a trailing CR with the next chunk (it may start a CRLF).
                let keep = usize::from(rest.last() == Some(&b'\r'));
                push(&mut message, &mut too_big, &rest[..rest.len() - keep]);
                at_line_start = false;
                start = self.inbuf.len() - keep;
            }
            self.inbuf.drain(..start);
            self.fill().await?;
        }
    }

    /// Counts a client error; true when the session should be closed.
    /// Past `limits.soft_error_limit` the reply is delayed, at
    /// `limits.hard_error_limit` the session ends (Postfix's
    /// `smtpd_soft_error_limit`, `smtpd_error_sleep_time`,
    /// `smtpd_hard_error_limit`).
    pub fn error(&mut self, r: &Reply) -> bool {
        self.reply(r);
        self.data.errors += 1;
        let limits = &self.ctx.config.limits;
        self.delay += limits.error_delay(self.data.errors);
        if self.data.errors >= limits.hard_error_limit {
            self.reply(&reply::TOO_MANY_ERRORS);
            return true;
        }
        false
    }

    /// Counts a junk command (NOOP, RSET, VRFY) answered with `r`: past
    /// `limits.junk_command_limit` each one also counts as an error
    /// (Postfix `smtpd_junk_command_limit`), so a client looping on them
    /// is slowed down and disconnected.
    fn junk(&mut self, r: &Reply) -> Next {
        self.data.junk += 1;
        if self.data.junk <= self.ctx.config.limits.junk_command_limit {
            self.reply(r);
            return Next::Continue;
        }
        if self.error(r) {
            self.transcript.info("too many junk commands, closing");
            return Next::Close;
        }
        Next::Continue
    }

    /// Runs the session until QUIT, an error, or STARTTLS.
    pub async fn run(&mut self, greet: bool) -> Next {
        if greet {
            let banner = Reply::new(
                220,
                "",
                format!("{} ESMTP maillab ready", self.ctx.config.hostname),
            );
            self.reply(&banner);
        }
        let next = loop {
            let line = match self.read_line().await {
                Ok(line) => line,
                Err(ReadError::TooLong) => {
                    self.transcript.info("line too long, closing");
                    self.reply(&reply::LINE_TOO_LONG);
                    break Next::Close;
                }
                Err(ReadError::Timeout) => {
                    self.transcript.info("command timeout, closing");
                    self.reply(&reply::TIMEOUT);
                    break Next::Close;
                }
                Err(ReadError::Evicted) => {
                    self.transcript
                        .info("idle connection gave way to a new client, closing");
                    self.reply(&reply::IDLE_EVICTED);
                    break Next::Close;
                }
                Err(ReadError::Eof | ReadError::Io | ReadError::Busy) => {
                    self.transcript.info("connection closed by the client");
                    return Next::Close;
                }
            };
            let next = self.command(&line).await;
            // The message's bytes go back to the budget.
            self.held = Held::default();
            match next {
                Next::Continue => continue,
                other => break other,
            }
        };
        let _ = self.flush().await;
        if next == Next::StartTls {
            self.inbuf.clear();
        }
        next
    }

    /// Parses and dispatches one command line.
    async fn command(&mut self, line: &[u8]) -> Next {
        let text = String::from_utf8_lossy(line);
        let is_auth = text
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("AUTH "));
        if is_auth {
            // RFC 4954 §4: the initial response carries credentials.
            self.transcript.client_redacted(&text, 2);
        } else {
            self.transcript.client(&text);
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => {
                let r = parse_error_reply(&e);
                return if self.error(&r) {
                    Next::Close
                } else {
                    Next::Continue
                };
            }
        };
        match request {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::Lhlo { .. } => self.unsupported(),
            Request::StartTls => self.starttls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await,
            Request::Mail { from } => self.mail(from).await,
            Request::Rcpt { to } => self.rcpt(to),
            Request::Data => self.data().await,
            Request::Bdat { .. } => self.unsupported(),
            Request::Rset => {
                // RFC 5321 §4.1.1.5
                self.data.tx = None;
                self.junk(&reply::RESET_OK)
            }
            Request::Noop { .. } => self.junk(&reply::OK),
            Request::Vrfy { .. } => {
                // RFC 5321 §7.3: VRFY may be declined; 252 as §3.5.3 suggests.
                self.junk(&reply::CANNOT_VRFY)
            }
            Request::Quit => {
                self.reply(&reply::BYE);
                Next::Close
            }
            Request::Expn { .. }
            | Request::Help { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.unsupported(),
        }
    }

    fn unsupported(&mut self) -> Next {
        if self.error(&reply::NOT_IMPLEMENTED) {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// Whether a password may be taken now: under TLS, unless the
    /// configuration allows plaintext AUTH.
    pub(super) fn password_allowed(&self) -> bool {
        self.ctx.config.password_allowed(self.params.tls.is_some())
    }

    /// STARTTLS (RFC 3207 §4): `220`, then the caller upgrades the stream.
    fn starttls(&mut self) -> Next {
        if self.params.tls.is_some() || self.params.service.implicit_tls() {
            return self.fail(&reply::ALREADY_TLS);
        }
        self.reply(&reply::READY_TLS);
        Next::StartTls
    }

    /// Sends an error reply and continues (or closes past the error limit).
    pub(crate) fn fail(&mut self, r: &Reply) -> Next {
        if self.error(r) {
            Next::Close
        } else {
            Next::Continue
        }
    }
}

/// The reply to a line `smtp-proto` cannot parse.
fn parse_error_reply(e: &smtp_proto::Error) -> Reply {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => reply::UNKNOWN_COMMAND,
        E::InvalidSenderAddress => reply::BAD_SENDER_SYNTAX,
        E::InvalidRecipientAddress => reply::BAD_RCPT_SYNTAX,
        E::SyntaxError { syntax } => Reply::new(
            501,
            reply::SYNTAX,
            format!("Syntax error, expected: {syntax}"),
        ),
        E::InvalidParameter { param } => Reply::new(
            501,
            reply::SYNTAX,
            format!("Invalid value of parameter {param}"),
        ),
        // RFC 5321 §4.1.1.11: unrecognized parameters get 555.
        E::UnsupportedParameter { param } => Reply::new(
            555,
            reply::SYNTAX,
            format!("Parameter {param} is not supported"),
        ),
        _ => Reply::new(501, reply::SYNTAX, "Syntax error"),
    }
}
