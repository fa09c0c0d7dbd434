//! Session transcripts: every SMTP, IMAP and POP3 session as JSON lines
//! (`<data_dir>/transcripts/<protocol>-<date>.jsonl`), for `labctl trace`.
//!
//! One line per protocol line: time, session id, protocol, peer, direction
//! (`c` client to server, `s` server to client, `i` info such as a TLS
//! upgrade), the line. Authentication data is redacted by the caller
//! through [`Transcript::client_redacted`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// A transcript file shared by the sessions of one protocol.
type SharedFile = Arc<Mutex<File>>;

/// The transcript sink of a server (one file per protocol, appended).
#[derive(Debug)]
pub struct Transcripts {
    dir: PathBuf,
    hostname: String,
    next_id: AtomicU64,
    files: Mutex<Vec<(&'static str, SharedFile)>>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    host: &'a str,
    session: &'a str,
    proto: &'a str,
    peer: String,
    dir: &'a str,
    line: &'a str,
}

impl Transcripts {
    /// Transcripts under `data_dir/transcripts`.
    pub fn new(data_dir: &Path, hostname: &str) -> std::io::Result<Self> {
        let dir = data_dir.join("transcripts");
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            hostname: hostname.to_string(),
            next_id: AtomicU64::new(1),
            files: Mutex::new(Vec::new()),
        })
    }

    /// The folder holding the transcript files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, proto: &'static str) -> Option<SharedFile> {
        let mut files = self.files.lock().ok()?;
        if let Some((_, f)) = files.iter().find(|(p, _)| *p == proto) {
            return Some(f.clone());
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{proto}.jsonl")))
            .ok()?;
        let f = Arc::new(Mutex::new(f));
        files.push((proto, f.clone()));
        Some(f)
    }

    /// Starts the transcript of a new session.
    pub fn session(&self, proto: &'static str, peer: SocketAddr) -> Transcript {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{}-{}-{n}", self.hostname, proto, std::process::id());
        Transcript {
            id,
            proto,
            peer,
            host: self.hostname.clone(),
            file: self.file(proto),
        }
    }
}

/// The transcript of one session. Writing never fails the session: a
/// transcript line that cannot be written is dropped.
#[derive(Debug, Clone)]
pub struct Transcript {
    id: String,
    proto: &'static str,
    peer: SocketAddr,
    host: String,
    file: Option<SharedFile>,
}

impl Transcript {
    /// The session id (also written into Received headers).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn write(&self, dir: &str, line: &str) {
        let Some(file) = &self.file else { return };
        let entry = Line {
            time: now_rfc3339(),
            host: &self.host,
            session: &self.id,
            proto: self.proto,
            peer: self.peer.to_string(),
            dir,
            line: line.trim_end_matches(['\r', '\n']),
        };
        if let (Ok(mut json), Ok(mut f)) = (serde_json::to_vec(&entry), file.lock()) {
            json.push(b'\n');
            let _ = f.write_all(&json);
        }
    }

    /// A line from the client.
    pub fn client(&self, line: &str) {
        self.write("c", line);
    }

    /// A line from the client that carries credentials: only its first
    /// `keep` words are kept.
    pub fn client_redacted(&self, line: &str, keep: usize) {
        let kept: Vec<&str> = line.split_whitespace().take(keep).collect();
        self.write("c", &format!("{} ***", kept.join(" ")));
    }

    /// A line from the server.
    pub fn server(&self, line: &str) {
        self.write("s", line);
    }

    /// An event (connection, TLS upgrade, delivery...).
    pub fn info(&self, line: &str) {
        self.write("i", line);
    }
}

/// Current UTC time in RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
