//! The filter stage between DATA and delivery.
//!
//! Filters (malware scanner, spam filter) see the message and the results of
//! the authentication checks and return a [`Verdict`]: refuse with a reply, or
//! accept with headers to add and a folder to file into. The SMTP side runs
//! them in order; the first refusal wins, headers accumulate, and a `Junk`
//! folder from any filter wins over `INBOX`.
//!
//! [`build`] makes the list the SMTP side runs: the malware scanner
//! ([`malware`]) first, then the spam filter ([`spam`]), each as the config says.

pub mod malware;
pub mod spam;

use std::sync::Arc;

use crate::auth::AuthResult;
use crate::config::{Config, ScannerEngine};

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
    /// SPF result (RFC 8601 §2.7.2); `none` on authenticated submission.
    pub spf: AuthResult,
    /// DKIM result (RFC 8601 §2.7.1); `none` on authenticated submission.
    pub dkim: AuthResult,
    /// DMARC result (RFC 7489 §11.2); `none` on authenticated submission.
    pub dmarc: AuthResult,
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
#[error("{filter}: {source}")]
pub struct FilterError {
    /// Which filter failed.
    pub filter: &'static str,
    /// What went wrong (the filter's own error type).
    pub source: Box<dyn std::error::Error + Send + Sync>,
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

impl<F: Filter + ?Sized> Filter for Arc<F> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn check(&self, input: &FilterInput<'_>) -> Result<Verdict, FilterError> {
        (**self).check(input)
    }
}

/// The filters of a server and a handle on its spam filter for training.
#[derive(Default)]
pub struct Filters {
    /// In the order [`run_stage`] runs them.
    pub list: Vec<Box<dyn Filter>>,
    /// The spam filter, when enabled (for `train`: the IMAP Junk hook).
    pub spam: Option<Arc<spam::SpamFilter>>,
}

impl std::fmt::Debug for Filters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.list.iter().map(|x| x.name()).collect();
        f.debug_struct("Filters").field("list", &names).finish()
    }
}

/// Builds the filters the config asks for: the scanner unless
/// `scanner.engine` is `off`, the spam filter when `spam.enabled`.
pub fn build_filters(config: &Config) -> Result<Filters, crate::Error> {
    let mut filters = Filters::default();
    let scanner = match (config.scanner.engine, &config.scanner.precompiled) {
        (ScannerEngine::Off, _) => None,
        (ScannerEngine::Builtin, Some(rules)) => {
            Some(malware::MalwareFilter::from_precompiled(&rules.0)?)
        }
        (ScannerEngine::Builtin, None) => Some(malware::MalwareFilter::builtin(
            config.scanner.rules_dir.as_deref(),
        )?),
        (ScannerEngine::Clamd(addr), _) => Some(malware::MalwareFilter::clamd(addr)),
    };
    if let Some(scanner) = scanner {
        filters.list.push(Box::new(scanner));
    }
    if config.spam.enabled {
        if config.spam.reject_threshold < config.spam.tag_threshold {
            return Err(crate::Error::Setup(format!(
                "spam: reject_threshold {} is below tag_threshold {}; raise it or lower the tag threshold",
                config.spam.reject_threshold, config.spam.tag_threshold
            )));
        }
        let spam = Arc::new(spam::SpamFilter::new(
            config.spam.rules.as_deref(),
            Some(&config.data_dir),
            config.spam.tag_threshold,
            config.spam.reject_threshold,
        )?);
        filters.list.push(Box::new(spam.clone()));
        filters.spam = Some(spam);
    }
    Ok(filters)
}

/// The filter list alone (see [`build_filters`]).
pub fn build(config: &Config) -> Result<Vec<Box<dyn Filter>>, crate::Error> {
    build_filters(config).map(|f| f.list)
}

/// The spam filter learns from IMAP moves into and out of `Junk`, on its
/// training thread (see [`spam::trainer`]): never on the caller's (async)
/// thread, and the model file is not rewritten per message.
impl JunkTraining for spam::SpamFilter {
    fn learn(&self, message: &[u8], spam: bool) {
        if !self.train_later(message, spam) {
            tracing::warn!(spam, "junk training queue full, message not learned");
        }
    }
}
