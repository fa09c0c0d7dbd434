//! MAIL FROM (RFC 5321 §4.1.1.2) with SIZE (RFC 1870) and BODY (RFC 6152).
//!
//! On the submission ports the sender must be authenticated and may only
//! use its own address (docs/smtp.md, `553 5.7.1`). On port 25 the sender is
//! checked with SPF (RFC 7208) under the config's policy: `fail` ->
//! `550 5.7.23` when the policy rejects, `softfail` marked, `temperror` ->
//! `451 4.4.3`.

use smtp_proto::MailFrom;
use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{self, Reply};
use super::session::{Next, Session, Transaction};
use crate::auth::{SpfCheck, check_spf};
use crate::config::Action;
use mail_auth::SpfResult;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Handles `MAIL FROM:<reverse-path> [parameters]`.
    pub(super) async fn mail(&mut self, from: MailFrom<String>) -> Next {
        let Some(helo) = self.data.helo.clone() else {
            return self.fail(&reply::NEED_EHLO);
        };
        if self.data.tx.is_some() {
            // RFC 5321 §4.1.1.2 / §3.3: one transaction at a time.
            return self.fail(&reply::NESTED_MAIL);
        }
        // RFC 1870 §6: a declared size over the limit is refused at once.
        if from.size > self.params.max_size {
            return self.fail(&reply::TOO_BIG);
        }
        let sender = from.address.trim().to_string();
        if !sender.is_empty() && !valid_address(&sender) {
            return self.fail(&reply::BAD_SENDER_SYNTAX);
        }
        let mut tx = Transaction {
            mail_from: sender.clone(),
            ..Default::default()
        };
        if self.is_submission() {
            // RFC 6409 §4.3: submission requires authentication.
            let Some(auth) = &self.data.auth else {
                let r = if !self.password_allowed() {
                    reply::NEED_TLS
                } else {
                    reply::NEED_AUTH
                };
                return self.fail(&r);
            };
            // docs/smtp.md: only the user's own address (RFC 6409 §6.1 lets the
            // MSA enforce this).
            if !sender.eq_ignore_ascii_case(auth.address()) {
                let r = Reply::new(
                    553,
                    reply::NOT_OWNED,
                    format!(
                        "<{sender}>: sender address not owned by user {}; use MAIL FROM:<{}>",
                        auth.address(),
                        auth.address()
                    ),
                );
                return self.fail(&r);
            }
        } else {
            let spf = check_spf(
                &self.ctx.authenticator,
                &self.ctx.config.hostname,
                self.params.peer.ip(),
                &helo,
                &sender,
            )
            .await;
            self.transcript.info(&format!(
                "SPF {} for {} from {}",
                spf.result(),
                if sender.is_empty() { &helo } else { &sender },
                self.params.peer.ip()
            ));
            if let Some(r) = self.spf_reply(&spf) {
                return self.fail(&r);
            }
            tx.spf = Some(spf);
        }
        self.data.tx = Some(tx);
        self.reply(&reply::SENDER_OK);
        Next::Continue
    }

    /// The refusal the policy asks for after SPF, if any.
    fn spf_reply(&self, spf: &SpfCheck) -> Option<Reply> {
        let policy = &self.ctx.config.policy;
        let identity = if spf.mail_from.is_empty() {
            format!("HELO {}", spf.helo)
        } else {
            spf.mail_from.clone()
        };
        let ip = spf.ip;
        let action = match spf.output.result() {
            SpfResult::Fail => policy.spf_fail,
            SpfResult::SoftFail => policy.spf_softfail,
            SpfResult::TempError => policy.spf_temperror,
            _ => return None,
        };
        let temp = spf.output.result() == SpfResult::TempError;
        match (action, temp) {
            (Action::Accept | Action::Mark, _) => None,
            // RFC 7208 §8.6: temperror -> 451 4.4.3 (RFC 7372 §3.3 has no
            // better enhanced code for a DNS failure).
            (_, true) => Some(reply::AUTH_TEMPERROR),
            // RFC 7372 §3.2: X.7.23 "SPF validation failed".
            (Action::Reject, false) => Some(Reply::new(
                550,
                reply::SPF_FAIL_STATUS,
                format!(
                    "SPF validation failed: {ip} is not allowed to send mail for {identity} (RFC 7208 {})",
                    spf_keyword_text(spf)
                ),
            )),
            (Action::Tempfail, false) => Some(Reply::new(
                451,
                "4.7.23",
                format!("SPF validation failed for {identity} from {ip}, try again later"),
            )),
        }
    }
}

fn spf_keyword_text(spf: &SpfCheck) -> &'static str {
    match spf.output.result() {
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        _ => "result",
    }
}

/// A plausible `local@domain` mailbox (RFC 5321 §4.1.2, loosely).
pub(super) fn valid_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !a.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}
