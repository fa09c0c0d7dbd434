//! A minimal POP3 client (RFC 1939) with STLS (RFC 2595 §4) and CAPA (RFC 2449).

use super::ClientError;
use super::conn::{Conn, Greeted};
use super::tls::Tls;

/// A POP3 session.
#[derive(Debug)]
pub struct Pop3 {
    /// The connection.
    pub conn: Conn,
    /// The greeting line.
    pub greeting: String,
}

impl Greeted for Pop3 {
    const PROTOCOL: &'static str = "POP3";
    fn welcomes(greeting: &str) -> bool {
        greeting.starts_with("+OK")
    }
    fn start(conn: Conn, greeting: String) -> Self {
        Self { conn, greeting }
    }
}

impl Pop3 {
    /// A single-line command; returns the status line (`+OK ...`/`-ERR ...`).
    pub async fn command(&mut self, line: &str) -> Result<String, ClientError> {
        self.conn.send_line(line, None).await?;
        self.conn.read_line().await
    }

    /// A multi-line command (RFC 1939 §3): the status line and, on `+OK`,
    /// the lines up to the terminating dot, dot-unstuffed.
    pub async fn multiline(&mut self, line: &str) -> Result<(String, Vec<String>), ClientError> {
        let status = self.command(line).await?;
        let mut lines = Vec::new();
        if status.starts_with("+OK") {
            loop {
                let l = self.conn.read_line().await?;
                if l == "." {
                    break;
                }
                lines.push(l.strip_prefix('.').map(str::to_string).unwrap_or(l));
            }
        }
        Ok((status, lines))
    }

    /// STLS and the handshake on `+OK`.
    pub async fn stls(&mut self, tls: &Tls, server_name: &str) -> Result<String, ClientError> {
        let status = self.command("STLS").await?;
        if status.starts_with("+OK") {
            self.conn.upgrade(tls, server_name).await?;
        }
        Ok(status)
    }

    /// USER and PASS (RFC 1939 §7); returns the last status line. The
    /// password is not logged.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<String, ClientError> {
        let status = self.command(&format!("USER {user}")).await?;
        if !status.starts_with("+OK") {
            return Ok(status);
        }
        self.conn
            .send_line(&format!("PASS {password}"), Some("PASS <password>"))
            .await?;
        self.conn.read_line().await
    }

    /// Number of messages in the maildrop (STAT).
    pub async fn count(&mut self) -> Result<usize, ClientError> {
        let status = self.command("STAT").await?;
        status
            .strip_prefix("+OK ")
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ClientError::Protocol(format!("STAT: {status}")))
    }

    /// RETR n: the message.
    pub async fn retr(&mut self, n: usize) -> Result<Vec<u8>, ClientError> {
        let (status, lines) = self.multiline_quiet(&format!("RETR {n}")).await?;
        if !status.starts_with("+OK") {
            return Err(ClientError::Protocol(status));
        }
        Ok(lines.join("\r\n").into_bytes())
    }

    /// TOP n 0: the header (RFC 1939 §7).
    pub async fn top(&mut self, n: usize) -> Result<Vec<String>, ClientError> {
        let (status, lines) = self.multiline_quiet(&format!("TOP {n} 0")).await?;
        if !status.starts_with("+OK") {
            return Err(ClientError::Protocol(status));
        }
        Ok(lines)
    }

    /// A multi-line command whose data lines are not echoed or logged one by one.
    async fn multiline_quiet(&mut self, line: &str) -> Result<(String, Vec<String>), ClientError> {
        let echo = std::mem::replace(&mut self.conn.echo, false);
        let before = self.conn.log.len();
        let result = self.multiline(line).await;
        if let Ok((status, lines)) = &result {
            self.conn.log.truncate(before + 2);
            self.conn.log[before + 1].1 = status.clone();
            if !lines.is_empty() {
                self.conn.note(&format!("({} lines)", lines.len()));
            }
        }
        self.conn.echo = echo;
        result
    }

    /// QUIT, best effort.
    pub async fn quit(&mut self) {
        let _ = self.command("QUIT").await;
        self.conn.close().await;
    }
}
