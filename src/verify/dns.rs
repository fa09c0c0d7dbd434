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

async fn domain_checks(ctx: &Ctx, s: &Server) -> Vec<Check> {
    let r = ctx.lab.dns_addr();
    let d = s.domain.as_str();
    let ip = s.ip.to_string();
    let q = |name: String, t: RecordType| async move {
        query(r, &name, t).await.map_err(|e| e.to_string())
    };
    let (mx, a_mail, a_apex, txt, dmarc) = tokio::join!(
        q(d.to_string(), RecordType::MX),
        q(format!("mail.{d}"), RecordType::A),
        q(d.to_string(), RecordType::A),
        q(d.to_string(), RecordType::TXT),
        q(format!("_dmarc.{d}"), RecordType::TXT),
    );
    let mut checks = Vec::new();
    let show = |r: &Result<Vec<String>, String>| match r {
        Ok(v) if v.is_empty() => "(no record)".to_string(),
        Ok(v) => v.join(", "),
        Err(e) => e.clone(),
    };

    let mx_ok = mx.as_ref().is_ok_and(|v| {
        v.len() == 1 && {
            let mut p = v[0].split_whitespace();
            p.next() == Some("10") && p.next().map(norm) == Some(format!("mail.{d}"))
        }
    });
    let a_ok = a_mail
        .as_ref()
        .is_ok_and(|v| v == std::slice::from_ref(&ip));
    checks.push(Check::new(
        "R13",
        format!("{d}: MX and A of mail.{d}"),
        mx_ok && a_ok,
        format!(
            "MX {d} = {}\nA mail.{d} = {} (expected {ip})",
            show(&mx),
            show(&a_mail)
        ),
    ));

    let wants_a = ctx.variant.spf().mechanisms.contains(&SpfMechanism::A);
    let apex_ok = a_apex.as_ref().is_ok_and(|v| v.contains(&ip));
    if wants_a {
        checks.push(Check::new(
            "R13",
            format!("{d}: apex A (the policy has `a`)"),
            apex_ok,
            format!("A {d} = {} (expected {ip})", show(&a_apex)),
        ));
    }

    let expected_spf = ctx.variant.spf_policy.as_str();
    let spf: Vec<String> = match &txt {
        Ok(v) => v
            .iter()
            .filter(|t| t.starts_with("v=spf1"))
            .cloned()
            .collect(),
        Err(e) => {
            checks.push(Check::fail(
                "R13",
                format!("{d}: SPF record exactly the variant's"),
                e.clone(),
            ));
            return checks;
        }
    };
    checks.push(Check::new(
        "R13",
        format!("{d}: SPF record exactly the variant's"),
        spf.len() == 1 && spf[0] == expected_spf,
        format!(
            "TXT {d} = {} (expected \"{expected_spf}\"; RFC 7208 §4.5 allows exactly one)",
            if spf.is_empty() {
                "(no SPF record)".into()
            } else {
                spf.iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
    ));

    let dkim_name = format!("{d}: DKIM key record = the key the server signs with");
    match signing_key(ctx, s) {
        Err(e) => checks.push(Check::fail("R13", dkim_name, e)),
        Ok((selector, key_path)) => {
            let name = format!("{selector}._domainkey.{d}");
            let published = q(name.clone(), RecordType::TXT).await;
            let expected = std::fs::read_to_string(&key_path)
                .map_err(|e| format!("{}: {e}", key_path.display()))
                .and_then(|pem| crate::pki::dkim_txt(&pem).map_err(|e| e.to_string()));
            match (published, expected) {
                (Ok(v), Ok(exp)) => {
                    let want = p_tag(&exp).unwrap_or_default();
                    let got: Vec<String> = v.iter().filter_map(|t| p_tag(t)).collect();
                    let ok = got.len() == 1 && got[0] == want;
                    let shown = got.first().map(|p| {
                        format!(
                            "p={}...{} ({} chars)",
                            &p[..p.len().min(16)],
                            &p[p.len().saturating_sub(8)..],
                            p.len()
                        )
                    });
                    checks.push(Check::new(
                        "R13",
                        dkim_name,
                        ok,
                        format!(
                            "TXT {name} = {}\npublic key of {} {} it",
                            shown.unwrap_or_else(|| "(no DKIM record)".into()),
                            key_path.display(),
                            if ok { "matches" } else { "does NOT match" }
                        ),
                    ));
                }
                (Err(e), _) | (_, Err(e)) => checks.push(Check::fail("R13", dkim_name, e)),
            }
        }
    }

    let dmarc_records: Vec<String> = dmarc
        .as_ref()
        .map(|v| {
            v.iter()
                .filter(|t| t.starts_with("v=DMARC1"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    checks.push(Check::new(
        "R13",
        format!("{d}: DMARC record"),
        dmarc_records.len() == 1
            && crate::analysis::headers::tag_list(&dmarc_records[0])
                .iter()
                .any(|(k, v)| k == "p" && ["none", "quarantine", "reject"].contains(&v.as_str())),
        format!("TXT _dmarc.{d} = {}", show(&dmarc)),
    ));
    checks
}

async fn ptr_check(ctx: &Ctx) -> Check {
    let results = join_all(ctx.lab.servers.iter().map(|s| async move {
        let r = query(ctx.lab.dns_addr(), &s.ip.to_string(), RecordType::PTR).await;
        (s, r)
    }))
    .await;
    let mut ok = true;
    let mut evidence = Vec::new();
    for (s, r) in results {
        let good = r
            .as_ref()
            .is_ok_and(|v| v.len() == 1 && norm(&v[0]) == s.hostname.to_ascii_lowercase());
        ok &= good;
        let got = match r {
            Ok(v) if v.is_empty() => "(no record)".into(),
            Ok(v) => v.join(", "),
            Err(e) => e.to_string(),
        };
        evidence.push(format!("PTR {} = {got} (expected {}.)", s.ip, s.hostname));
    }
    Check::new(
        "R13",
        "PTR of both server addresses",
        ok,
        evidence.join("\n"),
    )
}
