//! R2: each server answers as `mail.<domain>` and is the final destination
//! of its domain; R3: every mailbox of the variant is accepted at RCPT and
//! an unknown one is refused (RFC 5321 §3.3, `550 5.1.1`, RFC 3463).

use futures_util::future::{BoxFuture, join_all};

use super::ctx::EHLO_NAME;
use super::{Check, Ctx, Group};
use crate::client::smtp::Smtp;
use crate::lab::Server;

pub static GROUP: Group = Group {
    ids: &["R2", "R3"],
    checks: &[
        ("R2", "each server greets and answers EHLO as mail.<domain>"),
        (
            "R3",
            "every mailbox of the variant accepted at RCPT on port 25",
        ),
        ("R3", "an unknown mailbox refused with 550 5.1.1"),
    ],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(async move {
        join_all(ctx.lab.servers.iter().map(|s| server(ctx, s)))
            .await
            .into_iter()
            .flatten()
            .collect()
    })
}

async fn server(ctx: &Ctx, s: &Server) -> Vec<Check> {
    let r2 = format!("{}: greets and answers EHLO as {}", s.domain, s.hostname);
    let r3 = format!(
        "{}: all {} mailboxes accepted at RCPT",
        s.domain,
        s.mailboxes.len()
    );
    let r3u = format!("{}: unknown mailbox refused", s.domain);
    let mut smtp = match Smtp::connect(s.addr(s.ports.smtp), ctx.lab.host_ip(), None, false).await {
        Ok(c) => c,
        Err(e) => {
            let e = e.to_string();
            return vec![
                Check::fail("R2", r2, e.clone()),
                Check::fail("R3", r3, e.clone()),
                Check::fail("R3", r3u, e),
            ];
        }
    };
    let mut out = Vec::new();
    let result: Result<(), crate::client::ClientError> = async {
        let ehlo = smtp.ehlo(EHLO_NAME).await?;
        let greets = smtp
            .greeting
            .lines
            .first()
            .and_then(|l| l.get(4..))
            .is_some_and(|t| t.split_whitespace().next() == Some(s.hostname.as_str()));
        let ehlo_name = ehlo
            .lines
            .first()
            .and_then(|l| l.get(4..))
            .is_some_and(|t| t.split_whitespace().next() == Some(s.hostname.as_str()));
        out.push(Check::new(
            "R2",
            r2.clone(),
            smtp.greeting.code == 220 && greets && ehlo.is_positive() && ehlo_name,
            format!(
                "greeting: {}\nEHLO: {}",
                smtp.greeting.text(),
                ehlo.lines.first().cloned().unwrap_or_default()
            ),
        ));
        // Null reverse-path (RFC 5321 §4.5.5): no sender domain to SPF-check
        // but the EHLO name, which is in no lab zone.
        let mail = smtp.command("MAIL FROM:<>").await?;
        if !mail.is_positive() {
            out.push(Check::fail(
                "R3",
                r3.clone(),
                format!("MAIL FROM:<> -> {}", mail.text()),
            ));
            out.push(Check::fail(
                "R3",
                r3u.clone(),
                format!("MAIL FROM:<> -> {}", mail.text()),
            ));
            return Ok(());
        }
        let mut ok = true;
        let mut ev = Vec::new();
        for m in &s.mailboxes {
            let r = smtp.command(&format!("RCPT TO:<{}>", m.address)).await?;
            ok &= r.code == 250 || r.code == 251;
            ev.push(format!("RCPT TO:<{}> -> {}", m.address, r.text()));
        }
        out.push(Check::new("R3", r3.clone(), ok, ev.join("\n")));
        let unknown = format!("no-such-user-{}@{}", ctx.token, s.domain);
        let r = smtp.command(&format!("RCPT TO:<{unknown}>")).await?;
        out.push(Check::new(
            "R3",
            r3u.clone(),
            r.code == 550 && r.has_enhanced("5.1.1"),
            format!("RCPT TO:<{unknown}> -> {} (expected 550 5.1.1)", r.text()),
        ));
        Ok(())
    }
    .await;
    smtp.quit().await;
    if let Err(e) = result {
        let names = [("R2", &r2), ("R3", &r3), ("R3", &r3u)];
        for (id, n) in names.into_iter().skip(out.len()) {
            out.push(Check::fail(
                id,
                n.clone(),
                format!("{e}\n{}", smtp.conn.transcript()),
            ));
        }
    }
    out
}
