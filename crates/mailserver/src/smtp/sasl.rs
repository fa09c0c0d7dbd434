//! AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms, on the
//! submission ports only and only over TLS. The password check (argon2)
//! runs on a blocking thread; failures are rate-limited per client address
//! by [`crate::accounts::Accounts`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};
use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{self, Reply};
use super::session::{Next, ReadError, Session};
use crate::accounts::LoginError;
use crate::server::Service;

/// A SASL exchange that did not produce credentials.
enum SaslStop {
    Reply(Reply),
    Close,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Handles `AUTH <mechanism> [initial-response]`.
    pub(super) async fn auth(&mut self, mechanism: u64, initial: String) -> Next {
        if self.params.service == Service::Smtp {
            // docs/smtp.md: port 25 never authenticates; point to submission.
            return self.fail(&reply::NO_AUTH_ON_MX);
        }
        if !self.password_allowed() {
            // RFC 4954 §4 / RFC 3207 §4: PLAIN and LOGIN only under TLS.
            return self.fail(&reply::NEED_TLS);
        }
        if self.data.auth.is_some() {
            return self.fail(&reply::ALREADY_AUTHENTICATED);
        }
        if self.data.tx.is_some() {
            return self.fail(&reply::AUTH_IN_TRANSACTION);
        }
        let creds = match mechanism {
            AUTH_PLAIN => self.sasl_plain(initial).await,
            AUTH_LOGIN => self.sasl_login(initial).await,
            _ => return self.fail(&reply::AUTH_MECHANISM),
        };
        let (user, password) = match creds {
            Ok(c) => c,
            Err(SaslStop::Reply(r)) => return self.fail(&r),
            Err(SaslStop::Close) => return Next::Close,
        };
        let ctx = self.ctx.clone();
        let ip = self.params.peer.ip();
        let result = tokio::task::spawn_blocking(move || ctx.accounts.login(&user, &password, ip))
            .await
            .unwrap_or(Err(LoginError::Invalid));
        match result {
            Ok(auth) => {
                self.transcript
                    .info(&format!("authenticated as {}", auth.address()));
                self.data.auth = Some(auth);
                self.reply(&reply::AUTH_OK);
                Next::Continue
            }
            Err(LoginError::Invalid) => {
                self.transcript.info("authentication failed");
                self.fail(&reply::AUTH_INVALID)
            }
        }
    }

    /// Reads one SASL response line after a `334` (redacted in the transcript).
    async fn sasl_line(&mut self, challenge: &Reply) -> Result<String, SaslStop> {
        self.reply(challenge);
        match self.read_line().await {
            Ok(line) => {
                self.transcript.client_redacted("", 0);
                let text = String::from_utf8_lossy(&line).trim().to_string();
                if text == "*" {
                    // RFC 4954 §4: the client cancels the exchange.
                    return Err(SaslStop::Reply(reply::AUTH_CANCELLED));
                }
                Ok(text)
            }
            Err(ReadError::TooLong) => Err(SaslStop::Reply(reply::LINE_TOO_LONG)),
            Err(ReadError::Timeout) => {
                self.reply(&reply::TIMEOUT);
                Err(SaslStop::Close)
            }
            Err(_) => Err(SaslStop::Close),
        }
    }

    /// PLAIN (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`, base64.
    async fn sasl_plain(&mut self, initial: String) -> Result<(String, String), SaslStop> {
        let encoded = if initial.is_empty() {
            self.sasl_line(&reply::AUTH_CONTINUE).await?
        } else if initial == "=" {
            String::new()
        } else {
            initial
        };
        let raw = B64
            .decode(encoded.as_bytes())
            .map_err(|_| SaslStop::Reply(reply::AUTH_BAD_DATA))?;
        let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
        let [authzid, authcid, passwd] = parts[..] else {
            return Err(SaslStop::Reply(reply::AUTH_BAD_DATA));
        };
        let user = String::from_utf8_lossy(authcid).into_owned();
        // RFC 4616 §2: an authzid other than the authcid is not allowed here.
        if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(authcid) {
            return Err(SaslStop::Reply(reply::AUTH_INVALID));
        }
        Ok((user, String::from_utf8_lossy(passwd).into_owned()))
    }

    /// LOGIN (draft-murchison-sasl-login): user name, then password, base64.
    async fn sasl_login(&mut self, initial: String) -> Result<(String, String), SaslStop> {
        let user_b64 = if initial.is_empty() {
            self.sasl_line(&reply::AUTH_LOGIN_USER).await?
        } else {
            initial
        };
        let pass_b64 = self.sasl_line(&reply::AUTH_LOGIN_PASS).await?;
        let decode = |s: &str| {
            B64.decode(s.as_bytes())
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .map_err(|_| SaslStop::Reply(reply::AUTH_BAD_DATA))
        };
        Ok((decode(&user_b64)?, decode(&pass_b64)?))
    }
}
