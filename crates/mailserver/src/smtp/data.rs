//! DATA (RFC 5321 §4.1.1.4): reads the message, then hands it to the
//! inbound pipeline (port 25) or to submission (587/465). The reply is sent
//! only after the message is durable: in every recipient's Maildir and, for
//! remote recipients, in the queue (RFC 5321 §6.1).

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{self, Reply};
use super::session::{Next, ReadError, Session};
use crate::message;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Handles DATA.
    pub(super) async fn data(&mut self) -> Next {
        let Some(tx) = self.data.tx.clone() else {
            return self.fail(&reply::NEED_MAIL);
        };
        if tx.local.is_empty() && tx.remote.is_empty() {
            // RFC 5321 §3.3: DATA without a valid recipient is 503 (or 554).
            return self.fail(&reply::NEED_RCPT);
        }
        self.reply(&reply::START_DATA);
        let message = match self.read_data().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.data.tx = None;
                self.transcript.info("message over the size limit, refused");
                return self.fail(&reply::TOO_BIG);
            }
            Err(ReadError::Timeout) => {
                self.reply(&reply::TIMEOUT);
                return Next::Close;
            }
            Err(ReadError::TooLong) => {
                self.reply(&reply::LINE_TOO_LONG);
                return Next::Close;
            }
            Err(ReadError::Busy) => {
                // Too many bytes held by all sessions: a temporary refusal.
                self.data.tx = None;
                self.transcript
                    .info("no buffer space for the message, refused");
                return self.fail(&reply::NO_BUFFER_SPACE);
            }
            Err(ReadError::Evicted) => {
                self.reply(&reply::IDLE_EVICTED);
                return Next::Close;
            }
            Err(ReadError::Eof | ReadError::Io) => return Next::Close,
        };
        self.data.tx = None;
        self.transcript
            .info(&format!("message of {} octets received", message.len()));
        let limits = &self.ctx.config.limits;
        let (message, refused) = check_shape(message, limits.message(), limits.max_hops).await;
        if let Some(r) = refused {
            self.transcript
                .info(&format!("message refused: {}", r.text));
            return self.fail(&r);
        }
        let r = if self.is_submission() {
            self.submit(tx, message).await
        } else {
            self.receive(tx, message).await
        };
        if r.is_error() {
            self.transcript
                .info(&format!("message refused: {}", r.text));
            self.fail(&r)
        } else {
            self.data.messages += 1;
            self.reply(&r);
            Next::Continue
        }
    }
}

/// The limits on the message's shape, before anything parses it: MIME
/// nesting, parts and header sections ([`message::check`], one linear
/// pass on a blocking thread), then the hop count (RFC 5321 §6.3).
/// Gives the message back with the refusal, if any. (A free function: the
/// session is not `Sync`, so it is not held across the await.)
async fn check_shape(
    message: Vec<u8>,
    shape_limits: message::Limits,
    max_hops: usize,
) -> (Vec<u8>, Option<Reply>) {
    let checked = tokio::task::spawn_blocking(move || {
        let r = message::check(&message, &shape_limits);
        (message, r)
    })
    .await;
    let Ok((message, result)) = checked else {
        return (Vec::new(), Some(reply::LOCAL_ERROR));
    };
    match result {
        Err(e) => (message, Some(reply::message_limit(&e))),
        // RFC 5321 §6.3: a message with too many Received fields is
        // looping; refused, not delivered or relayed.
        Ok(shape) if shape.hops >= max_hops => (message, Some(reply::TOO_MANY_HOPS)),
        Ok(_) => (message, None),
    }
}
