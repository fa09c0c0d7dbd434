//! Session transcripts: every SMTP, IMAP and POP3 session as JSON lines
//! (`<data_dir>/transcripts/<protocol>-<date>.jsonl`), for `labctl trace`.
//!
//! One line per protocol line: time, session id, protocol, peer, direction
//! (`c` client to server, `s` server to client, `i` info such as a TLS
//! upgrade), the line. Authentication data is redacted by the caller
//! through [`Transcript::client_redacted`].
//!
//! Bounded (docs/connections.md): a session writes at most
//! `limits.transcript_session_max_bytes` (then one line saying the rest is
//! not logged); a protocol's file is rotated at
//! `limits.transcript_file_max_bytes` into `<protocol>.jsonl.1`, `.2`...
//! keeping `limits.transcript_files_kept`, so the transcripts of a server
//! never exceed 3 × (kept + 1) × the file size.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::Limits;

/// A protocol's transcript file, rotated by size.
#[derive(Debug)]
struct Sink {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    kept: u32,
}

impl Sink {
    fn open(path: PathBuf, max: u64, kept: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            size,
            max,
            kept,
        })
    }

    /// Appends one line, rotating first when it would pass the size.
    fn append(&mut self, line: &[u8]) {
        if self.size > 0 && self.size + line.len() as u64 > self.max {
            self.rotate();
        }
        if self.file.write_all(line).is_ok() {
            self.size += line.len() as u64;
        }
    }

    /// `x.jsonl` becomes `x.jsonl.1`, `.1` becomes `.2`... the oldest goes.
    fn rotate(&mut self) {
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.kept == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(name(self.kept));
            for n in (1..self.kept).rev() {
                let _ = std::fs::rename(name(n), name(n + 1));
            }
            let _ = std::fs::rename(&self.path, name(1));
        }
        if let Ok(f) = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .open(&self.path)
        {
            self.file = f;
            self.size = 0;
        }
    }
}

/// A transcript file shared by the sessions of one protocol.
type SharedFile = Arc<Mutex<Sink>>;

/// The transcript sink of a server (one file per protocol, appended).
#[derive(Debug)]
pub struct Transcripts {
    dir: PathBuf,
    hostname: String,
    next_id: AtomicU64,
    files: Mutex<Vec<(&'static str, SharedFile)>>,
    session_max: u64,
    file_max: u64,
    kept: u32,
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
    pub fn new(data_dir: &Path, hostname: &str, limits: &Limits) -> std::io::Result<Self> {
        let dir = data_dir.join("transcripts");
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            hostname: hostname.to_string(),
            next_id: AtomicU64::new(1),
            files: Mutex::new(Vec::new()),
            session_max: limits.transcript_session_max_bytes,
            file_max: limits.transcript_file_max_bytes.max(4096),
            kept: limits.transcript_files_kept,
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
        let path = self.dir.join(format!("{proto}.jsonl"));
        let f = Arc::new(Mutex::new(Sink::open(path, self.file_max, self.kept).ok()?));
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
            written: Arc::new(AtomicU64::new(0)),
            max: self.session_max,
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
    /// Bytes written by this session (shared by clones).
    written: Arc<AtomicU64>,
    max: u64,
}

impl Transcript {
    /// The session id (also written into Received headers).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn write(&self, dir: &str, line: &str) {
        let Some(file) = &self.file else { return };
        let written = self.written.load(Ordering::Relaxed);
        if written >= self.max {
            return;
        }
        let cut = "transcript limit reached, the rest of this session is not logged";
        let (dir, line) = if written + line.len() as u64 + 256 > self.max {
            // The last line of a session that reached its limit.
            self.written.store(self.max, Ordering::Relaxed);
            ("i", cut)
        } else {
            (dir, line)
        };
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
            if line != cut {
                self.written.fetch_add(json.len() as u64, Ordering::Relaxed);
            }
            f.append(&json);
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
