//! A minimal IMAP4rev1 client (RFC 3501) for the commands the checks need:
//! CAPABILITY, STARTTLS, LOGIN, SELECT, UID SEARCH, UID FETCH BODY.PEEK[],
//! IDLE (RFC 2177), LOGOUT. Server literals (`{n}`) are read; the client
//! never sends literals (it quotes strings, RFC 3501 §4.3).

use std::time::{Duration, Instant};

use super::ClientError;
use super::conn::{Conn, Greeted};
use super::tls::Tls;

/// One untagged response with the literals it carried.
#[derive(Debug, Clone, Default)]
pub struct Untagged {
    /// The text of the response, literals replaced by `{n}`.
    pub text: String,
    /// The literals, in order.
    pub literals: Vec<Vec<u8>>,
}

/// The answer to one command.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Untagged responses before the tagged one.
    pub untagged: Vec<Untagged>,
    /// The tagged status line (`a3 OK LOGIN completed`).
    pub status: String,
}

impl Answer {
    /// Tagged OK (RFC 3501 §7.1.1).
    pub fn is_ok(&self) -> bool {
        self.status
            .split_whitespace()
            .nth(1)
            .is_some_and(|s| s.eq_ignore_ascii_case("OK"))
    }
}

/// An IMAP session.
#[derive(Debug)]
pub struct Imap {
    /// The connection.
    pub conn: Conn,
    /// The greeting line.
    pub greeting: String,
    next_tag: u32,
}

/// Quotes a string (RFC 3501 §4.3 quoted).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The length of a literal announced at the end of a line (`{123}` or `{123+}`).
pub fn literal_len(line: &str) -> Option<usize> {
    let open = line.strip_suffix('}')?.rfind('{')?;
    line[open + 1..line.len() - 1]
        .trim_end_matches('+')
        .parse()
        .ok()
}

impl Greeted for Imap {
    const PROTOCOL: &'static str = "IMAP";
    fn welcomes(greeting: &str) -> bool {
        greeting.starts_with("* OK") || greeting.starts_with("* PREAUTH")
    }
    fn start(conn: Conn, greeting: String) -> Self {
        Self {
            conn,
            greeting,
            next_tag: 1,
        }
    }
}

impl Imap {
    /// Reads one response line with any literals; `Ok(None)` at the tagged line `tag`.
    async fn read_untagged(&mut self) -> Result<Untagged, ClientError> {
        let mut u = Untagged::default();
        loop {
            let line = self.conn.read_line().await?;
            u.text.push_str(&line);
            match literal_len(&line) {
                Some(n) => u.literals.push(self.conn.read_exact(n).await?),
                None => return Ok(u),
            }
        }
    }

    /// Sends `command` with a fresh tag and reads until its tagged answer.
    pub async fn command(&mut self, command: &str) -> Result<Answer, ClientError> {
        self.command_shown(command, None).await
    }

    async fn command_shown(
        &mut self,
        command: &str,
        shown: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        let shown = shown.map(|s| format!("{tag} {s}"));
        self.conn
            .send_line(&format!("{tag} {command}"), shown.as_deref())
            .await?;
        let mut untagged = Vec::new();
        loop {
            let u = self.read_untagged().await?;
            if u.text.starts_with(&format!("{tag} ")) {
                return Ok(Answer {
                    untagged,
                    status: u.text,
                });
            }
            untagged.push(u);
        }
    }

    /// CAPABILITY: the capability names, upper case.
    pub async fn capabilities(&mut self) -> Result<Vec<String>, ClientError> {
        let a = self.command("CAPABILITY").await?;
        Ok(a.untagged
            .iter()
            .filter_map(|u| u.text.strip_prefix("* CAPABILITY "))
            .flat_map(|t| t.split_whitespace().map(str::to_ascii_uppercase))
            .collect())
    }

    /// STARTTLS (RFC 3501 §6.2.1) and the handshake on OK.
    pub async fn starttls(&mut self, tls: &Tls, server_name: &str) -> Result<Answer, ClientError> {
        let a = self.command("STARTTLS").await?;
        if a.is_ok() {
            self.conn.upgrade(tls, server_name).await?;
        }
        Ok(a)
    }

    /// LOGIN (RFC 3501 §6.2.3); the password is not logged.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<Answer, ClientError> {
        self.command_shown(
            &format!("LOGIN {} {}", quote(user), quote(password)),
            Some(&format!("LOGIN {} <password>", quote(user))),
        )
        .await
    }

    /// SELECT (RFC 3501 §6.3.1); `Ok(false)` when the server said NO.
    pub async fn select(&mut self, mailbox: &str) -> Result<Answer, ClientError> {
        self.command(&format!("SELECT {}", quote(mailbox))).await
    }

    /// UID SEARCH ALL (RFC 3501 §6.4.4, §6.4.8): every UID.
    pub async fn uids(&mut self) -> Result<Vec<u32>, ClientError> {
        let a = self.command("UID SEARCH ALL").await?;
        if !a.is_ok() {
            return Err(ClientError::Protocol(a.status));
        }
        Ok(a.untagged
            .iter()
            .filter_map(|u| u.text.strip_prefix("* SEARCH"))
            .flat_map(|t| t.split_whitespace().filter_map(|n| n.parse().ok()))
            .collect())
    }

    /// UID FETCH uid BODY.PEEK[] (RFC 3501 §6.4.5): the whole message, not marked seen.
    pub async fn fetch(&mut self, uid: u32) -> Result<Option<Vec<u8>>, ClientError> {
        let a = self
            .command(&format!("UID FETCH {uid} BODY.PEEK[]"))
            .await?;
        if !a.is_ok() {
            return Err(ClientError::Protocol(a.status));
        }
        Ok(a.untagged
            .into_iter()
            .find(|u| u.text.contains("FETCH") && !u.literals.is_empty())
            .and_then(|mut u| u.literals.pop()))
    }

    /// Waits for a change of the selected mailbox with IDLE (RFC 2177) for
    /// at most `wait`; returns whether the server reported one.
    pub async fn idle(&mut self, wait: Duration) -> Result<bool, ClientError> {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        self.conn.send_line(&format!("{tag} IDLE"), None).await?;
        let cont = self.conn.read_line().await?;
        if !cont.starts_with('+') {
            return Err(ClientError::Protocol(format!("IDLE: {cont}")));
        }
        let deadline = Instant::now() + wait;
        let mut changed = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.conn.read_line_within(left).await? {
                Some(line) if line.contains("EXISTS") || line.contains("RECENT") => {
                    changed = true;
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        self.conn.send_line("DONE", None).await?;
        loop {
            let line = self.conn.read_line().await?;
            if line.starts_with(&format!("{tag} ")) {
                return Ok(changed);
            }
            changed |= line.contains("EXISTS");
        }
    }

    /// LOGOUT, best effort.
    pub async fn logout(&mut self) {
        let _ = self.command("LOGOUT").await;
        self.conn.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_quoting() {
        assert_eq!(literal_len("* 1 FETCH (UID 4 BODY[] {123}"), Some(123));
        assert_eq!(literal_len("* 1 FETCH (BODY[] {7+}"), Some(7));
        assert_eq!(literal_len("* 1 FETCH (FLAGS ())"), None);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
