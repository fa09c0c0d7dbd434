//! Limits on the shape of a message, checked before any full parse.
//!
//! mail-parser builds a nested `message/rfc822` (RFC 2046 §5.2.1) as a
//! nested value with no depth limit, and dropping 40,000 of them overflows
//! the stack; it also keeps one part record per MIME part (RFC 2046 §5.1),
//! so a message of tiny parts costs far more memory than its size. Every
//! place that parses a whole message therefore goes through
//! [`parse_bounded`], which first runs [`check`]: one linear pass over the
//! raw bytes that walks the header sections and boundaries the way
//! mail-parser will, counting the nesting depth (multipart and message
//! levels alike, as Postfix's `mime_nesting_limit`, 100), the parts, the
//! fields of each header section and its size, without building any part.
//!
//! SMTP DATA (ports 25, 587, 465) and IMAP APPEND refuse a message over a
//! limit with a reply naming it (see docs/limits.md).
//! The same pass counts the `Received` fields of the top-level header
//! section for the hop limit (RFC 5321 §6.3).
//!
//! [`header_end`] is where a header section ends (RFC 5322 §2.1), for
//! every protocol that cuts a message into header and body.
//!
//! Non-features: the limits are not configurable per user; a message
//! refused by [`parse_bounded`] at a later stage (IMAP FETCH of a message
//! stored before the limits) is served as opaque bytes.

mod header;
mod scan;
#[cfg(test)]
mod tests;

use mail_parser::{Message, MessageParser};

pub use header::{header_end, split_header};
pub use scan::Shape;

/// MIME nesting depth (Postfix `mime_nesting_limit`).
pub const DEFAULT_MAX_DEPTH: usize = 100;
/// MIME parts per message, nested messages included.
pub const DEFAULT_MAX_PARTS: usize = 5_000;
/// Fields in one header section.
pub const DEFAULT_MAX_HEADER_FIELDS: usize = 1_000;
/// Bytes of one header section (the empty line included).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 1024 * 1024;
/// `Received` fields at which a message is refused as looping (RFC 5321
/// §6.3; Postfix `hopcount_limit` is 50, Exim's `received_headers_max` 30,
/// the issue asks for 100).
pub const DEFAULT_MAX_HOPS: usize = 100;

/// The limits [`check`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of multiparts and messages below the top level.
    pub max_depth: usize,
    /// Most parts (every header section that starts a part counts).
    pub max_parts: usize,
    /// Most fields in one header section.
    pub max_header_fields: usize,
    /// Largest header section in bytes.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            max_parts: DEFAULT_MAX_PARTS,
            max_header_fields: DEFAULT_MAX_HEADER_FIELDS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// Which limit a message is over. The text is the reply text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// MIME nesting deeper than the limit.
    #[error("Message nested more than {0} levels deep (MIME nesting limit)")]
    TooDeep(usize),
    /// More parts than the limit.
    #[error("Message has more than {0} MIME parts (MIME part limit)")]
    TooManyParts(usize),
    /// A header section with more fields than the limit.
    #[error("Message has a header section of more than {0} fields (header field limit)")]
    TooManyHeaderFields(usize),
    /// A header section larger than the limit.
    #[error("Message has a header section larger than {0} bytes (header size limit)")]
    HeaderTooLarge(usize),
    /// A structure that costs the parser more than a few passes over the
    /// bytes (multipart boundaries announced and never found, over and over).
    #[error("Message MIME structure too complex to parse (boundaries that never occur)")]
    TooComplex,
}

impl LimitError {
    /// True for limits on size (RFC 3463 X.3.4 "message too big for
    /// system"); false for limits on structure (X.6.0 "other or undefined
    /// media error").
    pub fn is_size(&self) -> bool {
        matches!(
            self,
            LimitError::TooManyHeaderFields(_) | LimitError::HeaderTooLarge(_)
        )
    }
}

/// Checks `raw` against `limits` in one linear pass; the shape on success.
pub fn check(raw: &[u8], limits: &Limits) -> Result<Shape, LimitError> {
    scan::Scanner::new(raw, limits).run(raw)
}

/// Parses `raw` with mail-parser after [`check`] with the default limits;
/// `None` when it is over a limit or not a message.
pub fn parse_bounded(raw: &[u8]) -> Option<Message<'_>> {
    parse_checked(raw).ok().flatten()
}

/// [`parse_bounded`] that tells a message over a limit (`Err`) from one
/// mail-parser cannot read (`Ok(None)`).
pub fn parse_checked(raw: &[u8]) -> Result<Option<Message<'_>>, LimitError> {
    check(raw, &Limits::default())?;
    Ok(MessageParser::default().parse(raw))
}
