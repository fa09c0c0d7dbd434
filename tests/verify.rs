//! `labctl verify`, `send`, `inspect` and `trace` against labs on the local
//! runtime: verify passes on a healthy lab and fails the matching check,
//! with exit code 1, for each fault injected into the rendered files
//! before the servers start.

use std::process::Output;

use serde_json::Value;

use crate::common::{Guard, LocalLab, labctl, run, stderr, stdout, without_running_labs};

/// Runs `labctl verify --json` on `lab` with extra arguments.
fn verify(lab: &LocalLab, extra: &[&str]) -> (Output, Value) {
    let out = run(labctl()
        .args(["verify", "--json", "--dir"])
        .arg(lab.path())
        .args(extra));
    let json = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out, json)
}

/// The checks of `id` as `(name, result, evidence)`.
fn checks<'a>(json: &'a Value, id: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == id)
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["result"].as_str().unwrap(),
                c["evidence"].as_str().unwrap(),
            )
        })
        .collect()
}

fn failed_ids(json: &Value) -> Vec<String> {
    let mut ids: Vec<String> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "fail")
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    ids.dedup();
    ids
}

/// Replaces `from` by `to` in a file of the lab, asserting it was there.
fn edit(lab: &LocalLab, rel: &str, from: &str, to: &str) {
    let path = lab.path().join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{rel} has no {from:?}:\n{text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn verify_lists_checks_and_refuses_bad_usage() {
    let out = run(labctl().args(["verify", "--list"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&out);
    for id in [
        "R1 ", "R2 ", "R3 ", "R4 ", "R5 ", "R6 ", "R7 ", "R8 ", "R9 ", "R10", "R11", "R12", "R13",
    ] {
        assert!(
            list.lines().any(|l| l.starts_with(id)),
            "no {id} in\n{list}"
        );
    }
    let out = run(labctl().args(["verify", "--only", "R99", "--list"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown requirement id"),
        "{}",
        stderr(&out)
    );
    let empty = tempfile::tempdir().unwrap();
    let out = run(without_running_labs(&mut labctl())
        .arg("verify")
        .current_dir(empty.path()));
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("no lab found"), "{}", stderr(&out));
}

#[test]
fn verify_dns_passes_and_writes_junit() {
    // Variant 3 has `v=spf1 a mx -all`: the apex A is checked too.
    let lab = LocalLab::render(3);
    let _dns = lab.spawn_dns();
    let junit = lab.path().join("report.xml");
    let (out, json) = verify(&lab, &["--only", "R13", "--junit", junit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    let r13 = checks(&json, "R13");
    // Six checks per domain: MX and A, apex A, SPF, DKIM, DMARC, PTR.
    assert_eq!(r13.len(), 12, "{json:#}");
    assert!(r13.iter().any(|(n, ..)| n.contains("apex A")));
    assert!(r13.iter().all(|(_, r, _)| *r == "pass"), "{json:#}");
    let spf = r13
        .iter()
        .find(|(n, ..)| n.contains("SPF policy, exactly"))
        .unwrap();
    assert!(spf.2.contains("\"v=spf1 a mx -all\""), "{}", spf.2);
    assert_eq!(json["summary"], "12 passed, 0 failed");
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(xml.contains("tests=\"12\" failures=\"0\""), "{xml}");
    // The table's last line is the summary.
    let out = run(labctl()
        .args(["verify", "--only", "13", "--dir"])
        .arg(lab.path()));
    assert_eq!(stdout(&out).lines().last(), Some("12 passed, 0 failed"));
}

#[test]
fn verify_catches_a_wrong_spf_record() {
    let lab = LocalLab::render(7);
    let d1 = lab.domain(0);
    edit(
        &lab,
        &format!("dns/{d1}.zone"),
        "\"v=spf1 mx -all\"",
        "\"v=spf1 mx ~all\"",
    );
    let _dns = lab.spawn_dns();
    let (out, json) = verify(&lab, &["--only", "R13"]);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    let failed: Vec<_> = checks(&json, "R13")
        .into_iter()
        .filter(|(_, r, _)| *r == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{json:#}");
    assert!(
        failed[0].0.starts_with(&format!("{d1}: ")) && failed[0].0.contains("SPF policy, exactly"),
        "{failed:?}"
    );
    assert!(failed[0].2.contains("\"v=spf1 mx ~all\""), "{failed:?}");
    assert_eq!(failed_ids(&json), ["R13"]);
}

/// A whole lab on the local runtime: DNS and both mail servers.
struct Running {
    lab: LocalLab,
    _dns: Guard,
    mail: Vec<Guard>,
}

fn start(lab: LocalLab) -> Running {
    let dns = lab.spawn_dns();
    let mail = vec![lab.spawn_mail(0), lab.spawn_mail(1)];
    Running {
        lab,
        _dns: dns,
        mail,
    }
}

/// Whether the mail servers exist in this build (`serve-mail` listens).
fn have_mail_servers() -> bool {
    let out = run(labctl().args(["serve-mail", "--help"]));
    out.status.success()
}

#[test]
fn verify_passes_on_a_healthy_local_lab() {
    assert!(have_mail_servers());
    let r = start(LocalLab::render(7));
    let started = std::time::Instant::now();
    let (out, json) = verify(&r.lab, &[]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    assert_eq!(json["failed"], 0, "{json:#}");
    assert_eq!(json["skipped"], 0, "{json:#}");
    for id in [
        "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "R11", "R12", "R13",
    ] {
        assert!(!checks(&json, id).is_empty(), "no {id} check");
    }
    // One list of names: every check reported is in `--list`, with its
    // domain written `<d>`, and every line of `--list` is reported.
    let list = stdout(&run(labctl().args(["verify", "--list"])));
    let (d1, d2) = (r.lab.domain(0), r.lab.domain(1));
    let reported: Vec<String> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap();
            let name = name
                .strip_prefix(&format!("{d1}: "))
                .or_else(|| name.strip_prefix(&format!("{d2}: ")))
                .map(|n| format!("<d>: {n}"))
                .unwrap_or_else(|| name.to_string());
            format!("{:<4} {name}", c["id"].as_str().unwrap())
        })
        .collect();
    for line in list.lines() {
        // Variant 7's policy has no `a`: the apex A record is not checked.
        if line.contains("apex A") {
            continue;
        }
        assert!(reported.iter().any(|r| r == line), "{line:?} not reported");
    }
    for r in &reported {
        assert!(list.lines().any(|l| l == r), "{r:?} not in --list");
    }
    // For each server: EICAR refused at the end of DATA naming the
    // signature, in the body, an attachment, a zip and a nested zip, on 587
    // and on 25, with the clean controls accepted.
    let r9 = checks(&json, "R9");
    assert_eq!(r9.len(), 8, "{json:#}");
    for (_, _, e) in &r9 {
        assert_eq!(e.matches("end of DATA -> 554 5.7.1").count(), 2, "{e}");
        assert!(e.contains("Eicar"), "{e}");
        assert_eq!(e.matches("clean control").count(), 2, "{e}");
    }
    // spf=pass by the policy's mechanism (variant 7: `v=spf1 mx -all`).
    let pass: Vec<_> = checks(&json, "R8")
        .into_iter()
        .filter(|(n, ..)| n.contains("spf=pass"))
        .collect();
    assert_eq!(pass.len(), 2, "{json:#}");
    for (_, _, e) in pass {
        assert!(
            e.contains("spf=pass") && e.contains("matches by `mx`"),
            "{e}"
        );
    }
    // All five mailboxes log in; the relay hop is TLS.
    let logins: usize = checks(&json, "R3")
        .iter()
        .filter(|(n, ..)| n.contains("logs in over IMAPS"))
        .map(|(_, _, e)| e.matches(" OK").count())
        .sum();
    assert_eq!(logins, 5, "{json:#}");
    assert_eq!(
        checks(&json, "R5")
            .iter()
            .filter(|(n, _, e)| n.contains("relayed") && e.contains("with ESMTPS"))
            .count(),
        2,
        "{json:#}"
    );
    // The examiner's budget on a healthy lab (the 2 s).
    assert!(
        took < std::time::Duration::from_secs(4),
        "verify took {took:?}"
    );
}

#[test]
fn send_inspect_and_trace_show_the_real_message() {
    let r = start(LocalLab::render(7));
    let (from, _) = r.lab.mailbox(0, 1);
    let (to, _) = r.lab.mailbox(1, 1);
    let out = run(labctl()
        .args([
            "send",
            "--from",
            &from,
            "--to",
            &to,
            "--subject",
            "Hello from the test",
        ])
        .arg("--dir")
        .arg(r.lab.path()));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    // The dialogue, swaks style: TLS upgrade, authentication, acceptance.
    assert!(text.contains(" -> STARTTLS\n<-  220 "), "{text}");
    assert!(
        text.contains(" ~> AUTH PLAIN <credentials>\n<~  235 "),
        "{text}"
    );
    assert!(text.contains("<~  250 2.0.0 "), "{text}");
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("send prints the Message-ID")
        .to_string();

    // inspect waits for nothing: poll until the relay delivered (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let explained = loop {
        let out = run(labctl()
            .args(["inspect", &to, "--last", "--dir"])
            .arg(r.lab.path()));
        let text = stdout(&out);
        if out.status.success() && text.contains(&id) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} not delivered: {text}{}",
            stderr(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let d1 = r.lab.domain(0);
    let d2 = r.lab.domain(1);
    assert!(explained.contains("Received chain (2 hops"), "{explained}");
    assert!(
        explained.contains(&format!(
            "-> mail.{d1}\n         with ESMTPSA (client authenticated), TLS"
        )),
        "{explained}"
    );
    assert!(
        explained.contains(&format!("-> mail.{d2}\n         with ESMTPS, TLS")),
        "{explained}"
    );
    assert!(explained.contains(&format!("by mail.{d2}")), "{explained}");
    assert!(explained.contains("dkim   pass"), "{explained}");
    assert!(explained.contains(&format!("d  = {d1} ")), "{explained}");
    assert!(
        explained.contains("Subject     Hello from the test"),
        "{explained}"
    );

    let out = run(labctl()
        .args(["trace", "--message-id", &id, "--dir"])
        .arg(r.lab.path()));
    let traced = stdout(&out);
    assert!(out.status.success(), "{traced}{}", stderr(&out));
    assert!(traced.contains("2 SMTP session(s)"), "{traced}");
    assert!(
        traced.contains(&format!("hop 1: smtp session mail.{d1}")),
        "{traced}"
    );
    assert!(
        traced.contains(&format!("hop 2: smtp session mail.{d2}")),
        "{traced}"
    );
    assert!(traced.contains("<== TLS from here on"), "{traced}");
    assert!(traced.contains("C~ AUTH PLAIN ***"), "{traced}");
    assert!(traced.contains(&format!("C~ RCPT TO:<{to}>")), "{traced}");
    // The first message of a fresh lab: the sender looked up the MX, the
    // receiver the SPF record and the DKIM key, in the lab DNS's query log.
    for (server, lookup) in [
        (&d1, format!(" {d2}. MX -> NOERROR")),
        (&d2, format!(" {d1}. TXT -> NOERROR")),
        (&d2, format!(" lab._domainkey.{d1}. TXT -> NOERROR")),
    ] {
        let section = traced
            .split(&format!("DNS lookups by mail.{server} on the way:"))
            .nth(1)
            .unwrap_or_else(|| panic!("no DNS lookups by mail.{server}: {traced}"));
        let section = section.split("DNS lookups by").next().unwrap();
        assert!(
            section.contains(&lookup),
            "{lookup:?} by {server}: {traced}"
        );
    }
    // Without --message-id: the last delivered message, the same one.
    let out = run(labctl().args(["trace", "--dir"]).arg(r.lab.path()));
    assert!(
        stdout(&out).contains(&format!("Message {id}")),
        "{}",
        stdout(&out)
    );
}

/// Asserts that the failed checks are exactly `expected`: `(id, domain,
/// a part of the name, a part of the evidence)`, each matching one failed
/// check; every other check passed.
fn assert_failed_exactly(json: &Value, expected: &[(&str, &str, &str, &str)]) {
    let failed: Vec<&Value> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] != "pass")
        .collect();
    let shown: Vec<String> = failed
        .iter()
        .map(|c| format!("{} {}\n    {}", c["id"], c["name"], c["evidence"]))
        .collect();
    assert_eq!(
        failed.len(),
        expected.len(),
        "expected {expected:#?}\nfailed:\n{}",
        shown.join("\n")
    );
    for (id, domain, name, evidence) in expected {
        assert!(
            failed.iter().any(|c| c["id"] == *id
                && c["name"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{domain}: "))
                && c["name"].as_str().unwrap().contains(name)
                && c["evidence"].as_str().unwrap().contains(evidence)),
            "no failed {id} {domain}: ..{name}.. with evidence ..{evidence}..; failed:\n{}",
            shown.join("\n")
        );
    }
}

/// Renders variant 7, applies `edits` (file, from, to) to it, starts the
/// lab, runs verify on `only` and asserts exit 1 with exactly `expected`
/// failed (see [`assert_failed_exactly`]); `expected` gets the domains.
fn fault(
    edits: impl Fn(&LocalLab, &str, &str) -> Vec<(String, String, String)>,
    only: &[&str],
    expected: impl Fn(&str, &str) -> Vec<(&'static str, String, &'static str, &'static str)>,
) {
    let lab = LocalLab::render(7);
    let (d1, d2) = (lab.domain(0), lab.domain(1));
    for (file, from, to) in edits(&lab, &d1, &d2) {
        edit(&lab, &file, &from, &to);
    }
    let r = start(lab);
    let mut args = Vec::new();
    for id in only {
        args.extend(["--only", id]);
    }
    let (out, json) = verify(&r.lab, &args);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    let expected = expected(&d1, &d2);
    let expected: Vec<(&str, &str, &str, &str)> = expected
        .iter()
        .map(|(id, d, n, e)| (*id, d.as_str(), *n, *e))
        .collect();
    assert_failed_exactly(&json, &expected);
}

/// A change of one line of the server config of `domain`.
fn config(domain: &str, from: &str, to: &str) -> (String, String, String) {
    (
        format!("servers/mail.{domain}/config.yaml"),
        from.to_string(),
        to.to_string(),
    )
}

#[test]
fn verify_catches_dkim_verification_off() {
    // Domain 2 no longer verifies signatures: no dkim=pass in what it
    // receives, and the altered copy is accepted instead of 550 5.7.20.
    fault(
        |_, _, d2| vec![config(d2, "dkim_verify: true", "dkim_verify: false")],
        &["R6", "R7"],
        |_, d2| {
            vec![
                ("R7", d2.into(), "dkim=pass", "Authentication-Results"),
                ("R7", d2.into(), "altered body", "expected 550 5.7.20"),
            ]
        },
    );
}

#[test]
fn verify_catches_signing_with_a_key_the_dns_does_not_publish() {
    // Domain 1 signs with domain 2's private key: its DKIM record no longer
    // matches (R13), and domain 2 refuses its mail 550 5.7.20, so the probe
    // from domain 1 never arrives and the checks that read it fail with
    // that cause (R6 for the sender, R7 for the receiver).
    fault(
        |_, d1, d2| {
            vec![config(
                d1,
                &format!("key: ../../dkim/{d1}.key"),
                &format!("key: ../../dkim/{d2}.key"),
            )]
        },
        &["R6", "R7", "R13"],
        |d1, d2| {
            vec![
                ("R13", d1.into(), "_domainkey", "does NOT match"),
                ("R6", d1.into(), "DKIM-Signature", "the probe message"),
                ("R7", d2.into(), "dkim=pass", "the probe message"),
                ("R7", d2.into(), "altered body", "the probe message"),
            ]
        },
    );
}

#[test]
fn verify_catches_spf_fail_accepted() {
    fault(
        |_, _, d2| vec![config(d2, "spf_fail: reject", "spf_fail: accept")],
        &["R8"],
        |_, d2| vec![("R8", d2.into(), "from the host", "550 5.7.23")],
    );
}

#[test]
fn verify_catches_the_scanner_turned_off() {
    // Domain 1 scans nothing: each EICAR case fails there, on submission and
    // on port 25; domain 2 still refuses all four.
    fault(
        |_, d1, _| vec![config(d1, "engine: builtin", "engine: off")],
        &["R9"],
        |d1, _| {
            [
                "the body",
                "base64 attachment",
                "deflated zip",
                "zip inside a zip",
            ]
            .map(|n| ("R9", d1.to_string(), n, "end of DATA -> 250"))
            .to_vec()
        },
    );
}

#[test]
fn verify_catches_a_server_refusing_every_submission() {
    // The last mailbox of domain 2, which sends verify's malware and GTUBE
    // tests on 587, cannot authenticate (its password hash is another
    // mailbox's): every submission as it gets 535, before the message is
    // sent. That is not a malware or spam refusal: R9 and GTUBE fail on
    // domain 2, whatever port 25 did.
    fault(
        |lab, _, d2| {
            let path = lab.path().join(format!("servers/mail.{d2}/config.yaml"));
            let text = std::fs::read_to_string(path).unwrap();
            let hashes: Vec<&str> = text
                .split("password_hash: \"")
                .skip(1)
                .filter_map(|h| h.split('"').next())
                .collect();
            assert!(hashes.len() >= 2, "{text}");
            let last = hashes[hashes.len() - 1];
            vec![config(d2, last, hashes[0])]
        },
        &["R9", "R10"],
        |_, d2| {
            [
                ("R9", "the body"),
                ("R9", "base64 attachment"),
                ("R9", "deflated zip"),
                ("R9", "zip inside a zip"),
                ("R10", "GTUBE"),
            ]
            .map(|(id, n)| {
                (
                    id,
                    d2.to_string(),
                    n,
                    "refused before the message was sent -> 535",
                )
            })
            .to_vec()
        },
    );
}

#[test]
fn verify_catches_the_spam_filter_turned_off() {
    // Domain 2 scores nothing: GTUBE is accepted on both ways in, and the
    // spammy message lands in its INBOX, unflagged. Malware is still
    // refused, and the probe is still untagged.
    fault(
        |_, _, d2| {
            vec![config(
                d2,
                "spam:\n  enabled: true",
                "spam:\n  enabled: false",
            )]
        },
        &["R9", "R10"],
        |_, d2| {
            vec![
                ("R10", d2.into(), "GTUBE", "end of DATA -> 250"),
                ("R10", d2.into(), "Junk", "found in INBOX"),
            ]
        },
    );
}

#[test]
fn verify_catches_a_missing_mailbox_and_a_wrong_host_name() {
    // Domain 2's server lost its last mailbox and calls itself mx.<d2>.
    fault(
        |lab, _, d2| {
            let (gone, _) = lab.mailbox(1, 1);
            let path = lab.path().join(format!("servers/mail.{d2}/config.yaml"));
            let text = std::fs::read_to_string(path).unwrap();
            let entry = text
                .lines()
                .skip_while(|l| !l.contains(&format!("address: {gone}")))
                .take(2)
                .collect::<Vec<_>>()
                .join("\n");
            vec![
                config(d2, &format!("{entry}\n"), ""),
                config(
                    d2,
                    &format!("hostname: mail.{d2}"),
                    &format!("hostname: mx.{d2}"),
                ),
            ]
        },
        &["R2", "R3"],
        |_, d2| {
            vec![
                ("R2", d2.into(), "EHLO", "mx."),
                ("R3", d2.into(), "accepted at RCPT", "550 5.1.1"),
                ("R3", d2.into(), "logs in over IMAPS", "NO"),
            ]
        },
    );
}

#[test]
fn verify_catches_a_certificate_of_another_ca() {
    // Domain 2 presents a certificate for its own name, signed by the CA of
    // another lab: its TLS fails R1 and R5.
    let other = LocalLab::render(7);
    fault(
        |_, _, d2| {
            let cert = other.path().join(format!("certs/mail.{d2}.crt"));
            let key = other.path().join(format!("certs/mail.{d2}.key"));
            vec![
                config(
                    d2,
                    &format!("cert: ../../certs/mail.{d2}.crt"),
                    &format!("cert: {}", cert.display()),
                ),
                config(
                    d2,
                    &format!("key: ../../certs/mail.{d2}.key"),
                    &format!("key: {}", key.display()),
                ),
            ]
        },
        &["R1", "R5"],
        |d1, d2| {
            vec![
                ("R1", d2.into(), "TLS on all 7 ports", "FAILED"),
                ("R5", d2.into(), "STARTTLS on 25 and 587", "FAILED"),
                // Domain 1's relay verifies the peer against the lab CA: it
                // does not hand the probe over, so nothing arrives.
                // verify cannot submit its probe on domain 2 nor read it
                // there: the relay hop of neither probe can be shown.
                ("R5", d1.into(), "relayed", "the probe message"),
                ("R5", d2.into(), "relayed", "the probe message"),
            ]
        },
    );
}

#[test]
fn verify_catches_plaintext_auth_allowed() {
    // Passwords accepted without TLS on domain 2: SMTP AUTH on 587 before
    // STARTTLS (R5), IMAP LOGIN on 143 (no LOGINDISABLED) and POP3
    // USER/PASS on 110 (R11).
    fault(
        |_, _, d2| {
            vec![config(
                d2,
                "allow_plaintext: false",
                "allow_plaintext: true",
            )]
        },
        &["R5", "R11"],
        |_, d2| {
            vec![
                ("R5", d2.into(), "587 before STARTTLS", "AUTH PLAIN -> 235"),
                ("R11", d2.into(), "LOGINDISABLED", "LOGIN -> "),
                ("R11", d2.into(), "USER/PASS", "+OK"),
            ]
        },
    );
}

#[test]
fn verify_catches_a_stopped_mail_server() {
    let mut r = start(LocalLab::render(7));
    r.mail[1].kill();
    let (out, json) = verify(&r.lab, &["--only", "R2", "--only", "R3"]);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    let d2 = r.lab.domain(1);
    let expected: Vec<(&str, &str, &str, &str)> = [
        ("R2", "EHLO"),
        ("R3", "accepted at RCPT"),
        ("R3", "unknown mailbox"),
        ("R3", "logs in over IMAPS"),
    ]
    .iter()
    .map(|(id, n)| (*id, d2.as_str(), *n, "Connection refused"))
    .collect();
    assert_failed_exactly(&json, &expected);
}
