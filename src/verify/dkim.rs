//! R6: outgoing mail carries a DKIM signature (RFC 6376) of the sender's
//! domain that verifies, checked independently with mail-auth against the
//! lab DNS. R7: the receiving server verified it (`Authentication-Results:
//! ... dkim=pass`, RFC 8601), and a copy with an altered body, injected from
//! the legitimate server's address, is refused `550 5.7.20` (RFC 7372 §3.1).

use futures_util::future::{BoxFuture, join_all};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

use super::ctx::Delivered;
use super::{Check, Ctx, Group, on_probes};
use crate::analysis::headers;

catalog! {
    SIGNED: server "R6" "mail the server sends to the other domain carries a DKIM-Signature d=<d> that verifies";
    VERIFIED: server "R7" "the server recorded Authentication-Results dkim=pass for mail of the other domain";
    TAMPERED: server "R7" "a copy with an altered body, injected from the sending server's address, refused 550 5.7.20 at the end of DATA";
}

pub static GROUP: Group = Group {
    checks: &[&SIGNED, &VERIFIED, &TAMPERED],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(on_probes(ctx, GROUP.checks, move |probes| {
        Box::pin(async move {
            let mut checks = Vec::new();
            for &p in &probes {
                checks.push(signature(ctx, p).await);
                checks.push(receiver_verified(ctx, p));
            }
            checks.extend(join_all(probes.iter().map(|p| tampered(ctx, p))).await);
            checks
        })
    }))
}

fn domain_of(address: &str) -> &str {
    address.rsplit('@').next().unwrap_or("")
}

async fn signature(ctx: &Ctx, p: &Delivered) -> Check {
    let d = domain_of(&p.from);
    let name = Some(d);
    let fields = headers::header_fields(&p.raw);
    let sigs: Vec<Vec<(String, String)>> = headers::values(&fields, "DKIM-Signature")
        .into_iter()
        .map(headers::tag_list)
        .collect();
    let tag = |t: &[(String, String)], k: &str| {
        t.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let Some(sig) = sigs.iter().find(|t| tag(t, "d").eq_ignore_ascii_case(d)) else {
        return SIGNED.fail(
            name,
            format!(
                "{} -> {}: no DKIM-Signature with d={d} ({} signature fields)",
                p.from,
                p.to,
                sigs.len()
            ),
        );
    };
    let Some(am) = AuthenticatedMessage::parse(&p.raw) else {
        return SIGNED.fail(name, "the delivered message cannot be parsed");
    };
    let auth = MessageAuthenticator(ctx.resolver.clone());
    let outputs = auth.verify_dkim(&am).await;
    let passed = outputs.iter().any(|o| {
        *o.result() == DkimResult::Pass
            && o.signature().is_some_and(|s| s.d.eq_ignore_ascii_case(d))
    });
    let results: Vec<String> = outputs
        .iter()
        .map(|o| {
            let who = o
                .signature()
                .map(|s| format!("d={} s={}", s.d, s.s))
                .unwrap_or_default();
            format!("{who}: {:?}", o.result())
        })
        .collect();
    SIGNED.check(
        name,
        passed,
        format!(
            "{} -> {}\nDKIM-Signature: a={} d={} s={} h={}\nverified by labctl against the lab DNS: {}",
            p.from,
            p.to,
            tag(sig, "a"),
            tag(sig, "d"),
            tag(sig, "s"),
            tag(sig, "h"),
            results.join("; ")
        ),
    )
}

fn receiver_verified(ctx: &Ctx, p: &Delivered) -> Check {
    let receiver = ctx.server_of(&p.to);
    let fields = headers::header_fields(&p.raw);
    let r = headers::auth_result(&fields, Some(&receiver.hostname), "dkim");
    let all = headers::values(&fields, "Authentication-Results").join("\n");
    VERIFIED.on(
        receiver,
        r.as_ref().is_some_and(|r| r.result == "pass"),
        if all.is_empty() {
            format!("{} -> {}: no Authentication-Results field", p.from, p.to)
        } else {
            format!("{} -> {}\nAuthentication-Results: {all}", p.from, p.to)
        },
    )
}

/// The delivered message as its sender's server sent it, with the body altered:
/// the fields the receiving server added are removed (RFC 8601 §5 says a
/// receiver must not trust them anyway) and a line is put in front of the body.
pub fn tamper(raw: &[u8], receiver: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((&text, ""));
    let mut fields: Vec<String> = Vec::new();
    for line in head.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(f) = fields.last_mut() {
                f.push_str("\r\n");
                f.push_str(line);
            }
        } else {
            fields.push(line.to_string());
        }
    }
    let added = [
        "authentication-results:",
        "received-spf:",
        "x-spam-",
        "return-path:",
        "delivered-to:",
    ];
    let keep: Vec<String> = fields
        .into_iter()
        .filter(|f| {
            let l = f.to_ascii_lowercase();
            let by_receiver = l.starts_with("received:")
                && headers::parse_received(&f["received:".len()..])
                    .by
                    .eq_ignore_ascii_case(receiver);
            !by_receiver && !added.iter().any(|a| l.starts_with(a))
        })
        .collect();
    format!(
        "{}\r\n\r\nThis line was added after signing by labctl verify.\r\n{body}",
        keep.join("\r\n")
    )
    .into_bytes()
}

async fn tampered(ctx: &Ctx, p: &Delivered) -> Check {
    let sender = ctx.server_of(&p.from);
    let receiver = ctx.server_of(&p.to);
    let message = tamper(&p.raw, &receiver.hostname);
    // From the sending server's own address with its own envelope sender, so
    // SPF passes and only the signature decides.
    let how = format!(
        "injected from {} (the address of {}) as <{}>",
        sender.ip, sender.hostname, p.from
    );
    let r = match ctx
        .relay_from(sender, receiver, &p.from, &p.to, &[message])
        .await
    {
        Ok(mut r) => r.remove(0),
        Err(e) => return TAMPERED.fail_on(receiver, format!("{how}: {e}")),
    };
    let Some(end) = r.end else {
        return TAMPERED.fail_on(
            receiver,
            format!(
                "{how}\nrefused before the end of DATA, so DKIM was not what decided:\n{}",
                r.transcript
            ),
        );
    };
    TAMPERED.on(
        receiver,
        end.code == 550 && end.has_enhanced("5.7.20"),
        format!("{how}\nend of DATA -> {} (expected 550 5.7.20)", end.text()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tamper_drops_receiver_fields_and_alters_the_body() {
        let raw = b"Received: from mail.metal.com by mail.zone07.org with ESMTPS id 1; d\r\n\
Authentication-Results: mail.zone07.org; dkim=pass\r\n\
X-Spam-Flag: NO\r\n\
DKIM-Signature: v=1; d=metal.com;\r\n b=abc\r\n\
Received: from host by mail.metal.com with ESMTPSA id 2; d\r\n\
From: gold@metal.com\r\n\r\nhello\r\n";
        let t = String::from_utf8(tamper(raw, "mail.zone07.org")).unwrap();
        assert!(
            !t.contains("Authentication-Results") && !t.contains("X-Spam"),
            "{t}"
        );
        assert!(!t.contains("by mail.zone07.org"), "{t}");
        assert!(
            t.contains("DKIM-Signature: v=1; d=metal.com;\r\n b=abc\r\n"),
            "{t}"
        );
        assert!(t.contains("by mail.metal.com"), "{t}");
        assert!(
            t.ends_with("\r\n\r\nThis line was added after signing by labctl verify.\r\nhello\r\n"),
            "{t}"
        );
    }
}
