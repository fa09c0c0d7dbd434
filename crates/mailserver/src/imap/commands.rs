//! Command dispatch and the commands of the any, not-authenticated and
//! authenticated states (RFC 3501 §6.1–§6.3).

use std::collections::HashSet;
use std::num::NonZeroU32;

use base64::Engine;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{IString, QuotedChar, Tag};
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::flag::{Flag, FlagNameAttribute, FlagPerm};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::{Code, Data};
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Kind, Next, Selected, Session};
use crate::conn::Read;
use crate::store::{Flags, INBOX, StoreError};

/// The name of a mailbox argument (`INBOX` is case-insensitive, RFC 3501 §5.1).
pub(crate) fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => INBOX.to_string(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    }
}

fn list_pattern(m: &ListMailbox<'_>) -> String {
    match m {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
    }
}

/// LIST wildcard match (RFC 3501 §6.3.8): `*` matches anything, `%`
/// anything but the hierarchy delimiter.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| wildcard(rest, &name[i..])),
        Some((b'%', rest)) => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != b'.')
            .any(|i| wildcard(rest, &name[i..])),
        Some((c, rest)) => name.first().is_some_and(|n| n == c) && wildcard(rest, &name[1..]),
    }
}

fn matches_list(pattern: &str, name: &str) -> bool {
    if name == INBOX {
        // INBOX matches case-insensitively.
        let p = pattern.to_ascii_uppercase();
        return wildcard(p.as_bytes(), name.as_bytes());
    }
    wildcard(pattern.as_bytes(), name.as_bytes())
}

/// The system flags of a flag list; keywords are ignored (not permanent).
pub(crate) fn flags_of(list: &[Flag<'_>]) -> Flags {
    let mut f = 0;
    for flag in list {
        f |= match flag {
            Flag::Seen => Flags::SEEN,
            Flag::Answered => Flags::ANSWERED,
            Flag::Flagged => Flags::FLAGGED,
            Flag::Deleted => Flags::DELETED,
            Flag::Draft => Flags::DRAFT,
            _ => 0,
        };
    }
    Flags(f)
}

/// The IMAP flags of a message.
pub(crate) fn flag_list(f: Flags) -> Vec<Flag<'static>> {
    let mut v = Vec::new();
    for (bit, flag) in [
        (Flags::SEEN, Flag::Seen),
        (Flags::ANSWERED, Flag::Answered),
        (Flags::FLAGGED, Flag::Flagged),
        (Flags::DELETED, Flag::Deleted),
        (Flags::DRAFT, Flag::Draft),
    ] {
        if f.has(bit) {
            v.push(flag);
        }
    }
    v
}

fn store_error_text(e: &StoreError) -> String {
    match e {
        StoreError::NoFolder(f) => format!("No folder named {f:?}; CREATE it first"),
        StoreError::FolderExists(f) => format!("A folder named {f:?} exists already"),
        StoreError::InvalidFolder(f) => format!(
            "{f:?} is not a usable folder name (no '/', no leading '.', no '..'; INBOX cannot be deleted or renamed)"
        ),
        other => {
            tracing::warn!(error = %other, "store error");
            "Server error in the mail store; try again".to_string()
        }
    }
}

const ALL_SYSTEM: [Flag<'static>; 5] = [
    Flag::Answered,
    Flag::Flagged,
    Flag::Deleted,
    Flag::Seen,
    Flag::Draft,
];

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(crate) async fn dispatch(&mut self, cmd: Command<'_>) -> Next {
        let tag = cmd.tag;
        match cmd.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.data(Data::Capability(caps));
                self.status(Kind::Ok, Some(&tag), None, "CAPABILITY completed");
            }
            CommandBody::Noop | CommandBody::Check => {
                if self.selected.is_some() {
                    self.sync_selected(true);
                }
                self.status(Kind::Ok, Some(&tag), None, "NOOP completed");
            }
            CommandBody::Logout => {
                self.status(Kind::Bye, None, None, "Logging out");
                self.status(Kind::Ok, Some(&tag), None, "LOGOUT completed");
                return Next::Logout;
            }
            CommandBody::StartTLS => return self.starttls(&tag).await,
            CommandBody::Login { username, password } => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.login(&tag, user, pass).await;
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                let initial = initial_response.map(|r| r.declassify().to_vec());
                return self.authenticate(&tag, mechanism, initial).await;
            }
            body if self.user.is_none() => {
                let _ = body;
                self.status(
                    Kind::Bad,
                    Some(&tag),
                    None,
                    "Log in first (LOGIN or AUTHENTICATE PLAIN after STARTTLS)",
                );
            }
            CommandBody::Select { mailbox, .. } => {
                self.select(&tag, &mailbox_name(&mailbox), false)
            }
            CommandBody::Examine { mailbox, .. } => {
                self.select(&tag, &mailbox_name(&mailbox), true)
            }
            CommandBody::Unselect => {
                if self.selected.take().is_some() {
                    self.status(Kind::Ok, Some(&tag), None, "UNSELECT completed");
                } else {
                    self.status(Kind::Bad, Some(&tag), None, "No folder selected");
                }
            }
            CommandBody::Create { mailbox } => {
                let name = mailbox_name(&mailbox);
                let name = name.trim_end_matches('.').to_string();
                let r = self.ctx.store.create_folder(self.user(), &name);
                self.reply(&tag, r, "CREATE completed");
            }
            CommandBody::Delete { mailbox } => {
                let name = mailbox_name(&mailbox);
                if self.selected.as_ref().is_some_and(|s| s.name == name) {
                    self.selected = None;
                }
                let r = self.ctx.store.delete_folder(self.user(), &name);
                self.reply(&tag, r, "DELETE completed");
            }
            CommandBody::Rename { from, to } => {
                let r = self.ctx.store.rename_folder(
                    self.user(),
                    &mailbox_name(&from),
                    &mailbox_name(&to),
                );
                self.reply(&tag, r, "RENAME completed");
            }
            CommandBody::Subscribe { mailbox } => {
                let r = self
                    .ctx
                    .store
                    .set_subscribed(self.user(), &mailbox_name(&mailbox), true);
                self.reply(&tag, r, "SUBSCRIBE completed");
            }
            CommandBody::Unsubscribe { mailbox } => {
                let r = self
                    .ctx
                    .store
                    .set_subscribed(self.user(), &mailbox_name(&mailbox), false);
                self.reply(&tag, r, "UNSUBSCRIBE completed");
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, false),
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, true),
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status_cmd(&tag, &mailbox, &item_names),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let bytes: &[u8] = match &message {
                    LiteralOrLiteral8::Literal(l) => l.as_ref(),
                    LiteralOrLiteral8::Literal8(l) => &l.data,
                };
                let date = date.map(|d| d.as_ref().timestamp());
                self.append(&tag, &mailbox_name(&mailbox), flags_of(&flags), date, bytes);
            }
            CommandBody::Namespace => {
                // RFC 2342 §5: one personal namespace, prefix "", delimiter ".".
                let personal = vec![Namespace::new(
                    IString::try_from("")
                        .unwrap_or_else(|_| IString::try_from("INBOX").expect("quoted")),
                    QuotedChar::try_from('.').ok(),
                )];
                self.data(Data::Namespace {
                    personal,
                    other: Vec::new(),
                    shared: Vec::new(),
                });
                self.status(Kind::Ok, Some(&tag), None, "NAMESPACE completed");
            }
            CommandBody::Idle => return self.idle(&tag).await,
            body => {
                if self.selected.is_none() {
                    self.status(
                        Kind::Bad,
                        Some(&tag),
                        None,
                        "Select a folder first (SELECT or EXAMINE)",
                    );
                } else {
                    self.selected_command(&tag, body).await;
                }
            }
        }
        Next::Continue
    }

    /// The logged-in address (only called in authenticated states).
    pub(crate) fn user(&self) -> &str {
        self.user.as_deref().unwrap_or_default()
    }

    fn reply(&mut self, tag: &Tag<'_>, r: Result<(), StoreError>, done: &str) {
        match r {
            Ok(()) => self.status(Kind::Ok, Some(tag), None, done),
            Err(e) => self.status(Kind::No, Some(tag), None, &store_error_text(&e)),
        }
    }

    async fn starttls(&mut self, tag: &Tag<'_>) -> Next {
        if self.conn.is_tls() {
            self.status(Kind::Bad, Some(tag), None, "TLS is already active");
            return Next::Continue;
        }
        self.status(Kind::Ok, Some(tag), None, "Begin TLS negotiation now");
        if !self.flush().await {
            return Next::Logout;
        }
        let ctx = self.ctx.clone();
        if !self.conn.start_tls(&ctx, &self.t, "STARTTLS").await {
            return Next::Logout;
        }
        Next::Continue
    }

    async fn login(&mut self, tag: &Tag<'_>, user: String, pass: String) {
        if self.user.is_some() {
            self.status(Kind::Bad, Some(tag), None, "Already logged in");
            return;
        }
        if !self.ctx.config.password_allowed(self.conn.is_tls()) {
            // RFC 3501 §6.2.3, RFC 8314: no plaintext passwords.
            self.status(
                Kind::No,
                Some(tag),
                None,
                "[PRIVACYREQUIRED] Plaintext LOGIN is disabled: issue STARTTLS first or use port 993",
            );
            return;
        }
        let ctx = self.ctx.clone();
        let ip = self.peer.ip();
        let result =
            tokio::task::spawn_blocking(move || ctx.accounts.login(&user, &pass, ip)).await;
        match result {
            Ok(Ok(auth)) => {
                self.user = Some(auth.address().to_string());
                self.t.info(&format!("login {}", auth.address()));
                let caps = self.capabilities();
                self.status(
                    Kind::Ok,
                    Some(tag),
                    Some(Code::Capability(caps)),
                    "Logged in",
                );
            }
            Ok(Err(e)) => self.status(
                Kind::No,
                Some(tag),
                None,
                &format!("[AUTHENTICATIONFAILED] Login failed: {e}"),
            ),
            Err(_) => self.status(Kind::No, Some(tag), None, "Login failed: server error"),
        }
    }

    async fn authenticate(
        &mut self,
        tag: &Tag<'_>,
        mechanism: AuthMechanism<'_>,
        initial: Option<Vec<u8>>,
    ) -> Next {
        if !matches!(mechanism, AuthMechanism::Plain) {
            self.status(
                Kind::No,
                Some(tag),
                None,
                "Only AUTHENTICATE PLAIN is supported",
            );
            return Next::Continue;
        }
        if !self.ctx.config.password_allowed(self.conn.is_tls()) {
            self.status(
                Kind::No,
                Some(tag),
                None,
                "[PRIVACYREQUIRED] Issue STARTTLS first",
            );
            return Next::Continue;
        }
        let data = match initial {
            Some(d) => d,
            None => {
                // RFC 3501 §6.2.2: an empty challenge, the client answers in base64.
                self.out.extend_from_slice(b"+ \r\n");
                if !self.flush().await {
                    return Next::Logout;
                }
                let line = match self.conn.read_line(8192, self.timeout()).await {
                    Read::Line(l) => l,
                    _ => return Next::Logout,
                };
                self.t.client("***");
                let line = line.trim_ascii();
                if line == b"*" {
                    self.status(Kind::Bad, Some(tag), None, "AUTHENTICATE cancelled");
                    return Next::Continue;
                }
                match base64::engine::general_purpose::STANDARD.decode(line) {
                    Ok(d) => d,
                    Err(_) => {
                        self.status(
                            Kind::Bad,
                            Some(tag),
                            None,
                            "Invalid base64 in AUTHENTICATE response",
                        );
                        return Next::Continue;
                    }
                }
            }
        };
        // RFC 4616 §2: [authzid] NUL authcid NUL passwd.
        let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
        if parts.len() != 3 {
            self.status(
                Kind::Bad,
                Some(tag),
                None,
                "Malformed PLAIN response (RFC 4616)",
            );
            return Next::Continue;
        }
        let user = String::from_utf8_lossy(parts[1]).into_owned();
        let pass = String::from_utf8_lossy(parts[2]).into_owned();
        self.login(tag, user, pass).await;
        Next::Continue
    }

    fn select(&mut self, tag: &Tag<'_>, name: &str, read_only: bool) {
        self.selected = None;
        let snap = match self.ctx.store.sync(self.user(), name) {
            Ok(s) => s,
            Err(e) => {
                self.status(Kind::No, Some(tag), None, &store_error_text(&e));
                return;
            }
        };
        let Ok(watch) = self.ctx.store.watch(self.user(), name) else {
            self.status(Kind::No, Some(tag), None, "Cannot watch the folder");
            return;
        };
        let view: Vec<(u32, Flags)> = snap.messages.iter().map(|m| (m.uid, m.flags)).collect();
        let recent: HashSet<u32> = if read_only {
            HashSet::new()
        } else {
            snap.arrived.iter().copied().collect()
        };
        // RFC 3501 §6.3.1: FLAGS, EXISTS, RECENT, UNSEEN, PERMANENTFLAGS, UIDNEXT, UIDVALIDITY.
        self.data(Data::Flags(ALL_SYSTEM.to_vec()));
        self.data(Data::Exists(view.len() as u32));
        self.data(Data::Recent(recent.len() as u32));
        if let Some(first) = view.iter().position(|(_, f)| !f.has(Flags::SEEN))
            && let Some(n) = NonZeroU32::new(first as u32 + 1)
        {
            self.status(Kind::Ok, None, Some(Code::Unseen(n)), "First unseen");
        }
        let perm: Vec<FlagPerm<'static>> = ALL_SYSTEM.iter().cloned().map(FlagPerm::Flag).collect();
        self.status(
            Kind::Ok,
            None,
            Some(Code::PermanentFlags(perm)),
            "Permanent flags (no keywords)",
        );
        if let Some(v) = NonZeroU32::new(snap.uid_validity) {
            self.status(Kind::Ok, None, Some(Code::UidValidity(v)), "UIDs valid");
        }
        if let Some(n) = NonZeroU32::new(snap.uid_next) {
            self.status(Kind::Ok, None, Some(Code::UidNext(n)), "Predicted next UID");
        }
        self.selected = Some(Selected {
            name: if name.eq_ignore_ascii_case(INBOX) {
                INBOX.to_string()
            } else {
                name.to_string()
            },
            read_only,
            view,
            recent,
            watch,
        });
        let (code, done) = if read_only {
            (Code::ReadOnly, "EXAMINE completed")
        } else {
            (Code::ReadWrite, "SELECT completed")
        };
        self.status(Kind::Ok, Some(tag), Some(code), done);
    }

    fn list(
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
        for name in folders {
            if !matches_list(&full, &name) || (lsub && name != INBOX && !subs.contains(&name)) {
                continue;
            }
            let Ok(mailbox) = Mailbox::try_from(name.as_str()) else {
                continue;
            };
            let mut items = Vec::new();
            if name.eq_ignore_ascii_case(crate::store::JUNK) {
                // RFC 6154 special-use attribute.
                items.push(FlagNameAttribute::from(
                    imap_codec::imap_types::core::Atom::try_from("Junk").expect("atom"),
                ));
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

    fn status_cmd(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>, names: &[StatusDataItemName]) {
        let name = mailbox_name(mailbox);
        let snap = match self.ctx.store.sync(self.user(), &name) {
            Ok(s) => s,
            Err(e) => {
                self.status(Kind::No, Some(tag), None, &store_error_text(&e));
                return;
            }
        };
        let mut items = Vec::new();
        for n in names {
            let item = match n {
                StatusDataItemName::Messages => {
                    Some(StatusDataItem::Messages(snap.messages.len() as u32))
                }
                StatusDataItemName::Recent => {
                    Some(StatusDataItem::Recent(snap.arrived.len() as u32))
                }
                StatusDataItemName::UidNext => {
                    NonZeroU32::new(snap.uid_next).map(StatusDataItem::UidNext)
                }
                StatusDataItemName::UidValidity => {
                    NonZeroU32::new(snap.uid_validity).map(StatusDataItem::UidValidity)
                }
                StatusDataItemName::Unseen => Some(StatusDataItem::Unseen(
                    snap.messages
                        .iter()
                        .filter(|m| !m.flags.has(Flags::SEEN))
                        .count() as u32,
                )),
                _ => None,
            };
            items.extend(item);
        }
        self.data(Data::Status {
            mailbox: mailbox.clone(),
            items: items.into(),
        });
        self.status(Kind::Ok, Some(tag), None, "STATUS completed");
    }

    fn append(&mut self, tag: &Tag<'_>, name: &str, flags: Flags, date: Option<i64>, bytes: &[u8]) {
        if !self.ctx.store.folder_exists(self.user(), name) {
            // RFC 3501 §6.3.11: TRYCREATE when the folder does not exist.
            self.status(
                Kind::No,
                Some(tag),
                Some(Code::TryCreate),
                &format!("No folder named {name:?}"),
            );
            return;
        }
        match self.ctx.store.append(self.user(), name, bytes, flags, date) {
            Ok((validity, uid)) => {
                if self.selected.as_ref().is_some_and(|s| s.name == name) {
                    self.sync_selected(true);
                }
                let code = match (NonZeroU32::new(validity), NonZeroU32::new(uid)) {
                    (Some(uid_validity), Some(uid)) => Some(Code::AppendUid { uid_validity, uid }),
                    _ => None,
                };
                self.status(Kind::Ok, Some(tag), code, "APPEND completed");
            }
            Err(e) => self.status(Kind::No, Some(tag), None, &store_error_text(&e)),
        }
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
    }
}
