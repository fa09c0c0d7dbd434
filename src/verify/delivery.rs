//! R11: the delivered probe message read over POP3 (110 with STLS, 995) and
//! IMAP (143 with STARTTLS, 993), with TLS verified against the lab CA.

use futures_util::future::{BoxFuture, join_all};

use super::ctx::Delivered;
use super::{Check, Ctx, Group, messages, on_probes};
use crate::client::ClientError;
use crate::client::conn::{Conn, Greeted, connect};
use crate::client::imap::Imap;
use crate::client::pop3::Pop3;
use crate::lab::{Mailbox, Server};

catalog! {
    IMAP: server "R11" "the delivered probe message read over IMAP: 143 + STARTTLS and 993";
    POP: server "R11" "the delivered probe message read over POP3: 110 + STLS and 995";
}

pub static GROUP: Group = Group {
    checks: &[&IMAP, &POP],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(on_probes(ctx, GROUP.checks, move |probes| {
        Box::pin(async move {
            join_all(probes.iter().map(|p| read_both(ctx, p)))
                .await
                .into_iter()
                .flatten()
                .collect()
        })
    }))
}

async fn read_both(ctx: &Ctx, p: &Delivered) -> Vec<Check> {
    let s = ctx.server_of(&p.to);
    let Ok((_, m)) = ctx.lab.mailbox(&p.to) else {
        let cause = format!("{} not in lab.json", p.to);
        return vec![IMAP.fail_on(s, cause.as_str()), POP.fail_on(s, cause)];
    };
    let want = Want {
        ctx,
        s,
        m,
        id: p.message_id.as_str(),
    };
    // POP3 allows one session per maildrop at a time (RFC 1939 §8): each
    // protocol reads its two ways one after the other.
    let (imap, pop) = tokio::join!(
        both_ways(|implicit| imap_read(&want, implicit)),
        both_ways(|implicit| pop_read(&want, implicit)),
    );
    vec![IMAP.on(s, imap.0, imap.1), POP.on(s, pop.0, pop.1)]
}

/// Reads with the upgrade command, then with implicit TLS: both must work.
async fn both_ways<F, Fut>(read: F) -> (bool, String)
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let mut ev = Vec::new();
    let mut ok = true;
    for implicit in [false, true] {
        let r = read(implicit).await;
        ok &= r.is_ok();
        ev.push(r.unwrap_or_else(|e| e));
    }
    (ok, ev.join("\n"))
}

/// What to read: the message `id` in the INBOX of `m` on server `s`.
struct Want<'a> {
    ctx: &'a Ctx,
    s: &'a Server,
    m: &'a Mailbox,
    id: &'a str,
}

/// Connects to the plain port (TLS comes by the upgrade command) or the
/// implicit TLS port of `ports`; errors name the port.
async fn open<S: Greeted>(
    w: &Want<'_>,
    (plain, tls_port): (u16, u16),
    implicit: bool,
) -> Result<(u16, S), String> {
    let (port, tls) = if implicit {
        (tls_port, Some((&w.ctx.tls, w.s.hostname.as_str())))
    } else {
        (plain, None)
    };
    connect::<S>(w.s.addr(port), w.ctx.lab.host_ip(), tls)
        .await
        .map(|c| (port, c))
        .map_err(|e| format!("{port}: {e}"))
}

/// The TLS version and cipher of a connection, for evidence.
fn tls_of(conn: &Conn) -> String {
    conn.tls
        .as_ref()
        .map(|t| format!("{} {}", t.version, t.cipher))
        .unwrap_or_default()
}

async fn imap_read(w: &Want<'_>, implicit: bool) -> Result<String, String> {
    let Want { ctx, s, m, id } = *w;
    let (port, mut c) = open::<Imap>(w, (s.ports.imap, s.ports.imaps), implicit).await?;
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
                let tls = tls_of(&c.conn);
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

async fn pop_read(w: &Want<'_>, implicit: bool) -> Result<String, String> {
    let (ctx, s, m, id) = (w.ctx, w.s, w.m, w.id);
    let (port, mut c) = open::<Pop3>(w, (s.ports.pop3, s.ports.pop3s), implicit).await?;
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
                let tls = tls_of(&c.conn);
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
