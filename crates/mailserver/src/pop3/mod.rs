//! POP3 (RFC 1939) with CAPA and response codes (RFC 2449) and STLS
//! (RFC 2595) on 110, implicit TLS on 995 (RFC 8314 §3.2), over the INBOX
//! of the Maildir store.
//!
//! USER/PASS are refused before TLS with a reply that says why. A session
//! holds the maildrop lock from PASS to the end (RFC 1939 §8: one session
//! per maildrop); DELE only marks, QUIT in the TRANSACTION state removes
//! (RFC 1939 §6). UIDL is `<UIDVALIDITY>.<UID>`, the IMAP identity of the
//! message, so it is stable across sessions and restarts.
//!
//! Non-features: APOP and SASL AUTH (passwords travel only inside TLS).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{Conn, Read};
use crate::server::{Accepted, Context, Session as BoxedSession, Stream};
use crate::store::{INBOX, MaildropLock};
use crate::transcript::Transcript;

/// Longest command line (RFC 2449 §4 allows 255 octets; we are lenient).
const MAX_LINE: usize = 1024;

/// The reply over the connection caps (RFC 2449 §8.1.2 `SYS/TEMP`).
pub const TOO_MANY_CONNECTIONS: &str =
    "-ERR [SYS/TEMP] Too many connections from your address; close some and try again\r\n";

/// The handler registered for `Service::Pop3` and `Service::Pop3s`.
pub fn handler(ctx: Arc<Context>, a: Accepted) -> BoxedSession {
    Box::pin(serve(ctx, a))
}

/// The maildrop of a logged-in session.
struct Maildrop {
    address: String,
    uid_validity: u32,
    /// UID and size per message number (index + 1), fixed for the session.
    messages: Vec<(u32, u64)>,
    deleted: HashSet<usize>,
    _lock: MaildropLock,
}

struct Session<S> {
    ctx: Arc<Context>,
    conn: Conn<S>,
    t: Transcript,
    peer: SocketAddr,
    user: Option<String>,
    drop: Option<Maildrop>,
    /// `-ERR` replies so far (closed at `limits.hard_error_limit`).
    errors: u32,
}

/// Runs one admitted POP3 session over any stream (TCP or TLS in the
/// server, an in-memory pipe in tests); `a.tls` is `Some` on 995.
pub async fn serve<S: Stream>(ctx: Arc<Context>, a: Accepted<S>) {
    let (conn, t, peer) = Conn::accepted(&ctx, a);
    let mut s = Session {
        ctx,
        conn,
        t,
        peer,
        user: None,
        drop: None,
        errors: 0,
    };
    s.run().await;
}

/// Dot-stuffs a message for a multi-line response (RFC 1939 §3), with CRLF
/// line ends and the terminating `.` line.
fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// The header and the first `n` body lines (TOP, RFC 1939 §7).
fn top(message: &[u8], n: usize) -> Vec<u8> {
    let (header, body) = crate::message::split_header(message);
    let mut out = header.to_vec();
    for (i, line) in body.split_inclusive(|&b| b == b'\n').enumerate() {
        if i >= n {
            break;
        }
        out.extend_from_slice(line);
    }
    out
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn send(&mut self, line: &str) -> bool {
        if line.starts_with("-ERR") {
            // Past the soft limit each error reply waits (as Postfix's
            // smtpd_error_sleep_time); the hard limit ends the session.
            self.errors += 1;
            let delay = self.ctx.config.limits.error_delay(self.errors);
            let life = self.conn.life().clone();
            if !delay.is_zero() && life.idle(tokio::time::sleep(delay)).await.is_none() {
                return false;
            }
        }
        self.t.server(line);
        self.conn
            .write(format!("{line}\r\n").as_bytes())
            .await
            .is_ok()
    }

    async fn send_multi(&mut self, first: &str, body: &[u8]) -> bool {
        self.t.server(first);
        let mut out = format!("{first}\r\n").into_bytes();
        dot_stuff(body, &mut out);
        self.conn.write(&out).await.is_ok()
    }

    async fn run(&mut self) {
        let host = self.ctx.config.hostname.clone();
        if !self.send(&format!("+OK {host} POP3 ready")).await {
            return;
        }
        let limits = self.ctx.config.limits.clone();
        loop {
            if self.errors >= limits.hard_error_limit {
                self.t.info("too many errors, closing");
                self.send("-ERR Too many errors in this session, closing the connection")
                    .await;
                self.conn.shutdown().await;
                return;
            }
            // Deviation from RFC 1939 §3 (10 minutes): before login the
            // shorter login timeout applies, as in Dovecot.
            let timeout = if self.drop.is_some() {
                limits.command_timeout()
            } else {
                limits.login_timeout()
            };
            let line = match self.conn.read_line(MAX_LINE, timeout).await {
                Read::Line(l) => l,
                Read::Eof => return,
                Read::Evicted => {
                    self.t.info("idle connection gave way to a new client");
                    self.send(
                        "-ERR [SYS/TEMP] Idle connection closed to make room for other clients",
                    )
                    .await;
                    return;
                }
                Read::Timeout => {
                    // RFC 1939 §3: autologout timer; no UPDATE state.
                    self.send("-ERR Autologout: no command within the timeout")
                        .await;
                    return;
                }
                Read::TooLong => {
                    if !self
                        .send(&format!("-ERR Command line longer than {MAX_LINE} octets"))
                        .await
                    {
                        return;
                    }
                    continue;
                }
            };
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            let mut words = line.splitn(2, ' ');
            let verb = words.next().unwrap_or("").to_ascii_uppercase();
            let arg = words.next().unwrap_or("").trim().to_string();
            if verb == "PASS" {
                self.t.client_redacted(&line, 1);
            } else {
                self.t.client(&line);
            }
            let keep_going = if self.drop.is_some() {
                self.transaction(&verb, &arg).await
            } else {
                self.authorization(&verb, &arg).await
            };
            if !keep_going {
                self.conn.shutdown().await;
                return;
            }
        }
    }

    fn capa(&self) -> String {
        let mut caps = vec![
            "CAPA",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "PIPELINING",
            "AUTH-RESP-CODE",
        ];
        if self.ctx.config.password_allowed(self.conn.is_tls()) && self.drop.is_none() {
            caps.push("USER");
        }
        if !self.conn.is_tls() {
            caps.push("STLS");
        }
        caps.push("IMPLEMENTATION maillab");
        caps.join("\r\n")
    }

    async fn authorization(&mut self, verb: &str, arg: &str) -> bool {
        match verb {
            "CAPA" => {
                let capa = self.capa();
                self.send_multi("+OK Capability list follows", capa.as_bytes()).await
            }
            "QUIT" => {
                self.send("+OK Bye").await;
                false
            }
            "NOOP" => self.send("+OK").await,
            "STLS" => {
                if self.conn.is_tls() {
                    return self.send("-ERR TLS is already active").await;
                }
                if !self.send("+OK Begin TLS negotiation").await {
                    return false;
                }
                let ctx = self.ctx.clone();
                if !self.conn.start_tls(&ctx, &self.t, "STLS").await {
                    return false;
                }
                // RFC 2595 §4: forget what was said before TLS.
                self.user = None;
                true
            }
            "USER" | "PASS" if !self.ctx.config.password_allowed(self.conn.is_tls()) => {
                self.send("-ERR [AUTH] USER and PASS are refused before TLS: send STLS first (or use port 995) so the password is not sent in clear text").await
            }
            "USER" => {
                if arg.is_empty() {
                    return self.send("-ERR USER needs a mailbox name").await;
                }
                self.user = Some(arg.to_string());
                self.send("+OK Send PASS").await
            }
            "PASS" => self.pass(arg).await,
            "" => self.send("-ERR Empty command").await,
            _ => self.send(&format!("-ERR Unknown command {verb:?} in the AUTHORIZATION state (try CAPA)")).await,
        }
    }

    async fn pass(&mut self, password: &str) -> bool {
        let Some(user) = self.user.take() else {
            return self.send("-ERR Send USER first").await;
        };
        let ctx = self.ctx.clone();
        let ip = self.peer.ip();
        let pw = password.to_string();
        let result = tokio::task::spawn_blocking(move || ctx.accounts.login(&user, &pw, ip)).await;
        let address = match result {
            Ok(Ok(auth)) => auth.address().to_string(),
            Ok(Err(e)) => return self.send(&format!("-ERR [AUTH] Login failed: {e}")).await,
            Err(_) => {
                return self
                    .send("-ERR [SYS/TEMP] Login failed: server error")
                    .await;
            }
        };
        let lock = match self.ctx.store.lock_maildrop(&address) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                // RFC 2449 §8.1.1.
                return self
                    .send("-ERR [IN-USE] Another POP3 session holds this maildrop; end it first")
                    .await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "maildrop lock");
                return self.send("-ERR [SYS/TEMP] Cannot lock the maildrop").await;
            }
        };
        let snap = match self.ctx.store.sync(&address, INBOX) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "maildrop sync");
                return self.send("-ERR [SYS/TEMP] Cannot open the maildrop").await;
            }
        };
        self.t.info(&format!("login {address}"));
        self.conn.life().set_protected(true);
        let messages: Vec<(u32, u64)> = snap.messages.iter().map(|m| (m.uid, m.size)).collect();
        let total: u64 = messages.iter().map(|m| m.1).sum();
        let n = messages.len();
        self.drop = Some(Maildrop {
            address,
            uid_validity: snap.uid_validity,
            messages,
            deleted: HashSet::new(),
            _lock: lock,
        });
        self.send(&format!("+OK Maildrop has {n} messages ({total} octets)"))
            .await
    }

    /// A command in the TRANSACTION state (RFC 1939 §5).
    async fn transaction(&mut self, verb: &str, arg: &str) -> bool {
        let Some(d) = self.drop.as_mut() else {
            return false;
        };
        let reply = match verb {
            "CAPA" => {
                let capa = self.capa();
                return self
                    .send_multi("+OK Capability list follows", capa.as_bytes())
                    .await;
            }
            "STAT" => d.stat(),
            "LIST" | "UIDL" => {
                let uidl = verb == "UIDL";
                if arg.is_empty() {
                    let first = format!("+OK {} messages", d.live().count());
                    let body: String = d
                        .live()
                        .map(|i| format!("{}\r\n", d.scan_line(i, uidl)))
                        .collect();
                    return self.send_multi(&first, body.as_bytes()).await;
                }
                match d.message(arg) {
                    Ok(i) => format!("+OK {}", d.scan_line(i, uidl)),
                    Err(e) => format!("-ERR {e}"),
                }
            }
            "RETR" | "TOP" => return self.retrieve(verb == "TOP", arg).await,
            "DELE" => match d.message(arg) {
                Ok(i) => {
                    d.deleted.insert(i);
                    format!("+OK Message {} marked for deletion at QUIT", i + 1)
                }
                Err(e) => format!("-ERR {e}"),
            },
            "RSET" => {
                d.deleted.clear();
                format!("+OK Deletion marks removed; {} messages", d.messages.len())
            }
            "NOOP" => "+OK".to_string(),
            "QUIT" => return self.update().await,
            "USER" | "PASS" | "STLS" => "-ERR Already logged in".to_string(),
            _ => format!("-ERR Unknown command {verb:?} (try CAPA)"),
        };
        self.send(&reply).await
    }

    /// RETR, or TOP with its line count (RFC 1939 §5, §7).
    async fn retrieve(&mut self, top_lines: bool, arg: &str) -> bool {
        let Some(d) = self.drop.as_ref() else {
            return false;
        };
        let i = match d.message(arg) {
            Ok(i) => i,
            Err(e) => return self.send(&format!("-ERR {e}")).await,
        };
        let lines = if top_lines {
            let count = arg.split_whitespace().nth(1);
            match count.and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => Some(n),
                None => {
                    return self
                        .send("-ERR TOP needs a message number and a line count")
                        .await;
                }
            }
        } else {
            None
        };
        let (uid, size) = d.messages[i];
        match self.ctx.store.read(&d.address, INBOX, uid) {
            Ok(Some(bytes)) => {
                let body = match lines {
                    Some(n) => top(&bytes, n),
                    None => bytes,
                };
                self.send_multi(&format!("+OK {size} octets"), &body).await
            }
            Ok(None) => {
                self.send("-ERR This message was removed by another client")
                    .await
            }
            Err(e) => {
                tracing::warn!(error = %e, "pop3 read");
                self.send("-ERR [SYS/TEMP] Cannot read the message").await
            }
        }
    }

    /// QUIT in the TRANSACTION state: the UPDATE state removes the marked
    /// messages (RFC 1939 §6). Always ends the session.
    async fn update(&mut self) -> bool {
        let Some(d) = self.drop.take() else {
            return false;
        };
        let uids: Vec<u32> = d.deleted.iter().map(|&i| d.messages[i].0).collect();
        let reply = match self.ctx.store.expunge(&d.address, INBOX, &uids) {
            Ok(removed) => format!("+OK Bye; {} messages removed", removed.len()),
            Err(e) => {
                tracing::warn!(error = %e, "pop3 update");
                "-ERR [SYS/TEMP] Some messages could not be removed".to_string()
            }
        };
        // Release the maildrop lock before the reply: a client that
        // reconnects as soon as it reads it must not find it held.
        std::mem::drop(d);
        self.send(&reply).await;
        false
    }
}

/// Why a message number argument names no message (the text after `-ERR`).
#[derive(Debug, thiserror::Error)]
enum BadNumber {
    #[error("Expected a message number, got {0:?}")]
    NotANumber(String),
    #[error("No message {n} (the maildrop has {count})")]
    NoSuch { n: usize, count: usize },
    #[error("Message {0} is deleted")]
    Deleted(usize),
}

impl Maildrop {
    /// The indexes of the messages not marked deleted.
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.messages.len()).filter(|i| !self.deleted.contains(i))
    }

    /// The index of the message numbered by the first word of `arg`, if it
    /// names a message that is not deleted (RFC 1939 §5).
    fn message(&self, arg: &str) -> Result<usize, BadNumber> {
        let n: usize = arg
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| BadNumber::NotANumber(arg.to_string()))?;
        let count = self.messages.len();
        if n == 0 || n > count {
            return Err(BadNumber::NoSuch { n, count });
        }
        if self.deleted.contains(&(n - 1)) {
            return Err(BadNumber::Deleted(n));
        }
        Ok(n - 1)
    }

    /// STAT (RFC 1939 §5): how many messages are not deleted, and their size.
    fn stat(&self) -> String {
        let size: u64 = self.live().map(|i| self.messages[i].1).sum();
        format!("+OK {} {size}", self.live().count())
    }

    /// The LIST (size) or UIDL (unique id, RFC 1939 §7) line of message index `i`.
    fn scan_line(&self, i: usize, uidl: bool) -> String {
        let (uid, size) = self.messages[i];
        if uidl {
            format!("{} {}.{uid}", i + 1, self.uid_validity)
        } else {
            format!("{} {size}", i + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_and_top() {
        let mut out = Vec::new();
        dot_stuff(b"Subject: x\r\n\r\n.hidden\nlast", &mut out);
        assert_eq!(out, b"Subject: x\r\n\r\n..hidden\r\nlast\r\n.\r\n".to_vec());
        assert_eq!(
            top(b"A: b\r\n\r\n1\r\n2\r\n3\r\n", 2),
            b"A: b\r\n\r\n1\r\n2\r\n".to_vec()
        );
    }
}
