//! Command dispatch and the commands of the any, not-authenticated and
//! authenticated states (RFC 3501 §6.1–§6.3).

use std::collections::HashSet;
use std::num::NonZeroU32;

use base64::Engine;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{IString, NString, QuotedChar, Tag};
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::flag::{Flag, FlagPerm};
use imap_codec::imap_types::mailbox::Mailbox;
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

/// The system flags of a flag list (keywords: [`keywords_of`]).
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

/// The keywords of a flag list (RFC 3501 §2.3.2; `\Recent` and other
/// `\` extensions are not keywords).
pub(crate) fn keywords_of(list: &[Flag<'_>]) -> Vec<String> {
    list.iter()
        .filter_map(|f| match f {
            Flag::Keyword(k) => Some(k.as_ref().to_string()),
            _ => None,
        })
        .collect()
}

/// The IMAP flags of a message, keywords named by `names`.
pub(crate) fn flag_list(f: Flags, names: &[String]) -> Vec<Flag<'static>> {
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
    v.extend(
        crate::store::names_of(names, f)
            .filter_map(|n| imap_codec::imap_types::core::Atom::try_from(n.to_string()).ok())
            .map(Flag::Keyword),
    );
    v
}

pub(crate) fn store_error_text(e: &StoreError) -> String {
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

/// The FLAGS of a folder (RFC 3501 §7.2.6): system flags and its keywords.
pub(crate) fn folder_flags(keywords: &[String]) -> Vec<Flag<'static>> {
    let mut v = ALL_SYSTEM.to_vec();
    v.extend(
        keywords
            .iter()
            .filter(|k| !k.is_empty())
            .filter_map(|k| imap_codec::imap_types::core::Atom::try_from(k.clone()).ok())
            .map(Flag::Keyword),
    );
    v
}

pub(crate) fn atom(s: &'static str) -> imap_codec::imap_types::core::Atom<'static> {
    imap_codec::imap_types::core::Atom::try_from(s).expect("atom")
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
        // RFC 3501 §7.4.1: no EXPUNGE while answering FETCH, STORE or
        // SEARCH (their UID forms may carry one); every command reports
        // the other sessions' changes before its tagged response.
        let no_expunge = matches!(
            cmd.body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
        );
        // SELECT and EXAMINE answer with the folder's whole state, read in
        // the same command (RFC 3501 §6.3.1): nothing left to report.
        let reports_state = matches!(
            cmd.body,
            CommandBody::Select { .. } | CommandBody::Examine { .. }
        );
        let synced = self.selected.is_some() && self.sync_before(&cmd.body);
        // A command that reported the changes as it began does not read the
        // folder again for its tagged response.
        self.sync_before_tagged = (!reports_state && !synced).then_some(!no_expunge);
        match cmd.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.data(Data::Capability(caps));
                self.status(Kind::Ok, Some(&tag), None, "CAPABILITY completed");
            }
            // RFC 3501 §6.1.2; the changes are reported before the tagged OK.
            CommandBody::Noop => self.status(Kind::Ok, Some(&tag), None, "NOOP completed"),
            // RFC 3501 §6.4.1: every change is on disk already.
            CommandBody::Check => self.status(Kind::Ok, Some(&tag), None, "CHECK completed"),
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
            CommandBody::Id { .. } => {
                // RFC 2971 §3.1: in any state; the client's fields are logged only.
                let field = |s: &'static str| IString::try_from(s).ok();
                let parameters = [("name", "maillab"), ("vendor", "maillab")]
                    .into_iter()
                    .filter_map(|(k, v)| Some((field(k)?, NString(Some(field(v)?)))))
                    .collect();
                self.data(Data::Id {
                    parameters: Some(parameters),
                });
                self.status(Kind::Ok, Some(&tag), None, "ID completed");
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
                // RFC 3501 §6.3.3: the levels above are created too.
                for parent in super::list::parents(&name) {
                    if !self.ctx.store.folder_exists(self.user(), parent) {
                        let _ = self.ctx.store.create_folder(self.user(), parent);
                    }
                }
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
                let flags = (flags_of(&flags), keywords_of(&flags));
                self.append(&tag, &mailbox_name(&mailbox), flags, date, bytes);
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
        // RFC 3501 §6.3.1: SELECT claims the \Recent messages; EXAMINE
        // shows them without clearing them (§6.3.2).
        let (snap, claimed) = match self.ctx.store.sync_claim(self.user(), name, !read_only) {
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
            view.iter()
                .map(|(u, _)| *u)
                .filter(|u| *u >= snap.recent_from)
                .collect()
        } else {
            claimed.into_iter().collect()
        };
        // RFC 3501 §6.3.1: FLAGS, EXISTS, RECENT, UNSEEN, PERMANENTFLAGS, UIDNEXT, UIDVALIDITY.
        self.data(Data::Flags(folder_flags(&snap.keywords)));
        self.data(Data::Exists(view.len() as u32));
        self.data(Data::Recent(recent.len() as u32));
        if let Some(first) = view.iter().position(|(_, f)| !f.has(Flags::SEEN))
            && let Some(n) = NonZeroU32::new(first as u32 + 1)
        {
            self.status(Kind::Ok, None, Some(Code::Unseen(n)), "First unseen");
        }
        self.permanent_flags(&snap.keywords);
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
            known: snap.messages.clone(),
            pending_expunge: false,
            keywords: snap.keywords.clone(),
        });
        let (code, done) = if read_only {
            (Code::ReadOnly, "EXAMINE completed")
        } else {
            (Code::ReadWrite, "SELECT completed")
        };
        self.status(Kind::Ok, Some(tag), Some(code), done);
    }

    /// PERMANENTFLAGS: the system flags, the folder's keywords and `\*`
    /// (new keywords can be stored, RFC 3501 §7.1).
    pub(crate) fn permanent_flags(&mut self, keywords: &[String]) {
        let mut perm: Vec<FlagPerm<'static>> = folder_flags(keywords)
            .into_iter()
            .map(FlagPerm::Flag)
            .collect();
        perm.push(FlagPerm::Asterisk);
        self.status(
            Kind::Ok,
            None,
            Some(Code::PermanentFlags(perm)),
            "Flags and keywords are permanent",
        );
    }

    fn status_cmd(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>, names: &[StatusDataItemName]) {
        let name = mailbox_name(mailbox);
        // RFC 3501 §6.3.10: STATUS does not clear \Recent.
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
                StatusDataItemName::Recent => Some(StatusDataItem::Recent(
                    snap.messages
                        .iter()
                        .filter(|m| m.uid >= snap.recent_from)
                        .count() as u32,
                )),
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

    fn append(
        &mut self,
        tag: &Tag<'_>,
        name: &str,
        (flags, keywords): (Flags, Vec<String>),
        date: Option<i64>,
        bytes: &[u8],
    ) {
        // The message limits before anything parses it (crate::message).
        if let Err(e) = crate::message::check(bytes, &self.ctx.config.limits.message()) {
            return self.status(Kind::No, Some(tag), None, &e.to_string());
        }
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
        // RFC 3501 §6.3.11: the keywords are stored with the message.
        let flags = match self
            .ctx
            .store
            .keyword_bits(self.user(), name, &keywords, true)
        {
            Ok(bits) => Flags(flags.0 | bits),
            Err(e) => {
                self.status(Kind::No, Some(tag), None, &store_error_text(&e));
                return;
            }
        };
        match self.ctx.store.append(self.user(), name, bytes, flags, date) {
            Ok((validity, uid)) => {
                let code = match (NonZeroU32::new(validity), NonZeroU32::new(uid)) {
                    (Some(uid_validity), Some(uid)) => Some(Code::AppendUid { uid_validity, uid }),
                    _ => None,
                };
                self.status(Kind::Ok, Some(tag), code, "APPEND completed");
            }
            // RFC 5530 §3: OVERQUOTA.
            Err(StoreError::OverQuota(_)) => {
                let text = "Mailbox is over its quota; delete messages first";
                self.status(Kind::No, Some(tag), Some(Code::OverQuota), text)
            }
            Err(e) => self.status(Kind::No, Some(tag), None, &store_error_text(&e)),
        }
    }
}
