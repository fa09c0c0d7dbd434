//! R13: the lab DNS has the records the servers need, asked of the lab
//! DNS alone: MX, A of `mail.<d>`, the apex A where the policy uses `a`,
//! SPF exactly as the variant, the DKIM key the server signs with, DMARC,
//! and PTR of every server address.

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use hickory_resolver::proto::rr::RecordType;

use super::{Check, Ctx, Group, Spec, per_server};
use crate::client::dns::query;
use crate::lab::Server;
use crate::render::layout;
use crate::variant::SpfMechanism;

catalog! {
    MX: server "R13" "MX <d> = 10 mail.<d>; A mail.<d> = the server's address";
    SPF: server "R13" "TXT <d> = the variant's SPF policy, exactly";
    DKIM: server "R13" "TXT <selector>._domainkey.<d> = the public half of the key the server signs with";
    DMARC: server "R13" "TXT _dmarc.<d> is a DMARC record";
    PTR: server "R13" "PTR of the server's address = mail.<d>";
}
static APEX: Spec = Spec::server(
    "R13",
    "apex A <d> = the server's address (the SPF policy has `a`)",
)
.only_when(|v| v.spf().mechanisms.contains(&SpfMechanism::A));

pub static GROUP: Group = Group {
    checks: &[&MX, &APEX, &SPF, &DKIM, &DMARC, &PTR],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(per_server(ctx, move |_, s| domain_checks(ctx, s)))
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
    let (mx, a_mail, a_apex, txt, dmarc, ptr) = tokio::join!(
        ask(ctx, d.to_string(), RecordType::MX),
        ask(ctx, format!("mail.{d}"), RecordType::A),
        ask(ctx, d.to_string(), RecordType::A),
        ask(ctx, d.to_string(), RecordType::TXT),
        ask(ctx, format!("_dmarc.{d}"), RecordType::TXT),
        ask(ctx, s.ip.to_string(), RecordType::PTR),
    );
    let mut checks = vec![mx_and_a_check(s, &mx, &a_mail)];
    if APEX.applies(&ctx.variant) {
        checks.push(apex_a_check(s, &a_apex));
    }
    checks.push(spf_check(ctx, s, &txt));
    checks.push(dkim_check(ctx, s).await);
    checks.push(dmarc_check(s, &dmarc));
    checks.push(ptr_check(s, &ptr));
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
    MX.on(
        s,
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
    APEX.on(
        s,
        a_apex.as_ref().is_ok_and(|v| v.contains(&ip)),
        format!("A {d} = {} (expected {ip})", show(a_apex)),
    )
}

/// Exactly one SPF record, exactly the variant's policy (RFC 7208 §4.5).
fn spf_check(ctx: &Ctx, s: &Server, txt: &Answer) -> Check {
    let d = s.domain.as_str();
    let expected = ctx.variant.spf_policy.as_str();
    let spf: Vec<&String> = match txt {
        Ok(v) => v.iter().filter(|t| t.starts_with("v=spf1")).collect(),
        Err(e) => return SPF.fail_on(s, format!("TXT {d}: {e}")),
    };
    SPF.on(
        s,
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
    let (selector, key_path) = match signing_key(ctx, s) {
        Ok(k) => k,
        Err(e) => return DKIM.fail_on(s, e),
    };
    let name = format!("{selector}._domainkey.{d}");
    let published = ask(ctx, name.clone(), RecordType::TXT).await;
    let expected = std::fs::read_to_string(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))
        .and_then(|pem| crate::pki::dkim_txt(&pem).map_err(|e| e.to_string()));
    let (published, expected) = match (published, expected) {
        (Ok(v), Ok(exp)) => (v, exp),
        (Err(e), _) | (_, Err(e)) => return DKIM.fail_on(s, e),
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
    DKIM.on(
        s,
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
    DMARC.on(
        s,
        records.len() == 1
            && crate::analysis::headers::tag_list(records[0])
                .iter()
                .any(|(k, v)| k == "p" && ["none", "quarantine", "reject"].contains(&v.as_str())),
        format!("TXT _dmarc.{d} = {}", show(dmarc)),
    )
}

/// PTR of the server's address names the server (RFC 1035 §3.5).
fn ptr_check(s: &Server, ptr: &Answer) -> Check {
    let good = ptr
        .as_ref()
        .is_ok_and(|v| v.len() == 1 && norm(&v[0]) == s.hostname.to_ascii_lowercase());
    PTR.on(
        s,
        good,
        format!("PTR {} = {} (expected {}.)", s.ip, show(ptr), s.hostname),
    )
}
