//! R13: the lab DNS has the records the servers need, asked of the lab
//! DNS alone: MX, A of `mail.<d>`, the apex A where the policy uses `a`,
//! SPF exactly as the variant, the DKIM key the server signs with, DMARC,
//! and PTR of every server address.

use std::path::PathBuf;

use futures_util::future::{BoxFuture, join_all};
use hickory_resolver::proto::rr::RecordType;

use super::{Check, Ctx, Group};
use crate::client::dns::query;
use crate::lab::Server;
use crate::render::layout;
use crate::variant::SpfMechanism;

pub static GROUP: Group = Group {
    ids: &["R13"],
    checks: &[
        (
            "R13",
            "MX <d> = 10 mail.<d>; A mail.<d> = the server's address",
        ),
        (
            "R13",
            "apex A <d> = the server's address (when the SPF policy has `a`)",
        ),
        ("R13", "TXT <d> = the variant's SPF policy, exactly"),
        (
            "R13",
            "TXT <selector>._domainkey.<d> = the public half of the key the server signs with",
        ),
        ("R13", "TXT _dmarc.<d> is a DMARC record"),
        ("R13", "PTR of every server address = mail.<d>"),
    ],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(async move {
        let per_domain = join_all(ctx.lab.servers.iter().map(|s| domain_checks(ctx, s))).await;
        let mut checks: Vec<Check> = per_domain.into_iter().flatten().collect();
        checks.push(ptr_check(ctx).await);
        checks
    })
}

fn norm(s: &str) -> String {
    s.trim_end_matches('.').to_ascii_lowercase()
}

/// The DKIM selector and key file the server's config names.
fn signing_key(ctx: &Ctx, server: &Server) -> Result<(String, PathBuf), String> {
    let config = ctx.lab.dir.join(layout::server_config(&server.domain));
    let text =
        std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", config.display()))?;
    let selector = yaml["dkim"]["selector"]
        .as_str()
        .unwrap_or(crate::plan::DKIM_SELECTOR);
    let key = yaml["dkim"]["key"]
        .as_str()
        .ok_or_else(|| format!("{}: no dkim.key", config.display()))?;
    let base = config.parent().unwrap_or(&ctx.lab.dir);
    let path = base.join(key);
    Ok((selector.to_string(), path.canonicalize().unwrap_or(path)))
}

/// `p=` of a DKIM key record, whitespace removed.
fn p_tag(record: &str) -> Option<String> {
    crate::analysis::headers::tag_list(record)
        .into_iter()
        .find(|(k, _)| k == "p")
        .map(|(_, v)| v)
}

/// An answer of the lab DNS: the records as text, or why there are none.
type Answer = Result<Vec<String>, String>;

/// Asks the lab DNS for `name`/`t`.
async fn ask(ctx: &Ctx, name: String, t: RecordType) -> Answer {
    query(ctx.lab.dns_addr(), &name, t)
        .await
        .map_err(|e| e.to_string())
}

/// An answer as evidence.
fn show(r: &Answer) -> String {
    match r {
        Ok(v) if v.is_empty() => "(no record)".to_string(),
        Ok(v) => v.join(", "),
        Err(e) => e.clone(),
    }
}

/// The checks of one domain. Every check is always reported: a lookup that
/// fails makes its own check fail with the cause, never drops another.
async fn domain_checks(ctx: &Ctx, s: &Server) -> Vec<Check> {
    let d = s.domain.as_str();
    let (mx, a_mail, a_apex, txt, dmarc) = tokio::join!(
        ask(ctx, d.to_string(), RecordType::MX),
        ask(ctx, format!("mail.{d}"), RecordType::A),
        ask(ctx, d.to_string(), RecordType::A),
        ask(ctx, d.to_string(), RecordType::TXT),
        ask(ctx, format!("_dmarc.{d}"), RecordType::TXT),
    );
    let mut checks = vec![mx_and_a_check(s, &mx, &a_mail)];
    if ctx.variant.spf().mechanisms.contains(&SpfMechanism::A) {
        checks.push(apex_a_check(s, &a_apex));
    }
    checks.push(spf_check(ctx, s, &txt));
    checks.push(dkim_check(ctx, s).await);
    checks.push(dmarc_check(s, &dmarc));
    checks
}

/// MX `<d>` = `10 mail.<d>` and A `mail.<d>` = the server's address.
fn mx_and_a_check(s: &Server, mx: &Answer, a_mail: &Answer) -> Check {
    let d = s.domain.as_str();
    let ip = s.ip.to_string();
    let mx_ok = mx.as_ref().is_ok_and(|v| {
        v.len() == 1 && {
            let mut p = v[0].split_whitespace();
            p.next() == Some("10") && p.next().map(norm) == Some(format!("mail.{d}"))
        }
    });
    let a_ok = a_mail
        .as_ref()
        .is_ok_and(|v| v == std::slice::from_ref(&ip));
    Check::new(
        "R13",
        format!("{d}: MX and A of mail.{d}"),
        mx_ok && a_ok,
        format!(
            "MX {d} = {}\nA mail.{d} = {} (expected {ip})",
            show(mx),
            show(a_mail)
        ),
    )
}

/// The apex A record, which the `a` mechanism of the policy looks up.
fn apex_a_check(s: &Server, a_apex: &Answer) -> Check {
    let (d, ip) = (s.domain.as_str(), s.ip.to_string());
    Check::new(
        "R13",
        format!("{d}: apex A (the policy has `a`)"),
        a_apex.as_ref().is_ok_and(|v| v.contains(&ip)),
        format!("A {d} = {} (expected {ip})", show(a_apex)),
    )
}

/// Exactly one SPF record, exactly the variant's policy (RFC 7208 §4.5).
fn spf_check(ctx: &Ctx, s: &Server, txt: &Answer) -> Check {
    let d = s.domain.as_str();
    let name = format!("{d}: SPF record exactly the variant's");
    let expected = ctx.variant.spf_policy.as_str();
    let spf: Vec<&String> = match txt {
        Ok(v) => v.iter().filter(|t| t.starts_with("v=spf1")).collect(),
        Err(e) => return Check::fail("R13", name, format!("TXT {d}: {e}")),
    };
    Check::new(
        "R13",
        name,
        spf.len() == 1 && spf[0] == expected,
        format!(
            "TXT {d} = {} (expected \"{expected}\"; RFC 7208 §4.5 allows exactly one)",
            if spf.is_empty() {
                "(no SPF record)".into()
            } else {
                spf.iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
    )
}

/// The DKIM key record is the public half of the key the server signs with.
async fn dkim_check(ctx: &Ctx, s: &Server) -> Check {
    let d = s.domain.as_str();
    let check_name = format!("{d}: DKIM key record = the key the server signs with");
    let (selector, key_path) = match signing_key(ctx, s) {
        Ok(k) => k,
        Err(e) => return Check::fail("R13", check_name, e),
    };
    let name = format!("{selector}._domainkey.{d}");
    let published = ask(ctx, name.clone(), RecordType::TXT).await;
    let expected = std::fs::read_to_string(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))
        .and_then(|pem| crate::pki::dkim_txt(&pem).map_err(|e| e.to_string()));
    let (published, expected) = match (published, expected) {
        (Ok(v), Ok(exp)) => (v, exp),
        (Err(e), _) | (_, Err(e)) => return Check::fail("R13", check_name, e),
    };
    let want = p_tag(&expected).unwrap_or_default();
    let got: Vec<String> = published.iter().filter_map(|t| p_tag(t)).collect();
    let ok = got.len() == 1 && got[0] == want;
    let shown = got.first().map(|p| {
        format!(
            "p={}...{} ({} chars)",
            &p[..p.len().min(16)],
            &p[p.len().saturating_sub(8)..],
            p.len()
        )
    });
    Check::new(
        "R13",
        check_name,
        ok,
        format!(
            "TXT {name} = {}\npublic key of {} {} it",
            shown.unwrap_or_else(|| "(no DKIM record)".into()),
            key_path.display(),
            if ok { "matches" } else { "does NOT match" }
        ),
    )
}

/// One DMARC record with a valid `p=` (RFC 7489 §6.3).
fn dmarc_check(s: &Server, dmarc: &Answer) -> Check {
    let d = s.domain.as_str();
    let records: Vec<&String> = dmarc
        .as_ref()
        .map(|v| v.iter().filter(|t| t.starts_with("v=DMARC1")).collect())
        .unwrap_or_default();
    Check::new(
        "R13",
        format!("{d}: DMARC record"),
        records.len() == 1
            && crate::analysis::headers::tag_list(records[0])
                .iter()
                .any(|(k, v)| k == "p" && ["none", "quarantine", "reject"].contains(&v.as_str())),
        format!("TXT _dmarc.{d} = {}", show(dmarc)),
    )
}

async fn ptr_check(ctx: &Ctx) -> Check {
    let results = join_all(
        ctx.lab
            .servers
            .iter()
            .map(|s| async move { (s, ask(ctx, s.ip.to_string(), RecordType::PTR).await) }),
    )
    .await;
    let mut ok = true;
    let mut evidence = Vec::new();
    for (s, r) in results {
        let good = r
            .as_ref()
            .is_ok_and(|v| v.len() == 1 && norm(&v[0]) == s.hostname.to_ascii_lowercase());
        ok &= good;
        evidence.push(format!(
            "PTR {} = {} (expected {}.)",
            s.ip,
            show(&r),
            s.hostname
        ));
    }
    Check::new(
        "R13",
        "PTR of both server addresses",
        ok,
        evidence.join("\n"),
    )
}
