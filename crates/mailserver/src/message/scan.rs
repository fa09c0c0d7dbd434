//! The pre-parse pass: mail-parser's own part walk (its `MessageStream`
//! primitives, in the order `MessageParser::parse` calls them) with the
//! part records left out, so the boundaries and header sections found are
//! exactly the ones the full parse will find, and nothing is built.
//!
//! Linear: the stream only moves forward, every header section is parsed
//! once in a window of at most the header size limit, and the searches for
//! a boundary that never occurs (mail-parser scans to the end and comes
//! back) are charged to a work budget of a few passes over the message.

use std::borrow::Cow;

use mail_parser::parsers::MessageStream;
use mail_parser::{Header, HeaderName, HeaderValue, MessageParser};

use super::{LimitError, Limits};

/// mail-parser decodes and parses a base64 or quoted-printable
/// `message/rfc822` part, to this many levels (its `MAX_NESTED_ENCODED`).
const MAX_NESTED_ENCODED: usize = 3;

/// Bytes scanned by failed boundary searches, per byte of message, before
/// the structure is refused as too complex.
const WORK_PER_BYTE: usize = 8;

/// What the pass found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Deepest nesting of multiparts and messages (0: a single part).
    pub depth: usize,
    /// MIME parts, nested messages' parts included.
    pub parts: usize,
    /// `Received` fields in the top-level header section (RFC 5321 §6.3).
    pub hops: usize,
}

/// Where the walk is: mail-parser's `MessageParserState`, reduced to what
/// decides the structure.
struct State {
    /// The boundary that ends the current part.
    boundary: Option<Vec<u8>>,
    /// A message (top level or `message/rfc822`), not a multipart.
    message: bool,
    /// A `multipart/digest`: parts without Content-Type are messages
    /// (RFC 2046 §5.1.5).
    digest: bool,
}

/// How a part's body is encoded (RFC 2045 §6).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    None,
    Base64,
    QuotedPrintable,
}

pub(super) struct Scanner<'l> {
    limits: &'l Limits,
    parser: MessageParser,
    shape: Shape,
    work: usize,
    budget: usize,
    top_seen: bool,
}

impl<'l> Scanner<'l> {
    pub(super) fn new(raw: &[u8], limits: &'l Limits) -> Self {
        Self {
            limits,
            parser: MessageParser::default(),
            shape: Shape::default(),
            work: 0,
            budget: raw.len().saturating_mul(WORK_PER_BYTE).max(1 << 20),
            top_seen: false,
        }
    }

    pub(super) fn run(mut self, raw: &[u8]) -> Result<Shape, LimitError> {
        self.message(raw, 0, MAX_NESTED_ENCODED)?;
        Ok(self.shape)
    }

    fn depth(&mut self, depth: usize) -> Result<(), LimitError> {
        if depth > self.limits.max_depth {
            return Err(LimitError::TooDeep(self.limits.max_depth));
        }
        self.shape.depth = self.shape.depth.max(depth);
        Ok(())
    }

    /// Charges a failed search (it scanned to the end of `data`).
    fn charge(&mut self, scanned: usize) -> Result<(), LimitError> {
        self.work = self.work.saturating_add(scanned);
        if self.work > self.budget {
            return Err(LimitError::TooComplex);
        }
        Ok(())
    }

    /// One message (the top level, or a decoded `message/rfc822` part at
    /// `base` depth): mail-parser's `parse_` loop.
    fn message(&mut self, data: &[u8], base: usize, encoded: usize) -> Result<(), LimitError> {
        let mut stream = MessageStream::new(data);
        let mut state = State {
            boundary: None,
            message: true,
            digest: false,
        };
        let mut stack: Vec<State> = Vec::new();
        'outer: while let Some(headers) = self.headers(data, &mut stream)? {
            self.shape.parts += 1;
            if self.shape.parts > self.limits.max_parts {
                return Err(LimitError::TooManyParts(self.limits.max_parts));
            }
            let ctype = content_type(&headers);
            let mut kind = match &ctype {
                Some((t, _, _)) if t == "multipart" => Kind::Multipart,
                Some((t, Some(s), _)) if t == "message" && (s == "rfc822" || s == "global") => {
                    Kind::Message
                }
                None if state.digest => Kind::Message,
                _ => Kind::Leaf,
            };
            if kind == Kind::Multipart {
                let boundary = ctype.as_ref().and_then(|(_, _, b)| b.clone());
                if let Some(b) = boundary
                    && self.seek_next_part(data, &mut stream, &b)?
                {
                    // RFC 2046 §5.1.1: the parts start after the first
                    // boundary line.
                    let digest = ctype
                        .as_ref()
                        .is_some_and(|(_, s, _)| s.as_deref() == Some("digest"));
                    stack.push(std::mem::replace(
                        &mut state,
                        State {
                            boundary: Some(b),
                            message: false,
                            digest,
                        },
                    ));
                    self.depth(base + stack.len())?;
                    stream.skip_crlf();
                    continue;
                }
                kind = Kind::Leaf;
            }
            let encoding = transfer_encoding(&headers);
            if kind == Kind::Message && encoding == Encoding::None {
                // RFC 2046 §5.2.1: the body is a message; its parts end at
                // the enclosing boundary.
                let boundary = state.boundary.take();
                stack.push(std::mem::replace(
                    &mut state,
                    State {
                        boundary,
                        message: true,
                        digest: false,
                    },
                ));
                self.depth(base + stack.len())?;
                continue;
            }
            let boundary = state.boundary.clone().unwrap_or_default();
            let (end, body) = match encoding {
                Encoding::Base64 => stream.decode_base64_mime(&boundary),
                Encoding::QuotedPrintable => stream.decode_quoted_printable_mime(&boundary),
                Encoding::None => stream.mime_part(&boundary),
            };
            if end == usize::MAX {
                // mail-parser recovers: back to the part start, then to the
                // boundary or the end.
                let from = stream.offset();
                let (_, found) = stream.seek_part_end(state.boundary.as_deref());
                if !found {
                    self.charge(data.len() - from)?;
                    state.boundary = None;
                }
            } else if kind == Kind::Message && encoded > 0 {
                // An encoded message/rfc822: mail-parser parses the decoded
                // bytes as a message of its own, one level deeper.
                let depth = base + stack.len() + 1;
                self.depth(depth)?;
                let decoded: Cow<'_, [u8]> = body;
                self.message(&decoded, depth, encoded - 1)?;
            }
            if state.boundary.is_some() {
                loop {
                    if state.message {
                        // A nested message ended at its parent's boundary.
                        let Some(mut parent) = stack.pop() else {
                            break 'outer;
                        };
                        parent.boundary = state.boundary.take();
                        state = parent;
                    }
                    if !stream.is_multipart_end() {
                        break;
                    }
                    // `--boundary--`: the multipart ends; back to its parent.
                    let Some(parent) = stack.pop() else {
                        break 'outer;
                    };
                    state = parent;
                    let Some(b) = state.boundary.clone() else {
                        break 'outer;
                    };
                    let from = stream.offset();
                    if stream.seek_next_part_offset(&b).is_none() {
                        self.charge(data.len() - from)?;
                        break 'outer;
                    }
                }
            } else if stream.offset() >= data.len() {
                break;
            }
        }
        Ok(())
    }

    /// mail-parser's `seek_next_part`, charging a failed search.
    fn seek_next_part(
        &mut self,
        data: &[u8],
        stream: &mut MessageStream<'_>,
        boundary: &[u8],
    ) -> Result<bool, LimitError> {
        let from = stream.offset();
        if stream.seek_next_part(boundary) {
            return Ok(true);
        }
        self.charge(data.len() - from)?;
        Ok(false)
    }

    /// Parses the header section at the stream's offset, in a window of at
    /// most the size limit, after counting its field lines (so a section of
    /// a million one-byte fields is refused before any is built). `None`
    /// at the end of the data, as mail-parser stops there.
    fn headers<'d>(
        &mut self,
        data: &'d [u8],
        stream: &mut MessageStream<'d>,
    ) -> Result<Option<Vec<Header<'d>>>, LimitError> {
        let start = stream.offset();
        let window_end = data
            .len()
            .min(start.saturating_add(self.limits.max_header_bytes));
        let window = &data[start..window_end];
        let fields = field_lines(window);
        if fields > self.limits.max_header_fields {
            return Err(LimitError::TooManyHeaderFields(
                self.limits.max_header_fields,
            ));
        }
        let mut inner = MessageStream::new(window);
        let mut headers = Vec::new();
        let complete = inner.parse_headers(&self.parser, &mut headers);
        if !complete && window_end < data.len() {
            return Err(LimitError::HeaderTooLarge(self.limits.max_header_bytes));
        }
        if headers.len() > self.limits.max_header_fields {
            return Err(LimitError::TooManyHeaderFields(
                self.limits.max_header_fields,
            ));
        }
        if !self.top_seen {
            self.top_seen = true;
            self.shape.hops = headers
                .iter()
                .filter(|h| h.name == HeaderName::Received)
                .count();
        }
        stream.skip_bytes(inner.offset());
        Ok(complete.then_some(headers))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Multipart,
    Message,
    Leaf,
}

/// Lines that can start a header field (not a continuation) up to the
/// first blank line of `window`: an upper bound on the fields mail-parser
/// builds from it.
fn field_lines(window: &[u8]) -> usize {
    let mut count = 0;
    for line in window.split(|&b| b == b'\n') {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            break;
        }
        if !line[0].is_ascii_whitespace() {
            count += 1;
        }
    }
    count
}

/// Type, subtype and boundary of the last Content-Type field (mail-parser
/// takes the last one).
fn content_type(headers: &[Header<'_>]) -> Option<(String, Option<String>, Option<Vec<u8>>)> {
    let h = headers
        .iter()
        .rev()
        .find(|h| h.name == HeaderName::ContentType)?;
    let ct = h.value.as_content_type()?;
    Some((
        ct.ctype().to_string(),
        ct.subtype().map(str::to_string),
        ct.attribute("boundary").map(|b| b.as_bytes().to_vec()),
    ))
}

fn transfer_encoding(headers: &[Header<'_>]) -> Encoding {
    let value = headers
        .iter()
        .rev()
        .find(|h| h.name == HeaderName::ContentTransferEncoding)
        .map(|h| &h.value);
    match value {
        Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("base64") => Encoding::Base64,
        Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("quoted-printable") => {
            Encoding::QuotedPrintable
        }
        _ => Encoding::None,
    }
}
