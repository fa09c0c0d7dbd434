//! LIST and LSUB (RFC 3501 §6.3.8, §6.3.9) with the hierarchy attributes
//! of CHILDREN (RFC 3348) and the special-use `\\Junk` (RFC 6154). See
//! docs/imap-pop3.md.

use imap_codec::imap_types::core::{QuotedChar, Tag};
use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::Data;
use tokio::io::{AsyncRead, AsyncWrite};

use super::commands::{atom, mailbox_name, store_error_text};
use super::{Kind, Session};
use crate::store::INBOX;

fn list_pattern(m: &ListMailbox<'_>) -> String {
    match m {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
    }
}

/// LIST wildcard match (RFC 3501 §6.3.8): `*` matches anything, `%`
/// anything but the hierarchy delimiter. A simulation over the pattern's
/// positions: time linear in pattern × name, no recursion, no
/// backtracking (a run of `*` counts once).
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let mut p: Vec<u8> = Vec::with_capacity(pattern.len().min(1024));
    for &c in pattern {
        if !(c == b'*' && p.last() == Some(&b'*')) {
            p.push(c);
        }
    }
    let n = p.len();
    // Wildcards match the empty string: follow them forward.
    let close = |states: &mut [bool]| {
        for i in 0..n {
            if states[i] && matches!(p[i], b'*' | b'%') {
                states[i + 1] = true;
            }
        }
    };
    let mut cur = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    cur[0] = true;
    close(&mut cur);
    for &c in name {
        next.iter_mut().for_each(|s| *s = false);
        let mut any = false;
        for i in 0..n {
            if !cur[i] {
                continue;
            }
            match p[i] {
                b'*' => next[i] = true,
                b'%' if c != DELIMITER => next[i] = true,
                b'%' => continue,
                x if x == c => next[i + 1] = true,
                _ => continue,
            }
            any = true;
        }
        if !any {
            return false;
        }
        close(&mut next);
        std::mem::swap(&mut cur, &mut next);
    }
    cur[n]
}

/// The hierarchy delimiter (Maildir++ uses `.`).
const DELIMITER: u8 = b'.';

fn matches_list(pattern: &str, name: &str) -> bool {
    if name == INBOX {
        // INBOX matches case-insensitively.
        let p = pattern.to_ascii_uppercase();
        return wildcard(p.as_bytes(), name.as_bytes());
    }
    wildcard(pattern.as_bytes(), name.as_bytes())
}

/// The parents of a hierarchical name: `a.b.c` gives `a` and `a.b`.
pub(crate) fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.').map(move |(i, _)| &name[..i])
}

/// One LIST or LSUB answer line: name and attributes.
struct Listed {
    name: String,
    noselect: bool,
    children: bool,
}

/// What LIST (`lsub == false`) or LSUB answers for `pattern` over the
/// folders and subscriptions of a mailbox, in name order.
///
/// LIST: every matching folder, and every matching parent level that is no
/// folder with `\Noselect` (RFC 3501 §6.3.8); LSUB: every matching
/// subscribed name, and a parent that is not subscribed with `\Noselect`
/// where a subscribed name below it does not match (the `%` case RFC 3501
/// §6.3.9 makes a MUST). `\HasChildren` / `\HasNoChildren` from the
/// folders (RFC 3348 §4).
fn list_answer(pattern: &str, folders: &[String], subs: &[String], lsub: bool) -> Vec<Listed> {
    use std::collections::{BTreeMap, BTreeSet};
    let existing: BTreeSet<&str> = folders.iter().map(String::as_str).collect();
    let has_children = |name: &str| {
        let prefix = format!("{name}.");
        existing
            .range::<&str, _>(prefix.as_str()..)
            .next()
            .is_some_and(|f| f.starts_with(&prefix))
    };
    // name -> selectable (LIST) or subscribed (LSUB)
    let mut out: BTreeMap<&str, bool> = BTreeMap::new();
    let base: Vec<&str> = if lsub {
        // INBOX is always listed as subscribed.
        std::iter::once(INBOX)
            .chain(subs.iter().map(String::as_str).filter(|s| *s != INBOX))
            .collect()
    } else {
        folders.iter().map(String::as_str).collect()
    };
    for &name in &base {
        let hit = matches_list(pattern, name);
        if hit {
            out.insert(name, true);
        }
        for parent in parents(name) {
            if (!lsub || !hit) && matches_list(pattern, parent) {
                out.entry(parent).or_insert(false);
            }
        }
    }
    out.into_iter()
        .map(|(name, real)| Listed {
            name: name.to_string(),
            noselect: if lsub {
                !real || !existing.contains(name)
            } else {
                !real
            },
            children: has_children(name),
        })
        .collect()
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(crate) fn list(
        &mut self,
        tag: &Tag<'_>,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) {
        let pattern = list_pattern(pattern);
        let reference = match reference {
            Mailbox::Inbox => INBOX.to_string(),
            Mailbox::Other(_) => mailbox_name(reference),
        };
        let delimiter = QuotedChar::try_from('.').ok();
        if pattern.is_empty() && !lsub {
            // RFC 3501 §6.3.8: the hierarchy delimiter and root.
            if let Ok(root) = Mailbox::try_from("") {
                self.data(Data::List {
                    items: vec![FlagNameAttribute::Noselect],
                    delimiter,
                    mailbox: root,
                });
            }
            self.status(Kind::Ok, Some(tag), None, "LIST completed");
            return;
        }
        let full = format!("{reference}{pattern}");
        let folders = match self.ctx.store.folders(self.user()) {
            Ok(f) => f,
            Err(e) => {
                self.status(Kind::No, Some(tag), None, &store_error_text(&e));
                return;
            }
        };
        let subs = self.ctx.store.subscriptions(self.user());
        for entry in list_answer(&full, &folders, &subs, lsub) {
            let Ok(mailbox) = Mailbox::try_from(entry.name.as_str()) else {
                continue;
            };
            let mut items = Vec::new();
            if entry.noselect {
                items.push(FlagNameAttribute::Noselect);
            }
            // RFC 3348 §4 (CHILDREN).
            items.push(FlagNameAttribute::from(atom(if entry.children {
                "HasChildren"
            } else {
                "HasNoChildren"
            })));
            if entry.name.eq_ignore_ascii_case(crate::store::JUNK) {
                // RFC 6154 §2: the special-use attribute.
                items.push(FlagNameAttribute::from(atom("Junk")));
            }
            let data = if lsub {
                Data::Lsub {
                    items,
                    delimiter,
                    mailbox,
                }
            } else {
                Data::List {
                    items,
                    delimiter,
                    mailbox,
                }
            };
            self.data(data);
        }
        self.status(
            Kind::Ok,
            Some(tag),
            None,
            if lsub {
                "LSUB completed"
            } else {
                "LIST completed"
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        assert!(matches_list("*", "INBOX"));
        assert!(matches_list("inbox", "INBOX"));
        assert!(matches_list("%", "Junk"));
        assert!(!matches_list("%", "A.B"));
        assert!(matches_list("A.%", "A.B"));
        assert!(matches_list("*", "A.B"));
        assert!(!matches_list("Ju", "Junk"));
        assert!(matches_list("*a%b", "xa.yab"));
        assert!(!matches_list("a%", "a.b"));
        assert!(matches_list("%.%", "a.b"));
    }

    #[test]
    fn list_wildcards_are_linear() {
        let start = std::time::Instant::now();
        let stars = format!("{}X", "*".repeat(60_000));
        assert!(!matches_list(&stars, "Junk"));
        assert!(matches_list(&stars, "JunkX"));
        let name = "a".repeat(40);
        assert!(!matches_list("*a*a*a*a*a*a*a*a*a*a*a*a*a*ab", &name));
        let percents = format!("{}X", "%".repeat(60_000));
        assert!(!matches_list(&percents, &name));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn list_shows_parents_and_children() {
        let folders: Vec<String> = ["INBOX", "Archive.2024.Q1", "Junk"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let top = list_answer("%", &folders, &[], false);
        let names: Vec<(&str, bool, bool)> = top
            .iter()
            .map(|l| (l.name.as_str(), l.noselect, l.children))
            .collect();
        assert_eq!(
            names,
            [
                ("Archive", true, true),
                ("INBOX", false, false),
                ("Junk", false, false)
            ]
        );
        let subs = vec!["Archive.2024.Q1".to_string()];
        let lsub = list_answer("Archive.%", &folders, &subs, true);
        assert_eq!(lsub.len(), 1);
        assert_eq!(lsub[0].name, "Archive.2024");
        assert!(lsub[0].noselect);
        let all = list_answer("*", &folders, &subs, true);
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|l| !l.noselect));
    }
}
