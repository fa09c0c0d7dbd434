//! R9: infected messages are refused: the EICAR test file in the body, as a
//! base64 attachment, inside a deflated zip and inside a zip in a zip. R10:
//! GTUBE is refused; a spammy message lands in Junk with `X-Spam-Flag: YES`;
//! a normal message lands in the INBOX untagged.
//!
//! A refusal counts only when it answers the end of DATA (the message was
//! transferred and scanned, RFC 5321 §4.2.5) with a 5xx reply whose
//! enhanced code is 5.7.x (RFC 3463 §3.8, security or policy) and whose
//! text names the signature or rule. Each case is sent to both servers on
//! both ways in: submission (587, authenticated) and port 25 from the other
//! server's own address (as its relay would). In the same run a clean
//! message of the same shape goes the same way and must be accepted, so a
//! server that refuses everything fails.

use std::time::Instant;

use futures_util::future::BoxFuture;

use super::ctx::DELIVERY_DEADLINE;
use super::messages::{self, GTUBE};
use super::{Check, Ctx, Group, Spec, on_probes, per_server};
use crate::analysis::headers;
use crate::client::smtp::Reply;
use crate::lab::{Mailbox, Server};

catalog! {
    BODY: server "R9" "EICAR in the body refused at the end of DATA, 5.7.x naming the signature, on 587 and on 25; clean text accepted";
    ATTACHMENT: server "R9" "EICAR as a base64 attachment refused at the end of DATA, 5.7.x naming the signature, on 587 and on 25; a clean attachment accepted";
    ZIP: server "R9" "EICAR in a deflated zip refused at the end of DATA, 5.7.x naming the signature, on 587 and on 25; a clean zip accepted";
    NESTED: server "R9" "EICAR in a zip inside a zip refused at the end of DATA, 5.7.x naming the signature, on 587 and on 25; a clean nested zip accepted";
    GTUBE_REFUSED: server "R10" "GTUBE refused at the end of DATA, 5.7.x naming the rule, on 587 and on 25; clean text accepted";
    SPAM: server "R10" "a spammy message from the other domain filed into Junk with X-Spam-Flag: YES";
    NORMAL: server "R10" "a normal message (the probe) from the other domain in the INBOX, not tagged as spam";
}

pub static GROUP: Group = Group {
    checks: &[
        &BODY,
        &ATTACHMENT,
        &ZIP,
        &NESTED,
        &GTUBE_REFUSED,
        &SPAM,
        &NORMAL,
    ],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(async move {
        let scans = per_server(ctx, move |i, s| scans(ctx, i, s));
        let spam = per_server(
            ctx,
            move |i, s| async move { vec![spammy(ctx, i, s).await] },
        );
        let normal = on_probes(ctx, &GROUP.checks[6..], move |probes| {
            Box::pin(async move { probes.iter().map(|p| normal(ctx, p)).collect() })
        });
        let (mut checks, spam, normal) = tokio::join!(scans, spam, normal);
        checks.extend(spam);
        checks.extend(normal);
        checks
    })
}

/// The shape of a test message: the infected (or GTUBE) payload and the
/// clean one put the same way.
#[derive(Clone, Copy)]
enum Shape {
    Body,
    Attachment,
    Zip,
    Nested,
}

/// One message of a shape with `payload` (file `name`).
fn message(shape: Shape, from: &str, to: &str, id: &str, name: &str, payload: &[u8]) -> Vec<u8> {
    let subject = format!("labctl verify: {name}");
    match shape {
        Shape::Body => messages::plain(
            from,
            to,
            &subject,
            id,
            &format!("{}\r\n", String::from_utf8_lossy(payload)),
        ),
        Shape::Attachment => messages::with_attachment(
            from,
            to,
            &subject,
            id,
            "See the attachment.",
            (name, "application/octet-stream", payload),
        ),
        Shape::Zip => messages::with_attachment(
            from,
            to,
            &subject,
            id,
            "See the archive.",
            (
                "archive.zip",
                "application/zip",
                &messages::zip_deflated(name, payload),
            ),
        ),
        Shape::Nested => messages::with_attachment(
            from,
            to,
            &subject,
            id,
            "See the archive.",
            (
                "outer.zip",
                "application/zip",
                &messages::zip_deflated("inner.zip", &messages::zip_deflated(name, payload)),
            ),
        ),
    }
}

/// How one transfer ended: the reply to the end of DATA when the message
/// was transferred, and the dialogue's outcome as evidence.
struct Ended {
    end: Option<Reply>,
    shown: String,
}

/// The two ways into server `s`, for messages to its mailbox `to`, each
/// way in one session: submitted by `to` itself, and on port 25 from the
/// other server's address as a mailbox of the other domain (the relay's
/// path). `make(from, way)` builds the messages each way sends; the result
/// is, per message, how it ended on 587 and on 25.
async fn both_ways(
    ctx: &Ctx,
    s: &Server,
    other: &Server,
    to: &Mailbox,
    make: impl Fn(&str, &str) -> Vec<Vec<u8>>,
) -> Vec<[Ended; 2]> {
    let submit = async {
        let messages = make(&to.address, "587");
        match ctx.submit_many(to, &to.address, &messages).await {
            Ok(subs) => subs
                .into_iter()
                .map(|sub| Ended {
                    shown: format!(
                        "587 as {}: {} -> {}",
                        to.address,
                        if sub.end_of_data {
                            "end of DATA"
                        } else {
                            "refused before the message was sent"
                        },
                        sub.reply.text()
                    ),
                    end: sub.end_of_data.then_some(sub.reply),
                })
                .collect(),
            Err(e) => unsent(messages.len(), format!("587 as {}: {e}", to.address)),
        }
    };
    let relay = async {
        let from = &other.mailboxes[0].address;
        let messages = make(from, "25");
        match ctx.relay_from(other, s, from, &to.address, &messages).await {
            Ok(all) => all
                .into_iter()
                .map(|r| Ended {
                    shown: match &r.end {
                        Some(end) => format!(
                            "25 from {} as {from}: end of DATA -> {}",
                            other.ip,
                            end.text()
                        ),
                        None => format!(
                            "25 from {} as {from}: refused before the message was sent: MAIL -> {}, RCPT -> {}",
                            other.ip,
                            r.mail.text(),
                            r.rcpt.text()
                        ),
                    },
                    end: r.end,
                })
                .collect(),
            Err(e) => unsent(messages.len(), format!("25 from {}: {e}", other.ip)),
        }
    };
    let (a, b) = tokio::join!(submit, relay);
    a.into_iter().zip(b).map(|(a, b)| [a, b]).collect()
}

/// `n` messages that a session which failed (`why`) never sent.
fn unsent(n: usize, why: String) -> Vec<Ended> {
    (0..n)
        .map(|_| Ended {
            end: None,
            shown: why.clone(),
        })
        .collect()
}

/// A refusal at the end of DATA, 5xx with a 5.7.x enhanced code (RFC 3463
/// §3.8), whose text names `what` (the signature or rule).
fn refused_naming(end: &Option<Reply>, what: &str) -> bool {
    end.as_ref().is_some_and(|r| {
        let enhanced = r
            .lines
            .iter()
            .filter_map(|l| l.get(4..)?.split_whitespace().next())
            .any(|c| c.starts_with("5.7."));
        r.is_permanent_failure()
            && enhanced
            && r.text()
                .to_ascii_lowercase()
                .contains(&what.to_ascii_lowercase())
    })
}

/// The R9 cases and GTUBE for server `i`, with their clean controls.
async fn scans(ctx: &Ctx, i: usize, s: &Server) -> Vec<Check> {
    let other = &ctx.lab.servers[1 - i];
    // The server's last mailbox sends them to itself (the probes and the
    // spammy message use the first).
    let to = s.mailboxes.last().unwrap_or(&s.mailboxes[0]);
    let id = |p: &str| messages::message_id(&ctx.token, &format!("{p}-{}", s.domain), &to.address);
    let eicar = messages::eicar_file();
    let clean_text = b"A harmless text file sent by labctl verify as a control.".as_slice();
    let cases: [(&'static Spec, Shape, &str, &[u8], &str); 5] = [
        (&BODY, Shape::Body, "eicar.com", &eicar, "eicar"),
        (&ATTACHMENT, Shape::Attachment, "eicar.com", &eicar, "eicar"),
        (&ZIP, Shape::Zip, "eicar.com", &eicar, "eicar"),
        (&NESTED, Shape::Nested, "eicar.com", &eicar, "eicar"),
        (
            &GTUBE_REFUSED,
            Shape::Body,
            "gtube.txt",
            GTUBE.as_bytes(),
            "gtube",
        ),
    ];
    // Per case the infected message, then its clean control, each way in
    // one session.
    let make = |from: &str, way: &str| {
        cases
            .iter()
            .enumerate()
            .flat_map(|(k, &(_, shape, name, payload, _))| {
                [
                    message(
                        shape,
                        from,
                        &to.address,
                        &id(&format!("bad{k}-{way}")),
                        name,
                        payload,
                    ),
                    message(
                        shape,
                        from,
                        &to.address,
                        &id(&format!("clean{k}-{way}")),
                        "readme.txt",
                        clean_text,
                    ),
                ]
            })
            .collect()
    };
    let ended = both_ways(ctx, s, other, to, make).await;
    cases
        .iter()
        .zip(ended.chunks(2))
        .map(|(&(spec, _, name, _, names), pair)| {
            let (bad, good) = (&pair[0], &pair[1]);
            let mut ok = true;
            let mut ev = Vec::new();
            for e in bad {
                ok &= refused_naming(&e.end, names);
                ev.push(format!("{name}: {}", e.shown));
            }
            for e in good {
                ok &= e.end.as_ref().is_some_and(Reply::is_positive);
                ev.push(format!("clean control: {}", e.shown));
            }
            ev.push(format!(
                "(expected the {name} message refused at the end of DATA with 5.7.x naming {names:?}, and the control accepted)"
            ));
            spec.on(s, ok, ev.join("\n"))
        })
        .collect()
}

/// A spammy message submitted on the other server to a mailbox of `s`
/// ends up in its Junk folder, flagged.
async fn spammy(ctx: &Ctx, i: usize, s: &Server) -> Check {
    let from: &Mailbox = &ctx.lab.servers[1 - i].mailboxes[0];
    let to = &s.mailboxes[0];
    let id = messages::message_id(&ctx.token, &format!("spammy-{}", s.domain), &from.address);
    let msg = messages::spammy(&from.address, &to.address, &id);
    let sub = match ctx.submit(from, &to.address, &msg).await {
        Ok(sub) => sub,
        Err(e) => return SPAM.fail_on(s, format!("submission as {}: {e}", from.address)),
    };
    if !sub.accepted {
        return SPAM.fail_on(
            s,
            format!(
                "submission as {} refused: {} (expected it to be accepted and tagged, not refused)",
                from.address,
                sub.reply.text()
            ),
        );
    }
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    let (folder, raw) = match ctx.wait_in_any(to, &["Junk", "INBOX"], &id, deadline).await {
        Ok(Some(found)) => found,
        Err(e) => return SPAM.fail_on(s, format!("IMAP: {e}")),
        Ok(None) => {
            return SPAM.fail_on(
                s,
                format!(
                    "accepted ({}) but found in neither Junk nor INBOX of {} within {DELIVERY_DEADLINE:?}",
                    sub.reply.text(),
                    to.address
                ),
            );
        }
    };
    let fields = headers::header_fields(&raw);
    let flag = headers::value(&fields, "X-Spam-Flag").unwrap_or("(none)");
    let status = headers::value(&fields, "X-Spam-Status").unwrap_or("(none)");
    SPAM.on(
        s,
        folder == "Junk" && flag.eq_ignore_ascii_case("YES"),
        format!(
            "{} -> {}: found in {folder}\nX-Spam-Flag: {flag}\nX-Spam-Status: {status}",
            from.address, to.address
        ),
    )
}

fn normal(ctx: &Ctx, p: &super::ctx::Delivered) -> Check {
    let fields = headers::header_fields(&p.raw);
    let flag = headers::value(&fields, "X-Spam-Flag").unwrap_or("(none)");
    let status = headers::value(&fields, "X-Spam-Status").unwrap_or("(none)");
    NORMAL.on(
        ctx.server_of(&p.to),
        !flag.eq_ignore_ascii_case("YES"),
        format!(
            "{} -> {} in INBOX: X-Spam-Flag: {flag}; X-Spam-Status: {status}",
            p.from, p.to
        ),
    )
}
