//! EHLO and HELO (RFC 5321 §4.1.1.1): the greeting and the extension list.
//!
//! EHLO advertises exactly what the session does: PIPELINING (RFC 2920),
//! SIZE (RFC 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034),
//! STARTTLS (RFC 3207) while TLS is not active, and AUTH PLAIN LOGIN
//! (RFC 4954) only on the submission ports once TLS is active.

use tokio::io::{AsyncRead, AsyncWrite};

use super::session::{Next, Session};
use crate::server::Service;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Handles EHLO (`esmtp`) or HELO.
    pub(super) fn ehlo(&mut self, host: String, esmtp: bool) -> Next {
        let host = host.trim().to_string();
        if host.is_empty() {
            let r = super::reply::Reply::new(
                501,
                super::reply::SYNTAX,
                "Syntax: EHLO <your host name or address literal>",
            );
            return self.fail(&r);
        }
        // RFC 5321 §4.1.4: EHLO resets the transaction state.
        self.data.tx = None;
        self.data.helo = Some(host.clone());
        self.data.esmtp = esmtp;
        let hostname = self.ctx.config.hostname.clone();
        let greeting = format!("{hostname} Hello {host} [{}]", self.params.peer.ip());
        if !esmtp {
            self.reply_raw(&format!("250 {greeting}\r\n"));
            return Next::Continue;
        }
        let mut lines = vec![
            greeting,
            "PIPELINING".to_string(),
            format!("SIZE {}", self.params.max_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.params.tls.is_none() && !self.params.service.implicit_tls() {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        let mut wire = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            wire.push_str(&format!("250{sep}{line}\r\n"));
        }
        self.reply_raw(&wire);
        Next::Continue
    }

    /// AUTH is offered on 587 after STARTTLS and on 465, never on 25
    /// (docs/smtp.md; RFC 4954 §4 forbids plaintext-only mechanisms without TLS).
    pub(super) fn auth_offered(&self) -> bool {
        match self.params.service {
            Service::Submission | Service::Submissions => {
                self.password_allowed() && self.data.auth.is_none()
            }
            _ => false,
        }
    }
}
