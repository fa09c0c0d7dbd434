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
//!
//! UIDVALIDITY is never reused by a folder of the mailbox: a new one is
//! `max(now in seconds, last + 1)` with the last kept in the mailbox's
//! `maillab-uidvalidity` file under an exclusive file lock (as Dovecot's
//! `dovecot-uidvalidity`), so DELETE + CREATE within one second still gets
//! a new value (RFC 3501 §2.3.1.1). New files get UIDs in arrival order:
//! delivery second, then microseconds, then the per-process counter of the
//! name `<secs>.M<usec>P<pid>Q<n>.<host>`. Flag changes are set operations
//! on the flags the folder holds now ([`FlagOp`]), never a write-back of a
//! client's copy (RFC 3501 §6.4.6). See docs/imap-pop3.md.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{StoreError, io, sync_dir};

/// The file holding the UID map of a folder.
pub const UIDLIST: &str = "maillab-uidlist";
const UIDLIST_MAGIC: &str = "maillab-uidlist 1";
/// The file in a mailbox's root holding the last UIDVALIDITY given out.
pub const UIDVALIDITY_FILE: &str = "maillab-uidvalidity";

/// How a flag change combines with the flags a message has now
/// (RFC 3501 §6.4.6: FLAGS, +FLAGS, -FLAGS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// Replace (`FLAGS`); Maildir `P` is kept.
    Replace,
    /// Add (`+FLAGS`).
    Add,
    /// Remove (`-FLAGS`).
    Remove,
}

impl FlagOp {
    /// The flags after applying `op` with `flags` to `old`.
    pub fn apply(self, old: Flags, flags: Flags) -> Flags {
        match self {
            Self::Replace => Flags((old.0 & Flags::PASSED) | flags.0),
            Self::Add => Flags(old.0 | flags.0),
            Self::Remove => Flags(old.0 & !flags.0),
        }
    }
}

/// The flags a Maildir file name can carry: the IMAP system flags
/// (RFC 3501 §2.3.2) in the low bits, keywords `a`..`z` (Dovecot's
/// letters, named in the folder's keywords file) from [`Flags::KEYWORD0`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u32);

impl Flags {
    /// `\Seen` (Maildir `S`).
    pub const SEEN: u32 = 1;
    /// `\Answered` (Maildir `R`, replied).
    pub const ANSWERED: u32 = 2;
    /// `\Flagged` (Maildir `F`).
    pub const FLAGGED: u32 = 4;
    /// `\Deleted` (Maildir `T`, trashed).
    pub const DELETED: u32 = 8;
    /// `\Draft` (Maildir `D`).
    pub const DRAFT: u32 = 16;
    /// Maildir `P` (passed/forwarded): kept, not shown over IMAP.
    pub const PASSED: u32 = 32;
    /// The bit of keyword letter `a`; letter `a + i` is `KEYWORD0 << i`.
    pub const KEYWORD0: u32 = 64;
    /// How many keyword letters a file name can carry (`a`..`z`).
    pub const KEYWORDS: u32 = 26;
    /// Every keyword bit.
    pub const KEYWORD_MASK: u32 = !63;

    /// Maildir letters in ASCII order, as the spec requires.
    const LETTERS: [(char, u32); 6] = [
        ('D', Self::DRAFT),
        ('F', Self::FLAGGED),
        ('P', Self::PASSED),
        ('R', Self::ANSWERED),
        ('S', Self::SEEN),
        ('T', Self::DELETED),
    ];

    /// True if every bit of `bit` is set.
    pub fn has(self, bit: u32) -> bool {
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
            } else if c.is_ascii_lowercase() {
                f |= Self::KEYWORD0 << (c as u32 - 'a' as u32);
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
        // Maildir: letters in ASCII order, keywords (lower case) after.
        for i in 0..Self::KEYWORDS {
            if self.has(Self::KEYWORD0 << i) {
                s.push((b'a' + i as u8) as char);
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
    /// Messages from this UID on are `\Recent` and not yet claimed by a
    /// session (RFC 3501 §2.3.2).
    pub recent_from: u32,
    /// The folder's keyword names by letter index.
    pub keywords: Arc<Vec<String>>,
}

/// The in-memory index of one folder.
#[derive(Debug)]
pub(crate) struct FolderIndex {
    dir: PathBuf,
    loaded: bool,
    uid_validity: u32,
    uid_next: u32,
    messages: Arc<Vec<MessageMeta>>,
    recent_from: u32,
    keywords: Arc<Vec<String>>,
    new_mtime: Option<SystemTime>,
    cur_mtime: Option<SystemTime>,
}

/// The sort key of a new file: delivery second, then the microseconds and
/// the counter of a `<secs>.M<usec>P<pid>Q<n>.<host>` name (numbers, so
/// `M47348` comes before `M439281`), then the name.
fn arrival_key(date: i64, base: &str) -> (i64, u64, u64, String) {
    let unique = base.split('.').nth(1).unwrap_or("");
    let number_after = |c: char| -> u64 {
        unique
            .find(c)
            .map(|i| {
                let digits: String = unique[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().unwrap_or(0)
            })
            .unwrap_or(0)
    };
    (date, number_after('M'), number_after('Q'), base.to_string())
}

/// The root Maildir of the mailbox a folder belongs to.
fn account_root(dir: &Path) -> &Path {
    let is_sub = dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    match dir.parent() {
        Some(p) if is_sub => p,
        _ => dir,
    }
}

/// A UIDVALIDITY never given out before in the mailbox of `dir`:
/// `max(now, last + 1)`, the last kept in [`UIDVALIDITY_FILE`] under an
/// exclusive lock (RFC 3501 §2.3.1.1).
fn new_validity(dir: &Path) -> Result<u32, StoreError> {
    let root = account_root(dir);
    fs::create_dir_all(root).map_err(io("create", root))?;
    let path = root.join(UIDVALIDITY_FILE);
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("open", &path))?;
    f.lock().map_err(io("lock", &path))?;
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(io("read", &path))?;
    let last: u32 = text.trim().parse().unwrap_or(0);
    let now = u32::try_from(epoch_secs(SystemTime::now())).unwrap_or(u32::MAX);
    let validity = now.max(last.saturating_add(1)).max(1);
    f.set_len(0).map_err(io("truncate", &path))?;
    f.rewind().map_err(io("seek", &path))?;
    f.write_all(format!("{validity}\n").as_bytes())
        .map_err(io("write", &path))?;
    f.sync_all().map_err(io("fsync", &path))?;
    Ok(validity)
}

/// The message files of a Maildir subfolder (`new/`, `cur/`), each as its
/// unique name (before the `:` of the info) and its whole name. Names that
/// start with a dot are no messages (temporary files of other programs).
fn message_files(dir: &Path) -> Result<impl Iterator<Item = (String, String)>, StoreError> {
    let entries = fs::read_dir(dir).map_err(io("read", dir))?;
    Ok(entries.filter_map(|entry| {
        let name = entry.ok()?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            return None;
        }
        let base = name.split(':').next().unwrap_or(&name).to_string();
        Some((base, name))
    }))
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
            recent_from: 1,
            keywords: Arc::new(Vec::new()),
            new_mtime: None,
            cur_mtime: None,
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            uid_validity: self.uid_validity,
            uid_next: self.uid_next,
            messages: self.messages.clone(),
            recent_from: self.recent_from,
            keywords: self.keywords.clone(),
        }
    }

    /// The bits of keywords by name, new names added with `create`.
    pub(crate) fn keyword_bits(
        &mut self,
        wanted: &[String],
        create: bool,
    ) -> Result<u32, StoreError> {
        let dir = self.dir.clone();
        super::keywords::bits(&dir, Arc::make_mut(&mut self.keywords), wanted, create)
    }

    /// Claims the `\Recent` messages for one session: from now on no other
    /// session sees them as recent (RFC 3501 §2.3.2, §6.3.1).
    pub(crate) fn claim_recent(&mut self) -> Result<Vec<u32>, StoreError> {
        let from = self.recent_from;
        if from >= self.uid_next {
            return Ok(Vec::new());
        }
        self.recent_from = self.uid_next;
        self.write_uidlist()?;
        Ok(self
            .messages
            .iter()
            .rev()
            .take_while(|m| m.uid >= from)
            .map(|m| m.uid)
            .collect())
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let path = self.dir.join(UIDLIST);
        self.loaded = true;
        self.keywords = Arc::new(super::keywords::load(&self.dir));
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A new UIDVALIDITY, never given out before in this mailbox.
                self.uid_validity = new_validity(&self.dir)?;
                self.uid_next = 1;
                self.recent_from = 1;
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
        let recent_from = fields.next().and_then(|v| v.parse::<u32>().ok());
        let (Some(validity), Some(next)) = (validity, next) else {
            // Unreadable: start a new UIDVALIDITY so clients resync (RFC 3501 §2.3.1.1).
            tracing::warn!(path = %path.display(), "damaged uidlist, new UIDVALIDITY");
            self.uid_validity = new_validity(&self.dir)?;
            self.uid_next = 1;
            self.recent_from = 1;
            return Ok(());
        };
        self.uid_validity = validity.max(1);
        self.uid_next = next.max(1);
        self.recent_from = recent_from.unwrap_or(self.uid_next);
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
        let mut text = format!(
            "{UIDLIST_MAGIC} {} {} {}\n",
            self.uid_validity, self.uid_next, self.recent_from
        );
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
            // would not move the time: rescan while it is fresh. The tick
            // is the file system's timestamp granularity: a time with
            // sub-second digits comes from a file system that keeps them
            // (ext4, xfs, tmpfs, overlayfs: the kernel's coarse clock, a few
            // milliseconds), one without may be from one that keeps whole
            // seconds (or two, FAT).
            (Some(r), Some(n)) if r == n => {
                let fine = n
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .is_ok_and(|d| d.subsec_nanos() != 0);
                let tick = if fine {
                    Duration::from_millis(100)
                } else {
                    Duration::from_secs(2)
                };
                SystemTime::now()
                    .duration_since(n)
                    .map_or(true, |age| age < tick)
            }
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
            return Ok(self.snapshot());
        }
        super::Store::ensure_maildir(&self.dir)?;
        // Maildir: a reader moves new/ into cur/ and appends the info.
        for (base, name) in message_files(&new_dir)? {
            let target = cur_dir.join(format!("{base}:2,"));
            match fs::rename(new_dir.join(name), &target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("rename", &target)(e)),
            }
        }
        self.new_mtime = mtime(&new_dir);
        self.cur_mtime = mtime(&cur_dir);
        let mut found: HashMap<String, String> = message_files(&cur_dir)?.collect();
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
        // RFC 3501 §2.3.1.1: UIDs in arrival order.
        fresh.sort_by_cached_key(|(date, base, _, _)| arrival_key(*date, base));
        for (date, base, file, size) in fresh {
            changed = true;
            messages.push(self.next_message(base, file, size, date));
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
        Ok(self.snapshot())
    }

    /// Applies `op` with `flags` to the flags message `uid` has now and
    /// renames its file; returns the resulting flags, `None` if it is gone.
    pub(crate) fn update_flags(
        &mut self,
        uid: u32,
        op: FlagOp,
        flags: Flags,
    ) -> Result<Option<Flags>, StoreError> {
        let Ok(i) = self.messages.binary_search_by_key(&uid, |m| m.uid) else {
            return Ok(None);
        };
        let new = op.apply(self.messages[i].flags, flags);
        if new == self.messages[i].flags {
            return Ok(Some(new));
        }
        Ok(self.set_flags(uid, new)?.then_some(new))
    }

    /// The UIDs whose current flags hold `\Deleted`, limited to `only`
    /// when given (RFC 3501 §6.4.3, RFC 4315 §2.1).
    pub(crate) fn deleted(&self, only: Option<&[u32]>) -> Vec<u32> {
        self.messages
            .iter()
            .filter(|m| m.flags.has(Flags::DELETED))
            .filter(|m| only.is_none_or(|o| o.binary_search(&m.uid).is_ok()))
            .map(|m| m.uid)
            .collect()
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
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        let messages = Arc::make_mut(&mut self.messages);
        messages.retain(|m| {
            if uids.binary_search(&m.uid).is_err() {
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
        let meta = self.next_message(base, file, size, date);
        let uid = meta.uid;
        Arc::make_mut(&mut self.messages).push(meta);
        Ok(uid)
    }

    /// The index entry of a message new to the index, with the next UID
    /// (RFC 3501 §2.3.1.1: strictly ascending in the folder).
    fn next_message(&mut self, base: String, file: String, size: u64, date: i64) -> MessageMeta {
        let uid = self.uid_next;
        self.uid_next += 1;
        MessageMeta {
            uid,
            flags: Flags::from_file_name(&file),
            size,
            internal_date: date,
            base,
            file,
        }
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
        assert_eq!(s.recent_from, 1);
        assert_eq!(idx.claim_recent().unwrap().len(), 2);
        let validity = s.uid_validity;
        assert!(idx.set_flags(1, Flags(Flags::SEEN)).unwrap());
        let mut again = FolderIndex::new(dir.clone());
        let s2 = again.sync(false).unwrap();
        assert_eq!(s2.uid_validity, validity);
        assert_eq!(s2.messages[0].uid, 1);
        assert!(s2.messages[0].flags.has(Flags::SEEN));
        assert_eq!(s2.recent_from, 3);
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

    #[test]
    fn arrival_order_is_numeric() {
        let mut names = [
            "5.M439281P1Q2.h,S=1",
            "5.M47348P1Q1.h,S=1",
            "4.M9P1Q3.h,S=1",
        ];
        names.sort_by_cached_key(|n| arrival_key(n[..1].parse().unwrap(), n));
        assert_eq!(
            names,
            [
                "4.M9P1Q3.h,S=1",
                "5.M47348P1Q1.h,S=1",
                "5.M439281P1Q2.h,S=1"
            ]
        );
        let (a, b) = (arrival_key(5, "5.M1P1Q9.h"), arrival_key(5, "5.M1P1Q10.h"));
        assert!(a < b);
    }

    #[test]
    fn uidvalidity_is_never_reused() {
        let root = std::env::temp_dir().join(format!("validity-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = root.join(".x");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5 {
            super::super::Store::ensure_maildir(&dir).unwrap();
            let v = FolderIndex::new(dir.clone())
                .sync(false)
                .unwrap()
                .uid_validity;
            assert!(seen.insert(v), "UIDVALIDITY {v} given twice");
            fs::remove_dir_all(&dir).unwrap();
        }
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn flag_ops_are_set_operations() {
        let old = Flags(Flags::SEEN | Flags::ANSWERED | Flags::PASSED);
        let d = Flags(Flags::DELETED);
        assert_eq!(FlagOp::Add.apply(old, d).0, old.0 | Flags::DELETED);
        assert_eq!(
            FlagOp::Remove.apply(old, Flags(Flags::SEEN)).0,
            Flags::ANSWERED | Flags::PASSED
        );
        assert_eq!(
            FlagOp::Replace.apply(old, d).0,
            Flags::DELETED | Flags::PASSED
        );
        let k = Flags(Flags::SEEN | Flags::KEYWORD0 | (Flags::KEYWORD0 << 25));
        assert_eq!(k.suffix(), ":2,Saz");
        assert_eq!(Flags::from_file_name("1.x:2,Saz"), k);
    }
}
