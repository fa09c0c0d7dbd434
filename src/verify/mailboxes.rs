//! R2: each server answers as `mail.<domain>` and is the final destination
//! of its domain; R3: every mailbox of the variant is accepted at RCPT, an
//! unknown one is refused (RFC 5321 §3.3, `550 5.1.1`, RFC 3463), and every
//! mailbox logs in over IMAPS. The expected names and mailboxes come from the
//! variant table compiled into labctl, not from the lab's own lab.json.

use futures_util::future::{BoxFuture, join_all};

use super::ctx::EHLO_NAME;
use super::{Check, Ctx, Group};
use crate::client::ClientError;
use crate::client::conn::connect;
use crate::client::imap::Imap;
use crate::client::smtp::Smtp;
use crate::lab::Server;

catalog! {
    NAME: server "R2" "greets and answers EHLO as mail.<d>";
    RCPT: server "R3" "every mailbox of the variant accepted at RCPT on port 25";
    UNKNOWN: server "R3" "an unknown mailbox refused with 550 5.1.1";
    LOGIN: server "R3" "every mailbox of the variant logs in over IMAPS";
}

pub static GROUP: Group = Group {
    checks: &[&NAME, &RCPT, &UNKNOWN, &LOGIN],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(async move {
        join_all(ctx.variant.domains.iter().map(|d| domain(ctx, d)))
            .await
            .into_iter()
            .flatten()
            .collect()
    })
}

/// The checks of one domain of the variant.
async fn domain(ctx: &Ctx, d: &str) -> Vec<Check> {
    let Some(s) = ctx.lab.server(d) else {
        let cause = format!("lab.json has no server for {d}, a domain of the variant");
        return [&NAME, &RCPT, &UNKNOWN, &LOGIN]
            .map(|c| c.fail(Some(d), cause.as_str()))
            .to_vec();
    };
    let mailboxes: Vec<&str> = ctx.variant.mailboxes_of(d).collect();
    let (mut checks, login) =
        tokio::join!(smtp(ctx, d, s, &mailboxes), logins(ctx, d, s, &mailboxes));
    checks.push(login);
    checks
}

/// R2 and the RCPT checks of R3, in one session on port 25.
async fn smtp(ctx: &Ctx, d: &str, s: &Server, mailboxes: &[&str]) -> Vec<Check> {
    let host = format!("mail.{d}");
    let mut smtp = match Smtp::connect(s.addr(s.ports.smtp), ctx.lab.host_ip(), None, false).await {
        Ok(c) => c,
        Err(e) => {
            let e = e.to_string();
            return [&NAME, &RCPT, &UNKNOWN]
                .map(|c| c.fail(Some(d), e.as_str()))
                .to_vec();
        }
    };
    let mut out = Vec::new();
    let result: Result<(), ClientError> = async {
        let ehlo = smtp.ehlo(EHLO_NAME).await?;
        let first_word = |l: Option<&String>| {
            l.and_then(|l| l.get(4..))
                .and_then(|t| t.split_whitespace().next())
                .is_some_and(|w| w.eq_ignore_ascii_case(&host))
        };
        out.push(NAME.check(
            Some(d),
            smtp.greeting.code == 220
                && first_word(smtp.greeting.lines.first())
                && ehlo.is_positive()
                && first_word(ehlo.lines.first()),
            format!(
                "greeting: {}\nEHLO: {}\n(expected {host}, from the variant table)",
                smtp.greeting.text(),
                ehlo.lines.first().cloned().unwrap_or_default()
            ),
        ));
        // Null reverse-path (RFC 5321 §4.5.5): no sender domain to SPF-check
        // but the EHLO name, which is in no lab zone.
        let mail = smtp.command("MAIL FROM:<>").await?;
        if !mail.is_positive() {
            let ev = format!("MAIL FROM:<> -> {}", mail.text());
            out.push(RCPT.fail(Some(d), ev.as_str()));
            out.push(UNKNOWN.fail(Some(d), ev));
            return Ok(());
        }
        let mut ok = !mailboxes.is_empty();
        let mut ev = vec![format!(
            "{} mailboxes of {d} in the variant table",
            mailboxes.len()
        )];
        for m in mailboxes {
            let r = smtp.command(&format!("RCPT TO:<{m}>")).await?;
            ok &= r.code == 250 || r.code == 251;
            ev.push(format!("RCPT TO:<{m}> -> {}", r.text()));
        }
        out.push(RCPT.check(Some(d), ok, ev.join("\n")));
        let unknown = format!("no-such-user-{}@{d}", ctx.token);
        let r = smtp.command(&format!("RCPT TO:<{unknown}>")).await?;
        out.push(UNKNOWN.check(
            Some(d),
            r.code == 550 && r.has_enhanced("5.1.1"),
            format!("RCPT TO:<{unknown}> -> {} (expected 550 5.1.1)", r.text()),
        ));
        Ok(())
    }
    .await;
    smtp.quit().await;
    if let Err(e) = result {
        let cause = format!("{e}\n{}", smtp.conn.transcript());
        for spec in [&NAME, &RCPT, &UNKNOWN] {
            if !out.iter().any(|c| std::ptr::eq(c.spec, spec)) {
                out.push(spec.fail(Some(d), cause.as_str()));
            }
        }
    }
    out
}

/// Every mailbox of the variant logs in over IMAPS (RFC 3501 §6.2.3), with
/// the password the lab generated for it.
async fn logins(ctx: &Ctx, d: &str, s: &Server, mailboxes: &[&str]) -> Check {
    let results = join_all(mailboxes.iter().map(|m| async move {
        let Ok((_, mb)) = ctx.lab.mailbox(m) else {
            return (
                false,
                format!("{m}: not in lab.json, so it has no password"),
            );
        };
        let port = s.ports.imaps;
        let r: Result<String, ClientError> = async {
            let mut c = connect::<Imap>(
                s.addr(port),
                ctx.lab.host_ip(),
                Some((&ctx.tls, &s.hostname)),
            )
            .await?;
            let login = c.login(&mb.address, &mb.password).await?;
            c.logout().await;
            Ok(login.status)
        }
        .await;
        match r {
            Ok(status) => (
                status.split_whitespace().nth(1) == Some("OK"),
                format!("{port} LOGIN {m} -> {status}"),
            ),
            Err(e) => (false, format!("{port} LOGIN {m}: {e}")),
        }
    }))
    .await;
    let ok = !results.is_empty() && results.iter().all(|(ok, _)| *ok);
    let ev: Vec<String> = results.into_iter().map(|(_, e)| e).collect();
    LOGIN.check(Some(d), ok, ev.join("\n"))
}
