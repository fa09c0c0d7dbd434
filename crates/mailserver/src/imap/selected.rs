//! The selected state (RFC 3501 §6.4): CLOSE, EXPUNGE, SEARCH, FETCH,
//! STORE, COPY, UID, MOVE (RFC 6851), UID EXPUNGE (RFC 4315 §2.1), and the
//! untagged updates that keep two sessions on one folder consistent
//! (RFC 3501 §5.2, §7.3.1, §7.4.1, §7.4.2).

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

use super::commands::{flag_list, flags_of, folder_flags, keywords_of, mailbox_name};
use super::{Kind, Session};
use crate::store::{FlagOp, Flags, JUNK};

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

pub(crate) fn flag_fetch(flags: Flags, recent: bool, names: &[String]) -> Vec<FlagFetch<'static>> {
    let mut v: Vec<FlagFetch<'static>> = flag_list(flags, names)
        .into_iter()
        .map(FlagFetch::Flag)
        .collect();
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

    /// Called before every tagged response: reports what other sessions
    /// changed, once per command (RFC 3501 §7.2.5, §7.4.1).
    pub(crate) fn report_changes(&mut self) {
        if let Some(expunges) = self.sync_before_tagged.take()
            && self.selected.is_some()
        {
            self.sync_selected(expunges);
        }
    }

    /// Before a command of the selected state runs: a UID command sees
    /// every change (its UIDs do not depend on sequence numbers); any other
    /// sees new messages and flags but keeps the sequence numbers the
    /// client counted with (RFC 3501 §7.4.1, §5.5).
    /// Returns whether it synced (then the command's own responses carry
    /// the changes, and the report before its tagged response is skipped).
    pub(crate) fn sync_before(&mut self, body: &CommandBody<'_>) -> bool {
        let uid = match body {
            CommandBody::Fetch { uid, .. }
            | CommandBody::Store { uid, .. }
            | CommandBody::Search { uid, .. }
            | CommandBody::Copy { uid, .. }
            | CommandBody::Move { uid, .. } => *uid,
            CommandBody::ExpungeUid { .. } => true,
            _ => return false,
        };
        self.sync_selected(uid);
        true
    }

    /// Brings the session's view up to date and queues EXPUNGE, EXISTS,
    /// RECENT and FETCH FLAGS. With `expunges == false` (during FETCH,
    /// STORE, SEARCH: RFC 3501 §7.4.1) messages expunged elsewhere stay in
    /// the view until a command that may report them.
    pub(crate) fn sync_selected(&mut self, expunges: bool) {
        let user = self.user().to_string();
        let Some(sel) = &self.selected else { return };
        let (snap, claimed) = match self.ctx.store.sync_claim(&user, &sel.name, !sel.read_only) {
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
        sel.recent.extend(claimed.iter().copied());
        let unchanged = std::sync::Arc::ptr_eq(&snap.messages, &sel.known);
        if unchanged && claimed.is_empty() && !(expunges && sel.pending_expunge) {
            return;
        }
        let messages = &snap.messages;
        let mut view = Vec::with_capacity(messages.len());
        let mut expunged = Vec::new();
        let mut changed = Vec::new();
        let mut pending = false;
        let mut j = 0;
        for (i, &(uid, flags)) in sel.view.iter().enumerate() {
            while j < messages.len() && messages[j].uid < uid {
                j += 1;
            }
            if j < messages.len() && messages[j].uid == uid {
                let now = messages[j].flags;
                if now != flags {
                    changed.push((view.len() as u32 + 1, uid, now));
                }
                view.push((uid, now));
            } else if expunges {
                expunged.push(i as u32 + 1);
            } else {
                pending = true;
                view.push((uid, flags));
            }
        }
        let last = sel.view.last().map(|(u, _)| *u).unwrap_or(0);
        let before = view.len();
        view.extend(
            messages
                .iter()
                .filter(|m| m.uid > last)
                .map(|m| (m.uid, m.flags)),
        );
        let added = view.len() > before || !claimed.is_empty();
        sel.view = view;
        sel.known = snap.messages.clone();
        sel.pending_expunge = pending;
        let new_keywords = *sel.keywords != *snap.keywords;
        sel.keywords = snap.keywords.clone();
        let exists = sel.view.len() as u32;
        let recent = sel
            .view
            .iter()
            .filter(|(u, _)| sel.recent.contains(u))
            .count() as u32;
        let changed: Vec<_> = changed
            .into_iter()
            .map(|(seq, uid, f)| (seq, uid, f, sel.recent.contains(&uid)))
            .collect();
        // RFC 3501 §7.4.1: each EXPUNGE renumbers the later messages, so
        // the highest sequence number goes first.
        for seq in expunged.into_iter().rev() {
            if let Some(n) = NonZeroU32::new(seq) {
                self.data(Data::Expunge(n));
            }
        }
        if new_keywords {
            // RFC 3501 §7.2.6: the folder's flags changed.
            self.data(Data::Flags(folder_flags(&snap.keywords)));
            self.permanent_flags(&snap.keywords);
        }
        if added {
            // RFC 3501 §7.3.1, §7.3.2.
            self.data(Data::Exists(exists));
            self.data(Data::Recent(recent));
        }
        for (seq, uid, flags, rec) in changed {
            self.flags_update(seq, uid, flags, rec, true);
        }
    }

    /// Announces keywords new in the folder (FLAGS, PERMANENTFLAGS: RFC 3501
    /// §7.2.6) without touching the view, so the FETCH answers that follow
    /// can name them.
    fn refresh_keywords(&mut self, user: &str, folder: &str) {
        let Ok(snap) = self.ctx.store.sync(user, folder) else {
            return;
        };
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if *sel.keywords != *snap.keywords {
            sel.keywords = snap.keywords.clone();
            self.data(Data::Flags(folder_flags(&snap.keywords)));
            self.permanent_flags(&snap.keywords);
        }
    }

    /// Queues an untagged `FETCH (UID FLAGS)` (RFC 3501 §7.4.2).
    fn flags_update(&mut self, seq: u32, uid: u32, flags: Flags, recent: bool, with_uid: bool) {
        let (Some(seq), Some(uid)) = (NonZeroU32::new(seq), NonZeroU32::new(uid)) else {
            return;
        };
        let names = self
            .selected
            .as_ref()
            .map(|s| s.keywords.clone())
            .unwrap_or_default();
        let mut items = vec![MessageDataItem::Flags(flag_fetch(flags, recent, &names))];
        if with_uid {
            items.insert(0, MessageDataItem::Uid(uid));
        }
        if let Ok(items) = Vec1::try_from(items) {
            self.data(Data::Fetch { seq, items });
        }
    }

    pub(crate) async fn selected_command(&mut self, tag: &Tag<'_>, body: CommandBody<'_>) {
        match body {
            CommandBody::Close => {
                if let Some(sel) = self.selected.take()
                    && !sel.read_only
                {
                    // RFC 3501 §6.4.2: silently expunge the messages whose
                    // flags hold \Deleted now, whoever set them.
                    let _ = self.ctx.store.expunge_deleted(self.user(), &sel.name, None);
                }
                self.status(Kind::Ok, Some(tag), None, "CLOSE completed");
            }
            CommandBody::Expunge => self.expunge(tag, None),
            CommandBody::ExpungeUid { sequence_set } => self.expunge(tag, Some(&sequence_set)),
            CommandBody::Search { criteria, uid, .. } => {
                self.search(tag, criteria.as_ref(), uid).await;
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
                let flags = (flags_of(&flags), keywords_of(&flags));
                self.store_flags(tag, &sequence_set, kind, response, flags, uid);
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
        let only: Option<Vec<u32>> = only.map(|set| {
            sel.view
                .iter()
                .map(|(u, _)| *u)
                .filter(|u| in_set(set, *u, largest))
                .collect()
        });
        let name = sel.name.clone();
        // RFC 3501 §6.4.3: the messages whose flags hold \Deleted now.
        if let Err(e) = self
            .ctx
            .store
            .expunge_deleted(&user, &name, only.as_deref())
        {
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
        (flags, keywords): (Flags, Vec<String>),
        uid: bool,
    ) {
        let targets = self.resolve(set, uid);
        let user = self.user().to_string();
        let Some(sel) = &self.selected else { return };
        if sel.read_only {
            self.status(Kind::No, Some(tag), None, "Folder is read-only (EXAMINE)");
            return;
        }
        let op = match kind {
            StoreType::Replace => FlagOp::Replace,
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
        };
        let uids: Vec<u32> = targets.iter().map(|&i| sel.view[i].0).collect();
        let name = sel.name.clone();
        // Keywords by letter; a new name is added unless it is removed.
        let create = op != FlagOp::Remove;
        let flags = match self.ctx.store.keyword_bits(&user, &name, &keywords, create) {
            Ok(bits) => Flags(flags.0 | bits),
            Err(e) => {
                self.status(Kind::No, Some(tag), None, &format!("STORE failed: {e}"));
                return;
            }
        };
        if !keywords.is_empty() {
            self.refresh_keywords(&user, &name);
        }
        // RFC 3501 §6.4.6: applied to the flags the message has now.
        let done = match self.ctx.store.store_flags(&user, &name, &uids, op, flags) {
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
        let mut k = 0;
        for &i in &targets {
            let u = sel.view[i].0;
            while k < done.len() && done[k].0 < u {
                k += 1;
            }
            let Some(&(_, after)) = done.get(k).filter(|d| d.0 == u) else {
                continue; // expunged elsewhere
            };
            sel.view[i].1 = after;
            if response == StoreResponse::Answer {
                replies.push((i as u32 + 1, u, after, sel.recent.contains(&u)));
            }
        }
        for (seq, u, f, rec) in replies {
            self.flags_update(seq, u, f, rec, uid);
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
            let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            if let Err(e) = self.ctx.store.expunge(&user, &source, &moved) {
                self.status(Kind::No, Some(tag), None, &format!("MOVE failed: {e}"));
                return;
            }
            self.sync_selected(true);
            self.status(Kind::Ok, Some(tag), None, "MOVE completed");
        } else {
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
