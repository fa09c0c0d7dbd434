//! The index of one Maildir folder: persistent UIDVALIDITY and UIDs
//! (RFC 3501 §2.3.1.1), flags in the `:2,` info suffix (Maildir spec,
//! "info semantics"), sizes and internal dates.
//!
//! The UID map lives in `maillab-uidlist` inside the folder (a small
//! `dovecot-uidlist`-like text file, rewritten atomically: tmp, fsync,
//! rename). A sync moves `new/` into `cur/` and gives every file the index
//! does not know yet the next UID, in arrival order; it rescans only when
//! the modification time of `new/` or `cur/` changed (or changed so
//! recently that a second change in the same clock tick could hide).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{StoreError, io, sync_dir};

/// The file holding the UID map of a folder.
pub const UIDLIST: &str = "maillab-uidlist";
const UIDLIST_MAGIC: &str = "maillab-uidlist 1";

/// The IMAP system flags a Maildir file name can carry (RFC 3501 §2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// `\Seen` (Maildir `S`).
    pub const SEEN: u8 = 1;
    /// `\Answered` (Maildir `R`, replied).
    pub const ANSWERED: u8 = 2;
    /// `\Flagged` (Maildir `F`).
    pub const FLAGGED: u8 = 4;
    /// `\Deleted` (Maildir `T`, trashed).
    pub const DELETED: u8 = 8;
    /// `\Draft` (Maildir `D`).
    pub const DRAFT: u8 = 16;
    /// Maildir `P` (passed/forwarded): kept, not shown over IMAP.
    pub const PASSED: u8 = 32;

    /// Maildir letters in ASCII order, as the spec requires.
    const LETTERS: [(char, u8); 6] = [
        ('D', Self::DRAFT),
        ('F', Self::FLAGGED),
        ('P', Self::PASSED),
        ('R', Self::ANSWERED),
        ('S', Self::SEEN),
        ('T', Self::DELETED),
    ];

    /// True if every bit of `bit` is set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit == bit
    }

    /// The flags of a Maildir file name (`base:2,FS`); unknown letters are ignored.
    pub fn from_file_name(name: &str) -> Self {
        let Some((_, info)) = name.split_once(":2,") else {
            return Self(0);
        };
        let mut f = 0;
        for c in info.chars() {
            if let Some((_, bit)) = Self::LETTERS.iter().find(|(l, _)| *l == c) {
                f |= bit;
            }
        }
        Self(f)
    }

    /// The `:2,` info suffix for these flags.
    pub fn suffix(self) -> String {
        let mut s = String::from(":2,");
        for (l, bit) in Self::LETTERS {
            if self.has(bit) {
                s.push(l);
            }
        }
        s
    }
}

/// One message of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// Its UID (RFC 3501 §2.3.1.1).
    pub uid: u32,
    /// Its flags.
    pub flags: Flags,
    /// Size in octets (RFC822.SIZE).
    pub size: u64,
    /// Internal date: seconds since the epoch (file modification time).
    pub internal_date: i64,
    /// The unique part of the file name (before `:`).
    pub base: String,
    /// The current file name in `cur/`.
    pub file: String,
}

/// The state of a folder after a sync.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// The UID the next message will get.
    pub uid_next: u32,
    /// The messages, in UID order.
    pub messages: Arc<Vec<MessageMeta>>,
    /// UIDs found in `new/` by this sync (candidates for `\Recent`).
    pub arrived: Vec<u32>,
}

/// The in-memory index of one folder.
#[derive(Debug)]
pub(crate) struct FolderIndex {
    dir: PathBuf,
    loaded: bool,
    uid_validity: u32,
    uid_next: u32,
    messages: Arc<Vec<MessageMeta>>,
    new_mtime: Option<SystemTime>,
    cur_mtime: Option<SystemTime>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The size a Maildir name announces (`,S=<n>`).
fn size_from_name(base: &str) -> Option<u64> {
    base.split(',')
        .find_map(|p| p.strip_prefix("S="))
        .and_then(|n| n.parse().ok())
}

impl FolderIndex {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            loaded: false,
            uid_validity: 0,
            uid_next: 1,
            messages: Arc::new(Vec::new()),
            new_mtime: None,
            cur_mtime: None,
        }
    }

    fn snapshot(&self, arrived: Vec<u32>) -> Snapshot {
        Snapshot {
            uid_validity: self.uid_validity,
            uid_next: self.uid_next,
            messages: self.messages.clone(),
            arrived,
        }
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let path = self.dir.join(UIDLIST);
        self.loaded = true;
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A new UIDVALIDITY: the current time, as Dovecot does; it
                // only has to differ from any earlier value of this folder.
                self.uid_validity = (epoch_secs(SystemTime::now()) as u32).max(1);
                self.uid_next = 1;
                self.messages = Arc::new(Vec::new());
                return self.write_uidlist();
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let mut fields = header
            .strip_prefix(UIDLIST_MAGIC)
            .unwrap_or("")
            .split_whitespace();
        let validity = fields.next().and_then(|v| v.parse::<u32>().ok());
        let next = fields.next().and_then(|v| v.parse::<u32>().ok());
        let (Some(validity), Some(next)) = (validity, next) else {
            // Unreadable: start a new UIDVALIDITY so clients resync (RFC 3501 §2.3.1.1).
            tracing::warn!(path = %path.display(), "damaged uidlist, new UIDVALIDITY");
            self.uid_validity = (epoch_secs(SystemTime::now()) as u32).max(1);
            self.uid_next = 1;
            return Ok(());
        };
        self.uid_validity = validity.max(1);
        self.uid_next = next.max(1);
        let mut messages = Vec::new();
        for line in lines {
            let mut f = line.splitn(4, ' ');
            let (Some(uid), Some(size), Some(date), Some(base)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let (Ok(uid), Ok(size), Ok(date)) = (uid.parse(), size.parse(), date.parse()) else {
                continue;
            };
            messages.push(MessageMeta {
                uid,
                flags: Flags(0),
                size,
                internal_date: date,
                base: base.to_string(),
                file: String::new(),
            });
        }
        messages.sort_by_key(|m| m.uid);
        self.messages = Arc::new(messages);
        Ok(())
    }

    /// Writes the UID map atomically (tmp file, fsync, rename).
    fn write_uidlist(&self) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let mut text = format!("{UIDLIST_MAGIC} {} {}\n", self.uid_validity, self.uid_next);
        for m in self.messages.iter() {
            text.push_str(&format!(
                "{} {} {} {}\n",
                m.uid, m.size, m.internal_date, m.base
            ));
        }
        let tmp = self.dir.join(format!("{UIDLIST}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        let path = self.dir.join(UIDLIST);
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        sync_dir(&self.dir)
    }

    fn stale(recorded: Option<SystemTime>, now_m: Option<SystemTime>) -> bool {
        match (recorded, now_m) {
            // A change within the same clock tick as the recorded one
            // would not move the time: rescan while it is fresh.
            (Some(r), Some(n)) if r == n => SystemTime::now()
                .duration_since(n)
                .map_or(true, |age| age < Duration::from_secs(2)),
            _ => true,
        }
    }

    /// Loads the index on first use (our own changes keep it current).
    pub(crate) fn ensure_loaded(&mut self) -> Result<(), StoreError> {
        if !self.loaded {
            self.sync(false)?;
        }
        Ok(())
    }

    /// The path of message `uid` as the index knows it.
    pub(crate) fn path_for(&self, uid: u32) -> Option<PathBuf> {
        let i = self.messages.binary_search_by_key(&uid, |m| m.uid).ok()?;
        Some(self.path_of(&self.messages[i]))
    }

    /// Brings the index up to date with the folder on disk.
    pub(crate) fn sync(&mut self, force: bool) -> Result<Snapshot, StoreError> {
        let mut force = force;
        if !self.loaded {
            super::Store::ensure_maildir(&self.dir)?;
            self.load()?;
            force = true;
        }
        let new_dir = self.dir.join("new");
        let cur_dir = self.dir.join("cur");
        if !force
            && !Self::stale(self.new_mtime, mtime(&new_dir))
            && !Self::stale(self.cur_mtime, mtime(&cur_dir))
        {
            return Ok(self.snapshot(Vec::new()));
        }
        super::Store::ensure_maildir(&self.dir)?;
        // Maildir: a reader moves new/ into cur/ and appends the info.
        let mut arrived_bases = std::collections::HashSet::new();
        for entry in fs::read_dir(&new_dir).map_err(io("read", &new_dir))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let base = name.split(':').next().unwrap_or(&name).to_string();
            let target = cur_dir.join(format!("{base}:2,"));
            match fs::rename(entry.path(), &target) {
                Ok(()) => {
                    arrived_bases.insert(base);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("rename", &target)(e)),
            }
        }
        self.new_mtime = mtime(&new_dir);
        self.cur_mtime = mtime(&cur_dir);
        let mut found: HashMap<String, String> = HashMap::new();
        for entry in fs::read_dir(&cur_dir).map_err(io("read", &cur_dir))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let base = name.split(':').next().unwrap_or(&name).to_string();
            found.insert(base, name);
        }
        let mut changed = false;
        let mut messages = Vec::with_capacity(found.len());
        for m in self.messages.iter() {
            match found.remove(&m.base) {
                Some(file) => {
                    let mut m = m.clone();
                    m.flags = Flags::from_file_name(&file);
                    m.file = file;
                    messages.push(m);
                }
                None => changed = true,
            }
        }
        let mut fresh: Vec<(i64, String, String, u64)> = found
            .into_iter()
            .map(|(base, file)| {
                // Maildir names start with the delivery time and carry
                // `,S=<size>` (as Dovecot trusts them): no stat needed.
                let named_date = base.split('.').next().and_then(|t| t.parse::<i64>().ok());
                if let (Some(date), Some(size)) = (named_date, size_from_name(&base)) {
                    return (date, base, file, size);
                }
                let meta = fs::metadata(cur_dir.join(&file)).ok();
                let date = meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .map(epoch_secs)
                    .unwrap_or(0);
                let size = meta
                    .as_ref()
                    .map(|m| m.len())
                    .or_else(|| size_from_name(&base))
                    .unwrap_or(0);
                (date, base, file, size)
            })
            .collect();
        fresh.sort();
        let mut arrived = Vec::new();
        for (date, base, file, size) in fresh {
            changed = true;
            let uid = self.uid_next;
            self.uid_next += 1;
            if arrived_bases.contains(&base) {
                arrived.push(uid);
            }
            messages.push(MessageMeta {
                uid,
                flags: Flags::from_file_name(&file),
                size,
                internal_date: date,
                base,
                file,
            });
        }
        let flags_changed = messages.len() != self.messages.len()
            || messages
                .iter()
                .zip(self.messages.iter())
                .any(|(a, b)| a.file != b.file);
        if changed || flags_changed {
            self.messages = Arc::new(messages);
        }
        if changed {
            self.write_uidlist()?;
        }
        Ok(self.snapshot(arrived))
    }

    /// Renames the file of `uid` to carry `flags`; returns false if the message is gone.
    pub(crate) fn set_flags(&mut self, uid: u32, flags: Flags) -> Result<bool, StoreError> {
        let messages = Arc::make_mut(&mut self.messages);
        let Ok(i) = messages.binary_search_by_key(&uid, |m| m.uid) else {
            return Ok(false);
        };
        let m = &mut messages[i];
        let file = format!("{}{}", m.base, flags.suffix());
        if file != m.file {
            let cur = self.dir.join("cur");
            match fs::rename(cur.join(&m.file), cur.join(&file)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io("rename", &cur.join(&file))(e)),
            }
            m.file = file;
        }
        m.flags = flags;
        Ok(true)
    }

    /// Deletes the messages with these UIDs; returns the UIDs removed.
    pub(crate) fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let cur = self.dir.join("cur");
        let mut removed = Vec::new();
        let messages = Arc::make_mut(&mut self.messages);
        messages.retain(|m| {
            if !uids.contains(&m.uid) {
                return true;
            }
            match fs::remove_file(cur.join(&m.file)) {
                Ok(()) => {
                    removed.push(m.uid);
                    false
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    removed.push(m.uid);
                    false
                }
                Err(e) => {
                    tracing::warn!(file = %m.file, error = %e, "cannot expunge");
                    true
                }
            }
        });
        if !removed.is_empty() {
            sync_dir(&cur)?;
            self.write_uidlist()?;
        }
        Ok(removed)
    }

    /// Writes the UID map now (after a batch of [`FolderIndex::add`]s).
    pub(crate) fn save(&self) -> Result<(), StoreError> {
        self.write_uidlist()
    }

    /// Adds a file already placed in `cur/` under `file`; returns its UID.
    /// The UID map is written by the caller ([`FolderIndex::save`]).
    pub(crate) fn add(
        &mut self,
        base: String,
        file: String,
        size: u64,
        date: i64,
    ) -> Result<u32, StoreError> {
        let uid = self.uid_next;
        self.uid_next += 1;
        Arc::make_mut(&mut self.messages).push(MessageMeta {
            uid,
            flags: Flags::from_file_name(&file),
            size,
            internal_date: date,
            base,
            file,
        });
        Ok(uid)
    }

    /// The full path of a message file.
    pub(crate) fn path_of(&self, m: &MessageMeta) -> PathBuf {
        self.dir.join("cur").join(&m.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_in_maildir_order() {
        let f = Flags(Flags::SEEN | Flags::FLAGGED | Flags::DRAFT);
        assert_eq!(f.suffix(), ":2,DFS");
        assert_eq!(Flags::from_file_name("123.x:2,DFS"), f);
        assert_eq!(Flags::from_file_name("123.x"), Flags(0));
    }

    #[test]
    fn uids_persist_and_grow() {
        let dir = std::env::temp_dir().join(format!("folder-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        super::super::Store::ensure_maildir(&dir).unwrap();
        fs::write(dir.join("new/1.a,S=3"), b"abc").unwrap();
        fs::write(dir.join("new/2.b,S=3"), b"def").unwrap();
        let mut idx = FolderIndex::new(dir.clone());
        let s = idx.sync(false).unwrap();
        assert_eq!(s.messages.len(), 2);
        assert_eq!(s.arrived.len(), 2);
        let validity = s.uid_validity;
        assert!(idx.set_flags(1, Flags(Flags::SEEN)).unwrap());
        let mut again = FolderIndex::new(dir.clone());
        let s2 = again.sync(false).unwrap();
        assert_eq!(s2.uid_validity, validity);
        assert_eq!(s2.messages[0].uid, 1);
        assert!(s2.messages[0].flags.has(Flags::SEEN));
        assert!(s2.arrived.is_empty());
        fs::write(dir.join("new/3.c"), b"x").unwrap();
        let s3 = again.sync(true).unwrap();
        assert_eq!(s3.messages.last().unwrap().uid, 3);
        assert_eq!(again.expunge(&[1]).unwrap(), vec![1]);
        let s4 = FolderIndex::new(dir.clone()).sync(false).unwrap();
        assert_eq!(
            s4.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(s4.uid_next, 4);
        fs::remove_dir_all(&dir).unwrap();
    }
}
