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
    assert_eq!(r13.len(), 11, "{json:#}");
    assert!(r13.iter().any(|(n, ..)| n.contains("apex A")));
    assert!(r13.iter().all(|(_, r, _)| *r == "pass"), "{json:#}");
    let spf = r13.iter().find(|(n, ..)| n.contains("SPF")).unwrap();
    assert!(spf.2.contains("\"v=spf1 a mx -all\""), "{}", spf.2);
    assert_eq!(json["summary"], "11 passed, 0 failed");
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(xml.contains("tests=\"11\" failures=\"0\""), "{xml}");
    // The table's last line is the summary.
    let out = run(labctl()
        .args(["verify", "--only", "13", "--dir"])
        .arg(lab.path()));
    assert_eq!(stdout(&out).lines().last(), Some("11 passed, 0 failed"));
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
    assert!(failed[0].0.contains(&format!("{d1}: SPF")), "{failed:?}");
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
    let (out, json) = verify(&r.lab, &[]);
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    assert_eq!(json["failed"], 0, "{json:#}");
    assert_eq!(json["skipped"], 0, "{json:#}");
    for id in [
        "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "R11", "R12", "R13",
    ] {
        assert!(!checks(&json, id).is_empty(), "no {id} check");
    }
    // EICAR as body, base64 attachment and zip.
    assert_eq!(checks(&json, "R9").len(), 3, "{json:#}");
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

/// Renders variant 7, applies `fault` to the server config of domain 2,
/// starts the lab, and asserts verify fails exactly the checks of `expect`.
fn fault(yaml_from: &str, yaml_to: &str, only: &[&str], expect: &str, evidence: &str) {
    let lab = LocalLab::render(7);
    let d2 = lab.domain(1);
    edit(
        &lab,
        &format!("servers/mail.{d2}/config.yaml"),
        yaml_from,
        yaml_to,
    );
    let r = start(lab);
    let mut args = Vec::new();
    for id in only {
        args.extend(["--only", id]);
    }
    let (out, json) = verify(&r.lab, &args);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    assert_eq!(failed_ids(&json), [expect], "{json:#}");
    let failed: Vec<_> = checks(&json, expect)
        .into_iter()
        .filter(|(_, res, _)| *res == "fail")
        .collect();
    assert!(
        failed
            .iter()
            .any(|(n, _, e)| n.contains(&d2) || e.contains(evidence)),
        "{failed:?}"
    );
}

#[test]
fn verify_catches_dkim_verification_off() {
    fault(
        "dkim_verify: true",
        "dkim_verify: false",
        &["R6", "R7"],
        "R7",
        "5.7.20",
    );
}

#[test]
fn verify_catches_spf_fail_accepted() {
    fault(
        "spf_fail: reject",
        "spf_fail: accept",
        &["R8"],
        "R8",
        "5.7.23",
    );
}

#[test]
fn verify_catches_the_scanner_turned_off() {
    // Submission scans on the sending server: turn off the scanner of domain 1.
    let lab = LocalLab::render(7);
    let d1 = lab.domain(0);
    edit(
        &lab,
        &format!("servers/mail.{d1}/config.yaml"),
        "engine: builtin",
        "engine: off",
    );
    let r = start(lab);
    let (out, json) = verify(&r.lab, &["--only", "R9"]);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    assert_eq!(failed_ids(&json), ["R9"]);
}

#[test]
fn verify_catches_plaintext_auth_allowed() {
    // Passwords accepted without TLS on domain 2: SMTP AUTH on 587 before
    // STARTTLS (R5), IMAP LOGIN on 143 and POP3 USER/PASS on 110 (R11).
    let lab = LocalLab::render(7);
    let d2 = lab.domain(1);
    edit(
        &lab,
        &format!("servers/mail.{d2}/config.yaml"),
        "allow_plaintext: false",
        "allow_plaintext: true",
    );
    let r = start(lab);
    let (out, json) = verify(&r.lab, &["--only", "R5", "--only", "R11"]);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    let mut ids = failed_ids(&json);
    ids.sort();
    ids.dedup();
    assert_eq!(ids, ["R11", "R5"], "{json:#}");
    for id in ["R5", "R11"] {
        let failed: Vec<_> = checks(&json, id)
            .into_iter()
            .filter(|(_, res, _)| *res == "fail")
            .collect();
        assert!(
            !failed.is_empty() && failed.iter().all(|(n, _, _)| n.contains(&d2)),
            "{id}: {failed:?}"
        );
    }
}

#[test]
fn verify_catches_a_stopped_mail_server() {
    let mut r = start(LocalLab::render(7));
    r.mail[1].kill();
    let (out, json) = verify(&r.lab, &["--only", "R2", "--only", "R3"]);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    let d2 = r.lab.domain(1);
    let failed: Vec<_> = checks(&json, "R2")
        .into_iter()
        .filter(|(_, res, _)| *res == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{json:#}");
    assert!(failed[0].0.contains(&d2), "{failed:?}");
    assert!(failed[0].2.contains("Connection refused"), "{failed:?}");
}
