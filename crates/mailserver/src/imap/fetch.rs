//! FETCH (RFC 3501 §6.4.5, §7.4.2): FLAGS, UID, INTERNALDATE, RFC822.SIZE,
//! ENVELOPE, BODY, BODYSTRUCTURE, BODY[section]<partial>, BODY.PEEK, RFC822,
//! RFC822.HEADER, RFC822.TEXT. ENVELOPE and BODYSTRUCTURE come from the
//! message as `mail-parser` parses it; sections are cut from the raw bytes.

use std::num::NonZeroU32;
use std::sync::Arc;

use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, MultiPartExtensionData, SinglePartExtensionData,
    SpecificFields,
};
use imap_codec::imap_types::core::{AString, IString, Literal, NString, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::envelope::{Address, Envelope};
use imap_codec::imap_types::fetch::{MessageDataItem, MessageDataItemName, Section};
use imap_codec::imap_types::response::Data;
use mail_parser::{HeaderName, Message, MimeHeaders, PartType};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::selected::flag_fetch;
use crate::message::{header_end, split_header};
use crate::store::{FlagOp, Flags, MessageMeta, Snapshot};

/// An nstring from text (quoted when possible, else a literal).
fn nstr(s: Option<&str>) -> NString<'static> {
    match s {
        Some(s) => NString::try_from(s.to_string()).unwrap_or(NString::NIL),
        None => NString::NIL,
    }
}

fn istr(s: &str) -> IString<'static> {
    IString::try_from(s.to_string())
        .unwrap_or_else(|_| IString::try_from("").expect("empty quoted"))
}

/// Octets as an nstring literal (NUL, which a literal may not carry, becomes a space).
fn nbytes(b: &[u8]) -> NString<'static> {
    let mut v = b.to_vec();
    for c in v.iter_mut() {
        if *c == 0 {
            *c = b' ';
        }
    }
    Literal::try_from(v)
        .map(NString::from)
        .unwrap_or(NString::NIL)
}

/// The header fields of a header block, each with its folded lines.
pub(crate) fn fields(header: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out: Vec<(&[u8], &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let eol = header[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(header.len(), |p| i + p + 1);
        let next_is_continuation = header.get(eol).is_some_and(|&b| b == b' ' || b == b'\t');
        if !next_is_continuation {
            let field = &header[start..eol];
            if field.trim_ascii().is_empty() {
                break;
            }
            if let Some(colon) = field.iter().position(|&b| b == b':') {
                out.push((&field[..colon], field));
            }
            start = eol;
        }
        i = eol;
    }
    out
}

/// HEADER.FIELDS / HEADER.FIELDS.NOT (RFC 3501 §6.4.5): matching fields plus the empty line.
fn header_fields(header: &[u8], names: &[AString<'_>], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, field) in fields(header) {
        let hit = names
            .iter()
            .any(|n| n.as_ref().eq_ignore_ascii_case(name.trim_ascii()));
        if hit != not {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The MIME header and body of part `path` (RFC 3501 §6.4.5 part numbering).
/// A message/rfc822 part is parsed again from its own bytes when descended into.
fn locate(raw: &[u8], path: &[NonZeroU32]) -> Option<(Vec<u8>, Vec<u8>)> {
    let msg = crate::message::parse_bounded(raw)?;
    let mut idx = 0usize;
    for (k, n) in path.iter().enumerate() {
        let n = n.get() as usize;
        let part = msg.parts.get(idx)?;
        match &part.body {
            PartType::Multipart(children) => idx = *children.get(n - 1)? as usize,
            PartType::Message(_) if k > 0 => {
                let body = raw.get(part.offset_body as usize..part.offset_end as usize)?;
                return locate(body, &path[k..]);
            }
            _ if k == 0 && n == 1 => {}
            _ => return None,
        }
    }
    let part = msg.parts.get(idx)?;
    let (h, b, e) = (
        part.offset_header as usize,
        part.offset_body as usize,
        part.offset_end as usize,
    );
    Some((
        raw.get(h..b)?.to_vec(),
        raw.get(b..e.min(raw.len()))?.to_vec(),
    ))
}

/// The bytes of a BODY[section].
fn section_bytes(raw: &[u8], section: Option<&Section<'_>>) -> Vec<u8> {
    let split = |m: &[u8]| {
        let (header, body) = split_header(m);
        (header.to_vec(), body.to_vec())
    };
    let body_of = |part: &Option<imap_codec::imap_types::fetch::Part>| -> Option<Vec<u8>> {
        match part {
            None => Some(raw.to_vec()),
            Some(p) => locate(raw, p.0.as_ref()).map(|(_, b)| b),
        }
    };
    match section {
        None => raw.to_vec(),
        Some(Section::Part(p)) => locate(raw, p.0.as_ref())
            .map(|(_, b)| b)
            .unwrap_or_default(),
        Some(Section::Mime(p)) => locate(raw, p.0.as_ref())
            .map(|(h, _)| h)
            .unwrap_or_default(),
        Some(Section::Header(p)) => body_of(p).map(|m| split(&m).0).unwrap_or_default(),
        Some(Section::Text(p)) => body_of(p).map(|m| split(&m).1).unwrap_or_default(),
        Some(Section::HeaderFields(p, names)) => body_of(p)
            .map(|m| header_fields(&split(&m).0, names.as_ref(), false))
            .unwrap_or_default(),
        Some(Section::HeaderFieldsNot(p, names)) => body_of(p)
            .map(|m| header_fields(&split(&m).0, names.as_ref(), true))
            .unwrap_or_default(),
    }
}

fn raw_header(msg: &Message<'_>, name: HeaderName<'static>) -> Option<String> {
    msg.header_raw(name)
        .map(|v| v.replace(['\r', '\n'], "").trim().to_string())
}

fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<Address<'static>> {
    let mut out = Vec::new();
    let one = |addr: &mail_parser::Addr<'_>| {
        let email = addr.address.as_deref().unwrap_or("");
        // RFC 3501 §7.4.2: a source route `@route:` goes into the adl.
        let (route, email) = match email.split_once(':') {
            Some((r, rest)) if r.starts_with('@') => (Some(r), rest),
            _ => (None, email),
        };
        let (local, host) = email.rsplit_once('@').unwrap_or((email, ""));
        Address {
            name: nstr(addr.name.as_deref()),
            adl: nstr(route),
            mailbox: nstr(Some(local)),
            host: nstr(Some(host)),
        }
    };
    // A group member without an address (only a comment) is no member.
    let real = |a: &&mail_parser::Addr<'_>| a.address.as_deref().is_some_and(|e| !e.is_empty());
    match a {
        Some(mail_parser::Address::List(list)) => out.extend(list.iter().map(one)),
        Some(mail_parser::Address::Group(groups)) => {
            for g in groups {
                if g.name.is_none() {
                    out.extend(g.addresses.iter().filter(real).map(one));
                    continue;
                }
                // RFC 3501 §7.4.2: group start (NIL NIL name NIL) and end (all NIL).
                out.push(Address {
                    name: NString::NIL,
                    adl: NString::NIL,
                    mailbox: nstr(g.name.as_deref()),
                    host: NString::NIL,
                });
                out.extend(g.addresses.iter().filter(real).map(one));
                out.push(Address {
                    name: NString::NIL,
                    adl: NString::NIL,
                    mailbox: NString::NIL,
                    host: NString::NIL,
                });
            }
        }
        None => {}
    }
    out
}

/// ENVELOPE (RFC 3501 §7.4.2).
pub(crate) fn envelope(msg: &Message<'_>) -> Envelope<'static> {
    let from = addresses(msg.from());
    let sender = match msg.sender() {
        Some(s) => addresses(Some(s)),
        None => from.clone(),
    };
    let reply_to = match msg.reply_to() {
        Some(s) => addresses(Some(s)),
        None => from.clone(),
    };
    Envelope {
        date: nstr(raw_header(msg, HeaderName::Date).as_deref()),
        subject: nstr(raw_header(msg, HeaderName::Subject).as_deref()),
        from,
        sender,
        reply_to,
        to: addresses(msg.to()),
        cc: addresses(msg.cc()),
        bcc: addresses(msg.bcc()),
        in_reply_to: nstr(raw_header(msg, HeaderName::InReplyTo).as_deref()),
        message_id: nstr(raw_header(msg, HeaderName::MessageId).as_deref()),
    }
}

fn params(ct: Option<&mail_parser::ContentType<'_>>) -> Vec<(IString<'static>, IString<'static>)> {
    ct.and_then(|c| c.attributes())
        .map(|attrs| {
            attrs
                .iter()
                .map(|a| (istr(&a.name.to_ascii_uppercase()), istr(&a.value)))
                .collect()
        })
        .unwrap_or_default()
}

/// BODY / BODYSTRUCTURE (RFC 3501 §7.4.2) of part `idx` of `msg` (raw: its bytes).
fn structure(
    msg: &Message<'_>,
    raw: &[u8],
    idx: usize,
    ext: bool,
    depth: u32,
) -> Option<BodyStructure<'static>> {
    let part = msg.parts.get(idx)?;
    let ct = part.content_type();
    let ctype = ct
        .map(|c| c.ctype().to_ascii_uppercase())
        .unwrap_or_else(|| "TEXT".into());
    let subtype = ct
        .and_then(|c| c.subtype())
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_else(|| {
            if ctype == "TEXT" {
                "PLAIN".into()
            } else {
                "OCTET-STREAM".into()
            }
        });
    let (b, e) = (
        part.offset_body as usize,
        (part.offset_end as usize).min(raw.len()),
    );
    let body = raw.get(b..e).unwrap_or_default();
    if let PartType::Multipart(children) = &part.body
        && depth < 32
    {
        let bodies: Vec<BodyStructure<'static>> = children
            .iter()
            .filter_map(|&c| structure(msg, raw, c as usize, ext, depth + 1))
            .collect();
        if let Ok(bodies) = Vec1::try_from(bodies) {
            return Some(BodyStructure::Multi {
                bodies,
                subtype: istr(&subtype),
                extension_data: ext.then(|| MultiPartExtensionData {
                    parameter_list: params(ct),
                    tail: None,
                }),
            });
        }
    }
    let mut parameter_list = params(ct);
    if ctype == "TEXT" && parameter_list.is_empty() {
        parameter_list.push((istr("CHARSET"), istr("us-ascii")));
    }
    let basic = BasicFields {
        parameter_list,
        id: nstr(part.content_id().map(|i| format!("<{i}>")).as_deref()),
        description: nstr(part.content_description()),
        content_transfer_encoding: istr(
            &part
                .content_transfer_encoding()
                .unwrap_or("7bit")
                .to_ascii_uppercase(),
        ),
        size: body.len() as u32,
    };
    let lines = body.iter().filter(|&&c| c == b'\n').count() as u32;
    let specific = if ctype == "TEXT" {
        SpecificFields::Text {
            subtype: istr(&subtype),
            number_of_lines: lines,
        }
    } else if ctype == "MESSAGE" && subtype == "RFC822" && depth < 32 {
        match crate::message::parse_bounded(body) {
            Some(inner) => match structure(&inner, body, 0, ext, depth + 1) {
                Some(bs) => SpecificFields::Message {
                    envelope: Box::new(envelope(&inner)),
                    body_structure: Box::new(bs),
                    number_of_lines: lines,
                },
                None => SpecificFields::Basic {
                    r#type: istr(&ctype),
                    subtype: istr(&subtype),
                },
            },
            None => SpecificFields::Basic {
                r#type: istr(&ctype),
                subtype: istr(&subtype),
            },
        }
    } else {
        SpecificFields::Basic {
            r#type: istr(&ctype),
            subtype: istr(&subtype),
        }
    };
    let extension_data = ext.then(|| SinglePartExtensionData {
        md5: NString::NIL,
        tail: Some(Disposition {
            disposition: part.content_disposition().map(|d| {
                let list = d
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|x| (istr(&x.name.to_ascii_uppercase()), istr(&x.value)))
                            .collect()
                    })
                    .unwrap_or_default();
                (istr(&d.ctype().to_ascii_uppercase()), list)
            }),
            tail: None,
        }),
    });
    Some(BodyStructure::Single {
        body: Body { basic, specific },
        extension_data,
    })
}

/// The BODYSTRUCTURE of a whole message.
pub(crate) fn body_structure(raw: &[u8], ext: bool) -> Option<BodyStructure<'static>> {
    let msg = crate::message::parse_bounded(raw)?;
    structure(&msg, raw, 0, ext, 0)
}

fn internal_date(secs: i64) -> Option<DateTime> {
    let dt = chrono::DateTime::from_timestamp(secs, 0)?.fixed_offset();
    DateTime::try_from(dt).ok()
}

/// What a FETCH command needs, worked out once for all its messages.
struct FetchPlan {
    /// ENVELOPE is asked (served from the shared cache when it has it).
    envelope: bool,
    /// An item other than ENVELOPE needs the message's bytes...
    content: bool,
    /// ... and the header section is all it needs.
    header_only: bool,
    /// An item sets `\Seen` (RFC 3501 §6.4.5: BODY[], not BODY.PEEK[]).
    sets_seen: bool,
}

impl FetchPlan {
    fn of(names: &[MessageDataItemName<'_>]) -> Self {
        let mut plan = FetchPlan {
            envelope: false,
            content: false,
            header_only: true,
            sets_seen: false,
        };
        for n in names {
            match n {
                MessageDataItemName::Envelope => plan.envelope = true,
                MessageDataItemName::Rfc822Header
                | MessageDataItemName::BodyExt {
                    section:
                        Some(
                            Section::Header(None)
                            | Section::HeaderFields(None, _)
                            | Section::HeaderFieldsNot(None, _),
                        ),
                    ..
                } => plan.content = true,
                MessageDataItemName::Body
                | MessageDataItemName::BodyStructure
                | MessageDataItemName::BodyExt { .. }
                | MessageDataItemName::Rfc822
                | MessageDataItemName::Rfc822Text
                | MessageDataItemName::Binary { .. }
                | MessageDataItemName::BinarySize { .. } => {
                    plan.content = true;
                    plan.header_only = false;
                }
                _ => {}
            }
            plan.sets_seen |= matches!(
                n,
                MessageDataItemName::BodyExt { peek: false, .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Text
            );
        }
        plan
    }
}

/// The folder a FETCH reads, as it was when the command started.
struct FetchFolder<'a> {
    user: &'a str,
    name: &'a str,
    read_only: bool,
    snap: &'a Snapshot,
    /// The folder's key in the envelope cache.
    cache_key: String,
}

/// One message as the items of a FETCH see it.
struct Source<'a> {
    uid: u32,
    flags: Flags,
    recent: bool,
    meta: &'a MessageMeta,
    keywords: &'a [String],
    /// Its bytes, as far as the items need them (empty when none does).
    raw: &'a [u8],
    envelope: Option<&'a Envelope<'static>>,
}

/// The data item for `name` (RFC 3501 §7.4.2), `None` for an item that is
/// not answered.
fn item<'n>(name: &MessageDataItemName<'n>, m: &Source<'_>) -> Option<MessageDataItem<'n>> {
    let raw = m.raw;
    match name {
        MessageDataItemName::Uid => NonZeroU32::new(m.uid).map(MessageDataItem::Uid),
        MessageDataItemName::Flags => Some(MessageDataItem::Flags(flag_fetch(
            m.flags, m.recent, m.keywords,
        ))),
        MessageDataItemName::InternalDate => {
            internal_date(m.meta.internal_date).map(MessageDataItem::InternalDate)
        }
        MessageDataItemName::Rfc822Size => Some(MessageDataItem::Rfc822Size(m.meta.size as u32)),
        MessageDataItemName::Envelope => m.envelope.map(|e| MessageDataItem::Envelope(e.clone())),
        MessageDataItemName::Body => body_structure(raw, false).map(MessageDataItem::Body),
        MessageDataItemName::BodyStructure => {
            body_structure(raw, true).map(MessageDataItem::BodyStructure)
        }
        MessageDataItemName::Rfc822 => Some(MessageDataItem::Rfc822(nbytes(raw))),
        MessageDataItemName::Rfc822Header => {
            Some(MessageDataItem::Rfc822Header(nbytes(split_header(raw).0)))
        }
        MessageDataItemName::Rfc822Text => {
            Some(MessageDataItem::Rfc822Text(nbytes(split_header(raw).1)))
        }
        MessageDataItemName::BodyExt {
            section, partial, ..
        } => {
            let mut data = section_bytes(raw, section.as_ref());
            // RFC 3501 §6.4.5 partial: <origin.octets>.
            if let Some((origin, len)) = partial {
                let start = (*origin as usize).min(data.len());
                let end = start.saturating_add(len.get() as usize).min(data.len());
                data = data[start..end].to_vec();
            }
            Some(MessageDataItem::BodyExt {
                section: section.clone(),
                origin: partial.map(|p| p.0),
                data: nbytes(&data),
            })
        }
        _ => None,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Answers FETCH for the view indexes `targets`.
    pub(crate) async fn fetch(&mut self, targets: &[usize], names: &[MessageDataItemName<'_>]) {
        let user = self.user().to_string();
        let Some(sel) = &self.selected else { return };
        let (name, read_only) = (sel.name.clone(), sel.read_only);
        let Ok(snap) = self.ctx.store.sync(&user, &name) else {
            return;
        };
        let folder = FetchFolder {
            user: &user,
            name: &name,
            read_only,
            snap: &snap,
            cache_key: format!("{user}\0{name}"),
        };
        let plan = FetchPlan::of(names);
        for &i in targets {
            let Some(items) = self.fetch_items(&folder, &plan, i, names) else {
                continue;
            };
            let (Some(seq), Ok(items)) = (NonZeroU32::new(i as u32 + 1), Vec1::try_from(items))
            else {
                continue;
            };
            self.data(Data::Fetch { seq, items });
            if !self.flush_if_large().await {
                return;
            }
        }
    }

    /// The items of the message at view index `i`; `None` when it was
    /// expunged elsewhere (reported at the next NOOP) or cannot be read.
    fn fetch_items<'n>(
        &mut self,
        folder: &FetchFolder<'_>,
        plan: &FetchPlan,
        i: usize,
        names: &[MessageDataItemName<'n>],
    ) -> Option<Vec<MessageDataItem<'n>>> {
        let sel = self.selected.as_ref()?;
        let &(uid, flags) = sel.view.get(i)?;
        let recent = sel.recent.contains(&uid);
        let messages = &folder.snap.messages;
        let meta = &messages[messages.binary_search_by_key(&uid, |m| m.uid).ok()?];
        let cached = if plan.envelope {
            let (validity, base) = (folder.snap.uid_validity, &meta.base);
            self.ctx
                .envelopes
                .get(&folder.cache_key, validity, uid, base)
        } else {
            None
        };
        let raw = if plan.content || (plan.envelope && cached.is_none()) {
            let mut raw = self.ctx.store.read(folder.user, folder.name, uid).ok()??;
            if plan.header_only {
                raw.truncate(header_end(&raw));
            }
            raw
        } else {
            Vec::new()
        };
        let (flags, flags_changed) = self.mark_seen(folder, plan, i, uid, flags);
        let envelope = match cached {
            Some(e) => Some(e),
            None if plan.envelope => self.parse_envelope(folder, meta, &raw),
            None => None,
        };
        let source = Source {
            uid,
            flags,
            recent,
            meta,
            keywords: &folder.snap.keywords,
            raw: &raw,
            envelope: envelope.as_deref(),
        };
        let mut items: Vec<MessageDataItem<'n>> = names
            .iter()
            .filter_map(|name| item(name, &source))
            .collect();
        if flags_changed && !names.contains(&MessageDataItemName::Flags) {
            items.push(MessageDataItem::Flags(flag_fetch(
                flags,
                recent,
                &folder.snap.keywords,
            )));
        }
        Some(items)
    }

    /// Sets `\Seen` when the FETCH asks for it (RFC 3501 §6.4.5: BODY[],
    /// not PEEK, sets it; added to the flags the message has now, §6.4.6,
    /// never a write-back). The flags after, and whether they changed.
    fn mark_seen(
        &mut self,
        folder: &FetchFolder<'_>,
        plan: &FetchPlan,
        i: usize,
        uid: u32,
        flags: Flags,
    ) -> (Flags, bool) {
        if !plan.sets_seen || folder.read_only || flags.has(Flags::SEEN) {
            return (flags, false);
        }
        let seen = Flags(Flags::SEEN);
        let store = &self.ctx.store;
        if let Ok(done) = store.store_flags(folder.user, folder.name, &[uid], FlagOp::Add, seen)
            && let Some(&(_, new)) = done.first()
        {
            if let Some(sel) = self.selected.as_mut() {
                sel.view[i].1 = new;
            }
            return (new, true);
        }
        (flags, false)
    }

    /// The ENVELOPE parsed from the message's header section, put in the
    /// shared cache for the next FETCH.
    fn parse_envelope(
        &self,
        folder: &FetchFolder<'_>,
        meta: &MessageMeta,
        raw: &[u8],
    ) -> Option<Arc<Envelope<'static>>> {
        let parsed = crate::message::parse_bounded(split_header(raw).0)?;
        let e = Arc::new(envelope(&parsed));
        let validity = folder.snap.uid_validity;
        self.ctx
            .envelopes
            .put(&folder.cache_key, validity, meta.uid, &meta.base, e.clone());
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"From: A <a@x.test>\r\nTo: b@y.test\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\npre\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nJVBERi0=\r\n--XX--\r\n";

    #[test]
    fn sections_of_a_multipart() {
        let one = NonZeroU32::new(1).unwrap();
        let two = NonZeroU32::new(2).unwrap();
        let p1 = imap_codec::imap_types::fetch::Part(Vec1::from(one));
        assert_eq!(
            section_bytes(MIXED, Some(&Section::Part(p1))),
            b"hello".to_vec()
        );
        let p2 = imap_codec::imap_types::fetch::Part(Vec1::from(two));
        assert_eq!(
            section_bytes(MIXED, Some(&Section::Part(p2))),
            b"JVBERi0=".to_vec()
        );
        let names = Vec1::from(AString::try_from("subject").unwrap());
        assert_eq!(
            section_bytes(MIXED, Some(&Section::HeaderFields(None, names))),
            b"Subject: hi\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn bodystructure_names_the_attachment() {
        let bs = body_structure(MIXED, true).unwrap();
        let wire = String::from_utf8(
            imap_codec::encode::Encoder::encode(
                &imap_codec::ResponseCodec::default(),
                &imap_codec::imap_types::response::Response::Data(Data::Fetch {
                    seq: NonZeroU32::new(1).unwrap(),
                    items: Vec1::from(MessageDataItem::BodyStructure(bs)),
                }),
            )
            .dump(),
        )
        .unwrap();
        assert!(wire.contains("\"APPLICATION\" \"PDF\""), "{wire}");
        assert!(wire.contains("\"MIXED\""), "{wire}");
        assert!(wire.contains("\"ATTACHMENT\""), "{wire}");
    }
}
