//! The inbound pipeline after DATA on port 25 (docs/smtp.md, "Inbound on port 25", steps 3 and 4):
//! DKIM (RFC 6376) -> DMARC (RFC 7489) -> the filter stage -> trace header
//! fields (`Received`, `Authentication-Results` RFC 8601, `Received-SPF`
//! RFC 7208 §9.1) -> Maildir delivery, fsync'd before the `250`.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use super::headers::{new_id, received};
use super::reply::{self, Reply};
use super::session::{Session, Transaction};
use crate::auth::{AuthResult, DkimVerdict, check_message};
use crate::config::Action;
use crate::filter::{FilterError, FilterInput, Refusal, StageResult, run_stage};
use crate::server::Context;
use crate::store::{INBOX, JUNK, StoreError};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Runs the inbound checks on a received message and delivers it.
    pub(super) async fn receive(&mut self, tx: Transaction, message: Vec<u8>) -> Reply {
        let ctx = self.ctx.clone();
        let policy = ctx.config.policy.clone();
        let Some(spf) = tx.spf.clone() else {
            return reply::LOCAL_ERROR;
        };
        let Some(results) = check_message(
            &ctx.authenticator,
            &ctx.config.hostname,
            &message,
            &spf,
            policy.dkim_verify,
        )
        .await
        else {
            return reply::BAD_MESSAGE;
        };
        let auth = [spf.result(), results.dkim_result, results.dmarc_result];
        self.transcript.info(&format!(
            "spf={} dkim={} dmarc={}",
            auth[0], auth[1], auth[2]
        ));
        // RFC 6376 §6.1 with docs/smtp.md: signatures present and none valid.
        match (results.dkim, policy.dkim_invalid) {
            (DkimVerdict::Fail, Action::Reject) => return reply::DKIM_FAIL,
            (DkimVerdict::Fail, Action::Tempfail) => return reply::DKIM_TEMPERROR,
            (DkimVerdict::TempError, Action::Reject | Action::Tempfail) => {
                return reply::AUTH_TEMPERROR;
            }
            _ => {}
        }
        let mut folder = INBOX.to_string();
        // RFC 7489 §6.6.2 / §10.3: act on the domain owner's policy.
        if policy.dmarc_enforce {
            if results.dmarc_reject {
                return reply::DMARC_REJECT;
            }
            if results.dmarc_quarantine {
                folder = JUNK.to_string();
            }
        }
        if !self.reserve_for_filters(message.len()).await {
            return reply::NO_BUFFER_SPACE;
        }
        let (message, stage) =
            filter_stage(&ctx, message, false, &tx.mail_from, &tx.local, auth).await;
        let stage = match stage {
            Ok(stage) => stage,
            Err(reply) => return reply,
        };
        if let Some(f) = stage.folder {
            folder = f;
        }
        let id = new_id();
        let rcpt = (tx.local.len() == 1).then(|| tx.local[0].as_str());
        let mut head = received(&ctx.config.hostname, &self.params, &self.data, &id, rcpt);
        head.push_str(&results.authentication_results);
        head.push_str(&results.received_spf);
        for (name, value) in &stage.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        // The trace fields go in front of the message in place: a copy
        // would hold a second message-sized buffer outside the budget.
        let mut full = message;
        full.splice(0..0, head.into_bytes());
        match deliver_local(ctx, tx.local.clone(), folder.clone(), full).await {
            Ok(()) => {
                self.transcript.info(&format!(
                    "delivered {id} to {} ({folder})",
                    tx.local.join(", ")
                ));
                Reply::new(
                    250,
                    "2.0.0",
                    format!("Message accepted for delivery, id {id}"),
                )
            }
            Err(e) => delivery_failed(&e),
        }
    }
}

/// Runs the filter stage on a blocking thread and gives the message back:
/// the filters are CPU work (MIME walk, pattern scans, scoring) that would
/// otherwise hold one of the runtime's worker threads and stall the I/O of
/// every other session scheduled on it. `auth` are the SPF, DKIM and DMARC
/// results. `Err` is the reply that ends the transaction (see [`stage_reply`]).
pub(super) async fn filter_stage(
    ctx: &Arc<Context>,
    message: Vec<u8>,
    authenticated: bool,
    mail_from: &str,
    rcpt_to: &[String],
    auth: [AuthResult; 3],
) -> (Vec<u8>, Result<StageResult, Reply>) {
    if ctx.filters.is_empty() {
        return (message, Ok(StageResult::default()));
    }
    let (ctx, mail_from, rcpt_to) = (ctx.clone(), mail_from.to_string(), rcpt_to.to_vec());
    let joined = tokio::task::spawn_blocking(move || {
        let [spf, dkim, dmarc] = auth;
        let input = FilterInput {
            message: &message,
            authenticated,
            mail_from: &mail_from,
            rcpt_to: &rcpt_to,
            spf,
            dkim,
            dmarc,
        };
        let stage = run_stage(&ctx.filters, &input);
        (message, stage)
    })
    .await;
    let (message, outcome) = joined.unwrap_or_else(|e| {
        let failure = FilterError {
            filter: "filter stage",
            source: format!("the filter task failed: {e}").into(),
        };
        (Vec::new(), Err(failure))
    });
    (message, stage_reply(outcome))
}

/// The filter stage's outcome as the transaction takes it: the headers and
/// folder, or the reply that ends the transaction, a filter's refusal or
/// `451 4.7.0` when a filter failed (never silent acceptance).
fn stage_reply(
    outcome: Result<Result<StageResult, Refusal>, FilterError>,
) -> Result<StageResult, Reply> {
    match outcome {
        Ok(Ok(stage)) => Ok(stage),
        Ok(Err(refusal)) => Err(Reply::new(refusal.code, refusal.status, refusal.text)),
        Err(e) => {
            tracing::warn!(error = %e, "filter failed");
            Err(reply::FILTER_ERROR)
        }
    }
}

/// Delivers `message` into `folder` of every local recipient, on a
/// blocking thread (each delivery fsyncs file and folder). A recipient
/// whose mailbox cannot take the message refuses it for all, before any
/// copy is delivered.
pub(super) async fn deliver_local(
    ctx: Arc<Context>,
    rcpts: Vec<String>,
    folder: String,
    message: Vec<u8>,
) -> Result<(), StoreError> {
    if rcpts.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || {
        if let Some(full) = rcpts
            .iter()
            .find(|r| ctx.store.would_exceed_quota(r, message.len()))
        {
            return Err(StoreError::OverQuota(full.clone()));
        }
        for rcpt in &rcpts {
            ctx.store.deliver(rcpt, &folder, &message)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Io {
        op: "deliver",
        path: Default::default(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// The reply when local delivery failed: `552 5.2.2` for a mailbox over
/// its quota (RFC 3463 X.2.2), `451 4.3.0` otherwise.
pub(super) fn delivery_failed(e: &StoreError) -> Reply {
    match e {
        StoreError::OverQuota(address) => Reply::new(
            552,
            reply::OVER_QUOTA,
            format!("<{address}>: mailbox is over its quota, message not delivered"),
        ),
        other => {
            tracing::error!(error = %other, "delivery to Maildir failed");
            reply::LOCAL_ERROR
        }
    }
}
