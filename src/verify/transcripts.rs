//! R12: the protocol exchange can be analysed: the servers' transcripts
//! hold the SMTP sessions that carried the probe message, one for every
//! lab server its Received chain names, and the message's header fields
//! explain (Received chain, Authentication-Results, DKIM-Signature).

use futures_util::future::BoxFuture;

use super::ctx::Delivered;
use super::{Check, Ctx, Group};
use crate::analysis::{headers, trace};

pub static GROUP: Group = Group {
    ids: &["R12"],
    checks: &[
        (
            "R12",
            "transcripts hold the SMTP session of every hop of the probe message",
        ),
        (
            "R12",
            "the probe's header fields explain: Received chain, Authentication-Results, DKIM-Signature",
        ),
    ],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(async move {
        let probes = match ctx.probes().await {
            Ok(p) => p,
            Err(e) => {
                return vec![Check::fail(
                    "R12",
                    "transcripts of the probe message",
                    e.clone(),
                )];
            }
        };
        let sessions = all_sessions(&ctx.lab).await;
        let mut checks = Vec::new();
        for p in probes {
            checks.push(hops(ctx, p, &sessions));
        }
        checks.push(explained(&probes[0]));
        checks
    })
}

/// Every transcript session of the lab.
pub async fn all_sessions(lab: &crate::lab::Lab) -> Result<Vec<trace::Session>, String> {
    let mut lines = Vec::new();
    for s in &lab.servers {
        lines.extend(
            lab.transcript_lines(&s.domain)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(trace::sessions(trace::parse(&lines).0))
}

fn hops(ctx: &Ctx, p: &Delivered, sessions: &Result<Vec<trace::Session>, String>) -> Check {
    let name = format!("{} -> {}: a transcript for every hop", p.from, p.to);
    let sessions = match sessions {
        Ok(s) => s,
        Err(e) => return Check::fail("R12", name, format!("cannot read the transcripts: {e}")),
    };
    let fields = headers::header_fields(&p.raw);
    let received: Vec<headers::Received> = headers::values(&fields, "Received")
        .into_iter()
        .map(headers::parse_received)
        .collect();
    let ids: Vec<String> = received
        .iter()
        .map(|r| r.id.clone())
        .filter(|i| !i.is_empty())
        .collect();
    let found = trace::hops(sessions, &p.message_id, &ids);
    // Every lab server a Received field names must have a session for this message.
    let lab_hosts: Vec<&str> = ctx
        .lab
        .servers
        .iter()
        .map(|s| s.hostname.as_str())
        .collect();
    let mut ok = !found.is_empty();
    let mut ev = Vec::new();
    for r in received.iter().rev() {
        let by = r.by.split_whitespace().next().unwrap_or("");
        if !lab_hosts.iter().any(|h| h.eq_ignore_ascii_case(by)) {
            continue;
        }
        let has = found.iter().any(|s| s.host.eq_ignore_ascii_case(by));
        ok &= has;
        ev.push(format!(
            "hop into {by} (with {}, id {}): {}",
            r.with,
            if r.id.is_empty() { "-" } else { &r.id },
            if has {
                "transcript found"
            } else {
                "NO transcript"
            }
        ));
    }
    if ev.is_empty() {
        ok = false;
        ev.push("no Received field of a lab server in the message".into());
    }
    for s in &found {
        ev.push(format!(
            "session {} on {} ({}, {} lines{})",
            s.id,
            s.host,
            s.proto,
            s.entries.len(),
            if s.tls() { ", TLS" } else { "" }
        ));
    }
    Check::new("R12", name, ok, ev.join("\n"))
}

fn explained(p: &Delivered) -> Check {
    let text = headers::explain(&p.raw);
    let fields = headers::header_fields(&p.raw);
    let ok = !headers::values(&fields, "Received").is_empty()
        && !headers::values(&fields, "Authentication-Results").is_empty()
        && !headers::values(&fields, "DKIM-Signature").is_empty();
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  hop") || l.starts_with("Received chain"))
        .collect();
    Check::new(
        "R12",
        format!(
            "{}: header fields explained (labctl inspect {} --last)",
            p.message_id, p.to
        ),
        ok,
        summary.join("\n"),
    )
}
