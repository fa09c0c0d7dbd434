//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463,
//! RFC 2034). Handlers never write a `"5xx ..."` literal: every reply they
//! send is one of the constants here or built by [`Reply::new`] from a code
//! constant and a text that names what is wrong and what to do.

use std::borrow::Cow;

/// One SMTP reply: basic code, enhanced code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Basic reply code (RFC 5321 §4.2.3).
    pub code: u16,
    /// Enhanced status code (RFC 3463 §2), e.g. `5.7.1`.
    pub status: &'static str,
    /// Human-readable text (one or more lines).
    pub text: Cow<'static, str>,
}

impl Reply {
    /// A reply with a computed text.
    pub fn new(code: u16, status: &'static str, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            status,
            text: text.into(),
        }
    }

    const fn fixed(code: u16, status: &'static str, text: &'static str) -> Self {
        Self {
            code,
            status,
            text: Cow::Borrowed(text),
        }
    }

    /// True for 4xx and 5xx replies.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// The wire form: `code status text CRLF`, multi-line texts as
    /// `code-...` continuation lines (RFC 5321 §4.2.1).
    pub fn to_wire(&self) -> String {
        let status = if self.status.is_empty() {
            String::new()
        } else {
            format!("{} ", self.status)
        };
        let lines: Vec<&str> = self.text.lines().collect();
        if lines.is_empty() {
            return format!("{} {}\r\n", self.code, status.trim_end());
        }
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.push_str(&format!("{}{sep}{status}{line}\r\n", self.code));
        }
        out
    }
}

// RFC 5321 §4.2.2 basic codes; RFC 3463 §3 enhanced codes.

/// 220 STARTTLS go-ahead (RFC 3207 §4).
pub const READY_TLS: Reply = Reply::fixed(220, "2.0.0", "Ready to start TLS");
/// 221 closing (RFC 5321 §4.1.1.10).
pub const BYE: Reply = Reply::fixed(221, "2.0.0", "Bye");
/// 235 AUTH accepted (RFC 4954 §6).
pub const AUTH_OK: Reply = Reply::fixed(235, "2.7.0", "Authentication successful");
/// 250 generic OK.
pub const OK: Reply = Reply::fixed(250, "2.0.0", "OK");
/// 250 sender OK (RFC 3463 §3.2 X.1.0).
pub const SENDER_OK: Reply = Reply::fixed(250, "2.1.0", "Sender OK");
/// 250 recipient OK (RFC 3463 X.1.5).
pub const RCPT_OK: Reply = Reply::fixed(250, "2.1.5", "Recipient OK");
/// 250 after RSET.
pub const RESET_OK: Reply = Reply::fixed(250, "2.0.0", "Reset OK");
/// 252 VRFY is not answered (RFC 5321 §3.5.3, §7.3).
pub const CANNOT_VRFY: Reply = Reply::fixed(
    252,
    "2.5.0",
    "Cannot VRFY user, but will accept the message and attempt delivery",
);
/// 354 start mail input (RFC 5321 §4.1.1.4).
pub const START_DATA: Reply = Reply::fixed(354, "", "Start mail input; end with <CRLF>.<CRLF>");
/// 334 empty challenge for AUTH PLAIN (RFC 4954 §4).
pub const AUTH_CONTINUE: Reply = Reply::fixed(334, "", "");
/// 334 LOGIN username prompt, "Username:" in base64.
pub const AUTH_LOGIN_USER: Reply = Reply::fixed(334, "", "VXNlcm5hbWU6");
/// 334 LOGIN password prompt, "Password:" in base64.
pub const AUTH_LOGIN_PASS: Reply = Reply::fixed(334, "", "UGFzc3dvcmQ6");

/// 421 command timeout (RFC 5321 §4.5.3.2).
pub const TIMEOUT: Reply = Reply::fixed(
    421,
    "4.4.2",
    "Timeout waiting for a command, closing the connection",
);
/// 421 too many connections from one address.
pub const TOO_MANY_CONNECTIONS: Reply = Reply::fixed(
    421,
    "4.7.0",
    "Too many connections from your address, try again later",
);
/// 421 an idle connection gives way to a new client (connection caps).
pub const IDLE_EVICTED: Reply = Reply::fixed(
    421,
    "4.7.0",
    "Idle connection closed to make room for other clients",
);
/// 421 too many junk commands (Postfix `smtpd_junk_command_limit`).
pub const TOO_MANY_JUNK: Reply = Reply::fixed(
    421,
    "4.7.0",
    "Too many NOOP, RSET or VRFY commands, closing the connection",
);
/// 452 the server holds too many incoming bytes right now (RFC 3463 X.3.1).
pub const NO_BUFFER_SPACE: Reply = Reply::fixed(
    452,
    "4.3.1",
    "Insufficient system storage for the message now, try again later",
);
/// 421 server shutting down or internal failure of the session.
pub const SHUTTING_DOWN: Reply = Reply::fixed(
    421,
    "4.3.2",
    "Service not available, closing the connection",
);
/// 451 local error (a disk write failed).
pub const LOCAL_ERROR: Reply = Reply::fixed(
    451,
    "4.3.0",
    "Local error in processing, the message was not accepted; try again later",
);
/// 451 SPF or DKIM DNS temporary error (RFC 7208 §8.6, RFC 7372 §3.3).
pub const AUTH_TEMPERROR: Reply = Reply::fixed(
    451,
    "4.4.3",
    "Temporary DNS error while checking the sender (SPF/DKIM), try again later",
);
/// 451 a filter failed.
pub const FILTER_ERROR: Reply = Reply::fixed(
    451,
    "4.7.0",
    "Temporary failure of the content filter, try again later",
);
/// 452 too many recipients (RFC 5321 §4.5.3.1.10).
pub const TOO_MANY_RCPTS: Reply = Reply::fixed(452, "4.5.3", "Too many recipients");
/// 454 TLS not available (RFC 3207 §4).
pub const TLS_FAILED: Reply =
    Reply::fixed(454, "4.7.0", "TLS not available due to temporary reason");

/// 500 line too long (RFC 5321 §4.5.3.1.4; RFC 3463 X.5.2 syntax error).
pub const LINE_TOO_LONG: Reply = Reply::fixed(500, "5.5.2", "Line too long");
/// 500 unrecognised command.
pub const UNKNOWN_COMMAND: Reply = Reply::fixed(
    500,
    "5.5.1",
    "Command unrecognized; supported: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY QUIT",
);
/// 501 bad base64 or SASL data (RFC 4954 §4).
pub const AUTH_BAD_DATA: Reply = Reply::fixed(501, "5.5.2", "Invalid SASL data (bad base64)");
/// 501 AUTH cancelled by the client (RFC 4954 §4).
pub const AUTH_CANCELLED: Reply = Reply::fixed(501, "5.0.0", "Authentication cancelled");
/// 502 command not implemented.
pub const NOT_IMPLEMENTED: Reply = Reply::fixed(502, "5.5.1", "Command not implemented");
/// 503 bad sequence: EHLO first.
pub const NEED_EHLO: Reply = Reply::fixed(503, "5.5.1", "Send EHLO/HELO first");
/// 503 bad sequence: MAIL first.
pub const NEED_MAIL: Reply = Reply::fixed(503, "5.5.1", "Send MAIL FROM first");
/// 503 bad sequence: RCPT first.
pub const NEED_RCPT: Reply = Reply::fixed(503, "5.5.1", "Send RCPT TO first (no valid recipients)");
/// 503 nested MAIL (RFC 5321 §4.1.1.2).
pub const NESTED_MAIL: Reply = Reply::fixed(503, "5.5.1", "Sender already given; RSET first");
/// 503 AUTH on port 25 (docs/smtp.md: no AUTH on the MX port).
pub const NO_AUTH_ON_MX: Reply = Reply::fixed(
    503,
    "5.5.1",
    "AUTH is not offered on port 25; submit mail on port 587 (STARTTLS) or 465 (TLS)",
);
/// 503 already authenticated (RFC 4954 §4).
pub const ALREADY_AUTHENTICATED: Reply = Reply::fixed(503, "5.5.1", "Already authenticated");
/// 503 AUTH during a mail transaction (RFC 4954 §4).
pub const AUTH_IN_TRANSACTION: Reply = Reply::fixed(
    503,
    "5.5.1",
    "AUTH is not allowed during a mail transaction; RSET first",
);
/// 503 STARTTLS twice.
pub const ALREADY_TLS: Reply = Reply::fixed(503, "5.5.1", "TLS is already active");
/// 504 unsupported AUTH mechanism (RFC 4954 §4).
pub const AUTH_MECHANISM: Reply = Reply::fixed(
    504,
    "5.5.4",
    "Unrecognized authentication mechanism; use PLAIN or LOGIN",
);
/// 530 TLS first (RFC 3207 §4).
pub const NEED_TLS: Reply = Reply::fixed(
    530,
    "5.7.0",
    "Must issue a STARTTLS command first (AUTH is offered only over TLS)",
);
/// 530 authentication required on submission (RFC 6409 §4.3, RFC 4954 §6).
pub const NEED_AUTH: Reply = Reply::fixed(
    530,
    "5.7.0",
    "Authentication required: STARTTLS then AUTH PLAIN/LOGIN with your mailbox address and password",
);
/// 535 wrong credentials (RFC 4954 §6).
pub const AUTH_INVALID: Reply = Reply::fixed(
    535,
    "5.7.8",
    "Authentication credentials invalid (user is the full mailbox address)",
);
/// 550 SPF fail under a `-all` policy (RFC 7372 §3.2, X.7.23).
pub const SPF_FAIL_STATUS: &str = "5.7.23";
/// 550 DKIM failure (RFC 7372 §3.1, X.7.20: no passing DKIM signature).
pub const DKIM_FAIL: Reply = Reply::fixed(
    550,
    "5.7.20",
    "No valid DKIM signature found: the message carries DKIM signatures and none verifies",
);
/// 451 DKIM could not be checked (DNS).
pub const DKIM_TEMPERROR: Reply = Reply::fixed(
    451,
    "4.7.20",
    "Temporary failure verifying DKIM signatures, try again later",
);
/// 550 unknown local mailbox (RFC 3463 X.1.1).
pub const NO_SUCH_USER: &str = "5.1.1";
/// 554 relay denied (RFC 3463 X.7.1).
pub const RELAY_DENIED: &str = "5.7.1";
/// 553 sender not owned by the authenticated user (RFC 3463 X.7.1).
pub const NOT_OWNED: &str = "5.7.1";
/// 552 message too large (RFC 1870 §6, RFC 3463 X.3.4).
pub const TOO_BIG: Reply = Reply::fixed(552, "5.3.4", "Message size exceeds the fixed limit");
/// 554 too many `Received` fields: a mail loop (RFC 5321 §6.3, RFC 3463
/// X.4.6 "routing loop detected").
pub const TOO_MANY_HOPS: Reply = Reply::fixed(554, "5.4.6", "Too many hops");
/// 552 mailbox over its quota (RFC 5321 §4.2.2 552 "exceeded storage
/// allocation"; RFC 3463 X.2.2 "mailbox full").
pub const OVER_QUOTA: &str = "5.2.2";
/// 552 header section over a limit (RFC 3463 X.3.4).
pub const LIMIT_SIZE: &str = "5.3.4";
/// 554 MIME structure over a limit (RFC 3463 X.6.0 "other or undefined
/// media error").
pub const LIMIT_STRUCTURE: &str = "5.6.0";
/// 501 syntax error in parameters.
pub const SYNTAX: &str = "5.5.4";
/// 501 bad address syntax (RFC 3463 X.1.3 / X.1.7).
pub const BAD_SENDER_SYNTAX: Reply = Reply::fixed(
    501,
    "5.1.7",
    "Bad sender address syntax; use MAIL FROM:<user@domain>",
);
/// 501 bad recipient syntax (RFC 3463 X.1.3).
pub const BAD_RCPT_SYNTAX: Reply = Reply::fixed(
    501,
    "5.1.3",
    "Bad recipient address syntax; use RCPT TO:<user@domain>",
);
/// 554 message unparseable.
pub const BAD_MESSAGE: Reply = Reply::fixed(
    554,
    "5.6.0",
    "The message has no valid header section (RFC 5322)",
);
/// 554 DMARC reject policy (RFC 7489 §6.3, §10.3).
pub const DMARC_REJECT: Reply = Reply::fixed(
    550,
    "5.7.1",
    "Rejected by the DMARC policy of the sender's domain (p=reject): neither SPF nor DKIM aligned",
);
/// 554 too many errors in this session.
pub const TOO_MANY_ERRORS: Reply = Reply::fixed(
    421,
    "4.7.0",
    "Too many errors in this session, closing the connection",
);

/// The reply to a message over a shape limit (see [`crate::message`]).
pub fn message_limit(e: &crate::message::LimitError) -> Reply {
    if e.is_size() {
        Reply::new(552, LIMIT_SIZE, e.to_string())
    } else {
        Reply::new(554, LIMIT_STRUCTURE, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_single_and_multi_line() {
        assert_eq!(OK.to_wire(), "250 2.0.0 OK\r\n");
        let r = Reply::new(250, "2.0.0", "a\nb");
        assert_eq!(r.to_wire(), "250-2.0.0 a\r\n250 2.0.0 b\r\n");
        assert_eq!(AUTH_CONTINUE.to_wire(), "334 \r\n");
        assert_eq!(AUTH_LOGIN_USER.to_wire(), "334 VXNlcm5hbWU6\r\n");
    }
}
