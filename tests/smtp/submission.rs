//! Submission (587 STARTTLS, 465 implicit TLS): AUTH, the relay and sender
//! rules of docs/smtp.md, certificates verified by openssl and swaks.

use super::*;

/// Relay, AUTH and sender rules of docs/smtp.md.
#[test]
fn relay_and_auth_rules() {
    if !have_tool(python3()) {
        return;
    }
    let lab = Lab::start(7);
    let (user, password) = lab.mailbox(0, 0);
    let (other_local, _) = lab.mailbox(0, 1);
    let (remote, _) = lab.mailbox(1, 0);
    let d1 = lab.lab.domain(0);
    let foreign = lab.foreign_ip();

    // Port 25: no AUTH offered or accepted, no relay, unknown mailbox 550 5.1.1.
    let v = lab.smtp(
        0,
        "smtp",
        "starttls",
        Some(&foreign),
        json!([
            "AUTH PLAIN AGdvbGQAc2VjcmV0",
            format!("MAIL FROM:<someone@{}>", "example.org"),
            format!("RCPT TO:<{remote}>"),
            format!("RCPT TO:<nobody@{d1}>"),
            format!("RCPT TO:<{other_local}>"),
        ]),
    );
    assert!(
        !v["ehlo_plain"].as_array().unwrap().contains(&json!("auth")),
        "{v}"
    );
    assert!(
        !v["ehlo"].as_array().unwrap().contains(&json!("auth")),
        "{v}"
    );
    assert!(
        v["ehlo_plain"]
            .as_array()
            .unwrap()
            .contains(&json!("starttls"))
    );
    assert_step(&v, 0, 503, "5.5.1");
    assert!(step(&v, 0).1.contains("587"), "hint to use 587: {v}");
    assert_step(&v, 1, 250, "2.1.0");
    assert_step(&v, 2, 554, "5.7.1");
    assert_step(&v, 3, 550, "5.1.1");
    assert_step(&v, 4, 250, "2.1.5");

    // Port 587 before TLS: no AUTH offered, AUTH refused, no relay.
    let v = lab.smtp(
        0,
        "submission",
        "plain",
        None,
        json!(["AUTH PLAIN AGdvbGQAc2VjcmV0", format!("MAIL FROM:<{user}>"),]),
    );
    assert!(
        !v["ehlo_plain"].as_array().unwrap().contains(&json!("auth")),
        "{v}"
    );
    assert_eq!(
        v["ehlo_plain"],
        json!([
            "8bitmime",
            "enhancedstatuscodes",
            "pipelining",
            "size",
            "starttls"
        ])
    );
    assert_step(&v, 0, 530, "5.7.0");
    assert_step(&v, 1, 530, "5.7.0");

    // Port 587 after TLS: AUTH PLAIN LOGIN offered, wrong password 535,
    // no relay without AUTH, spoofed senders 553.
    let v = lab.smtp(
        0,
        "submission",
        "starttls",
        None,
        json!([
            format!("MAIL FROM:<{user}>"),
            {"login": [user.clone(), "wrong password"]},
            {"login": [user.clone(), password.clone()]},
            format!("MAIL FROM:<{other_local}>"),
            format!("MAIL FROM:<{user}>"),
            format!("RCPT TO:<{remote}>"),
            {"data": format!("From: {other_local}\nTo: {remote}\nSubject: spoof\n\nx\n")},
        ]),
    );
    assert_eq!(
        v["ehlo"],
        json!([
            "8bitmime",
            "auth",
            "enhancedstatuscodes",
            "pipelining",
            "size"
        ])
    );
    assert_eq!(v["auth"], json!("PLAIN LOGIN"));
    assert_step(&v, 0, 530, "5.7.0");
    assert_step(&v, 1, 535, "5.7.8");
    assert_step(&v, 2, 235, "2.7.0");
    assert_step(&v, 3, 553, "5.7.1");
    assert!(step(&v, 3).1.contains("not owned by user"), "{v}");
    assert_step(&v, 4, 250, "2.1.0");
    assert_step(&v, 5, 250, "2.1.5");
    assert_step(&v, 6, 553, "5.7.1");

    // AUTH LOGIN works too (465).
    let v = lab.smtp(
        0,
        "submissions",
        "tls",
        None,
        json!(["AUTH LOGIN", base64(&user), base64(&password)]),
    );
    assert_eq!(step(&v, 0).0, 334);
    assert_eq!(step(&v, 1).0, 334);
    assert_step(&v, 2, 235, "2.7.0");

    // The transcript has the session with AUTH data redacted and the TLS upgrade.
    let transcript =
        fs::read_to_string(lab.lab.data_dir(0).join("transcripts/smtp.jsonl")).unwrap();
    assert!(
        !transcript.contains(&password),
        "password in the transcript"
    );
    assert!(!transcript.contains(&base64(&password)));
    assert!(transcript.contains("AUTH PLAIN ***") || transcript.contains("AUTH LOGIN ***"));
    assert!(
        transcript.contains("STARTTLS: TLS1.3") || transcript.contains("STARTTLS: TLS1.2"),
        "TLS upgrade marked"
    );
}

/// openssl s_client verifies the certificate against the lab CA for the
/// server's name: STARTTLS on 25 and 587, implicit TLS on 465.
#[test]
fn tls_verified_by_openssl() {
    if !have_tool("openssl") {
        return;
    }
    let lab = Lab::start(7);
    for i in 0..2 {
        let name = format!("mail.{}", lab.lab.domain(i));
        for (port, starttls) in [("smtp", true), ("submission", true), ("submissions", false)] {
            let addr = lab.lab.addr(i, port);
            let mut cmd = Command::new("openssl");
            cmd.args(["s_client", "-connect", &addr.to_string()]);
            if starttls {
                cmd.args(["-starttls", "smtp"]);
            }
            cmd.args(["-verify_return_error", "-CAfile"])
                .arg(lab.lab.ca_cert())
                .args(["-verify_hostname", &name, "-servername", &name, "-brief"])
                .stdin(std::process::Stdio::null());
            let out = run(&mut cmd);
            let all = format!("{}{}", stdout(&out), stderr(&out));
            assert!(
                out.status.success() && all.contains("Verification: OK"),
                "openssl {port} {name}: {all}"
            );
        }
        // The wrong name fails verification.
        let addr = lab.lab.addr(i, "submissions");
        let out = run(Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-verify_return_error",
                "-CAfile",
            ])
            .arg(lab.lab.ca_cert())
            .args(["-verify_hostname", "mail.example.org", "-brief"])
            .stdin(std::process::Stdio::null()));
        assert!(!out.status.success(), "wrong host name must not verify");
    }
}

/// swaks (another independent client) against both submission ports and the
/// MX: STARTTLS and implicit TLS verified against the lab CA, AUTH PLAIN and
/// LOGIN, delivery with dkim=pass; a wrong password, relay without AUTH and
/// a spoofed sender refused with their codes.
#[test]
fn swaks_submits_and_is_refused_where_it_must_be() {
    if !have_tool("swaks") || !have_tool(python3()) {
        return;
    }
    let lab = Lab::start(7);
    let ca = lab.lab.ca_cert();
    let ca = ca.to_str().unwrap();
    let (user, password) = lab.mailbox(0, 0);
    let (other, _) = lab.mailbox(0, 1);
    let (to, _) = lab.mailbox(1, 0);
    let tls = ["--tls-verify", "--tls-ca-path", ca];

    for (port, tls_mode, mech) in [
        ("submission", "--tls", "PLAIN"),
        ("submissions", "--tls-on-connect", "LOGIN"),
    ] {
        let subject = format!("swaks over {port}");
        let (ok, dialogue) = swaks(
            &lab,
            0,
            port,
            &[
                &[tls_mode][..],
                &tls,
                &["--auth", mech, "--auth-user", &user, "--auth-password"],
                &[&password, "--from", &user, "--to", &to],
                &["--h-Subject", &subject, "--body", "Sent by swaks."],
            ]
            .concat(),
        );
        assert!(ok, "swaks on {port}: {dialogue}");
        assert!(
            dialogue.contains("235 2.7.0") && dialogue.contains("250 2.0.0 Message accepted"),
            "{dialogue}"
        );
        let got = wait_for_message(
            &lab.maildir_new(1, &to),
            &format!("Subject: {subject}"),
            Duration::from_secs(30),
        );
        assert_eq!(lab.dkim_verify(&got), format!("PASS {}", lab.lab.domain(0)));
        let fields = headers(&got);
        let ar = field(&fields, "Authentication-Results");
        assert!(
            ar[0].contains("dkim=pass") && ar[0].contains("spf=pass"),
            "{ar:?}"
        );
    }

    // Refusals: RFC 4954 §6 wrong password; sending as another mailbox;
    // relay to a foreign domain without AUTH (no open relay).
    let auth = |pw: &str, from: &str| -> Vec<String> {
        [
            "--auth",
            "PLAIN",
            "--auth-user",
            &user,
            "--auth-password",
            pw,
        ]
        .into_iter()
        .chain(["--from", from, "--to", &to])
        .map(str::to_string)
        .collect()
    };
    let foreign: Vec<String> = [
        "--from",
        "someone@example.org",
        "--to",
        "victim@example.net",
    ]
    .map(str::to_string)
    .to_vec();
    for (what, port, args, code) in [
        (
            "wrong password",
            "submission",
            auth("wrong", &user),
            "535 5.7.8",
        ),
        (
            "spoofed sender",
            "submission",
            auth(&password, &other),
            "553 5.7.1",
        ),
        ("relay without AUTH", "smtp", foreign, "554 5.7.1"),
    ] {
        let args: Vec<&str> = ["--tls"]
            .into_iter()
            .chain(tls)
            .chain(args.iter().map(String::as_str))
            .collect();
        let (ok, dialogue) = swaks(&lab, 0, port, &args);
        assert!(!ok && dialogue.contains(code), "{what}: {dialogue}");
    }
}
