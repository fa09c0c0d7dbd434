//! DKIM verification on port 25 (RFC 6376): an altered body refused
//! `550 5.7.20`, the unaltered message accepted.

use super::*;

/// A validly signed message with its body altered after signing, sent from
/// the legitimate server's address: `550 5.7.20`; the unaltered one: `250`.
#[test]
fn dkim_altered_body_refused() {
    if !have_tool(python3()) {
        return;
    }
    let lab = Lab::start(7);
    let (sender, _) = lab.mailbox(0, 0);
    let (rcpt, _) = lab.mailbox(1, 0);
    let d1 = lab.lab.domain(0);
    let addr = lab.lab.addr(1, "smtp");
    let send = |alter: bool, subject: &str| -> Value {
        let spec = json!({
            "message": format!("From: {sender}\nTo: {rcpt}\nSubject: {subject}\nDate: Sun, 22 Nov 2026 03:00:00 +0000\nMessage-ID: <{subject}@{d1}>\n\nPay 10 EUR to the lab.\n"),
            "selector": "lab", "domain": d1,
            "key": lab.lab.path().join(format!("dkim/{d1}.key")),
            "alter": alter, "source": lab.ip(0), "host": addr.ip().to_string(), "port": addr.port(),
            "helo": format!("mail.{d1}"), "from": sender, "to": rcpt,
        });
        let out = python(DKIM_SEND, &[&spec.to_string()]);
        assert!(out.status.success(), "dkimpy send: {}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    let v = send(true, "altered");
    assert_eq!(v[0][0], 250, "{v}");
    assert_eq!(v[2][0], 550, "{v}");
    assert!(v[2][1].as_str().unwrap().starts_with("5.7.20"), "{v}");
    let v = send(false, "unaltered");
    assert_eq!(v[2][0], 250, "{v}");
    let got = wait_for_message(
        &lab.maildir_new(1, &rcpt),
        "Subject: unaltered",
        Duration::from_secs(5),
    );
    let fields = headers(&got);
    let ar = field(&fields, "Authentication-Results");
    for result in ["spf=pass", "dkim=pass", "dmarc=pass"] {
        assert!(ar[0].contains(result), "{result}: {}", ar[0]);
    }
    for e in fs::read_dir(lab.maildir_new(1, &rcpt)).unwrap().flatten() {
        let text = fs::read_to_string(e.path()).unwrap();
        assert!(
            !text.contains("Subject: altered") && !text.contains("Pay 99 EUR"),
            "the altered message must not be delivered"
        );
    }
}
