//! Per-mailbox quota: the bytes of all folders of a mailbox, kept as a
//! running figure so a delivery never rescans the Maildir.
//!
//! The first delivery to a mailbox after start sums the sizes of its
//! messages once (from the Maildir `,S=` size in the file name, the file's
//! length otherwise); every delivery then adds its size. Deletions (IMAP
//! EXPUNGE, POP3 DELE) are not reported here, so the figure only grows: a
//! delivery that would go over the quota first rescans the mailbox, at
//! most once per [`RESCAN_AFTER`], and is refused only if the rescanned
//! figure is over too. Over quota, SMTP answers `552 5.2.2` (RFC 3463
//! X.2.2 "mailbox full") and IMAP APPEND `NO [OVERQUOTA]` (RFC 5530 §3).
//! See docs/limits.md, "Quota".
//!
//! Non-features: quota per folder, message-count quotas, the IMAP QUOTA
//! extension (RFC 9208).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Store, StoreError};

impl Store {
    /// The same store with a quota of `limit` bytes per mailbox (0: none).
    pub fn with_quota(self, limit: u64) -> Self {
        self.quota.set_limit(limit);
        self
    }

    /// The quota of the mailboxes.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// True when `address` cannot take `size` more bytes (SMTP RCPT and
    /// the check before delivering to several recipients).
    pub fn would_exceed_quota(&self, address: &str, size: usize) -> bool {
        self.quota
            .would_exceed(&self.mailbox_root(address), size as u64)
    }

    /// Reserves `size` bytes of `address`'s quota, or `OverQuota`; the
    /// mailbox folder for [`Quota::release`].
    pub(crate) fn reserve(&self, address: &str, size: usize) -> Result<PathBuf, StoreError> {
        let mailbox = self.mailbox_root(address);
        if self.quota.reserve(&mailbox, size as u64) {
            Ok(mailbox)
        } else {
            Err(StoreError::OverQuota(address.to_string()))
        }
    }

    fn mailbox_root(&self, address: &str) -> PathBuf {
        self.root.join(address.to_ascii_lowercase())
    }
}

/// A mailbox over its quota is rescanned at most this often.
pub const RESCAN_AFTER: Duration = Duration::from_secs(5);

/// The usage of every mailbox delivered to since start.
#[derive(Debug)]
pub struct Quota {
    /// Bytes per mailbox (0: no quota).
    limit: AtomicU64,
    usage: Mutex<HashMap<PathBuf, Usage>>,
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    bytes: u64,
    scanned: Instant,
}

impl Quota {
    /// A quota of `limit` bytes per mailbox (0: none).
    pub fn new(limit: u64) -> Self {
        Self {
            limit: AtomicU64::new(limit),
            usage: Mutex::new(HashMap::new()),
        }
    }

    /// The limit in bytes (0: none).
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Sets the limit (0: none).
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Adds `size` bytes to the mailbox at `mailbox` (its INBOX Maildir)
    /// if they fit; false (nothing added) when they would go over.
    pub fn reserve(&self, mailbox: &Path, size: u64) -> bool {
        let limit = self.limit();
        if limit == 0 {
            return true;
        }
        let mut usage = self.usage.lock().expect("quota lock");
        let entry = usage.entry(mailbox.to_path_buf()).or_insert_with(|| Usage {
            bytes: scan(mailbox),
            scanned: Instant::now(),
        });
        if entry.bytes.saturating_add(size) > limit && entry.scanned.elapsed() >= RESCAN_AFTER {
            *entry = Usage {
                bytes: scan(mailbox),
                scanned: Instant::now(),
            };
        }
        if entry.bytes.saturating_add(size) > limit {
            return false;
        }
        entry.bytes += size;
        true
    }

    /// Takes back a reservation whose delivery failed.
    pub fn release(&self, mailbox: &Path, size: u64) {
        if let Some(u) = self.usage.lock().expect("quota lock").get_mut(mailbox) {
            u.bytes = u.bytes.saturating_sub(size);
        }
    }

    /// True when the mailbox cannot take `size` more bytes (RCPT and the
    /// check before delivery), without reserving them.
    pub fn would_exceed(&self, mailbox: &Path, size: u64) -> bool {
        if !self.reserve(mailbox, size) {
            return true;
        }
        self.release(mailbox, size);
        false
    }
}

/// The bytes of every message in every folder of the mailbox.
fn scan(mailbox: &Path) -> u64 {
    let mut folders = vec![mailbox.to_path_buf()];
    if let Ok(entries) = fs::read_dir(mailbox) {
        folders.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .filter(|p| p.is_dir()),
        );
    }
    let mut total = 0u64;
    for folder in folders {
        for sub in ["cur", "new"] {
            let Ok(entries) = fs::read_dir(folder.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let size = size_in_name(&name)
                    .or_else(|| e.metadata().ok().map(|m| m.len()))
                    .unwrap_or(0);
                total = total.saturating_add(size);
            }
        }
    }
    total
}

/// The `,S=<size>` of a Maildir file name (before any `:2,` flags).
fn size_in_name(name: &str) -> Option<u64> {
    let base = name.split(':').next()?;
    let s = base.split(',').find_map(|f| f.strip_prefix("S="))?;
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_figure_refuses_over_and_rescans_after_deletions() {
        let root = std::env::temp_dir().join(format!("quota-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let mbox = root.join("a@b.test");
        for d in ["cur", "new", ".Junk/cur"] {
            fs::create_dir_all(mbox.join(d)).unwrap();
        }
        fs::write(mbox.join("new/1.M1.h,S=600"), vec![0; 600]).unwrap();
        fs::write(mbox.join(".Junk/cur/2.M2.h,S=300:2,S"), vec![0; 300]).unwrap();
        assert_eq!(scan(&mbox), 900);
        let q = Quota::new(1000);
        assert!(q.reserve(&mbox, 100), "900 + 100 fits");
        assert!(!q.reserve(&mbox, 1), "1001 does not");
        assert!(q.would_exceed(&mbox, 1));
        // A deletion is seen by the rescan once RESCAN_AFTER has passed.
        fs::remove_file(mbox.join("new/1.M1.h,S=600")).unwrap();
        q.usage.lock().unwrap().get_mut(&mbox).unwrap().scanned -= RESCAN_AFTER;
        assert!(q.reserve(&mbox, 500), "300 + 500 after the rescan");
        assert!(Quota::new(0).reserve(&mbox, u64::MAX), "0 is no quota");
        fs::remove_dir_all(&root).unwrap();
    }
}
