//! SEARCH and UID SEARCH (RFC 3501 §6.4.4). String keys match as
//! case-insensitive substrings of the raw header or body and, for encoded
//! words (RFC 2047) and base64 / quoted-printable text parts, of the
//! decoded text. FROM/TO/CC/BCC also match the parsed addresses
//! (`name <local@domain>`, comments dropped). Dates: SINCE/BEFORE/ON use
//! the internal date (UTC), SENT* the date written in the Date header,
//! disregarding time and timezone (RFC 3501 §6.4.4).
//!
//! A search runs on a blocking thread (`spawn_blocking`) with a linear
//! substring search (`memchr::memmem`), so a large folder never stalls the
//! runtime's workers. See docs/imap-pop3.md.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;

use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::search::SearchKey;
use mail_parser::{MessageParser, MimeHeaders};
use tokio::io::{AsyncRead, AsyncWrite};

use super::fetch::fields;
use super::selected::in_set;
use super::{Kind, Session};
use crate::message::split_header;
use crate::server::Context;
use crate::store::{Flags, MessageMeta, Snapshot};

/// What a message offers to the search keys; content is loaded on first use.
struct Candidate<'a> {
    seq: u32,
    uid: u32,
    flags: Flags,
    recent: bool,
    meta: Option<&'a MessageMeta>,
    /// The folder's keyword names by letter.
    keywords: &'a [String],
    content: Option<Content>,
}

#[derive(Default)]
struct Content {
    /// (lower-case name, lower-case unfolded value), raw and decoded.
    headers: Vec<(String, String)>,
    /// Lower-case body (raw, then decoded text parts).
    body: Vec<u8>,
    /// The date of the Date header as written (RFC 3501 §6.4.4).
    sent: Option<chrono::NaiveDate>,
}

fn lower(b: &[u8]) -> Vec<u8> {
    b.to_ascii_lowercase()
}

/// Linear-time substring search.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || memchr::memmem::find(hay, needle).is_some()
}

/// `name <local@domain>` for every address of an address header, group
/// members included, comments and routes dropped by the parser.
fn address_text(a: &mail_parser::Address<'_>) -> String {
    let one = |x: &mail_parser::Addr<'_>| {
        format!(
            "{} <{}>",
            x.name.as_deref().unwrap_or(""),
            x.address.as_deref().unwrap_or("")
        )
    };
    match a {
        mail_parser::Address::List(l) => l.iter().map(one).collect::<Vec<_>>().join(", "),
        mail_parser::Address::Group(g) => g
            .iter()
            .flat_map(|g| g.addresses.iter().map(one))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn load(raw: &[u8]) -> Content {
    let (header, body) = split_header(raw);
    let mut c = Content::default();
    for (name, field) in fields(header) {
        let value = &field[name.len() + 1..];
        let value: Vec<u8> = value
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        c.headers.push((
            String::from_utf8_lossy(name.trim_ascii()).to_ascii_lowercase(),
            String::from_utf8_lossy(value.trim_ascii()).to_lowercase(),
        ));
    }
    c.body = lower(body);
    let encoded_words = header.windows(2).any(|w| w == b"=?");
    let encoded_body = contains(&c.body, b"base64")
        || contains(&c.body, b"quoted-printable")
        || c.headers
            .iter()
            .any(|(n, v)| n == "content-transfer-encoding" && v != "7bit" && v != "8bit");
    let needs_parse = encoded_words || encoded_body;
    let parsed = if needs_parse {
        crate::message::parse_bounded(raw)
    } else {
        MessageParser::default().parse_headers(header)
    };
    if let Some(msg) = parsed {
        // RFC 3501 §6.4.4: the date as written, time and zone disregarded.
        c.sent = msg.date().and_then(|d| {
            chrono::NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())
        });
        for (name, value) in [
            ("from", msg.from()),
            ("to", msg.to()),
            ("cc", msg.cc()),
            ("bcc", msg.bcc()),
        ] {
            if let Some(a) = value {
                c.headers
                    .push((name.to_string(), address_text(a).to_lowercase()));
            }
        }
        if encoded_words {
            for h in msg.headers() {
                let text = match h.value() {
                    mail_parser::HeaderValue::Text(t) => t.to_string(),
                    mail_parser::HeaderValue::TextList(l) => l.join(" "),
                    mail_parser::HeaderValue::Address(a) => address_text(a),
                    _ => continue,
                };
                c.headers
                    .push((h.name().to_ascii_lowercase(), text.to_lowercase()));
            }
        }
        if encoded_body {
            for part in msg.parts.iter() {
                if part.is_text()
                    && part.content_transfer_encoding().is_some()
                    && let Some(t) = part.text_contents()
                {
                    c.body.push(b'\n');
                    c.body.extend_from_slice(t.to_lowercase().as_bytes());
                }
            }
        }
    }
    c
}

fn date_of(secs: i64) -> Option<chrono::NaiveDate> {
    chrono::DateTime::from_timestamp(secs, 0).map(|d| d.date_naive())
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(crate) async fn search(&mut self, tag: &Tag<'_>, criteria: &[SearchKey<'_>], uid: bool) {
        let user = self.user().to_string();
        let Some(sel) = &self.selected else { return };
        let Ok(snap) = self.ctx.store.sync(&user, &sel.name) else {
            self.status(Kind::No, Some(tag), None, "Cannot read the folder");
            return;
        };
        let job = SearchJob {
            ctx: self.ctx.clone(),
            user,
            folder: sel.name.clone(),
            snap,
            view: sel.view.clone(),
            recent: sel.recent.clone(),
            criteria: criteria
                .iter()
                .cloned()
                .map(IntoStatic::into_static)
                .collect(),
            uid,
        };
        // Reading and matching every message is CPU and disk work: off the
        // async workers.
        let Ok(hits) = tokio::task::spawn_blocking(move || job.run()).await else {
            self.status(Kind::No, Some(tag), None, "SEARCH failed: server error");
            return;
        };
        let hits = hits.into_iter().filter_map(NonZeroU32::new).collect();
        self.data(Data::Search(hits));
        self.status(
            Kind::Ok,
            Some(tag),
            None,
            if uid {
                "UID SEARCH completed"
            } else {
                "SEARCH completed"
            },
        );
    }
}

/// One SEARCH, owned so it can run on a blocking thread.
struct SearchJob {
    ctx: Arc<Context>,
    user: String,
    folder: String,
    snap: Snapshot,
    view: Vec<(u32, Flags)>,
    recent: HashSet<u32>,
    criteria: Vec<SearchKey<'static>>,
    uid: bool,
}

impl SearchJob {
    /// The matching sequence numbers (or UIDs).
    fn run(self) -> Vec<u32> {
        let largest_uid = self.view.last().map(|(u, _)| *u).unwrap_or(0);
        let count = self.view.len() as u32;
        let mut hits = Vec::new();
        for (i, &(u, flags)) in self.view.iter().enumerate() {
            let meta = self
                .snap
                .messages
                .binary_search_by_key(&u, |m| m.uid)
                .ok()
                .map(|p| &self.snap.messages[p]);
            let mut c = Candidate {
                seq: i as u32 + 1,
                uid: u,
                flags,
                recent: self.recent.contains(&u),
                meta,
                keywords: &self.snap.keywords,
                content: None,
            };
            let (ctx, user, folder) = (&self.ctx, &self.user, &self.folder);
            let mut read = |c: &mut Candidate<'_>| {
                if c.content.is_none() {
                    let raw = ctx
                        .store
                        .read(user, folder, c.uid)
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    c.content = Some(load(&raw));
                }
            };
            let all = self
                .criteria
                .iter()
                .all(|k| matches(k, &mut c, count, largest_uid, &mut read));
            if all {
                hits.push(if self.uid { u } else { i as u32 + 1 });
            }
        }
        hits
    }
}

/// True if the message has keyword `name` (case-insensitive, RFC 3501 §6.4.4).
fn has_keyword(c: &Candidate<'_>, name: &str) -> bool {
    c.keywords
        .iter()
        .position(|k| k.eq_ignore_ascii_case(name))
        .is_some_and(|i| c.flags.has(Flags::KEYWORD0 << i))
}

fn header_has(c: &Content, name: &str, needle: &[u8]) -> bool {
    let needle = lower(needle);
    c.headers
        .iter()
        .any(|(n, v)| n == name && contains(v.as_bytes(), &needle))
}

fn matches<'m>(
    key: &SearchKey<'_>,
    c: &mut Candidate<'m>,
    count: u32,
    largest_uid: u32,
    read: &mut dyn FnMut(&mut Candidate<'m>),
) -> bool {
    let internal = c.meta.and_then(|m| date_of(m.internal_date));
    match key {
        SearchKey::All => true,
        SearchKey::And(keys) => keys
            .as_ref()
            .iter()
            .all(|k| matches(k, c, count, largest_uid, read)),
        SearchKey::Or(a, b) => {
            matches(a, c, count, largest_uid, read) || matches(b, c, count, largest_uid, read)
        }
        SearchKey::Not(k) => !matches(k, c, count, largest_uid, read),
        SearchKey::SequenceSet(set) => in_set(set, c.seq, count),
        SearchKey::Uid(set) => in_set(set, c.uid, largest_uid),
        SearchKey::Answered => c.flags.has(Flags::ANSWERED),
        SearchKey::Unanswered => !c.flags.has(Flags::ANSWERED),
        SearchKey::Deleted => c.flags.has(Flags::DELETED),
        SearchKey::Undeleted => !c.flags.has(Flags::DELETED),
        SearchKey::Draft => c.flags.has(Flags::DRAFT),
        SearchKey::Undraft => !c.flags.has(Flags::DRAFT),
        SearchKey::Flagged => c.flags.has(Flags::FLAGGED),
        SearchKey::Unflagged => !c.flags.has(Flags::FLAGGED),
        SearchKey::Seen => c.flags.has(Flags::SEEN),
        SearchKey::Unseen => !c.flags.has(Flags::SEEN),
        SearchKey::Recent => c.recent,
        SearchKey::New => c.recent && !c.flags.has(Flags::SEEN),
        SearchKey::Old => !c.recent,
        SearchKey::Keyword(k) => has_keyword(c, k.as_ref()),
        SearchKey::Unkeyword(k) => !has_keyword(c, k.as_ref()),
        SearchKey::Larger(n) => c.meta.is_some_and(|m| m.size > *n as u64),
        SearchKey::Smaller(n) => c.meta.is_some_and(|m| m.size < *n as u64),
        SearchKey::Since(d) => internal.is_some_and(|x| x >= *d.as_ref()),
        SearchKey::Before(d) => internal.is_some_and(|x| x < *d.as_ref()),
        SearchKey::On(d) => internal.is_some_and(|x| x == *d.as_ref()),
        SearchKey::SentSince(d) | SearchKey::SentBefore(d) | SearchKey::SentOn(d) => {
            read(c);
            let sent = c.content.as_ref().and_then(|x| x.sent);
            sent.is_some_and(|s| match key {
                SearchKey::SentSince(_) => s >= *d.as_ref(),
                SearchKey::SentBefore(_) => s < *d.as_ref(),
                _ => s == *d.as_ref(),
            })
        }
        SearchKey::From(s)
        | SearchKey::To(s)
        | SearchKey::Cc(s)
        | SearchKey::Bcc(s)
        | SearchKey::Subject(s) => {
            let name = match key {
                SearchKey::From(_) => "from",
                SearchKey::To(_) => "to",
                SearchKey::Cc(_) => "cc",
                SearchKey::Bcc(_) => "bcc",
                _ => "subject",
            };
            read(c);
            c.content
                .as_ref()
                .is_some_and(|x| header_has(x, name, s.as_ref()))
        }
        SearchKey::Header(name, value) => {
            read(c);
            let name = String::from_utf8_lossy(name.as_ref()).to_ascii_lowercase();
            c.content
                .as_ref()
                .is_some_and(|x| header_has(x, &name, value.as_ref()))
        }
        SearchKey::Body(s) => {
            read(c);
            let needle = lower(s.as_ref());
            c.content
                .as_ref()
                .is_some_and(|x| contains(&x.body, &needle))
        }
        SearchKey::Text(s) => {
            read(c);
            let needle = lower(s.as_ref());
            c.content.as_ref().is_some_and(|x| {
                contains(&x.body, &needle)
                    || x.headers.iter().any(|(n, v)| {
                        contains(n.as_bytes(), &needle) || contains(v.as_bytes(), &needle)
                    })
            })
        }
    }
}
