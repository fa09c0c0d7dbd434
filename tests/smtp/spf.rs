//! SPF on port 25 (RFC 7208): a forged sender refused under `-all`,
//! marked under `~all`.

use super::*;

/// `MAIL FROM:<x@domain1>` to domain 2's port 25 from an address the SPF
/// policy does not allow: refused under `-all`, marked under `~all`.
#[test]
fn spf_fail_refused_and_softfail_marked() {
    if !have_tool(python3()) {
        return;
    }
    // Variant 7: v=spf1 mx -all
    let lab = Lab::start(7);
    let (sender, _) = lab.mailbox(0, 0);
    let (rcpt, _) = lab.mailbox(1, 0);
    let foreign = lab.foreign_ip();
    let v = lab.smtp(
        1,
        "smtp",
        "plain",
        Some(&foreign),
        json!([format!("MAIL FROM:<{sender}>")]),
    );
    assert_step(&v, 0, 550, "5.7.23");
    // From the legitimate server's address the same sender passes SPF.
    let own = lab.ip(0);
    let v = lab.smtp(
        1,
        "smtp",
        "plain",
        Some(&own),
        json!([format!("MAIL FROM:<{sender}>"), format!("RCPT TO:<{rcpt}>")]),
    );
    assert_step(&v, 0, 250, "2.1.0");
    assert_step(&v, 1, 250, "2.1.5");
    drop(lab);

    // Variant 2: v=spf1 mx ~all
    let lab = Lab::start(2);
    let (sender, _) = lab.mailbox(0, 0);
    let (rcpt, _) = lab.mailbox(1, 0);
    let foreign = lab.foreign_ip();
    let message = format!("From: {sender}\nTo: {rcpt}\nSubject: softfail test\n\nbody\n");
    let v = lab.smtp(
        1,
        "smtp",
        "plain",
        Some(&foreign),
        json!([format!("MAIL FROM:<{sender}>"), format!("RCPT TO:<{rcpt}>"), {"data": message}]),
    );
    assert_step(&v, 0, 250, "2.1.0");
    assert_step(&v, 2, 250, "2.0.0");
    // Accepted and marked: the softfail raises the spam score, and this bare
    // message (no Date, no Message-ID, "test" in the Subject) may be filed
    // into Junk by the spam filter; either folder proves the acceptance.
    let inbox = lab.maildir_new(1, &rcpt);
    let junk = inbox.parent().unwrap().join(".Junk/new");
    let got = wait_for_message_in(
        &[inbox, junk],
        "Subject: softfail test",
        Duration::from_secs(5),
    );
    let fields = headers(&got);
    let ar = field(&fields, "Authentication-Results");
    assert!(ar[0].contains("spf=softfail"), "{}", ar[0]);
    assert!(
        String::from_utf8_lossy(&fs::read(&got).unwrap()).contains("X-Spam-Status:"),
        "the spam filter did not look at the softfail message"
    );
    assert!(field(&fields, "Received-SPF")[0].starts_with("Received-SPF: softfail"));
}
