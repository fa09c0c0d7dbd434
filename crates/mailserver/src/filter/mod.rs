//! The filter stage between DATA and delivery.
//!
//! Filters (malware scanner, spam filter) see the message and the results of
//! the authentication checks and return a [`Verdict`]: refuse with a reply, or
//! accept with headers to add and a folder to file into. The SMTP side runs
//! them in order; the first refusal wins, headers accumulate, and a `Junk`
//! folder from any filter wins over `INBOX`.

/// What the filters know about the message besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct FilterInput<'a> {
    /// The raw message as received (headers and body, CRLF line ends).
    pub message: &'a [u8],
    /// True when the message came in by authenticated submission.
    pub authenticated: bool,
    /// Envelope sender (empty for the null sender).
    pub mail_from: &'a str,
    /// Envelope recipients.
    pub rcpt_to: &'a [String],
    /// SPF result keyword (RFC 8601 §2.7.2: `pass`, `fail`, `softfail`, `neutral`, `none`, `temperror`, `permerror`).
    pub spf: &'a str,
    /// DKIM result keyword (RFC 8601 §2.7.1).
    pub dkim: &'a str,
    /// DMARC result keyword (RFC 7489 §11.2).
    pub dmarc: &'a str,
}

/// A refusal: the SMTP reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Basic reply code (RFC 5321 §4.2), e.g. 554.
    pub code: u16,
    /// Enhanced status code (RFC 3463), e.g. `5.7.1`.
    pub status: &'static str,
    /// Human-readable text, e.g. the signature name.
    pub text: String,
}

/// The outcome of one filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Deliver, adding these header fields, into this folder (`None`: INBOX).
    Accept {
        /// Header fields to prepend, name and value.
        headers: Vec<(String, String)>,
        /// Folder to file into; `None` keeps the default.
        folder: Option<String>,
    },
    /// Refuse the message.
    Refuse(Refusal),
}

/// An error of a filter: the message can be neither accepted nor refused
/// for sure, so the SMTP side answers `451 4.7.0` (never silent acceptance).
#[derive(Debug, thiserror::Error)]
#[error("{filter}: {message}")]
pub struct FilterError {
    /// Which filter failed.
    pub filter: &'static str,
    /// What went wrong.
    pub message: String,
}

/// One filter of the filter stage.
pub trait Filter: Send + Sync {
    /// The filter's name for logs and headers.
    fn name(&self) -> &'static str;
    /// Looks at one message.
    fn check(&self, input: &FilterInput<'_>) -> Result<Verdict, FilterError>;
}

/// The combined result of all filters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StageResult {
    /// Header fields to prepend, in order.
    pub headers: Vec<(String, String)>,
    /// The folder to file into (`None`: INBOX).
    pub folder: Option<String>,
}

/// Runs `filters` in order. `Ok(Err(refusal))` is a refusal; `Err` a filter failure.
pub fn run_stage(
    filters: &[Box<dyn Filter>],
    input: &FilterInput<'_>,
) -> Result<Result<StageResult, Refusal>, FilterError> {
    let mut result = StageResult::default();
    for filter in filters {
        match filter.check(input)? {
            Verdict::Refuse(r) => return Ok(Err(r)),
            Verdict::Accept { headers, folder } => {
                result.headers.extend(headers);
                if folder.is_some() {
                    result.folder = folder;
                }
            }
        }
    }
    Ok(Ok(result))
}

/// The spam filter's training hook: IMAP calls it when a user moves or
/// copies a message into `Junk` (`spam == true`) or out of it (`false`).
/// The spam filter provides the implementation; the server holds it as
/// `Option<Arc<dyn JunkTraining>>` in its context.
pub trait JunkTraining: Send + Sync {
    /// Learns one message as spam or as ham.
    fn learn(&self, message: &[u8], spam: bool);
}
