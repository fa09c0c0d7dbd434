//! R9: infected messages are refused (the EICAR test file in the body, as a
//! base64 attachment, inside a zip archive). R10: GTUBE is refused; a
//! spammy message lands in Junk with `X-Spam-Flag: YES`; a normal message
//! lands in the INBOX untagged.

use std::time::Instant;

use futures_util::future::{BoxFuture, join_all};

use super::ctx::DELIVERY_DEADLINE;
use super::messages::{self, EICAR, GTUBE};
use super::{Check, Ctx, Group};
use crate::analysis::headers;

pub static GROUP: Group = Group {
    ids: &["R9", "R10"],
    checks: &[
        ("R9", "EICAR in the body refused"),
        ("R9", "EICAR as a base64 attachment refused"),
        ("R9", "EICAR inside a zip attachment refused"),
        ("R10", "GTUBE refused"),
        (
            "R10",
            "a spammy message filed into Junk with X-Spam-Flag: YES",
        ),
        ("R10", "a normal message in the INBOX, not tagged as spam"),
    ],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(async move {
        let from = ctx.mailbox(0);
        let to = &ctx.mailbox(1).address;
        let id = |p: &str| messages::message_id(&ctx.token, p, &from.address);
        let zip = messages::zip_stored("eicar.com", EICAR.as_bytes());
        let refused = [
            (
                "R9",
                "EICAR in the body",
                messages::plain(
                    &from.address,
                    to,
                    "labctl verify: EICAR body",
                    &id("eicar-body"),
                    &format!("{EICAR}\r\n"),
                ),
            ),
            (
                "R9",
                "EICAR as a base64 attachment",
                messages::with_attachment(
                    &from.address,
                    to,
                    "labctl verify: EICAR attachment",
                    &id("eicar-att"),
                    "See the attachment.",
                    ("eicar.com", "application/octet-stream", EICAR.as_bytes()),
                ),
            ),
            (
                "R9",
                "EICAR inside a zip attachment",
                messages::with_attachment(
                    &from.address,
                    to,
                    "labctl verify: EICAR zip",
                    &id("eicar-zip"),
                    "See the archive.",
                    ("eicar.zip", "application/zip", &zip),
                ),
            ),
            (
                "R10",
                "GTUBE",
                messages::plain(
                    &from.address,
                    to,
                    "labctl verify: GTUBE",
                    &id("gtube"),
                    &format!("This is the GTUBE test string:\r\n{GTUBE}\r\n"),
                ),
            ),
        ];
        let mut checks: Vec<Check> = join_all(refused.iter().map(|(rid, what, msg)| async move {
            let name = format!(
                "{what}: refused at submission by {}",
                ctx.server(0).hostname
            );
            match ctx.submit(from, to, msg).await {
                Ok(s) => Check::new(
                    rid,
                    name,
                    s.reply.is_permanent_failure(),
                    format!(
                        "{} (expected 5xx, e.g. 554 5.7.1 naming the signature)",
                        s.reply.text()
                    ),
                ),
                Err(e) => Check::fail(rid, name, e.to_string()),
            }
        }))
        .await;
        let (spam, normal) = tokio::join!(spammy(ctx), normal(ctx));
        checks.push(spam);
        checks.push(normal);
        checks
    })
}

async fn spammy(ctx: &Ctx) -> Check {
    let from = ctx.mailbox(0);
    let to = ctx.mailbox(1);
    let name = format!(
        "a spammy message to {} is filed into Junk, tagged",
        to.address
    );
    let id = messages::message_id(&ctx.token, "spammy", &from.address);
    let msg = messages::spammy(&from.address, &to.address, &id);
    let sub = match ctx.submit(from, &to.address, &msg).await {
        Ok(s) => s,
        Err(e) => return Check::fail("R10", name, e.to_string()),
    };
    if !sub.accepted {
        return Check::fail(
            "R10",
            name,
            format!(
                "submission refused: {} (expected it to be accepted and tagged, not refused)",
                sub.reply.text()
            ),
        );
    }
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    let (folder, raw) = match ctx.wait_in_any(to, &["Junk", "INBOX"], &id, deadline).await {
        Ok(Some(found)) => found,
        Err(e) => return Check::fail("R10", name, format!("IMAP: {e}")),
        Ok(None) => {
            return Check::fail(
                "R10",
                name,
                format!(
                    "accepted ({}) but found in neither Junk nor INBOX within {DELIVERY_DEADLINE:?}",
                    sub.reply.text()
                ),
            );
        }
    };
    let fields = headers::header_fields(&raw);
    let flag = headers::value(&fields, "X-Spam-Flag")
        .unwrap_or("(none)")
        .to_string();
    let status = headers::value(&fields, "X-Spam-Status")
        .unwrap_or("(none)")
        .to_string();
    Check::new(
        "R10",
        name,
        folder == "Junk" && flag.eq_ignore_ascii_case("YES"),
        format!("found in {folder}\nX-Spam-Flag: {flag}\nX-Spam-Status: {status}"),
    )
}

async fn normal(ctx: &Ctx) -> Check {
    let name = "a normal message (the probe) is in the INBOX, not tagged".to_string();
    let probes = match ctx.probes().await {
        Ok(p) => p,
        Err(e) => return Check::fail("R10", name, e.clone()),
    };
    let mut ok = true;
    let mut ev = Vec::new();
    for p in probes {
        let fields = headers::header_fields(&p.raw);
        let flag = headers::value(&fields, "X-Spam-Flag").unwrap_or("(none)");
        let status = headers::value(&fields, "X-Spam-Status").unwrap_or("(none)");
        ok &= !flag.eq_ignore_ascii_case("YES");
        ev.push(format!(
            "{} -> {} in INBOX: X-Spam-Flag: {flag}; X-Spam-Status: {status}",
            p.from, p.to
        ));
    }
    Check::new("R10", name, ok, ev.join("\n"))
}
