//! The selected state (RFC 3501 §6.4): CLOSE, EXPUNGE, SEARCH, FETCH,
//! STORE, COPY, UID, MOVE (RFC 6851), UID EXPUNGE (RFC 4315 §2.1), and the
//! untagged updates that keep two sessions on one folder consistent
//! (RFC 3501 §5.2, §7.3.1, §7.4.1, §7.4.2).

use std::collections::HashSet;
use std::num::NonZeroU32;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{Tag, Vec1};
use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName,
};
use imap_codec::imap_types::flag::{FlagFetch, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Code, Data};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use tokio::io::{AsyncRead, AsyncWrite};

use super::commands::{flag_list, flags_of, mailbox_name};
use super::{Kind, Session};
use crate::store::{Flags, JUNK};

/// True if `n` is in `set`, `*` standing for `largest` (RFC 3501 §9 seq-range).
pub(crate) fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    let val = |v: &SeqOrUid| match v {
        SeqOrUid::Value(x) => x.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(v) => val(v) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (val(a), val(b));
            (a.min(b)..=a.max(b)).contains(&n)
        }
    })
}

/// A compact UID set for COPYUID (RFC 4315 §3).
fn uid_set(uids: &[u32]) -> Option<UidSet> {
    let mut elems = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        let (a, b) = (NonZeroU32::new(start)?, NonZeroU32::new(end)?);
        elems.push(if a == b {
            UidElement::Single(a)
        } else {
            UidElement::Range(a, b)
        });
        i += 1;
    }
    Some(UidSet(Vec1::try_from(elems).ok()?))
}

pub(crate) fn flag_fetch(flags: Flags, recent: bool) -> Vec<FlagFetch<'static>> {
    let mut v: Vec<FlagFetch<'static>> =
        flag_list(flags).into_iter().map(FlagFetch::Flag).collect();
    if recent {
        v.push(FlagFetch::Recent);
    }
    v
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Indexes (0-based) of the view addressed by a sequence or UID set.
    pub(crate) fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        let Some(sel) = &self.selected else {
            return Vec::new();
        };
        if uid {
            let largest = sel.view.last().map(|(u, _)| *u).unwrap_or(0);
            sel.view
                .iter()
                .enumerate()
                .filter(|(_, (u, _))| in_set(set, *u, largest))
                .map(|(i, _)| i)
                .collect()
        } else {
            let n = sel.view.len() as u32;
            (0..sel.view.len())
                .filter(|i| in_set(set, *i as u32 + 1, n))
                .collect()
        }
    }

    /// Brings the session's view up to date and queues EXPUNGE, EXISTS,
    /// RECENT and FETCH FLAGS. With `expunges == false` (during FETCH,
    /// STORE, SEARCH: RFC 3501 §7.4.1) nothing is sent.
    pub(crate) fn sync_selected(&mut self, expunges: bool) {
        if !expunges {
            return;
        }
        let user = self.user().to_string();
        let Some(sel) = &self.selected else { return };
        let snap = match self.ctx.store.sync(&user, &sel.name) {
            Ok(s) => s,
            Err(e) => {
                // The folder was deleted or renamed under us: back to the
                // authenticated state, and say so.
                self.selected = None;
                self.status(
                    Kind::Ok,
                    None,
                    None,
                    &format!("The selected folder is gone ({e}); SELECT another one"),
                );
                return;
            }
        };
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if !sel.read_only {
            sel.recent.extend(snap.arrived.iter().copied());
        }
        let present: HashSet<u32> = snap.messages.iter().map(|m| m.uid).collect();
        let mut expunged = Vec::new();
        for i in (0..sel.view.len()).rev() {
            if !present.contains(&sel.view[i].0) {
                expunged.push(i as u32 + 1);
                sel.view.remove(i);
            }
        }
        let mut changed = Vec::new();
        let last = sel.view.last().map(|(u, _)| *u).unwrap_or(0);
        let mut j = 0;
        let mut added = false;
        for m in snap.messages.iter() {
            if m.uid > last {
                sel.view.push((m.uid, m.flags));
                added = true;
                continue;
            }
            while j < sel.view.len() && sel.view[j].0 < m.uid {
                j += 1;
            }
            if j < sel.view.len() && sel.view[j].0 == m.uid && sel.view[j].1 != m.flags {
                sel.view[j].1 = m.flags;
                changed.push((j as u32 + 1, m.uid, m.flags, sel.recent.contains(&m.uid)));
            }
        }
        let exists = sel.view.len() as u32;
        let recent = sel.recent.iter().filter(|u| present.contains(u)).count() as u32;
        for seq in expunged {
            if let Some(n) = NonZeroU32::new(seq) {
                self.data(Data::Expunge(n));
            }
        }
        if added {
            self.data(Data::Exists(exists));
            self.data(Data::Recent(recent));
        }
        for (seq, uid, flags, rec) in changed {
            let (Some(seq), Some(uid)) = (NonZeroU32::new(seq), NonZeroU32::new(uid)) else {
                continue;
            };
            let items = vec![
                MessageDataItem::Uid(uid),
                MessageDataItem::Flags(flag_fetch(flags, rec)),
            ];
            if let Ok(items) = Vec1::try_from(items) {
                self.data(Data::Fetch { seq, items });
            }
        }
    }

    pub(crate) async fn selected_command(&mut self, tag: &Tag<'_>, body: CommandBody<'_>) {
        match body {
            CommandBody::Close => {
                if let Some(sel) = self.selected.take()
                    && !sel.read_only
                {
                    // RFC 3501 §6.4.2: silently expunge \Deleted messages.
                    let uids: Vec<u32> = sel
                        .view
                        .iter()
                        .filter(|(_, f)| f.has(Flags::DELETED))
                        .map(|(u, _)| *u)
                        .collect();
                    let _ = self.ctx.store.expunge(self.user(), &sel.name, &uids);
                }
                self.status(Kind::Ok, Some(tag), None, "CLOSE completed");
            }
            CommandBody::Expunge => self.expunge(tag, None),
            CommandBody::ExpungeUid { sequence_set } => self.expunge(tag, Some(&sequence_set)),
            CommandBody::Search { criteria, uid, .. } => {
                self.search(tag, criteria.as_ref(), uid);
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => {
                let mut names = match &macro_or_item_names {
                    MacroOrMessageDataItemNames::Macro(m) => m.expand(),
                    MacroOrMessageDataItemNames::MessageDataItemNames(n) => n.clone(),
                };
                if uid && !names.contains(&MessageDataItemName::Uid) {
                    // RFC 3501 §6.4.8: UID FETCH always returns the UID.
                    names.insert(0, MessageDataItemName::Uid);
                }
                let targets = self.resolve(&sequence_set, uid);
                self.fetch(&targets, &names).await;
                if uid {
                    self.sync_selected(true);
                }
                self.status(
                    Kind::Ok,
                    Some(tag),
                    None,
                    if uid {
                        "UID FETCH completed"
                    } else {
                        "FETCH completed"
                    },
                );
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => {
                self.store_flags(tag, &sequence_set, kind, response, flags_of(&flags), uid);
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, &sequence_set, &mailbox, uid, false),
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, &sequence_set, &mailbox, uid, true),
            _ => self.status(
                Kind::Bad,
                Some(tag),
                None,
                "Command not supported by this server",
            ),
        }
    }

    fn expunge(&mut self, tag: &Tag<'_>, only: Option<&SequenceSet>) {
        let user = self.user().to_string();
        let Some(sel) = &self.selected else { return };
        if sel.read_only {
            self.status(Kind::No, Some(tag), None, "Folder is read-only (EXAMINE)");
            return;
        }
        let largest = sel.view.last().map(|(u, _)| *u).unwrap_or(0);
        let uids: Vec<u32> = sel
            .view
            .iter()
            .filter(|(u, f)| f.has(Flags::DELETED) && only.is_none_or(|s| in_set(s, *u, largest)))
            .map(|(u, _)| *u)
            .collect();
        let name = sel.name.clone();
        if let Err(e) = self.ctx.store.expunge(&user, &name, &uids) {
            self.status(Kind::No, Some(tag), None, &format!("EXPUNGE failed: {e}"));
            return;
        }
        self.sync_selected(true);
        self.status(Kind::Ok, Some(tag), None, "EXPUNGE completed");
    }

    fn store_flags(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: Flags,
        uid: bool,
    ) {
        let targets = self.resolve(set, uid);
        let user = self.user().to_string();
        let Some(sel) = &self.selected else { return };
        if sel.read_only {
            self.status(Kind::No, Some(tag), None, "Folder is read-only (EXAMINE)");
            return;
        }
        let mut changes = Vec::new();
        for &i in &targets {
            let (u, old) = sel.view[i];
            let new = match kind {
                StoreType::Replace => Flags((old.0 & Flags::PASSED) | flags.0),
                StoreType::Add => Flags(old.0 | flags.0),
                StoreType::Remove => Flags(old.0 & !flags.0),
            };
            changes.push((u, new));
        }
        let name = sel.name.clone();
        let done = match self.ctx.store.set_flags(&user, &name, &changes) {
            Ok(d) => d,
            Err(e) => {
                self.status(Kind::No, Some(tag), None, &format!("STORE failed: {e}"));
                return;
            }
        };
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let mut replies = Vec::new();
        for (&i, &(u, new)) in targets.iter().zip(&changes) {
            if done.contains(&u) {
                sel.view[i].1 = new;
            }
            if response == StoreResponse::Answer {
                replies.push((i as u32 + 1, u, sel.view[i].1, sel.recent.contains(&u)));
            }
        }
        for (seq, u, f, rec) in replies {
            let (Some(seq), Some(u)) = (NonZeroU32::new(seq), NonZeroU32::new(u)) else {
                continue;
            };
            let mut items = vec![MessageDataItem::Flags(flag_fetch(f, rec))];
            if uid {
                items.insert(0, MessageDataItem::Uid(u));
            }
            if let Ok(items) = Vec1::try_from(items) {
                self.data(Data::Fetch { seq, items });
            }
        }
        if uid {
            self.sync_selected(true);
        }
        self.status(Kind::Ok, Some(tag), None, "STORE completed");
    }

    fn copy(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        is_move: bool,
    ) {
        let dest = mailbox_name(mailbox);
        let user = self.user().to_string();
        let targets = self.resolve(set, uid);
        let Some(sel) = &self.selected else { return };
        if is_move && sel.read_only {
            self.status(Kind::No, Some(tag), None, "Folder is read-only (EXAMINE)");
            return;
        }
        if !self.ctx.store.folder_exists(&user, &dest) {
            // RFC 3501 §6.4.7: TRYCREATE.
            self.status(
                Kind::No,
                Some(tag),
                Some(Code::TryCreate),
                &format!("No folder named {dest:?}"),
            );
            return;
        }
        let uids: Vec<u32> = targets.iter().map(|&i| sel.view[i].0).collect();
        let source = sel.name.clone();
        let (validity, pairs) = match self.ctx.store.copy(&user, &source, &uids, &dest) {
            Ok(r) => r,
            Err(e) => {
                self.status(Kind::No, Some(tag), None, &format!("COPY failed: {e}"));
                return;
            }
        };
        self.train_junk(&user, &source, &dest, &uids);
        let code = match (
            NonZeroU32::new(validity),
            uid_set(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()),
            uid_set(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()),
        ) {
            (Some(uid_validity), Some(source), Some(destination)) => Some(Code::CopyUid {
                uid_validity,
                source,
                destination,
            }),
            _ => None,
        };
        if is_move {
            // RFC 6851 §4.3: COPYUID in an untagged OK, then the EXPUNGEs.
            self.status(Kind::Ok, None, code, "Moved");
            if let Err(e) = self.ctx.store.expunge(&user, &source, &uids) {
                self.status(Kind::No, Some(tag), None, &format!("MOVE failed: {e}"));
                return;
            }
            self.sync_selected(true);
            self.status(Kind::Ok, Some(tag), None, "MOVE completed");
        } else {
            if uid || dest == source {
                self.sync_selected(true);
            }
            self.status(Kind::Ok, Some(tag), code, "COPY completed");
        }
    }

    /// Calls the spam filter's training hook for messages filed into or out of `Junk`.
    fn train_junk(&self, user: &str, source: &str, dest: &str, uids: &[u32]) {
        let into = dest.eq_ignore_ascii_case(JUNK) && !source.eq_ignore_ascii_case(JUNK);
        let out = source.eq_ignore_ascii_case(JUNK) && !dest.eq_ignore_ascii_case(JUNK);
        let Some(trainer) = &self.ctx.junk_training else {
            return;
        };
        if !into && !out {
            return;
        }
        for &u in uids {
            if let Ok(Some(bytes)) = self.ctx.store.read(user, source, u) {
                trainer.learn(&bytes, into);
            }
        }
        self.t.info(&format!(
            "junk training: {} message(s) as {}",
            uids.len(),
            if into { "spam" } else { "ham" }
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_ranges() {
        let s = uid_set(&[1, 2, 3, 7, 9, 10]).unwrap();
        assert_eq!(s.0.as_ref().len(), 3);
    }
}
