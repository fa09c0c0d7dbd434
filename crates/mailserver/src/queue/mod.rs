//! The durable outbound queue (RFC 5321 §4.5.4: retry strategy) and its
//! delivery worker.
//!
//! Spool layout under `<data_dir>/queue/`: one file `<id>.msg` per message:
//! its [`QueuedMessage`] record (recipients with their state, attempts,
//! next attempt, body size) as one line of JSON, then the message as it
//! will be sent (signature already prepended). Every write, the first one
//! included, goes to `<id>.msg.tmp`, is fsync'd, renamed over `<id>.msg`
//! and the folder fsync'd, so a `<id>.msg` is always complete: a crash
//! mid-write leaves only a temporary file, which [`Queue::open`] removes
//! (the client got no `250` for it). A `<id>.msg` whose body is not the
//! size its record states (a disk fault, or a file written by an earlier
//! version) is moved aside as `<id>.msg.corrupt` and never relayed.
//! One file per message keeps file creations and deletions (and their
//! fsyncs) to one each. Removing a delivered message does not fsync the
//! folder: after a crash the file may come back and the message be
//! delivered twice, which SMTP allows (RFC 5321 §6.1 prefers duplicates to
//! losses); it is never lost. A message is removed only once the bounce of
//! its failed recipients is safely delivered or queued. A restart finds
//! every file and resumes. See docs/limits.md, "The queue on disk".

mod dsn;
pub(crate) mod no_verify;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::store::{StoreError, sync_dir};

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A file operation failed.
    #[error("queue {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A record could not be encoded or decoded.
    #[error("queue record {path}: {message}")]
    Record {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Syncing the folder failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> QueueError + 'a {
    move |source| QueueError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The state of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptState {
    /// Not delivered yet.
    Pending,
    /// Accepted by the next hop.
    Delivered,
    /// Permanently failed (a DSN was or will be sent).
    Failed,
}

/// One recipient of a queued message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedRecipient {
    /// The address.
    pub address: String,
    /// Its state.
    pub state: RcptState,
    /// The last reply or error for it.
    #[serde(default)]
    pub last_result: Option<String>,
}

/// The record of a queued message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// Queue id (file stem).
    pub id: String,
    /// Envelope sender (empty: null sender, no DSN is ever sent for it).
    pub mail_from: String,
    /// Recipients.
    pub recipients: Vec<QueuedRecipient>,
    /// When it was queued (Unix seconds).
    pub created: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Earliest next attempt (Unix seconds).
    pub next_attempt: u64,
    /// Bytes of the message after the record line (absent in files of
    /// earlier versions).
    #[serde(default)]
    pub size: Option<u64>,
}

/// Current Unix time in seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The spool.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    notify: Notify,
    in_flight: Mutex<HashSet<String>>,
    /// id -> next attempt, mirrored from the records so the worker does
    /// not read every record on every wake-up.
    index: Mutex<HashMap<String, u64>>,
    /// Idle relay connections of the worker.
    pub(crate) pool: worker::Pool,
}

impl Queue {
    /// Opens (creates) the spool folder.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, QueueError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let queue = Self {
            dir,
            notify: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            index: Mutex::new(HashMap::new()),
            pool: worker::Pool::default(),
        };
        queue.remove_stale()?;
        queue.migrate_legacy()?;
        // A restart resumes: every record on disk is due now.
        let records = queue.list();
        if let Ok(mut index) = queue.index.lock() {
            for r in records {
                index.insert(r.id, 0);
            }
        }
        Ok(queue)
    }

    /// Removes the temporary files of writes a crash interrupted (their
    /// message was never acknowledged) and moves aside spool files whose
    /// body is shorter or longer than their record says.
    fn remove_stale(&self) -> Result<(), QueueError> {
        let entries = fs::read_dir(&self.dir).map_err(io("read", &self.dir))?;
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".msg.tmp") {
                tracing::warn!(path = %p.display(), "interrupted queue write removed");
                fs::remove_file(&p).map_err(io("remove", &p))?;
            } else if name.ends_with(".msg")
                && let Err(e) = fs::read(&p)
                    .map_err(io("read", &p))
                    .and_then(|b| decode(b, &p))
            {
                let aside = p.with_extension("msg.corrupt");
                tracing::error!(error = %e, path = %aside.display(), "damaged queue file moved aside, not relayed");
                fs::rename(&p, &aside).map_err(io("rename", &aside))?;
            }
        }
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Converts a spool of the earlier layout (`<id>.json` record and
    /// `<id>.eml` body) into `<id>.msg` files, so an upgrade with messages
    /// still queued loses none: each new file is written under a temporary
    /// name, fsync'd, renamed and the folder fsync'd before the old pair is
    /// removed.
    fn migrate_legacy(&self) -> Result<(), QueueError> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(());
        };
        let mut migrated = false;
        for e in entries.flatten() {
            let json = e.path();
            if json.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let eml = json.with_extension("eml");
            let (Ok(record), Ok(body)) = (fs::read(&json), fs::read(&eml)) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<QueuedMessage>(&record) else {
                tracing::warn!(path = %json.display(), "unreadable legacy queue record left as is");
                continue;
            };
            let path = self.path(&record.id);
            let tmp = self.dir.join(format!("{}.msg.tmp", record.id));
            let record = QueuedMessage {
                size: Some(body.len() as u64),
                ..record
            };
            let bytes = encode(&record, &body, &path)?;
            let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
            f.write_all(&bytes).map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("fsync", &tmp))?;
            fs::rename(&tmp, &path).map_err(io("rename", &path))?;
            migrated = true;
        }
        if migrated {
            sync_dir(&self.dir)?;
            for e in fs::read_dir(&self.dir)
                .map_err(io("read", &self.dir))?
                .flatten()
            {
                let p = e.path();
                let ext = p.extension().and_then(|x| x.to_str());
                if matches!(ext, Some("json" | "eml")) && p.with_extension("msg").exists() {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        Ok(())
    }

    /// Ids of the records due at `now`, earliest first.
    pub fn due(&self, now: u64) -> Vec<String> {
        let Ok(index) = self.index.lock() else {
            return Vec::new();
        };
        let mut due: Vec<(u64, String)> = index
            .iter()
            .filter(|(_, next)| **next <= now)
            .map(|(id, next)| (*next, id.clone()))
            .collect();
        due.sort();
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// Reads one record.
    pub fn load(&self, id: &str) -> Result<QueuedMessage, QueueError> {
        self.read(id).map(|(record, _)| record)
    }

    pub(crate) fn set_index(&self, id: &str, next: Option<u64>) {
        if let Ok(mut index) = self.index.lock() {
            match next {
                Some(n) => {
                    index.insert(id.to_string(), n);
                }
                None => {
                    index.remove(id);
                }
            }
        }
    }

    /// The spool folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wakes the delivery worker (a message was queued).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    pub(crate) async fn wait(&self, max: std::time::Duration) {
        let _ = tokio::time::timeout(max, self.notify.notified()).await;
    }

    /// Queues `message` for `rcpts` durably; returns the queue id.
    /// Blocking (fsync): call it from a blocking thread.
    pub fn enqueue(
        &self,
        mail_from: &str,
        rcpts: &[String],
        message: &[u8],
    ) -> Result<String, QueueError> {
        let id = crate::smtp::headers::new_id();
        let now = now_secs();
        let record = QueuedMessage {
            id: id.clone(),
            mail_from: mail_from.to_string(),
            recipients: rcpts
                .iter()
                .map(|a| QueuedRecipient {
                    address: a.clone(),
                    state: RcptState::Pending,
                    last_result: None,
                })
                .collect(),
            created: now,
            attempts: 0,
            next_attempt: now,
            size: None,
        };
        self.write(&record, message)?;
        self.set_index(&id, Some(now));
        Ok(id)
    }

    /// Writes a spool file atomically and durably: temporary file, fsync,
    /// rename, folder fsync. A crash at any point leaves either the old
    /// file or the new one, never part of one.
    fn write(&self, record: &QueuedMessage, message: &[u8]) -> Result<(), QueueError> {
        let path = self.path(&record.id);
        let tmp = self.dir.join(format!("{}.msg.tmp", record.id));
        let record = QueuedMessage {
            size: Some(message.len() as u64),
            ..record.clone()
        };
        let bytes = encode(&record, message, &path)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(&bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Writes an updated record (with the unchanged body) atomically and durably.
    pub fn save(&self, record: &QueuedMessage) -> Result<(), QueueError> {
        let body = self.body(&record.id)?;
        self.write(record, &body)?;
        self.set_index(&record.id, Some(record.next_attempt));
        Ok(())
    }

    /// Removes a finished message. The folder is not fsync'd: see the module
    /// documentation (at worst a duplicate after a crash, never a loss).
    pub fn remove(&self, id: &str) -> Result<(), QueueError> {
        let path = self.path(id);
        self.set_index(id, None);
        fs::remove_file(&path).map_err(io("remove", &path))?;
        Ok(())
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    /// Reads one spool file: its record and its body.
    pub fn read(&self, id: &str) -> Result<(QueuedMessage, Vec<u8>), QueueError> {
        let path = self.path(id);
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        decode(bytes, &path)
    }

    /// The body of a queued message.
    pub fn body(&self, id: &str) -> Result<Vec<u8>, QueueError> {
        self.read(id).map(|(_, body)| body)
    }

    /// Every record in the spool (unreadable ones are skipped with a warning).
    pub fn list(&self) -> Vec<QueuedMessage> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("msg") {
                continue;
            }
            match fs::read(&p).ok().and_then(|b| decode(b, &p).ok()) {
                Some((r, _)) => out.push(r),
                None => tracing::warn!(path = %p.display(), "unreadable queue record skipped"),
            }
        }
        out.sort_by_key(|r| r.created);
        out
    }

    /// Marks `id` as being delivered; false if it already is.
    pub(crate) fn claim(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .map(|mut s| s.insert(id.to_string()))
            .unwrap_or(false)
    }

    /// Releases a claim.
    pub(crate) fn release(&self, id: &str) {
        if let Ok(mut s) = self.in_flight.lock() {
            s.remove(id);
        }
    }
}

/// A spool file: the record as one line of JSON, then the message.
fn encode(record: &QueuedMessage, message: &[u8], path: &Path) -> Result<Vec<u8>, QueueError> {
    let mut bytes = serde_json::to_vec(record).map_err(|e| QueueError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    bytes.extend_from_slice(message);
    Ok(bytes)
}

/// Splits a spool file into its record and its message.
fn decode(mut bytes: Vec<u8>, path: &Path) -> Result<(QueuedMessage, Vec<u8>), QueueError> {
    let bad = |message: String| QueueError::Record {
        path: path.to_path_buf(),
        message,
    };
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no record line".into()))?;
    let record: QueuedMessage =
        serde_json::from_slice(&bytes[..nl]).map_err(|e| bad(e.to_string()))?;
    bytes.drain(..=nl);
    if let Some(size) = record.size
        && size != bytes.len() as u64
    {
        return Err(bad(format!(
            "the message is {} bytes, the record says {size}: truncated",
            bytes.len()
        )));
    }
    Ok((record, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_list_remove() {
        let dir = std::env::temp_dir().join(format!("queue-test-{}", std::process::id()));
        let q = Queue::open(&dir).unwrap();
        let id = q
            .enqueue(
                "a@x.test",
                &["b@y.test".into()],
                b"Subject: t\r\n\r\nhi\r\n",
            )
            .unwrap();
        let files: Vec<_> = fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one spool file per message");
        let list = q.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, id);
        assert_eq!(list[0].recipients[0].state, RcptState::Pending);
        assert_eq!(q.body(&id).unwrap(), b"Subject: t\r\n\r\nhi\r\n");
        let mut record = q.load(&id).unwrap();
        record.attempts = 1;
        record.next_attempt = 42;
        q.save(&record).unwrap();
        let (back, body) = q.read(&id).unwrap();
        assert_eq!((back.attempts, back.next_attempt), (1, 42));
        assert_eq!(body, b"Subject: t\r\n\r\nhi\r\n", "save keeps the body");
        assert_eq!(q.due(41), Vec::<String>::new());
        assert_eq!(q.due(42), vec![id.clone()]);
        assert_eq!(q.due(now_secs()), vec![id.clone()]);
        assert_eq!(
            Queue::open(&dir).unwrap().due(0),
            vec![id.clone()],
            "restart resumes"
        );
        q.remove(&id).unwrap();
        assert!(q.list().is_empty());
        // A spool of the earlier layout (record and body apart) is converted.
        let legacy = QueuedMessage {
            id: "legacy1".into(),
            size: None,
            ..record
        };
        fs::write(
            dir.join("legacy1.json"),
            serde_json::to_vec(&legacy).unwrap(),
        )
        .unwrap();
        fs::write(dir.join("legacy1.eml"), b"Subject: old\r\n\r\nx\r\n").unwrap();
        let q = Queue::open(&dir).unwrap();
        assert_eq!(q.due(0), vec!["legacy1".to_string()]);
        assert_eq!(q.body("legacy1").unwrap(), b"Subject: old\r\n\r\nx\r\n");
        assert!(!dir.join("legacy1.json").exists() && !dir.join("legacy1.eml").exists());
        q.remove("legacy1").unwrap();
        assert!(q.due(now_secs()).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn interrupted_and_truncated_files_are_never_relayed() {
        let dir = std::env::temp_dir().join(format!("queue-crash-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let q = Queue::open(&dir).unwrap();
        let good = q
            .enqueue(
                "a@x.test",
                &["b@y.test".into()],
                b"Subject: ok\r\n\r\nok\r\n",
            )
            .unwrap();
        let cut = q
            .enqueue(
                "a@x.test",
                &["b@y.test".into()],
                b"Subject: cut\r\n\r\nlong body\r\n",
            )
            .unwrap();
        assert!(
            fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
        );
        // A crash mid-write: a temporary file, and a file cut short.
        fs::write(dir.join("dead1.msg.tmp"), b"{\"id\":\"dead1\"").unwrap();
        let full = fs::read(dir.join(format!("{cut}.msg"))).unwrap();
        fs::write(dir.join(format!("{cut}.msg")), &full[..full.len() - 5]).unwrap();
        let q = Queue::open(&dir).unwrap();
        assert_eq!(q.due(now_secs()), vec![good.clone()]);
        assert!(
            !dir.join("dead1.msg.tmp").exists(),
            "stale temp file removed"
        );
        assert!(
            dir.join(format!("{cut}.msg.corrupt")).exists(),
            "moved aside"
        );
        assert_eq!(q.body(&good).unwrap(), b"Subject: ok\r\n\r\nok\r\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
