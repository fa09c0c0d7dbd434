//! Delivery status notifications (RFC 3464) for permanently failed
//! recipients, as `multipart/report; report-type=delivery-status`
//! (RFC 6522) with the original header section (`text/rfc822-headers`).
//! Sent from the null reverse-path (RFC 5321 §4.5.5), never for a message
//! that itself had a null sender.

use super::{QueueError, QueuedMessage, RcptState};
use crate::message::split_header;
use crate::server::Context;
use crate::smtp::headers::{new_id, rfc5322_now};
use crate::store::{INBOX, StoreError};

/// Why a DSN could not be sent (the queue entry is kept and retried).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DsnError {
    /// Delivery into the local sender's Maildir failed.
    #[error(transparent)]
    Deliver(#[from] StoreError),
    /// Queueing it for a remote sender failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Builds the DSN of `record`'s failed recipients (None: nothing failed or
/// null sender).
pub fn build(hostname: &str, record: &QueuedMessage, original: &[u8]) -> Option<Vec<u8>> {
    if record.mail_from.is_empty() {
        return None;
    }
    let failed: Vec<_> = record
        .recipients
        .iter()
        .filter(|r| r.state == RcptState::Failed)
        .collect();
    if failed.is_empty() {
        return None;
    }
    let id = new_id();
    let boundary = format!("{id}/{hostname}");
    let date = rfc5322_now();
    let mut human = String::new();
    let mut machine = format!(
        "Reporting-MTA: dns; {hostname}\r\nX-Queue-ID: {}\r\n",
        record.id
    );
    for r in &failed {
        let result = r.last_result.clone().unwrap_or_default();
        human.push_str(&format!("<{}>: {}\r\n", r.address, result));
        // RFC 3464 §2.3: per-recipient fields; the status code from the
        // reply when it has one, 5.0.0 otherwise.
        let status = result
            .split_whitespace()
            .nth(1)
            .filter(|s| s.starts_with('5') && s.split('.').count() == 3)
            .unwrap_or("5.0.0");
        machine.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {}\r\n",
            r.address,
            result.replace(['\r', '\n'], " ")
        ));
    }
    let original_headers = String::from_utf8_lossy(split_header(original).0);
    let text = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.dsn@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This is the mail system at host {hostname}.\r\n\
         \r\n\
         Your message could not be delivered to one or more recipients.\r\n\
         \r\n\
         {human}\r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         {machine}\r\n\
         --{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {original_headers}\r\n\
         --{boundary}--\r\n",
        to = record.mail_from,
    );
    Some(text.into_bytes())
}

/// Sends the DSN of `record` to its sender: into the sender's Maildir when
/// the sender is local, through the queue (null sender) otherwise.
/// Blocking (fsync). `Ok` when there is nothing to send or it is durable.
pub fn send_failures(
    ctx: &Context,
    record: &QueuedMessage,
    original: &[u8],
) -> Result<(), DsnError> {
    let Some(dsn) = build(&ctx.config.hostname, record, original) else {
        return Ok(());
    };
    if ctx.accounts.exists(&record.mail_from) {
        ctx.store.deliver(&record.mail_from, INBOX, &dsn)?;
    } else {
        let to = std::slice::from_ref(&record.mail_from);
        ctx.queue.enqueue("", to, &dsn)?;
    }
    tracing::info!(id = %record.id, to = %record.mail_from, "DSN sent");
    Ok(())
}
