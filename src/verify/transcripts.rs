//! R12: the protocol exchange can be analysed: the servers' transcripts
//! hold the SMTP session that carried every hop of each probe message, and
//! the message's header fields explain it: each `Received` hop's from, by,
//! protocol and TLS agree with the session that carried it (RFC 5321 §4.4,
//! RFC 3848), and the receiver's Authentication-Results (RFC 8601) decode
//! into the SPF, DKIM and DMARC verdicts. R5's relay half: the hop between
//! the servers used TLS (ESMTPS in the receiver's Received field, the
//! STARTTLS handshake in its transcript).

use futures_util::future::BoxFuture;

use super::ctx::Delivered;
use super::{Check, Ctx, Group, on_probes};
use crate::analysis::headers::{self, Received};
use crate::analysis::trace::{self, Session};

catalog! {
    HOPS: server "R12" "mail the server sends: the transcripts hold the SMTP session of every hop";
    EXPLAINED: server "R12" "mail the server receives: every Received hop agrees with its session (from, by, protocol, TLS); Authentication-Results decode to spf, dkim and dmarc";
    RELAY_TLS: server "R5" "mail relayed to the server came over TLS: ESMTPS in its Received field, STARTTLS in its transcript";
}

pub static GROUP: Group = Group {
    checks: &[&HOPS, &EXPLAINED, &RELAY_TLS],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(on_probes(ctx, GROUP.checks, move |probes| {
        Box::pin(async move {
            let sessions = all_sessions(&ctx.lab).await;
            let mut checks = Vec::new();
            for &p in &probes {
                match &sessions {
                    Ok(sessions) => checks.extend([
                        hops(ctx, p, sessions),
                        explained(ctx, p, sessions),
                        relay_tls(ctx, p, sessions),
                    ]),
                    Err(e) => {
                        let cause = format!("cannot read the transcripts: {e}");
                        checks.extend([
                            HOPS.fail_on(ctx.server_of(&p.from), cause.as_str()),
                            EXPLAINED.fail_on(ctx.server_of(&p.to), cause.as_str()),
                            RELAY_TLS.fail_on(ctx.server_of(&p.to), cause),
                        ]);
                    }
                }
            }
            checks
        })
    }))
}

/// Every transcript session of the lab.
pub async fn all_sessions(lab: &crate::lab::Lab) -> Result<Vec<Session>, String> {
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

/// The Received fields of a message, newest first (RFC 5321 §4.4).
fn received(raw: &[u8]) -> Vec<Received> {
    let fields = headers::header_fields(raw);
    headers::values(&fields, "Received")
        .into_iter()
        .map(headers::parse_received)
        .collect()
}

/// The first word of the `by` clause.
fn by_host(r: &Received) -> &str {
    r.by.split_whitespace().next().unwrap_or("")
}

/// The lab server that added `r`, if one did.
fn lab_hop<'a>(ctx: &'a Ctx, r: &Received) -> Option<&'a crate::lab::Server> {
    ctx.lab
        .servers
        .iter()
        .find(|s| s.hostname.eq_ignore_ascii_case(by_host(r)))
}

/// The session that carried the hop `r` of the message `id`: the session
/// of the receiving server named by the field's `id` clause, or else one of
/// that server mentioning the message.
fn session_of<'a>(sessions: &'a [Session], p: &Delivered, r: &Received) -> Option<&'a Session> {
    let by = by_host(r);
    let found = trace::hops(sessions, &p.message_id, std::slice::from_ref(&r.id));
    found
        .iter()
        .find(|s| s.host.eq_ignore_ascii_case(by) && !r.id.is_empty() && s.id == r.id)
        .or_else(|| found.iter().find(|s| s.host.eq_ignore_ascii_case(by)))
        .copied()
}

fn hops(ctx: &Ctx, p: &Delivered, sessions: &[Session]) -> Check {
    let sender = ctx.server_of(&p.from);
    let mut ok = true;
    let mut ev = vec![format!("{} -> {} ({})", p.from, p.to, p.message_id)];
    let mut n = 0;
    for r in received(&p.raw).iter().rev() {
        if lab_hop(ctx, r).is_none() {
            continue;
        }
        n += 1;
        let s = session_of(sessions, p, r);
        ok &= s.is_some();
        ev.push(format!(
            "hop into {} (with {}, id {}): {}",
            by_host(r),
            r.with,
            if r.id.is_empty() { "-" } else { &r.id },
            match s {
                Some(s) => format!(
                    "transcript found: session {} ({}, {} lines{})",
                    s.id,
                    s.proto,
                    s.entries.len(),
                    if s.tls() { ", TLS" } else { "" }
                ),
                None => "NO transcript".into(),
            }
        ));
    }
    // Submission into the sender's server, then the relay into the receiver's.
    if n < 2 {
        ok = false;
        ev.push(format!("{n} Received field(s) of lab servers (expected 2)"));
    }
    HOPS.on(sender, ok, ev.join("\n"))
}

/// The IP address in the `from` clause's TCP-info (`[192.0.2.1]`).
fn from_ip(r: &Received) -> Option<&str> {
    let open = r.from.find('[')?;
    let close = r.from[open..].find(']')? + open;
    Some(r.from[open + 1..close].trim_start_matches("IPv6:"))
}

/// The IP address of a session's peer (`ip:port` or `[ip]:port`).
fn peer_ip(s: &Session) -> &str {
    let peer = s
        .peer
        .rsplit_once(':')
        .map_or(s.peer.as_str(), |(ip, _)| ip);
    peer.trim_start_matches('[').trim_end_matches(']')
}

/// Whether the client authenticated in the session (a 235 reply, RFC 4954 §6).
fn authenticated(s: &Session) -> bool {
    s.entries
        .iter()
        .any(|e| e.dir == "s" && e.line.starts_with("235"))
}

/// Whether `r` says what the session `s` did: the client's address, the
/// server's name, authentication and TLS.
fn agrees(r: &Received, s: &Session) -> Vec<String> {
    let mut wrong = Vec::new();
    if from_ip(r) != Some(peer_ip(s)) {
        wrong.push(format!(
            "from {:?} but the session's peer is {}",
            from_ip(r).unwrap_or("(no address)"),
            s.peer
        ));
    }
    if !s.host.eq_ignore_ascii_case(by_host(r)) {
        wrong.push(format!(
            "by {} but the session is on {}",
            by_host(r),
            s.host
        ));
    }
    if r.authenticated() != authenticated(s) {
        wrong.push(format!(
            "with {} but the session {} authenticated",
            r.with,
            if authenticated(s) { "was" } else { "was not" }
        ));
    }
    if r.tls() != s.tls() {
        wrong.push(format!(
            "with {} but the session {} TLS",
            r.with,
            if s.tls() { "used" } else { "did not use" }
        ));
    }
    wrong
}

fn explained(ctx: &Ctx, p: &Delivered, sessions: &[Session]) -> Check {
    let receiver = ctx.server_of(&p.to);
    let mut ok = true;
    let mut ev = vec![format!(
        "{} -> {} (labctl inspect {} --last)",
        p.from, p.to, p.to
    )];
    let mut n = 0;
    for r in received(&p.raw).iter().rev() {
        if lab_hop(ctx, r).is_none() {
            continue;
        }
        n += 1;
        let Some(s) = session_of(sessions, p, r) else {
            ok = false;
            ev.push(format!(
                "hop into {}: no session to compare with",
                by_host(r)
            ));
            continue;
        };
        let wrong = agrees(r, s);
        ok &= wrong.is_empty();
        ev.push(format!(
            "hop into {} from {} with {}: session {} ({}, peer {}{}{}): {}",
            by_host(r),
            from_ip(r).unwrap_or("?"),
            r.with,
            s.id,
            s.proto,
            s.peer,
            if authenticated(s) {
                ", authenticated"
            } else {
                ""
            },
            if s.tls() { ", TLS" } else { "" },
            if wrong.is_empty() {
                "agrees".to_string()
            } else {
                wrong.join("; ")
            }
        ));
    }
    if n < 2 {
        ok = false;
        ev.push(format!("{n} Received field(s) of lab servers (expected 2)"));
    }
    let fields = headers::header_fields(&p.raw);
    for method in ["spf", "dkim", "dmarc"] {
        match headers::auth_result(&fields, Some(&receiver.hostname), method) {
            Some(r) => {
                ok &= r.result == "pass";
                ev.push(format!(
                    "Authentication-Results by {}: {method}={} {}",
                    receiver.hostname, r.result, r.details
                ));
            }
            None => {
                ok = false;
                ev.push(format!(
                    "Authentication-Results by {}: no {method} result",
                    receiver.hostname
                ));
            }
        }
    }
    EXPLAINED.on(receiver, ok, ev.join("\n"))
}

fn relay_tls(ctx: &Ctx, p: &Delivered, sessions: &[Session]) -> Check {
    let receiver = ctx.server_of(&p.to);
    let hop = received(&p.raw)
        .into_iter()
        .find(|r| by_host(r).eq_ignore_ascii_case(&receiver.hostname));
    let Some(r) = hop else {
        return RELAY_TLS.fail_on(
            receiver,
            format!(
                "{} -> {}: no Received field by {}",
                p.from, p.to, receiver.hostname
            ),
        );
    };
    let session = session_of(sessions, p, &r);
    let starttls = session.is_some_and(|s| {
        s.entries
            .iter()
            .any(|e| e.dir == "c" && e.line.eq_ignore_ascii_case("STARTTLS"))
            && s.tls()
    });
    let esmtps = r.with.eq_ignore_ascii_case("ESMTPS");
    RELAY_TLS.on(
        receiver,
        esmtps && starttls,
        format!(
            "{} -> {}\nReceived: from {} by {} with {} (expected ESMTPS: relayed, not authenticated, TLS)\n{}",
            p.from,
            p.to,
            r.from,
            r.by,
            r.with,
            match session {
                Some(s) => format!(
                    "session {} on {} from {}: STARTTLS {}",
                    s.id,
                    s.host,
                    s.peer,
                    if starttls {
                        "and the TLS handshake in the transcript"
                    } else {
                        "NOT in the transcript"
                    }
                ),
                None => "no session of the hop in the transcripts".into(),
            }
        ),
    )
}
