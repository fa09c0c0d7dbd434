//! Store operations for IMAP and POP3: folder sync, flags, expunge, append,
//! copy, folder management, subscriptions, change notification and the
//! POP3 maildrop lock.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::broadcast;

use super::folder::{FlagOp, Flags, FolderIndex, Snapshot};
use super::{INBOX, Store, StoreError, io, sync_dir};

/// The file listing a mailbox's subscribed folders (RFC 3501 §6.3.6).
const SUBSCRIPTIONS: &str = "maillab-subscriptions";
/// The POP3 maildrop lock file (RFC 1939 §8: one session per maildrop).
const POP3_LOCK: &str = "maillab-pop3.lock";

/// An exclusive lock on a mailbox for a POP3 session; released on drop.
#[derive(Debug)]
pub struct MaildropLock {
    _file: fs::File,
}

impl Store {
    fn index(&self, dir: &Path) -> Arc<Mutex<FolderIndex>> {
        let mut map = self.indexes.lock().expect("indexes lock");
        map.entry(dir.to_path_buf())
            .or_insert_with(|| Arc::new(Mutex::new(FolderIndex::new(dir.to_path_buf()))))
            .clone()
    }

    /// The folder's Maildir if it exists.
    fn existing(&self, address: &str, folder: &str) -> Result<PathBuf, StoreError> {
        let dir = self.maildir(address, folder)?;
        if folder.eq_ignore_ascii_case(INBOX) || dir.join("cur").is_dir() {
            Ok(dir)
        } else {
            Err(StoreError::NoFolder(folder.to_string()))
        }
    }

    /// Wakes every watcher of the folder in `dir`.
    pub(crate) fn notify(&self, dir: &Path) {
        if let Some(tx) = self.watchers.lock().expect("watchers lock").get(dir) {
            let _ = tx.send(());
        }
    }

    /// A receiver woken whenever this server changes the folder (delivery,
    /// flags, expunge, append). Changes by other processes are found by
    /// [`Store::sync`]'s rescan.
    pub fn watch(
        &self,
        address: &str,
        folder: &str,
    ) -> Result<broadcast::Receiver<()>, StoreError> {
        let dir = self.maildir(address, folder)?;
        let mut w = self.watchers.lock().expect("watchers lock");
        Ok(w.entry(dir)
            .or_insert_with(|| broadcast::channel(16).0)
            .subscribe())
    }

    /// Syncs a folder with the disk and returns its state.
    pub fn sync(&self, address: &str, folder: &str) -> Result<Snapshot, StoreError> {
        let dir = self.existing(address, folder)?;
        let index = self.index(&dir);
        let mut index = index.lock().expect("folder lock");
        index.sync(false)
    }

    /// Syncs a folder and, with `claim`, claims its unclaimed `\Recent`
    /// messages for the calling session (RFC 3501 §2.3.2: a message is
    /// recent in one session only). Returns the state and the claimed UIDs.
    pub fn sync_claim(
        &self,
        address: &str,
        folder: &str,
        claim: bool,
    ) -> Result<(Snapshot, Vec<u32>), StoreError> {
        let dir = self.existing(address, folder)?;
        let index = self.index(&dir);
        let mut index = index.lock().expect("folder lock");
        let snap = index.sync(false)?;
        let claimed = if claim && snap.recent_from < snap.uid_next {
            index.claim_recent()?
        } else {
            Vec::new()
        };
        Ok((snap, claimed))
    }

    /// Changes the flags of messages as a set operation on the flags they
    /// hold now (RFC 3501 §6.4.6), all under the folder's lock, so no
    /// session's change is lost to another's. Returns `(uid, flags after)`
    /// for every message still there.
    pub fn store_flags(
        &self,
        address: &str,
        folder: &str,
        uids: &[u32],
        op: FlagOp,
        flags: Flags,
    ) -> Result<Vec<(u32, Flags)>, StoreError> {
        let dir = self.existing(address, folder)?;
        let index = self.index(&dir);
        let mut done = Vec::with_capacity(uids.len());
        let mut changed = false;
        {
            let mut index = index.lock().expect("folder lock");
            let snap = index.sync(false)?;
            for &uid in uids {
                let before = snap
                    .messages
                    .binary_search_by_key(&uid, |m| m.uid)
                    .ok()
                    .map(|i| snap.messages[i].flags);
                if let Some(after) = index.update_flags(uid, op, flags)? {
                    changed |= before != Some(after);
                    done.push((uid, after));
                }
            }
        }
        if changed {
            self.notify(&dir);
        }
        Ok(done)
    }

    /// The flag bits of keywords of a folder (RFC 3501 §2.3.2); with
    /// `create`, unknown names are added to its keywords file.
    pub fn keyword_bits(
        &self,
        address: &str,
        folder: &str,
        wanted: &[String],
        create: bool,
    ) -> Result<u32, StoreError> {
        if wanted.is_empty() {
            return Ok(0);
        }
        let dir = self.existing(address, folder)?;
        let index = self.index(&dir);
        let mut index = index.lock().expect("folder lock");
        index.sync(false)?;
        index.keyword_bits(wanted, create)
    }

    /// Removes exactly the messages whose current flags hold `\Deleted`
    /// (RFC 3501 §6.4.3, §6.4.2), limited to the UIDs in `only` when given
    /// (UID EXPUNGE, RFC 4315 §2.1); returns the UIDs removed.
    pub fn expunge_deleted(
        &self,
        address: &str,
        folder: &str,
        only: Option<&[u32]>,
    ) -> Result<Vec<u32>, StoreError> {
        let dir = self.existing(address, folder)?;
        let index = self.index(&dir);
        let removed = {
            let mut index = index.lock().expect("folder lock");
            index.sync(false)?;
            let mut only = only.map(<[u32]>::to_vec);
            if let Some(o) = only.as_mut() {
                o.sort_unstable();
            }
            let doomed = index.deleted(only.as_deref());
            if doomed.is_empty() {
                return Ok(doomed);
            }
            index.expunge(&doomed)?
        };
        self.notify(&dir);
        Ok(removed)
    }

    /// Removes messages; returns the UIDs removed.
    pub fn expunge(
        &self,
        address: &str,
        folder: &str,
        uids: &[u32],
    ) -> Result<Vec<u32>, StoreError> {
        let dir = self.existing(address, folder)?;
        let index = self.index(&dir);
        let removed = {
            let mut index = index.lock().expect("folder lock");
            index.ensure_loaded()?;
            index.expunge(uids)?
        };
        if !removed.is_empty() {
            self.notify(&dir);
        }
        Ok(removed)
    }

    /// The bytes of message `uid`, `None` if it is gone.
    pub fn read(
        &self,
        address: &str,
        folder: &str,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let dir = self.existing(address, folder)?;
        let index = self.index(&dir);
        let mut index = index.lock().expect("folder lock");
        index.ensure_loaded()?;
        // The lock is held, so an in-process rename cannot race this; the
        // retries are for renames by other processes.
        for attempt in 0..4 {
            if attempt > 0 {
                index.sync(true)?;
            }
            let Some(path) = index.path_for(uid) else {
                return Ok(None);
            };
            match fs::read(&path) {
                Ok(bytes) => return Ok(Some(bytes)),
                // Renamed by a flag change elsewhere: rescan.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("read", &path)(e)),
            }
        }
        Ok(None)
    }

    /// Places a file into `cur/` of `dir` with `flags` and indexes it.
    /// The caller holds the folder lock and has loaded the index before
    /// the file appears, so a scan cannot number it twice; it saves the
    /// index after the batch.
    fn place(
        &self,
        index: &mut FolderIndex,
        dir: &Path,
        source: Source<'_>,
        flags: Flags,
        date: Option<i64>,
    ) -> Result<u32, StoreError> {
        let size = match &source {
            Source::Bytes(b) => b.len() as u64,
            Source::File(_, size) => *size,
        };
        let base = self.unique_name(size as usize);
        let file = format!("{base}{}", flags.suffix());
        let target = dir.join("cur").join(&file);
        match source {
            Source::File(p, _) => {
                if fs::hard_link(p, &target).is_err() {
                    fs::copy(p, &target).map_err(io("copy", &target))?;
                }
            }
            Source::Bytes(bytes) => {
                let tmp = dir.join("tmp").join(&base);
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .map_err(io("create", &tmp))?;
                f.write_all(bytes).map_err(io("write", &tmp))?;
                if let Some(secs) = date {
                    let t = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
                    let _ = f.set_modified(t);
                }
                f.sync_all().map_err(io("fsync", &tmp))?;
                drop(f);
                fs::rename(&tmp, &target).map_err(io("rename", &target))?;
            }
        }
        sync_dir(&dir.join("cur"))?;
        let date = fs::metadata(&target)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        index.add(base, file, size, date)
    }

    /// Appends a message (IMAP APPEND, RFC 3501 §6.3.11); returns
    /// `(UIDVALIDITY, UID)` for APPENDUID (RFC 4315 §3).
    pub fn append(
        &self,
        address: &str,
        folder: &str,
        message: &[u8],
        flags: Flags,
        date: Option<i64>,
    ) -> Result<(u32, u32), StoreError> {
        let dir = self.existing(address, folder)?;
        let mailbox = self.reserve(address, message.len())?;
        let placed = (|| {
            let index = self.index(&dir);
            let mut index = index.lock().expect("folder lock");
            let validity = index.sync(false)?.uid_validity;
            let uid = self.place(&mut index, &dir, Source::Bytes(message), flags, date)?;
            index.save()?;
            Ok::<_, StoreError>((validity, uid))
        })();
        let (validity, uid) = placed.inspect_err(|_| {
            self.quota().release(&mailbox, message.len() as u64);
        })?;
        self.notify(&dir);
        Ok((validity, uid))
    }

    /// Copies messages into another folder, keeping flags and internal
    /// dates; returns the destination UIDVALIDITY and `(source, new)` UID
    /// pairs for COPYUID (RFC 4315 §3).
    pub fn copy(
        &self,
        address: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), StoreError> {
        let src = self.existing(address, from)?;
        let dst = self.existing(address, to)?;
        let mut pairs = Vec::new();
        let mut validity = 0;
        let mut pending = uids.to_vec();
        // The folder locks are taken one at a time (never both: two COPYs
        // in opposite directions cannot deadlock). A source file renamed
        // by a flag change in between is looked up again.
        for _ in 0..8 {
            if pending.is_empty() {
                break;
            }
            let (sources, names): (Vec<(u32, PathBuf, u64, Flags)>, _) = {
                let index = self.index(&src);
                let mut index = index.lock().expect("folder lock");
                let snap = index.sync(false)?;
                let sources = snap
                    .messages
                    .iter()
                    .filter(|m| pending.contains(&m.uid))
                    .map(|m| (m.uid, index.path_of(m), m.size, m.flags))
                    .collect();
                (sources, snap.keywords)
            };
            let mut missed = Vec::new();
            let index = self.index(&dst);
            let mut index = index.lock().expect("folder lock");
            validity = index.sync(false)?.uid_validity;
            // Keywords by name: the letters of the destination may differ.
            let mut translated = Vec::with_capacity(sources.len());
            for (uid, path, size, flags) in sources {
                let wanted: Vec<String> = super::keywords::names_of(&names, flags)
                    .map(str::to_string)
                    .collect();
                let bits = index.keyword_bits(&wanted, true)?;
                let flags = Flags((flags.0 & !Flags::KEYWORD_MASK) | bits);
                translated.push((uid, path, size, flags));
            }
            let sources = translated;
            let placed: Result<(), StoreError> =
                sources.iter().try_for_each(|(uid, path, size, flags)| {
                    match self.place(&mut index, &dst, Source::File(path, *size), *flags, None) {
                        Ok(new_uid) => pairs.push((*uid, new_uid)),
                        Err(StoreError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            missed.push(*uid)
                        }
                        Err(e) => return Err(e),
                    }
                    Ok(())
                });
            // Number what was placed even when a later copy failed.
            index.save()?;
            placed?;
            pending = missed;
        }
        pairs.sort_unstable();
        self.notify(&dst);
        Ok((validity, pairs))
    }

    /// The folders of a mailbox: INBOX and every Maildir++ subfolder.
    pub fn folders(&self, address: &str) -> Result<Vec<String>, StoreError> {
        let root = self.maildir(address, INBOX)?;
        Self::ensure_maildir(&root)?;
        let mut names = vec![INBOX.to_string()];
        for entry in fs::read_dir(&root).map_err(io("read", &root))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(folder) = name.strip_prefix('.')
                && !folder.is_empty()
                && !folder.starts_with('.')
                && entry.path().join("cur").is_dir()
            {
                names.push(folder.to_string());
            }
        }
        names[1..].sort();
        Ok(names)
    }

    /// True if the folder exists.
    pub fn folder_exists(&self, address: &str, folder: &str) -> bool {
        self.existing(address, folder).is_ok()
    }

    /// Creates a folder (RFC 3501 §6.3.3).
    pub fn create_folder(&self, address: &str, folder: &str) -> Result<(), StoreError> {
        let dir = self.maildir(address, folder)?;
        if folder.eq_ignore_ascii_case(INBOX) || dir.join("cur").is_dir() {
            return Err(StoreError::FolderExists(folder.to_string()));
        }
        Self::ensure_maildir(&dir)
    }

    /// Deletes a folder and its messages (RFC 3501 §6.3.4); INBOX cannot be deleted.
    pub fn delete_folder(&self, address: &str, folder: &str) -> Result<(), StoreError> {
        if folder.eq_ignore_ascii_case(INBOX) {
            return Err(StoreError::InvalidFolder(folder.to_string()));
        }
        let dir = self.existing(address, folder)?;
        fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
        self.indexes.lock().expect("indexes lock").remove(&dir);
        Ok(())
    }

    /// Renames a folder and its subfolders (RFC 3501 §6.3.5).
    pub fn rename_folder(&self, address: &str, from: &str, to: &str) -> Result<(), StoreError> {
        if from.eq_ignore_ascii_case(INBOX) {
            return Err(StoreError::InvalidFolder(from.to_string()));
        }
        let src = self.existing(address, from)?;
        let dst = self.maildir(address, to)?;
        if to.eq_ignore_ascii_case(INBOX) || dst.exists() {
            return Err(StoreError::FolderExists(to.to_string()));
        }
        let children: Vec<String> = self
            .folders(address)?
            .into_iter()
            .filter(|f| f.starts_with(&format!("{from}.")))
            .collect();
        fs::rename(&src, &dst).map_err(io("rename", &dst))?;
        for child in children {
            let new = format!("{to}{}", &child[from.len()..]);
            let (a, b) = (self.maildir(address, &child)?, self.maildir(address, &new)?);
            fs::rename(&a, &b).map_err(io("rename", &b))?;
        }
        self.indexes.lock().expect("indexes lock").clear();
        Ok(())
    }

    /// The subscribed folders (RFC 3501 §6.3.6).
    pub fn subscriptions(&self, address: &str) -> Vec<String> {
        let Ok(root) = self.maildir(address, INBOX) else {
            return Vec::new();
        };
        fs::read_to_string(root.join(SUBSCRIPTIONS))
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Subscribes or unsubscribes a folder name.
    pub fn set_subscribed(&self, address: &str, folder: &str, on: bool) -> Result<(), StoreError> {
        let root = self.maildir(address, INBOX)?;
        Self::ensure_maildir(&root)?;
        let mut subs = self.subscriptions(address);
        subs.retain(|s| s != folder);
        if on {
            subs.push(folder.to_string());
        }
        let path = root.join(SUBSCRIPTIONS);
        let tmp = root.join(format!("{SUBSCRIPTIONS}.tmp"));
        let text: String = subs.iter().map(|s| format!("{s}\n")).collect();
        fs::write(&tmp, text).map_err(io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("rename", &path))
    }

    /// Takes the POP3 lock of a mailbox; `None` while another session holds it.
    pub fn lock_maildrop(&self, address: &str) -> Result<Option<MaildropLock>, StoreError> {
        let root = self.maildir(address, INBOX)?;
        Self::ensure_maildir(&root)?;
        let path = root.join(POP3_LOCK);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("create", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(MaildropLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io("lock", &path)(e)),
        }
    }
}

/// What [`Store::place`] puts into a folder.
enum Source<'a> {
    Bytes(&'a [u8]),
    File(&'a Path, u64),
}
