//! Submission after DATA on ports 587/465 (RFC 6409): the From header must
//! be the user's own address (docs/smtp.md, `553 5.7.1`), `Date` and
//! `Message-ID` are added when missing (RFC 6409 §8.2, §8.3), the filter
//! stage runs, the message is DKIM-signed (RFC 6376 §5), local recipients
//! get it in their Maildir and remote ones are queued durably, all before
//! the `250`.

use tokio::io::{AsyncRead, AsyncWrite};

use super::headers::{has_header, new_id, received, rfc5322_now};
use super::inbound::{deliver_local, delivery_failed, filter_stage};
use super::reply::{self, Reply};
use super::session::{Session, Transaction};
use crate::auth::AuthResult;
use crate::store::INBOX;
use mail_auth::AuthenticatedMessage;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Accepts a submitted message.
    pub(super) async fn submit(&mut self, tx: Transaction, message: Vec<u8>) -> Reply {
        let ctx = self.ctx.clone();
        let Some(user) = self.data.auth.as_ref().map(|a| a.address().to_string()) else {
            return reply::NEED_AUTH;
        };
        let from: Vec<String> = match AuthenticatedMessage::parse(&message) {
            Some(m) => m.from.clone(),
            None => return reply::BAD_MESSAGE,
        };
        if from.is_empty() {
            return Reply::new(
                550,
                "5.6.0",
                format!("The message has no From header field; add From: <{user}>"),
            );
        }
        if let Some(other) = from.iter().find(|f| !f.eq_ignore_ascii_case(&user)) {
            return Reply::new(
                553,
                reply::NOT_OWNED,
                format!("From: <{other}>: sender address not owned by user {user}"),
            );
        }
        let id = new_id();
        let mut added = String::new();
        if !has_header(&message, "Date") {
            added.push_str(&format!("Date: {}\r\n", rfc5322_now()));
        }
        if !has_header(&message, "Message-ID") {
            added.push_str(&format!("Message-ID: <{id}@{}>\r\n", ctx.config.hostname));
        }
        let recipients = tx.recipients();
        if !self.reserve_for_filters(message.len()).await {
            return reply::NO_BUFFER_SPACE;
        }
        let (message, stage) = filter_stage(
            &ctx,
            message,
            true,
            &tx.mail_from,
            &recipients,
            // Submission checks no SPF, DKIM or DMARC: the filters see `none`.
            [AuthResult::None; 3],
        )
        .await;
        let stage = match stage {
            Ok(stage) => stage,
            Err(reply) => return reply,
        };
        for (name, value) in &stage.headers {
            added.push_str(&format!("{name}: {value}\r\n"));
        }
        let mut body = Vec::with_capacity(added.len() + message.len());
        body.extend_from_slice(added.as_bytes());
        body.extend_from_slice(&message);
        // DKIM signing is CPU work (RSA): off the async threads.
        let signer_ctx = ctx.clone();
        let signed = tokio::task::spawn_blocking(move || {
            let sig = signer_ctx.signer.sign(&body);
            (sig, body)
        })
        .await;
        let (signature, body) = match signed {
            Ok((Ok(sig), body)) => (sig, body),
            Ok((Err(e), _)) => {
                tracing::error!(error = %e, "DKIM signing failed");
                return reply::LOCAL_ERROR;
            }
            Err(_) => return reply::LOCAL_ERROR,
        };
        let mut head = received(&ctx.config.hostname, &self.params, &self.data, &id, None);
        head.push_str(&signature);
        let mut full = Vec::with_capacity(head.len() + body.len());
        full.extend_from_slice(head.as_bytes());
        full.extend_from_slice(&body);
        // Before anything is queued: a full local mailbox refuses the
        // whole message (RFC 3463 X.2.2), so a retry makes no duplicates.
        if let Some(r) = tx
            .local
            .iter()
            .find(|r| ctx.store.would_exceed_quota(r, full.len()))
        {
            return delivery_failed(&crate::store::StoreError::OverQuota(r.clone()));
        }
        if !tx.remote.is_empty() {
            let q = ctx.clone();
            let (from, remote, msg) = (tx.mail_from.clone(), tx.remote.clone(), full.clone());
            let queued =
                tokio::task::spawn_blocking(move || q.queue.enqueue(&from, &remote, &msg)).await;
            match queued {
                Ok(Ok(qid)) => {
                    self.transcript
                        .info(&format!("queued {qid} for {}", tx.remote.join(", ")));
                    ctx.queue.wake();
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "queueing failed");
                    return reply::LOCAL_ERROR;
                }
                Err(_) => return reply::LOCAL_ERROR,
            }
        }
        let folder = stage.folder.unwrap_or_else(|| INBOX.to_string());
        if let Err(e) = deliver_local(ctx, tx.local.clone(), folder, full).await {
            return delivery_failed(&e);
        }
        Reply::new(250, "2.0.0", format!("Message accepted, id {id}"))
    }
}
