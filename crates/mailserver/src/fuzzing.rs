//! Entry points of the fuzz targets (`fuzz/`, `make fuzz`) and of the stable
//! test that replays their regression corpus (`tests/fuzz_replay.rs`); see
//! docs/fuzzing.md. Not part of the server's interface: always compiled,
//! small, and it only calls what the listeners call.
//!
//! A [`Harness`] is built once per process: a real [`Context`] from a config
//! like the rendered one (the caller's certificate, a fresh ed25519 DKIM key,
//! the builtin malware scanner and the spam filter on, plaintext logins
//! allowed so a session can log in without TLS), a data folder under
//! `/dev/shm` when there is one, and a DNS stub answering NXDOMAIN. Each
//! input is one session over `tokio::io::duplex`: the input is the client's
//! bytes, then end of file; the server's replies are read and counted. An
//! input that takes longer than [`LIMIT`] is an error ([`Slow`]), a panic
//! is the caller's crash.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::auth::AuthResult;
use crate::config::Config;
use crate::filter::FilterInput;
use crate::filter::malware::walk::{self, Limits};
use crate::server::{Accepted, Context, Service};

/// The longest an input may take: a slower one is a finding.
pub const LIMIT: Duration = Duration::from_secs(1);
/// The mailbox sessions log in as.
pub const USER: &str = "user@example.test";
/// Its password.
pub const PASSWORD: &str = "fuzz password";
/// Duplex buffer: small, so back-pressure paths run too.
const PIPE: usize = 16 * 1024;
/// Every this many inputs the data folder is trimmed (transcripts, spool, store).
const TRIM_EVERY: u64 = 128;
/// A transcript file larger than this is emptied at a trim.
const TRANSCRIPT_MAX: u64 = 1 << 20;

/// The client address of every session.
const PEER: &str = "192.0.2.7:40000";

/// An input took longer than [`LIMIT`].
#[derive(Debug, thiserror::Error)]
#[error("input took {0:?}, over the {LIMIT:?} bound")]
pub struct Slow(pub Duration);

/// The fuzz targets of the mail server; the regression corpus of each is
/// `fuzz/regressions/<name>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An SMTP session: the first byte's low bit picks 587 (AUTH allowed) over 25.
    Smtp,
    /// An IMAP session before login.
    ImapPre,
    /// An IMAP session after `LOGIN` and `SELECT INBOX`.
    ImapPost,
    /// A POP3 session: the first byte's low bit logs in first.
    Pop3,
    /// The filter stage on a message (MIME walk, malware scanner, spam filter).
    Message,
    /// The MIME and zip walk over a zip archive sent as an attachment.
    Zip,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 6] = [
        Self::Smtp,
        Self::ImapPre,
        Self::ImapPost,
        Self::Pop3,
        Self::Message,
        Self::Zip,
    ];

    /// Its name (the fuzz target's and its corpus folder's).
    pub fn name(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::ImapPre => "imap_pre",
            Self::ImapPost => "imap_post",
            Self::Pop3 => "pop3",
            Self::Message => "message",
            Self::Zip => "zip",
        }
    }
}

/// The messages in the fuzzed mailbox at the start of every session.
const SEED_MESSAGES: [&str; 3] = [
    "From: a@example.test\r\nTo: user@example.test\r\nSubject: one\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\nfirst body\r\n",
    "From: \"B\" <b@other.test>\r\nTo: user@example.test, c@example.test\r\nSubject: =?utf-8?q?two_=C3=A9?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n--xx\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xx\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--xx--\r\n",
    "From: c@example.test\r\nSubject: three\r\nContent-Type: message/rfc822\r\n\r\nFrom: d@example.test\r\nSubject: inner\r\n\r\ninner body\r\n",
];

/// One process's server context and runtime for the fuzz targets.
pub struct Harness {
    rt: tokio::runtime::Runtime,
    ctx: Arc<Context>,
    dir: PathBuf,
    inputs: AtomicU64,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A DNS server that answers every query with NXDOMAIN (RFC 1035 §4.1.1).
pub(crate) async fn nxdomain_dns() -> std::io::Result<SocketAddr> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            if n < 12 {
                continue;
            }
            let mut r = buf[..n].to_vec();
            r[2] |= 0x84; // QR, AA
            r[3] = (r[3] & 0x70) | 0x03; // NXDOMAIN
            let _ = sock.send_to(&r, peer).await;
        }
    });
    Ok(addr)
}

/// A setup failure of the harness.
fn setup(what: &str, e: impl std::fmt::Display) -> crate::Error {
    crate::Error::Setup(format!("fuzz harness: {what}: {e}"))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), crate::Error> {
    std::fs::write(path, bytes).map_err(|e| setup(&path.display().to_string(), e))
}

impl Harness {
    /// Builds the context from a TLS certificate and key (PEM) made by the
    /// caller (rcgen), in a fresh folder.
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Self, crate::Error> {
        static N: AtomicU64 = AtomicU64::new(0);
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "mailserver-fuzz-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| setup("data folder", e))?;
        write(&dir.join("cert.pem"), cert_pem.as_bytes())?;
        write(&dir.join("key.pem"), key_pem.as_bytes())?;
        let dkim = mail_auth::common::crypto::Ed25519Key::generate_pkcs8()
            .map_err(|e| setup("DKIM key", e))?;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&dkim)
        );
        write(&dir.join("dkim.pem"), pem.as_bytes())?;
        // The cheapest argon2id the PHC format allows: logins cost microseconds.
        let hash = {
            use argon2::password_hash::PasswordHasher;
            let params = argon2::Params::new(8, 1, 1, None).map_err(|e| setup("argon2", e))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password_with_salt(PASSWORD.as_bytes(), b"sixteen byte slt")
                .map_err(|e| setup("argon2", e))?
                .to_string()
        };
        // One worker thread, with tokio's default stack like the server's
        // workers: a session runs there, so a deep recursion overflows here
        // exactly when it would in the server.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| setup("runtime", e))?;
        let dns = rt
            .block_on(nxdomain_dns())
            .map_err(|e| setup("DNS stub", e))?;
        let yaml = format!(
            r#"
hostname: mail.example.test
domain: example.test
listen: {{address: 127.0.0.1, ports: {{smtp: 0, submission: 0, submissions: 0, imap: 0, imaps: 0, pop3: 0, pop3s: 0}}}}
tls: {{cert: cert.pem, key: key.pem, ca: cert.pem}}
dns: {{server: "{dns}"}}
data_dir: data
mailboxes:
  - {{address: {USER}, password_hash: "{hash}"}}
  - {{address: other@example.test, password_hash: "{hash}"}}
dkim: {{selector: s, algorithm: ed25519-sha256, key: dkim.pem, headers: [From, To, Subject]}}
policy: {{spf_fail: reject, spf_softfail: mark, spf_temperror: tempfail, dkim_verify: true, dkim_invalid: reject, dmarc_enforce: true}}
relay: {{port: 25, require_tls: true, verify_certificate: true, retry_schedule_secs: [1], max_age_secs: 60}}
scanner: {{engine: builtin}}
spam: {{enabled: true, tag_threshold: 5.0, reject_threshold: 10.0}}
limits: {{max_line_length: 1000, max_message_size: 1048576, max_connections_per_ip: 1000000, command_timeout_secs: 5, auth_failures_per_minute: 4000000000, max_literal_size: 65536, max_connections: 1000000, error_delay_ms: 0, auth_failure_delay_ms: 0, auth_failure_delay_max_ms: 0, login_timeout_secs: 5, tls_handshake_timeout_secs: 5, write_timeout_secs: 5}}
auth: {{allow_plaintext: true}}
"#
        );
        let config =
            Config::from_yaml(&yaml, &dir.join("config.yaml")).map_err(|e| setup("config", e))?;
        let ctx = Arc::new(Context::new(config)?);
        let harness = Self {
            rt,
            ctx,
            dir,
            inputs: AtomicU64::new(0),
        };
        // Warm up (lazy tables, the first scan) so the first input is not slow.
        let _ = harness.message(SEED_MESSAGES[1].as_bytes());
        Ok(harness)
    }

    /// Runs `target` on one input exactly as its fuzz target does.
    pub fn run(&self, target: Target, data: &[u8]) -> Result<(), Slow> {
        let (mode, rest) = match data.split_first() {
            Some((first, rest)) => (first & 1 == 1, rest),
            None => (false, data),
        };
        match target {
            Target::Smtp => self.smtp(rest, mode).map(drop),
            Target::ImapPre => self.imap(data, false).map(drop),
            Target::ImapPost => self.imap(data, true).map(drop),
            Target::Pop3 => self.pop3(rest, mode).map(drop),
            Target::Message => self.message(data).map(drop),
            Target::Zip => self.zip(data).map(drop),
        }
    }

    /// The server's context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// One SMTP session on port 25 (`submission == false`) or 587 (AUTH
    /// allowed in clear here) with `input` as the client's bytes; returns
    /// how many bytes the server sent.
    pub fn smtp(&self, input: &[u8], submission: bool) -> Result<usize, Slow> {
        let service = if submission {
            Service::Submission
        } else {
            Service::Smtp
        };
        self.session(input, false, |ctx, stream, peer| async move {
            let Some((_slot, transcript, life)) = admit(&ctx, peer, "smtp") else {
                return;
            };
            let accepted = Accepted::plain(stream, peer, service, transcript, life);
            crate::smtp::serve(ctx, accepted).await;
        })
    }

    /// One IMAP session on port 143; with `logged_in`, `a LOGIN` and
    /// `b SELECT INBOX` come first (the mailbox holds three messages).
    pub fn imap(&self, input: &[u8], logged_in: bool) -> Result<usize, Slow> {
        let prefix = format!("a LOGIN {USER} \"{PASSWORD}\"\r\nb SELECT INBOX\r\n");
        let data = if logged_in {
            [prefix.as_bytes(), input].concat()
        } else {
            input.to_vec()
        };
        self.session(&data, logged_in, |ctx, stream, peer| async move {
            let Some((_slot, transcript, life)) = admit(&ctx, peer, "imap") else {
                return;
            };
            let accepted = Accepted::plain(stream, peer, Service::Imap, transcript, life);
            crate::imap::serve(ctx, accepted).await;
        })
    }

    /// One POP3 session on port 110; with `logged_in`, `USER` and `PASS` come first.
    pub fn pop3(&self, input: &[u8], logged_in: bool) -> Result<usize, Slow> {
        let prefix = format!("USER {USER}\r\nPASS {PASSWORD}\r\n");
        let data = if logged_in {
            [prefix.as_bytes(), input].concat()
        } else {
            input.to_vec()
        };
        self.session(&data, logged_in, |ctx, stream, peer| async move {
            let Some((_slot, transcript, life)) = admit(&ctx, peer, "pop3") else {
                return;
            };
            let accepted = Accepted::plain(stream, peer, Service::Pop3, transcript, life);
            crate::pop3::serve(ctx, accepted).await;
        })
    }

    /// The filter stage on `message` as the SMTP side runs it: the malware
    /// scanner (MIME walk, zip entries, yara-x) and the spam filter
    /// (analysis, rules, classifier). Returns whether it was accepted.
    pub fn message(&self, message: &[u8]) -> Result<bool, Slow> {
        let start = Instant::now();
        let rcpt = [USER.to_string()];
        let input = FilterInput {
            message,
            authenticated: false,
            mail_from: "sender@other.test",
            rcpt_to: &rcpt,
            spf: AuthResult::None,
            dkim: AuthResult::None,
            dmarc: AuthResult::None,
        };
        let accepted = on_worker_stack(|| {
            matches!(
                crate::filter::run_stage(&self.ctx.filters, &input),
                Ok(Ok(_))
            )
        });
        bounded(start)?;
        Ok(accepted)
    }

    /// The MIME and zip walk over `archive` sent as a zip attachment;
    /// returns how many objects were visited.
    pub fn zip(&self, archive: &[u8]) -> Result<usize, Slow> {
        let start = Instant::now();
        let message = zip_message(archive);
        let visited = on_worker_stack(|| {
            let mut visited = 0usize;
            let _ = walk::walk::<()>(&message, Limits::default(), &mut |item| {
                visited += 1;
                // Touch every byte, as a scanner would.
                let _ = std::hint::black_box(item.data.iter().fold(0u8, |a, b| a ^ b));
                Ok(None)
            });
            visited
        });
        bounded(start)?;
        Ok(visited)
    }

    /// Runs one session: `serve` gets the server end of a duplex pipe whose
    /// client end writes `input`, closes, and reads until the server closes.
    fn session<F, Fut>(&self, input: &[u8], reset: bool, serve: F) -> Result<usize, Slow>
    where
        F: FnOnce(Arc<Context>, DuplexStream, SocketAddr) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.trim(reset);
        let start = Instant::now();
        let peer: SocketAddr = PEER.parse().expect("peer address");
        let (client, server) = tokio::io::duplex(PIPE);
        // Spawned like the listener spawns it: on a runtime worker.
        let task = self.rt.spawn(serve(self.ctx.clone(), server, peer));
        let abort = task.abort_handle();
        let session = async move {
            if let Err(e) = task.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        };
        let sent = self.rt.block_on(async move {
            let (mut rd, mut wr) = tokio::io::split(client);
            let write = async move {
                for chunk in input.chunks(4096) {
                    if wr.write_all(chunk).await.is_err() {
                        return;
                    }
                }
                let _ = wr.shutdown().await;
            };
            let read = async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0usize;
                while let Ok(k) = rd.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    n += k;
                }
                n
            };
            let all = async { tokio::join!(session, write, read).2 };
            tokio::time::timeout(LIMIT, all).await
        });
        match sent {
            Ok(n) => bounded(start).map(|()| n),
            Err(_) => {
                abort.abort();
                Err(Slow(start.elapsed()))
            }
        }
    }

    /// Keeps the data folder small and, with `reset`, puts the fuzzed
    /// mailbox back to its three seed messages.
    fn trim(&self, reset: bool) {
        let n = self.inputs.fetch_add(1, Ordering::Relaxed);
        if reset {
            let _ = std::fs::remove_dir_all(self.ctx.store.root());
            for m in SEED_MESSAGES {
                let _ = self.ctx.store.deliver(USER, "INBOX", m.as_bytes());
            }
        }
        if !n.is_multiple_of(TRIM_EVERY) {
            return;
        }
        if !reset {
            let _ = std::fs::remove_dir_all(self.ctx.store.root());
        }
        for entry in self.ctx.queue.list() {
            let _ = self.ctx.queue.remove(&entry.id);
        }
        if let Ok(files) = std::fs::read_dir(self.ctx.transcripts.dir()) {
            for f in files.flatten() {
                if f.metadata().is_ok_and(|m| m.len() > TRANSCRIPT_MAX) {
                    let _ = std::fs::OpenOptions::new()
                        .write(true)
                        .open(f.path())
                        .and_then(|f| f.set_len(0));
                }
            }
        }
    }
}

/// Runs `f` on a thread with the stack of a tokio worker or blocking thread
/// (2 MiB), where the server runs the filters, not on the caller's.
fn on_worker_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    const WORKER_STACK: usize = 2 * 1024 * 1024;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn_scoped(scope, f)
            .expect("spawn a thread");
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn bounded(start: Instant) -> Result<(), Slow> {
    let took = start.elapsed();
    if took > LIMIT {
        Err(Slow(took))
    } else {
        Ok(())
    }
}

/// A message with `archive` as a base64 `application/zip` attachment.
pub fn zip_message(archive: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(archive);
    let mut m = String::from(
        "From: a@other.test\r\nTo: user@example.test\r\nSubject: zip\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
         see attached\r\n--b\r\nContent-Type: application/zip; name=\"a.zip\"\r\n\
         Content-Disposition: attachment; filename=\"a.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    for line in b64.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(line).unwrap_or_default());
        m.push_str("\r\n");
    }
    m.push_str("--b--\r\n");
    m.into_bytes()
}

/// Admits a connection from `peer` as the server's listener does: its slot
/// (held for the session), its transcript and its handle.
fn admit(
    ctx: &Arc<Context>,
    peer: SocketAddr,
    protocol: &'static str,
) -> Option<(
    crate::admission::Slot,
    crate::transcript::Transcript,
    crate::admission::Life,
)> {
    let slot = ctx.connections.admit(peer.ip())?;
    let life = slot.life().clone();
    Some((slot, ctx.transcripts.session(protocol, peer), life))
}
