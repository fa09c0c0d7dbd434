//! The mail store: one Maildir per mailbox (`cur/new/tmp`), folders as
//! Maildir++ subfolders (`.Junk`).
//!
//! Delivery writes into `tmp/`, fsyncs the file, renames it into `new/` and
//! fsyncs the folder, so a message is on disk before the SMTP side answers
//! `250` (Maildir spec, D. J. Bernstein; RFC 5321 §4.1.1.4 "the receiver
//! takes responsibility").

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

mod folder;
mod keywords;
mod ops;
pub mod quota;

use folder::FolderIndex;
pub use folder::{FlagOp, Flags, MessageMeta, Snapshot, UIDLIST, UIDVALIDITY_FILE};
pub use keywords::{KEYWORDS_FILE, names_of};
pub use ops::MaildropLock;

/// The folder every mailbox has.
pub const INBOX: &str = "INBOX";
/// The folder spam is filed into.
pub const JUNK: &str = "Junk";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A folder name that cannot be a Maildir++ folder.
    #[error("invalid folder name {0:?}")]
    InvalidFolder(String),
    /// The folder does not exist.
    #[error("no folder {0:?}")]
    NoFolder(String),
    /// The folder exists already.
    #[error("folder {0:?} exists already")]
    FolderExists(String),
    /// The mailbox is over its quota ([`quota`]).
    #[error("mailbox {0} is over its quota")]
    OverQuota(String),
}

pub(crate) fn io<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The store of one server: `<root>/<address>/` is the INBOX Maildir of a mailbox.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    hostname: String,
    counter: AtomicU64,
    /// The index of every folder opened so far, by Maildir path.
    indexes: Mutex<HashMap<PathBuf, Arc<Mutex<FolderIndex>>>>,
    /// Change notification per folder (IMAP IDLE, RFC 2177).
    watchers: Mutex<HashMap<PathBuf, broadcast::Sender<()>>>,
    /// Bytes per mailbox.
    quota: quota::Quota,
}

impl Store {
    /// A store under `root` (created on first delivery).
    pub fn new(root: impl Into<PathBuf>, hostname: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            hostname: hostname.into(),
            counter: AtomicU64::new(0),
            indexes: Mutex::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
            quota: quota::Quota::new(crate::config::DEFAULT_MAILBOX_QUOTA),
        }
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The Maildir of `folder` of mailbox `address`: INBOX is the mailbox
    /// folder itself, any other folder is the Maildir++ subfolder `.<name>`.
    pub fn maildir(&self, address: &str, folder: &str) -> Result<PathBuf, StoreError> {
        let mailbox = self.root.join(address.to_ascii_lowercase());
        if folder.eq_ignore_ascii_case(INBOX) {
            return Ok(mailbox);
        }
        if folder.is_empty()
            || folder.contains('/')
            || folder.starts_with('.')
            || folder.contains("..")
        {
            return Err(StoreError::InvalidFolder(folder.to_string()));
        }
        Ok(mailbox.join(format!(".{folder}")))
    }

    /// Creates `cur`, `new` and `tmp` of a Maildir if they are missing.
    pub fn ensure_maildir(dir: &Path) -> Result<(), StoreError> {
        for sub in ["cur", "new", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io("create", &p))?;
        }
        Ok(())
    }

    /// Delivers `message` into `folder` of `address` and makes it durable:
    /// written to `tmp/`, fsync'd, renamed into `new/`, `new/` fsync'd.
    /// Returns the path of the delivered file; `OverQuota` when the
    /// mailbox cannot take it.
    pub fn deliver(
        &self,
        address: &str,
        folder: &str,
        message: &[u8],
    ) -> Result<PathBuf, StoreError> {
        let mailbox = self.reserve(address, message.len())?;
        self.write_new(address, folder, message).inspect_err(|_| {
            self.quota.release(&mailbox, message.len() as u64);
        })
    }

    fn write_new(
        &self,
        address: &str,
        folder: &str,
        message: &[u8],
    ) -> Result<PathBuf, StoreError> {
        let dir = self.maildir(address, folder)?;
        Self::ensure_maildir(&dir)?;
        let name = self.unique_name(message.len());
        let tmp = dir.join("tmp").join(&name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        file.write_all(message).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("fsync", &tmp))?;
        drop(file);
        let new = dir.join("new").join(&name);
        fs::rename(&tmp, &new).map_err(io("rename", &new))?;
        sync_dir(&dir.join("new"))?;
        self.notify(&dir);
        Ok(new)
    }

    /// A unique Maildir file name: `<secs>.M<usec>P<pid>Q<n>.<host>,S=<size>`,
    /// the microseconds zero-padded to six digits so names sort in time order.
    pub(crate) fn unique_name(&self, size: usize) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.M{:06}P{}Q{}.{},S={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            n,
            self.hostname,
            size
        )
    }
}

/// fsyncs a directory so that a rename into it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_and_junk_subfolder() {
        let root = std::env::temp_dir().join(format!("store-test-{}", std::process::id()));
        let store = Store::new(&root, "mail.example.test");
        let p = store
            .deliver("Gold@metal.com", INBOX, b"Subject: hi\r\n\r\nbody\r\n")
            .unwrap();
        assert!(p.starts_with(root.join("gold@metal.com/new")));
        assert_eq!(fs::read(&p).unwrap(), b"Subject: hi\r\n\r\nbody\r\n");
        let j = store.deliver("gold@metal.com", JUNK, b"x").unwrap();
        assert!(j.starts_with(root.join("gold@metal.com/.Junk/new")));
        assert!(store.maildir("gold@metal.com", "../x").is_err());
        fs::remove_dir_all(&root).unwrap();
    }
}
