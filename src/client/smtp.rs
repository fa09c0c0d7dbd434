//! A small SMTP client (RFC 5321) with STARTTLS (RFC 3207) and AUTH PLAIN
//! (RFC 4954, RFC 4616), keeping every reply line.

use std::net::{IpAddr, SocketAddr};

use base64::Engine;

use super::ClientError;
use super::conn::Conn;
use super::tls::Tls;

/// One SMTP reply: the code and every line's text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    /// Three-digit code.
    pub code: u16,
    /// The full lines (`250-mail.metal.com`, `250 STARTTLS`).
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx (RFC 5321 §4.2.1).
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 3xx.
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    /// 5xx.
    pub fn is_permanent_failure(&self) -> bool {
        (500..600).contains(&self.code)
    }
    /// The reply as one line of evidence (multi-line replies joined by ` | `).
    pub fn text(&self) -> String {
        self.lines.join(" | ")
    }
    /// The last line (where the enhanced status code usually is).
    pub fn last(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }
    /// Whether the reply's enhanced status code (RFC 3463) is `code`, e.g. `5.7.23`.
    pub fn has_enhanced(&self, code: &str) -> bool {
        self.lines.iter().any(|l| {
            l.get(4..)
                .is_some_and(|t| t.split_whitespace().next() == Some(code))
        })
    }
    /// The EHLO keywords (RFC 5321 §4.1.1.1), upper case.
    pub fn keywords(&self) -> Vec<String> {
        self.lines
            .iter()
            .skip(1)
            .filter_map(|l| l.get(4..))
            .map(|k| k.to_ascii_uppercase())
            .collect()
    }
    /// Whether EHLO advertised `keyword` (first word of a line).
    pub fn advertises(&self, keyword: &str) -> bool {
        self.keywords()
            .iter()
            .any(|k| k.split_whitespace().next() == Some(keyword))
    }
}

/// Parses the code of one reply line: `(code, last line?)` (RFC 5321 §4.2).
pub fn parse_reply_line(line: &str) -> Option<(u16, bool)> {
    let code: u16 = line.get(..3)?.parse().ok()?;
    match line.as_bytes().get(3) {
        None | Some(b' ') => Some((code, true)),
        Some(b'-') => Some((code, false)),
        _ => None,
    }
}

/// An SMTP session.
#[derive(Debug)]
pub struct Smtp {
    /// The connection (its log is the dialogue).
    pub conn: Conn,
    /// The greeting.
    pub greeting: Reply,
}

impl Smtp {
    /// Connects (plain, or implicit TLS when `tls` is given) and reads the greeting.
    pub async fn connect(
        addr: SocketAddr,
        bind: Option<IpAddr>,
        tls: Option<(&Tls, &str)>,
        echo: bool,
    ) -> Result<Self, ClientError> {
        let conn = match tls {
            None => Conn::connect(addr, bind).await?,
            Some((tls, name)) => Conn::connect_tls(addr, bind, tls, name).await?,
        };
        let mut conn = conn.echoing(echo);
        let greeting = read_reply(&mut conn).await?;
        Ok(Self { conn, greeting })
    }

    /// Sends a command and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.conn.send_line(line, None).await?;
        read_reply(&mut self.conn).await
    }

    /// EHLO.
    pub async fn ehlo(&mut self, name: &str) -> Result<Reply, ClientError> {
        self.command(&format!("EHLO {name}")).await
    }

    /// STARTTLS; on 220 the TLS handshake follows. Returns the STARTTLS reply.
    pub async fn starttls(&mut self, tls: &Tls, server_name: &str) -> Result<Reply, ClientError> {
        let reply = self.command("STARTTLS").await?;
        if reply.code == 220 {
            self.conn.upgrade(tls, server_name).await?;
        }
        Ok(reply)
    }

    /// AUTH PLAIN with an initial response (RFC 4954 §4, RFC 4616 §2); the
    /// credentials are not logged.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<Reply, ClientError> {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.conn
            .send_line(
                &format!("AUTH PLAIN {token}"),
                Some("AUTH PLAIN <credentials>"),
            )
            .await?;
        read_reply(&mut self.conn).await
    }

    /// DATA, the message (dot-stuffed, RFC 5321 §4.5.2) and the final dot.
    /// Returns the DATA reply and, when it was 354, the final reply.
    pub async fn data(&mut self, message: &[u8]) -> Result<(Reply, Option<Reply>), ClientError> {
        let go = self.command("DATA").await?;
        if go.code != 354 {
            return Ok((go, None));
        }
        let body = dot_stuff(message);
        self.conn
            .note(&format!("({} octets of message data)", message.len()));
        self.conn.write_raw(&body).await?;
        self.conn.send_line(".", None).await?;
        let done = read_reply(&mut self.conn).await?;
        Ok((go, Some(done)))
    }

    /// QUIT, best effort.
    pub async fn quit(&mut self) {
        if self.command("QUIT").await.is_ok() {
            self.conn.close().await;
        }
    }
}

/// What a server answered to one unauthenticated transaction.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Relayed {
    /// The reply to MAIL FROM.
    pub mail: Reply,
    /// The reply to RCPT TO.
    pub rcpt: Reply,
    /// The reply to the end of DATA, after the message was transferred
    /// (none when MAIL, RCPT or DATA was refused: the transcript has why).
    pub end: Option<Reply>,
    /// The dialogue, for evidence.
    pub transcript: String,
}

/// Transactions as a relaying MTA makes them (RFC 5321 §3.3), one per
/// message, in one session: EHLO `helo`, STARTTLS when `tls` is given, then
/// for each message MAIL FROM:<`mail_from`>, RCPT TO:<`rcpt`>, DATA (RSET
/// after a refused MAIL or RCPT, RFC 5321 §4.1.1.5), and QUIT; without
/// AUTH. On an error the dialogue so far is returned with it.
pub async fn relay_transactions(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    helo: &str,
    tls: Option<(&Tls, &str)>,
    mail_from: &str,
    rcpt: &str,
    messages: &[Vec<u8>],
) -> Result<Vec<Relayed>, (ClientError, String)> {
    let mut smtp = Smtp::connect(addr, bind, None, false)
        .await
        .map_err(|e| (e, String::new()))?;
    let r: Result<Vec<(Reply, Reply, Option<Reply>)>, ClientError> = async {
        smtp.ehlo(helo).await?;
        if let Some((tls, name)) = tls {
            let st = smtp.starttls(tls, name).await?;
            if st.code != 220 {
                return Err(ClientError::Protocol(format!(
                    "STARTTLS refused: {}",
                    st.text()
                )));
            }
            smtp.ehlo(helo).await?;
        }
        let mut out = Vec::new();
        for message in messages {
            let mail = smtp.command(&format!("MAIL FROM:<{mail_from}>")).await?;
            let to = smtp.command(&format!("RCPT TO:<{rcpt}>")).await?;
            if !mail.is_positive() || !to.is_positive() {
                smtp.command("RSET").await?;
                out.push((mail, to, None));
                continue;
            }
            let (_, done) = smtp.data(message).await?;
            out.push((mail, to, done));
        }
        Ok(out)
    }
    .await;
    smtp.quit().await;
    let transcript = smtp.conn.transcript();
    match r {
        Ok(all) => Ok(all
            .into_iter()
            .map(|(mail, rcpt, end)| Relayed {
                mail,
                rcpt,
                end,
                transcript: transcript.clone(),
            })
            .collect()),
        Err(e) => Err((e, transcript)),
    }
}

/// Reads one (possibly multi-line) reply.
pub async fn read_reply(conn: &mut Conn) -> Result<Reply, ClientError> {
    let mut lines = Vec::new();
    loop {
        let line = conn.read_line().await?;
        let (code, last) = parse_reply_line(&line)
            .ok_or_else(|| ClientError::Protocol(format!("not an SMTP reply: {line:?}")))?;
        lines.push(line);
        if last {
            return Ok(Reply { code, lines });
        }
    }
}

/// Dot-stuffing (RFC 5321 §4.5.2) and CRLF line ends; the result ends with CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let text = message.strip_suffix(b"\n").unwrap_or(message);
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_and_enhanced_codes() {
        assert_eq!(parse_reply_line("250-mail.metal.com"), Some((250, false)));
        assert_eq!(parse_reply_line("550 5.7.23 SPF fail"), Some((550, true)));
        assert_eq!(parse_reply_line("250"), Some((250, true)));
        assert_eq!(parse_reply_line("hello"), None);
        let r = Reply {
            code: 550,
            lines: vec!["550 5.7.23 SPF fail for metal.com".into()],
        };
        assert!(r.has_enhanced("5.7.23") && !r.has_enhanced("5.7.2"));
        let ehlo = Reply {
            code: 250,
            lines: vec![
                "250-mail.metal.com".into(),
                "250-AUTH PLAIN LOGIN".into(),
                "250 STARTTLS".into(),
            ],
        };
        assert!(ehlo.advertises("AUTH") && ehlo.advertises("STARTTLS"));
        assert!(!ehlo.advertises("PIPELINING"));
    }

    #[test]
    fn dot_stuffing_and_crlf() {
        assert_eq!(dot_stuff(b"a\n.b\r\n..c\n"), b"a\r\n..b\r\n...c\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n");
    }
}
