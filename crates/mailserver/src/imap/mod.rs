//! IMAP4rev1 (RFC 3501) over the Maildir store, on 143 (STARTTLS,
//! `LOGINDISABLED` before TLS) and 993 (implicit TLS, RFC 8314 §3.2).
//!
//! Commands are parsed and responses serialised by `imap-codec`. Supported:
//! every RFC 3501 command, IDLE (RFC 2177), UIDPLUS (RFC 4315), MOVE
//! (RFC 6851), NAMESPACE (RFC 2342), UNSELECT (RFC 3691), ID (RFC 2971),
//! CHILDREN (RFC 3348), SPECIAL-USE (RFC 6154, `\Junk`), keywords (stored
//! in a `dovecot-keywords` file per folder). Any number of
//! sessions may share a folder: the store applies every change under the
//! folder's lock, and each session reports the others' changes before its
//! next tagged response (RFC 3501 §7.4.1); see docs/imap-pop3.md.
//!
//! Non-features: LITERAL+ (not advertised; a non-synchronising literal over the
//! limit closes the connection), CONDSTORE, shared namespaces.

mod commands;
mod fetch;
mod list;
mod search;
mod selected;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::core::{Tag, Vec1};
use imap_codec::imap_types::envelope::Envelope;
use imap_codec::imap_types::response::{
    Capability, Code, CommandContinuationRequest, Data, Response, Status,
};
use imap_codec::{CommandCodec, ResponseCodec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast;

use crate::admission::Held;
use crate::conn::{Conn, Read};
use crate::server::{Accepted, Context, Session as BoxedSession, Stream};
use crate::store::Flags;
use crate::transcript::Transcript;

/// Untagged data responses logged per command (the rest are counted).
const MAX_LOGGED_DATA: usize = 50;
/// Longest command line outside literals.
const MAX_LINE: usize = 64 * 1024;
/// Longest IDLE before the server ends it (RFC 2177 §3: at most 30 minutes
/// without a client command is allowed; clients re-IDLE every 29).
const IDLE_LIMIT: Duration = Duration::from_secs(31 * 60);
/// How often IDLE rescans the folder for changes made by other processes.
const IDLE_POLL: Duration = Duration::from_millis(400);

/// How many ENVELOPEs [`EnvelopeCache`] keeps before it starts over.
const ENVELOPE_CACHE_MAX: usize = 200_000;

/// The cached ENVELOPEs of one folder by (UIDVALIDITY, UID), each with the
/// unique Maildir name of the message it was parsed from.
type FolderEnvelopes = std::collections::HashMap<(u32, u32), (Box<str>, Arc<Envelope<'static>>)>;

/// Parsed ENVELOPEs by folder, UIDVALIDITY and UID, shared by all sessions
/// (a message never changes under its UID, RFC 3501 §2.3.1.1), so a client
/// listing a large folder again does not read and parse every file again.
/// An entry answers only for the file it was parsed from (its unique
/// Maildir name), so no reuse of a name, UIDVALIDITY or UID can ever serve
/// another message's envelope.
#[derive(Debug, Default)]
pub struct EnvelopeCache {
    folders: std::sync::Mutex<std::collections::HashMap<String, FolderEnvelopes>>,
    entries: std::sync::atomic::AtomicUsize,
}

impl EnvelopeCache {
    pub(crate) fn get(
        &self,
        folder: &str,
        validity: u32,
        uid: u32,
        base: &str,
    ) -> Option<Arc<Envelope<'static>>> {
        let map = self.folders.lock().ok()?;
        let (file, envelope) = map.get(folder)?.get(&(validity, uid))?;
        (**file == *base).then(|| envelope.clone())
    }

    pub(crate) fn put(
        &self,
        folder: &str,
        validity: u32,
        uid: u32,
        base: &str,
        envelope: Arc<Envelope<'static>>,
    ) {
        use std::sync::atomic::Ordering;
        let Ok(mut map) = self.folders.lock() else {
            return;
        };
        if self.entries.fetch_add(1, Ordering::Relaxed) >= ENVELOPE_CACHE_MAX {
            map.clear();
            self.entries.store(1, Ordering::Relaxed);
        }
        map.entry(folder.to_string())
            .or_default()
            .insert((validity, uid), (base.into(), envelope));
    }
}

/// The reply over the connection caps (RFC 3501 §7.1.5).
pub const TOO_MANY_CONNECTIONS: &str =
    "* BYE Too many connections from your address; close some and try again\r\n";

/// The handler registered for `Service::Imap` and `Service::Imaps`.
pub fn handler(ctx: Arc<Context>, a: Accepted) -> BoxedSession {
    Box::pin(serve(ctx, a))
}

/// Runs one admitted IMAP session over any stream (TCP or TLS in the
/// server, an in-memory pipe in tests); `a.tls` is `Some` on 993.
pub async fn serve<S: Stream>(ctx: Arc<Context>, a: Accepted<S>) {
    let (conn, t, peer) = Conn::accepted(&ctx, a);
    let mut session = Session {
        ctx,
        conn,
        t,
        peer,
        user: None,
        selected: None,
        out: Vec::new(),
        logged_data: 0,
        sync_before_tagged: None,
        bad: 0,
        delay: Duration::ZERO,
        held: Held::default(),
    };
    session.run().await;
}

/// The selected folder of a session (RFC 3501 §3.3).
pub(crate) struct Selected {
    /// Folder name.
    pub name: String,
    /// EXAMINE (RFC 3501 §6.3.2).
    pub read_only: bool,
    /// The session's view: UID and flags per sequence number (index + 1).
    pub view: Vec<(u32, Flags)>,
    /// UIDs that are `\Recent` for this session (RFC 3501 §2.3.2).
    pub recent: HashSet<u32>,
    /// Woken when the folder changes.
    pub watch: broadcast::Receiver<()>,
    /// The folder state the view was last brought up to date with.
    pub known: Arc<Vec<crate::store::MessageMeta>>,
    /// The view still holds messages expunged elsewhere whose EXPUNGE
    /// could not be sent yet (RFC 3501 §7.4.1).
    pub pending_expunge: bool,
    /// The folder's keyword names the session last announced in FLAGS.
    pub keywords: Arc<Vec<String>>,
}

/// What to do after a command.
pub(crate) enum Next {
    Continue,
    Logout,
}

pub(crate) struct Session<S> {
    pub ctx: Arc<Context>,
    pub conn: Conn<S>,
    pub t: Transcript,
    pub peer: SocketAddr,
    /// The logged-in mailbox.
    pub user: Option<String>,
    pub selected: Option<Selected>,
    out: Vec<u8>,
    /// Untagged data responses of the current command so far.
    logged_data: usize,
    /// Set per command: before its tagged response, report other
    /// sessions' changes, EXPUNGEs only when `Some(true)` (RFC 3501 §7.4.1).
    pub sync_before_tagged: Option<bool>,
    /// `BAD` responses so far (closed at `limits.hard_error_limit`).
    bad: u32,
    /// Delay before the next write (`BAD` past the soft limit).
    delay: Duration,
    /// The current command's literal bytes, from the server's budget.
    held: Held,
}

/// Result of reading one command.
enum Incoming {
    Command(Vec<u8>),
    Handled,
    Close,
}

/// The literal a command line announces at its end (RFC 3501 §4.3
/// `{N}`, RFC 7888 §3 non-synchronising `{N+}`): its length and whether it
/// is synchronising. A line ending in `}` after a `{` and digits can only
/// be one: quoted strings do not span lines (RFC 3501 §4.3).
fn literal_announced(line: &[u8]) -> Option<(u64, bool)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let spec = &inner[open + 1..];
    let (digits, sync) = match spec.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (spec, true),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, sync))
}

/// A status text that imap-types accepts (no CR/LF, not empty).
fn text(s: &str) -> String {
    let t: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    if t.trim().is_empty() {
        "done".into()
    } else {
        t
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Queues a response.
    pub fn push(&mut self, response: &Response<'_>) {
        let bytes = ResponseCodec::default().encode(response).dump();
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let mut line = String::from_utf8_lossy(&first[..first.len().min(300)]).into_owned();
        if first.len() > 300 {
            line.push_str("...");
        }
        // A FETCH 1:* on a big folder would write thousands of lines:
        // log the first ones of each command and count the rest.
        if matches!(response, Response::Data(_)) {
            self.logged_data += 1;
        }
        if self.logged_data <= MAX_LOGGED_DATA {
            self.t.server(&line);
        }
        self.out.extend_from_slice(&bytes);
    }

    /// Ends the transcript of one command's responses.
    fn end_of_command(&mut self) {
        if self.logged_data > MAX_LOGGED_DATA {
            self.t.info(&format!(
                "{} more untagged responses not logged",
                self.logged_data - MAX_LOGGED_DATA
            ));
        }
        self.logged_data = 0;
    }

    /// Queues a tagged or untagged status.
    pub fn status(&mut self, kind: Kind, tag: Option<&Tag<'_>>, code: Option<Code<'_>>, msg: &str) {
        if tag.is_some() {
            self.report_changes();
        }
        let msg = text(msg);
        let tag = tag.cloned();
        let status = match kind {
            Kind::Ok => Status::ok(tag, code, msg.as_str()),
            Kind::No => Status::no(tag, code, msg.as_str()),
            Kind::Bad => Status::bad(tag, code, msg.as_str()),
            Kind::Bye => Status::bye(code, msg.as_str()),
        };
        if let Ok(status) = status {
            self.push(&Response::Status(status));
        }
        if matches!(kind, Kind::Bad) {
            // Past the soft limit each BAD waits (as Postfix's
            // smtpd_error_sleep_time); the hard limit ends the session.
            self.bad += 1;
            self.delay += self.ctx.config.limits.error_delay(self.bad);
        }
    }

    /// Queues an untagged data response.
    pub fn data(&mut self, data: Data<'_>) {
        self.push(&Response::Data(data));
    }

    /// Writes the queued responses (after the error delay, if one is due).
    pub async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        // The error delay is an idle phase: the connection may give way.
        let delay = std::mem::take(&mut self.delay);
        if !delay.is_zero() {
            let life = self.conn.life().clone();
            if life.idle(tokio::time::sleep(delay)).await.is_none() {
                return false;
            }
        }
        let out = std::mem::take(&mut self.out);
        self.conn.write(&out).await.is_ok()
    }

    /// Flushes when the queue has grown large (big FETCH responses).
    pub async fn flush_if_large(&mut self) -> bool {
        if self.out.len() > 256 * 1024 {
            return self.flush().await;
        }
        true
    }

    /// The idle timeout: the login timeout before login (deviation from
    /// RFC 3501 §5.4's 30 minutes, as Dovecot's `login_timeout`), the
    /// command timeout after.
    fn timeout(&self) -> Duration {
        if self.user.is_some() {
            self.ctx.config.limits.command_timeout()
        } else {
            self.ctx.config.limits.login_timeout()
        }
    }

    /// The capability list for the current state (RFC 3501 §7.2.1).
    pub fn capabilities(&self) -> Vec1<Capability<'static>> {
        let mut caps = vec![Capability::Imap4Rev1];
        if !self.conn.is_tls() {
            caps.push(Capability::StartTls);
        }
        if !self.ctx.config.password_allowed(self.conn.is_tls()) {
            // RFC 3501 §6.2.3: LOGINDISABLED while plaintext login is refused.
            caps.push(Capability::LoginDisabled);
        } else if self.user.is_none() {
            caps.push(Capability::Auth(AuthMechanism::Plain));
        }
        caps.extend([
            Capability::Idle,
            Capability::UidPlus,
            Capability::Move,
            Capability::Namespace,
            Capability::Unselect,
            // RFC 2971, RFC 3348, RFC 6154.
            Capability::Id,
        ]);
        caps.extend(
            ["CHILDREN", "SPECIAL-USE"]
                .into_iter()
                .filter_map(|c| imap_codec::imap_types::core::Atom::try_from(c).ok())
                .map(Capability::from),
        );
        Vec1::try_from(caps).unwrap_or_else(|_| Vec1::from(Capability::Imap4Rev1))
    }

    async fn run(&mut self) {
        let host = self.ctx.config.hostname.clone();
        let caps = self.capabilities();
        self.status(
            Kind::Ok,
            None,
            Some(Code::Capability(caps)),
            &format!("{host} IMAP4rev1 ready"),
        );
        if !self.flush().await {
            return;
        }
        loop {
            if self.bad >= self.ctx.config.limits.hard_error_limit {
                self.t.info("too many BAD commands, closing");
                self.status(Kind::Bye, None, None, "Too many invalid commands");
                let _ = self.flush().await;
                self.conn.shutdown().await;
                return;
            }
            self.conn.life().set_protected(self.user.is_some());
            let raw = match self.read_command().await {
                Incoming::Command(raw) => raw,
                Incoming::Handled => {
                    if !self.flush().await {
                        return;
                    }
                    continue;
                }
                Incoming::Close => {
                    let _ = self.flush().await;
                    return;
                }
            };
            let Some(command) = self.decode(raw).await else {
                if !self.flush().await {
                    return;
                }
                continue;
            };
            let next = self.dispatch(command).await;
            self.held = Held::default();
            self.end_of_command();
            if !self.flush().await {
                return;
            }
            if matches!(next, Next::Logout) {
                self.conn.shutdown().await;
                return;
            }
        }
    }

    /// Logs a client line, hiding credentials (LOGIN, AUTHENTICATE).
    fn log_client(&self, raw: &[u8]) {
        let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(&first[..first.len().min(300)]).into_owned();
        let upper = line.to_ascii_uppercase();
        let mut words = upper.split_whitespace();
        let _tag = words.next();
        match words.next() {
            Some("LOGIN") => self.t.client_redacted(&line, 3),
            Some("AUTHENTICATE") => self.t.client_redacted(&line, 3),
            _ => self.t.client(&line),
        }
    }

    /// Decodes a complete command once (a large one on the blocking pool,
    /// off the async workers); a syntax error is answered `BAD`.
    async fn decode(&mut self, raw: Vec<u8>) -> Option<Command<'static>> {
        let large = raw.len() > DECODE_INLINE;
        let result = if large {
            tokio::task::spawn_blocking(move || decode_command(&raw))
                .await
                .unwrap_or(Err(None))
        } else {
            decode_command(&raw)
        };
        match result {
            Ok(command) => Some(command),
            Err(tag) => {
                self.status(
                    Kind::Bad,
                    tag.as_ref(),
                    None,
                    "Syntax error: not a valid IMAP4rev1 command (RFC 3501 section 9)",
                );
                None
            }
        }
    }

    /// Reads one complete command, literals included, framing it by its
    /// lines: a line that ends with a literal announcement is followed by
    /// the literal and another line (RFC 3501 §4.3); nothing is decoded
    /// until the command is complete, so a command with many literals costs
    /// linear time. Each literal is checked against the limits before a
    /// byte of it is read (RFC 7888 §4 lets a server refuse it): before
    /// login `limits.max_prelogin_literal_size` and
    /// `limits.max_prelogin_command_size` (over them: `* BYE` and close, as
    /// Dovecot, without `+ Ready`), after login `limits.max_literal_size`;
    /// its bytes come from the server's budget of bytes.
    async fn read_command(&mut self) -> Incoming {
        let limits = &self.ctx.config.limits;
        let logged_in = self.user.is_some();
        let (max_literal, max_command) = if logged_in {
            (
                limits.max_literal_size,
                limits.max_literal_size + 4 * MAX_LINE,
            )
        } else {
            (
                limits.max_prelogin_literal_size,
                limits.max_prelogin_command_size,
            )
        };
        let mut held = Held::default();
        let mut raw: Vec<u8> = Vec::new();
        loop {
            let line = match self.conn.read_line(MAX_LINE, self.timeout()).await {
                Read::Line(l) => l,
                Read::Eof => return Incoming::Close,
                Read::Evicted => {
                    self.t.info("idle connection gave way to a new client");
                    self.status(
                        Kind::Bye,
                        None,
                        None,
                        "Idle connection closed to make room for other clients",
                    );
                    return Incoming::Close;
                }
                Read::Timeout => {
                    // RFC 3501 §5.4: autologout after inactivity.
                    self.status(
                        Kind::Bye,
                        None,
                        None,
                        "Autologout: no command within the timeout",
                    );
                    return Incoming::Close;
                }
                Read::TooLong => {
                    self.status(
                        Kind::Bad,
                        None,
                        None,
                        &format!(
                            "Command line longer than {MAX_LINE} octets; send long data as literals"
                        ),
                    );
                    return Incoming::Handled;
                }
            };
            if raw.is_empty() {
                self.log_client(&line);
            }
            raw.extend_from_slice(&line);
            let Some((length, sync)) = literal_announced(&line) else {
                self.held = held;
                return Incoming::Command(raw);
            };
            let total = (raw.len() as u64).saturating_add(length);
            if length > max_literal as u64 || total > max_command as u64 {
                let msg = if logged_in {
                    format!("Literal of {length} octets is over the limit of {max_literal} octets")
                } else {
                    "Literal size too large".to_string()
                };
                if sync && logged_in {
                    let tag = command_tag(&raw);
                    self.status(Kind::No, tag.as_ref(), Some(Code::TooBig), &msg);
                    return Incoming::Handled;
                }
                // Before login, or the client sends the data anyway: stop.
                self.status(Kind::Bye, None, Some(Code::TooBig), &msg);
                return Incoming::Close;
            }
            let length = length as usize;
            let wait = Duration::from_secs(5);
            // Twice the literal: the command decoded once owns a copy of it
            // (imap-codec's owned `Command`) before the raw bytes go.
            if !self.ctx.budget.reserve(&mut held, 2 * length, wait).await {
                let msg = "The server holds too much data right now, try again later";
                if sync {
                    let tag = command_tag(&raw);
                    self.status(Kind::No, tag.as_ref(), None, msg);
                    return Incoming::Handled;
                }
                self.status(Kind::Bye, None, None, msg);
                return Incoming::Close;
            }
            if sync {
                if let Ok(cont) = CommandContinuationRequest::basic(None, "Ready for literal data")
                {
                    self.push(&Response::CommandContinuationRequest(cont));
                }
                if !self.flush().await {
                    return Incoming::Close;
                }
            }
            if !self
                .conn
                .read_exact_into(&mut raw, length, self.timeout())
                .await
            {
                return Incoming::Close;
            }
        }
    }

    /// Waits during IDLE (RFC 2177) for DONE, sending changes as they come.
    pub async fn idle(&mut self, tag: &Tag<'_>) -> Next {
        if let Ok(cont) = CommandContinuationRequest::basic(None, "idling") {
            self.push(&Response::CommandContinuationRequest(cont));
        }
        if !self.flush().await {
            return Next::Logout;
        }
        let started = tokio::time::Instant::now();
        let mut watch = self.selected.as_ref().map(|s| s.watch.resubscribe());
        loop {
            let wake = async {
                match watch.as_mut() {
                    Some(w) => {
                        let _ = tokio::time::timeout(IDLE_POLL, w.recv()).await;
                    }
                    None => tokio::time::sleep(IDLE_POLL).await,
                }
            };
            tokio::select! {
                line = self.conn.read_line(MAX_LINE, IDLE_LIMIT.saturating_sub(started.elapsed())) => {
                    match line {
                        Read::Line(l) => {
                            self.t.client(String::from_utf8_lossy(&l).trim_end());
                            if l.trim_ascii().eq_ignore_ascii_case(b"DONE") {
                                self.status(Kind::Ok, Some(tag), None, "IDLE terminated");
                            } else {
                                self.status(Kind::Bad, Some(tag), None, "Expected DONE to end IDLE");
                            }
                            return Next::Continue;
                        }
                        Read::TooLong => {
                            self.status(Kind::Bad, Some(tag), None, "Expected DONE to end IDLE");
                            return Next::Continue;
                        }
                        Read::Timeout => {
                            self.status(Kind::Bye, None, None, "IDLE for too long");
                            return Next::Logout;
                        }
                        Read::Eof | Read::Evicted => return Next::Logout,
                    }
                }
                _ = wake => {
                    self.sync_selected(true);
                    if !self.flush().await {
                        return Next::Logout;
                    }
                }
            }
        }
    }
}

/// Commands up to this size are decoded on the async worker.
const DECODE_INLINE: usize = 16 * 1024;

/// Decodes a complete command; `Err` carries its tag when one can be read.
fn decode_command(raw: &[u8]) -> Result<Command<'static>, Option<Tag<'static>>> {
    match CommandCodec::default().decode(raw) {
        Ok((_, command)) => Ok(command.into_static()),
        Err(_) => Err(command_tag(raw)),
    }
}

/// The tag of a raw command, if it has a valid one.
fn command_tag(raw: &[u8]) -> Option<Tag<'static>> {
    raw.split(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .next()
        .and_then(|t| Tag::try_from(t.to_vec()).ok())
}

/// Status kinds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Ok,
    No,
    Bad,
    Bye,
}
