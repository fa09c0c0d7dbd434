//! RCPT TO (RFC 5321 §4.1.1.3): local mailbox -> 250; unknown local ->
//! `550 5.1.1`; another domain -> relay only for an authenticated
//! submission, otherwise `554 5.7.1` (docs/smtp.md).

use smtp_proto::RcptTo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::mail::valid_address;
use super::reply::{self, Reply};
use super::session::{MAX_RECIPIENTS, Next, Session};
use crate::server::Service;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Handles `RCPT TO:<forward-path>`.
    pub(super) fn rcpt(&mut self, to: RcptTo<String>) -> Next {
        let authenticated = self.data.auth.is_some();
        let domain = self.ctx.config.domain.to_ascii_lowercase();
        let Some(tx) = self.data.tx.as_mut() else {
            return self.fail(&reply::NEED_MAIL);
        };
        if tx.local.len() + tx.remote.len() >= MAX_RECIPIENTS {
            // RFC 5321 §4.5.3.1.10
            let r = reply::TOO_MANY_RCPTS;
            self.reply(&r);
            return Next::Continue;
        }
        let address = to.address.trim().to_ascii_lowercase();
        if !valid_address(&address) {
            return self.fail(&reply::BAD_RCPT_SYNTAX);
        }
        let rcpt_domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if rcpt_domain == domain {
            if !self.ctx.accounts.exists(&address) {
                let r = Reply::new(
                    550,
                    reply::NO_SUCH_USER,
                    format!("<{address}>: no such mailbox here (recipient address rejected)"),
                );
                return self.fail(&r);
            }
            if self.ctx.store.would_exceed_quota(&address, 1) {
                // RFC 5321 §4.2.2 552 "exceeded storage allocation";
                // RFC 3463 X.2.2 "mailbox full".
                let r = Reply::new(
                    552,
                    reply::OVER_QUOTA,
                    format!("<{address}>: mailbox is over its quota, try again later"),
                );
                return self.fail(&r);
            }
            if !tx.local.contains(&address) {
                tx.local.push(address);
            }
        } else if authenticated {
            if !tx.remote.contains(&address) {
                tx.remote.push(address);
            }
        } else {
            let hint = if self.params.service == Service::Smtp {
                "; to send to other domains, authenticate on port 587 (submission)"
            } else {
                ""
            };
            let r = Reply::new(
                554,
                reply::RELAY_DENIED,
                format!(
                    "<{address}>: relay access denied, {domain} is not the destination of {rcpt_domain}{hint}"
                ),
            );
            return self.fail(&r);
        }
        self.reply(&reply::RCPT_OK);
        Next::Continue
    }
}
