//! R11: the delivered probe message read over POP3 (110 with STLS, 995) and
//! IMAP (143 with STARTTLS, 993), with TLS verified against the lab CA.

use futures_util::future::{BoxFuture, join_all};

use super::ctx::Delivered;
use super::{Check, Ctx, Group, messages};
use crate::client::ClientError;
use crate::client::imap::Imap;
use crate::client::pop3::Pop3;
use crate::lab::{Mailbox, Server};

pub static GROUP: Group = Group {
    ids: &["R11"],
    checks: &[
        (
            "R11",
            "the delivered message read over IMAP: 143 + STARTTLS and 993",
        ),
        (
            "R11",
            "the delivered message read over POP3: 110 + STLS and 995",
        ),
    ],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(async move {
        let probes = match ctx.probes().await {
            Ok(p) => p,
            Err(e) => {
                return vec![
                    Check::fail("R11", "message read over IMAP", e.clone()),
                    Check::fail("R11", "message read over POP3", e.clone()),
                ];
            }
        };
        join_all(probes.iter().map(|p| read_both(ctx, p)))
            .await
            .into_iter()
            .flatten()
            .collect()
    })
}

async fn read_both(ctx: &Ctx, p: &Delivered) -> Vec<Check> {
    let s = ctx.server_of(&p.to);
    let Ok((_, m)) = ctx.lab.mailbox(&p.to) else {
        return vec![Check::fail(
            "R11",
            "mailbox",
            format!("{} not in lab.json", p.to),
        )];
    };
    let imap = async {
        let mut ev = Vec::new();
        let mut ok = true;
        for implicit in [false, true] {
            match imap_read(ctx, s, m, &p.message_id, implicit).await {
                Ok(e) => ev.push(e),
                Err(e) => {
                    ok = false;
                    ev.push(e);
                }
            }
        }
        Check::new(
            "R11",
            format!(
                "{}: message read over IMAP ({} STARTTLS, {} TLS)",
                p.to, s.ports.imap, s.ports.imaps
            ),
            ok,
            ev.join("\n"),
        )
    };
    // POP3 allows one session per maildrop at a time (RFC 1939 §8): one after the other.
    let pop = async {
        let mut ev = Vec::new();
        let mut ok = true;
        for implicit in [false, true] {
            match pop_read(ctx, s, m, &p.message_id, implicit).await {
                Ok(e) => ev.push(e),
                Err(e) => {
                    ok = false;
                    ev.push(e);
                }
            }
        }
        Check::new(
            "R11",
            format!(
                "{}: message read over POP3 ({} STLS, {} TLS)",
                p.to, s.ports.pop3, s.ports.pop3s
            ),
            ok,
            ev.join("\n"),
        )
    };
    let (a, b) = tokio::join!(imap, pop);
    vec![a, b]
}

async fn imap_read(
    ctx: &Ctx,
    s: &Server,
    m: &Mailbox,
    id: &str,
    implicit: bool,
) -> Result<String, String> {
    let port = if implicit {
        s.ports.imaps
    } else {
        s.ports.imap
    };
    let tls = implicit.then_some((&ctx.tls, s.hostname.as_str()));
    let mut c = Imap::connect(s.addr(port), ctx.lab.host_ip(), tls)
        .await
        .map_err(|e| format!("{port}: {e}"))?;
    let r: Result<String, ClientError> = async {
        if !implicit {
            let a = c.starttls(&ctx.tls, &s.hostname).await?;
            if !a.is_ok() {
                return Err(ClientError::Protocol(format!("STARTTLS: {}", a.status)));
            }
        }
        let login = c.login(&m.address, &m.password).await?;
        if !login.is_ok() {
            return Err(ClientError::Protocol(format!("LOGIN: {}", login.status)));
        }
        let sel = c.select("INBOX").await?;
        if !sel.is_ok() {
            return Err(ClientError::Protocol(format!("SELECT: {}", sel.status)));
        }
        for uid in c.uids().await?.into_iter().rev() {
            if let Some(raw) = c.fetch(uid).await?
                && messages::has_message_id(&raw, id)
            {
                let tls = c
                    .conn
                    .tls
                    .as_ref()
                    .map(|t| format!("{} {}", t.version, t.cipher))
                    .unwrap_or_default();
                return Ok(format!(
                    "{port}: UID FETCH {uid} BODY.PEEK[] -> {id}, {} octets, over {tls}",
                    raw.len()
                ));
            }
        }
        Err(ClientError::Protocol(format!("{id} not in INBOX")))
    }
    .await;
    c.logout().await;
    r.map_err(|e| format!("{port}: {e}\n{}", c.conn.transcript()))
}

async fn pop_read(
    ctx: &Ctx,
    s: &Server,
    m: &Mailbox,
    id: &str,
    implicit: bool,
) -> Result<String, String> {
    let port = if implicit {
        s.ports.pop3s
    } else {
        s.ports.pop3
    };
    let tls = implicit.then_some((&ctx.tls, s.hostname.as_str()));
    let mut c = Pop3::connect(s.addr(port), ctx.lab.host_ip(), tls)
        .await
        .map_err(|e| format!("{port}: {e}"))?;
    let r: Result<String, ClientError> = async {
        if !implicit {
            let st = c.stls(&ctx.tls, &s.hostname).await?;
            if !st.starts_with("+OK") {
                return Err(ClientError::Protocol(format!("STLS: {st}")));
            }
        }
        let login = c.login(&m.address, &m.password).await?;
        if !login.starts_with("+OK") {
            return Err(ClientError::Protocol(format!("USER/PASS: {login}")));
        }
        let n = c.count().await?;
        // Newest last (RFC 1939 numbers messages in the maildrop's order); look at the last 50.
        for k in (1..=n).rev().take(50) {
            let head = c.top(k).await?.join("\r\n") + "\r\n\r\n";
            if messages::has_message_id(head.as_bytes(), id) {
                let raw = c.retr(k).await?;
                let tls = c
                    .conn
                    .tls
                    .as_ref()
                    .map(|t| format!("{} {}", t.version, t.cipher))
                    .unwrap_or_default();
                return Ok(format!(
                    "{port}: RETR {k} -> {id}, {} octets, over {tls}",
                    raw.len()
                ));
            }
        }
        Err(ClientError::Protocol(format!(
            "{id} not among the last 50 of {n} messages"
        )))
    }
    .await;
    c.quit().await;
    r.map_err(|e| format!("{port}: {e}\n{}", c.conn.transcript()))
}
