//! R8: mail claiming a lab domain, sent from the host (whose address no
//! lab SPF policy allows), is handled per the variant's policy: under
//! `-all` refused `550 5.7.23` (RFC 7372 §3.2); under `~all` delivered and
//! marked `spf=softfail` (RFC 7208 §8.5, RFC 8601).

use std::net::Ipv4Addr;
use std::time::Instant;

use hickory_resolver::proto::rr::RecordType;

use futures_util::future::{BoxFuture, join_all};

use super::ctx::{DELIVERY_DEADLINE, EHLO_NAME};
use super::{Check, Ctx, Group, messages, on_probes};
use crate::analysis::headers;
use crate::client::dns::query;
use crate::client::smtp::{Reply, Smtp};
use crate::lab::Server;
use crate::variant::SpfMechanism;

catalog! {
    PASS: server "R8" "mail relayed from the other server: Authentication-Results spf=pass, by the mechanism of the policy that matches its address in the lab DNS";
    FORGED: server "R8" "mail as the other domain from the host: -all -> refused 550 5.7.23; ~all -> delivered, marked spf=softfail";
}

pub static GROUP: Group = Group {
    checks: &[&PASS, &FORGED],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(async move {
        let forged = join_all([(0usize, 1usize), (1, 0)].map(|(claimed, target)| {
            forged(ctx, &ctx.lab.servers[claimed], &ctx.lab.servers[target])
        }));
        let passed = on_probes(ctx, &GROUP.checks[..1], move |probes| {
            Box::pin(join_all(probes.into_iter().map(|p| passed(ctx, p))))
        });
        let (mut checks, passed) = tokio::join!(forged, passed);
        checks.extend(passed);
        checks
    })
}

/// The first mechanism of the variant's policy for `domain` that matches
/// `ip`, evaluated against the lab DNS (RFC 7208 §5: `a` §5.3, `mx` §5.4,
/// `ptr` §5.5 with the forward check, `ip4` §5.6); the lookups as evidence.
async fn matching_mechanism(
    ctx: &Ctx,
    domain: &str,
    ip: Ipv4Addr,
) -> (Option<SpfMechanism>, Vec<String>) {
    let ask = |name: String, t: RecordType| async move {
        let r = query(ctx.lab.dns_addr(), &name, t)
            .await
            .unwrap_or_default();
        (
            format!(
                "{t} {name} = {}",
                if r.is_empty() {
                    "(none)".into()
                } else {
                    r.join(", ")
                }
            ),
            r,
        )
    };
    let norm = |n: &str| n.trim_end_matches('.').to_ascii_lowercase();
    let mut ev = Vec::new();
    let has = |v: &[String]| v.iter().any(|a| a.parse() == Ok(ip));
    for m in ctx.variant.spf().mechanisms {
        let hit = match &m {
            SpfMechanism::A => {
                let (e, a) = ask(domain.to_string(), RecordType::A).await;
                ev.push(e);
                has(a.as_slice())
            }
            SpfMechanism::Mx => {
                let (e, mx) = ask(domain.to_string(), RecordType::MX).await;
                ev.push(e);
                let mut hit = false;
                for host in mx.iter().filter_map(|r| r.split_whitespace().nth(1)) {
                    let (e, a) = ask(norm(host), RecordType::A).await;
                    ev.push(e);
                    hit |= has(a.as_slice());
                }
                hit
            }
            SpfMechanism::Ptr => {
                let (e, names) = ask(ip.to_string(), RecordType::PTR).await;
                ev.push(e);
                let mut hit = false;
                for name in names.iter().map(|n| norm(n)) {
                    if name == domain || name.ends_with(&format!(".{domain}")) {
                        let (e, a) = ask(name.clone(), RecordType::A).await;
                        ev.push(e);
                        hit |= has(a.as_slice());
                    }
                }
                hit
            }
            SpfMechanism::Ip4(net) => {
                let (addr, len) = net.split_once('/').unwrap_or((net.as_str(), "32"));
                let len: u32 = len.parse().unwrap_or(32).min(32);
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                addr.parse::<Ipv4Addr>()
                    .is_ok_and(|a| u32::from(a) & mask == u32::from(ip) & mask)
            }
        };
        if hit {
            return (Some(m), ev);
        }
    }
    (None, ev)
}

/// The probe relayed from the sender's server: the receiver says spf=pass,
/// and the variant's policy, evaluated here against the lab DNS, matches the
/// sender's address by a named mechanism.
async fn passed(ctx: &Ctx, p: &super::ctx::Delivered) -> Check {
    let sender = ctx.server_of(&p.from);
    let receiver = ctx.server_of(&p.to);
    let fields = headers::header_fields(&p.raw);
    let ar = headers::auth_result(&fields, Some(&receiver.hostname), "spf");
    let (mechanism, lookups) = matching_mechanism(ctx, &sender.domain, sender.ip).await;
    PASS.on(
        receiver,
        ar.as_ref().is_some_and(|r| r.result == "pass") && mechanism.is_some(),
        format!(
            "{} -> {}, relayed by {} from {}\nAuthentication-Results by {}: spf={}\npolicy of {}: \"{}\"; {}\n{}",
            p.from,
            p.to,
            sender.hostname,
            sender.ip,
            receiver.hostname,
            ar.map(|r| format!("{} {}", r.result, r.details))
                .unwrap_or_else(|| "(none)".into()),
            sender.domain,
            ctx.variant.spf_policy,
            match &mechanism {
                Some(m) => format!("{} matches by `{m}`", sender.ip),
                None => format!("no mechanism matches {}", sender.ip),
            },
            lookups.join("\n")
        ),
    )
}

/// Sends as a mailbox of `claimed` to `target`'s port 25 from the host.
async fn forged(ctx: &Ctx, claimed: &Server, target: &Server) -> Check {
    let hard = ctx.variant.spf().is_hard_fail();
    let from = &claimed.mailboxes[0].address;
    let to = &target.mailboxes[0];
    let host = ctx
        .lab
        .host_ip()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "the host's bridge address".into());
    let how = format!(
        "mail as {from} from {host} (policy \"{}\": expected {})",
        ctx.variant.spf_policy,
        if hard {
            "550 5.7.23"
        } else {
            "delivered, spf=softfail"
        }
    );
    let message_id = messages::message_id(&ctx.token, &format!("spf-{}", claimed.domain), from);
    let message = messages::plain(
        from,
        &to.address,
        "labctl verify SPF test",
        &message_id,
        "SPF test.\r\n",
    );
    let mut smtp = match Smtp::connect(
        target.addr(target.ports.smtp),
        ctx.lab.host_ip(),
        None,
        false,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return FORGED.fail_on(target, format!("{how}\n{e}")),
    };
    // The first refusal, wherever it comes (MAIL, RCPT or end of DATA).
    let r: Result<(Reply, &str), crate::client::ClientError> = async {
        smtp.ehlo(EHLO_NAME).await?;
        let mail = smtp.command(&format!("MAIL FROM:<{from}>")).await?;
        if !mail.is_positive() {
            return Ok((mail, "MAIL FROM"));
        }
        let rcpt = smtp.command(&format!("RCPT TO:<{}>", to.address)).await?;
        if !rcpt.is_positive() {
            return Ok((rcpt, "RCPT TO"));
        }
        let (go, done) = smtp.data(&message).await?;
        Ok((done.unwrap_or(go), "end of DATA"))
    }
    .await;
    smtp.quit().await;
    let (reply, stage) = match r {
        Ok(x) => x,
        Err(e) => {
            return FORGED.fail_on(target, format!("{how}\n{e}\n{}", smtp.conn.transcript()));
        }
    };
    let seen = format!("{how}\nMAIL FROM:<{from}> ... {stage} -> {}", reply.text());
    if hard {
        return FORGED.on(
            target,
            reply.code == 550 && reply.has_enhanced("5.7.23"),
            seen,
        );
    }
    if !reply.is_positive() {
        return FORGED.fail_on(target, format!("{seen}\n(a softfail must be accepted)"));
    }
    // Delivered: to the INBOX, or to Junk (a softfail raises the spam score).
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    let (folder, raw) = match ctx
        .wait_in_any(to, &["INBOX", "Junk"], &message_id, deadline)
        .await
    {
        Ok(Some(found)) => found,
        Err(e) => return FORGED.fail_on(target, format!("{seen}\nIMAP: {e}")),
        Ok(None) => {
            return FORGED.fail_on(
                target,
                format!(
                    "{seen}\nbut not found in INBOX or Junk of {} within {DELIVERY_DEADLINE:?}",
                    to.address
                ),
            );
        }
    };
    let fields = headers::header_fields(&raw);
    let ar = headers::auth_result(&fields, Some(&target.hostname), "spf");
    let received_spf = headers::value(&fields, "Received-SPF").unwrap_or("");
    let marked = ar.as_ref().is_some_and(|r| r.result == "softfail")
        || received_spf.to_ascii_lowercase().starts_with("softfail");
    FORGED.on(
        target,
        marked,
        format!(
            "{seen}\ndelivered to {folder} of {}\nAuthentication-Results spf={}\nReceived-SPF: {}",
            to.address,
            ar.map(|r| format!("{} {}", r.result, r.details))
                .unwrap_or_else(|| "(none)".into()),
            if received_spf.is_empty() {
                "(none)"
            } else {
                received_spf
            }
        ),
    )
}
