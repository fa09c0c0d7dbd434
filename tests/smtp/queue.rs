//! The queue: nothing lost on SIGKILL after `250`, retries deliver, a
//! permanent failure bounces (DSN).

use super::*;

/// SIGKILL right after `250`: the receiving side has the message in the
/// Maildir; the sending side delivers it from the queue after a restart.
#[test]
fn sigkill_after_250_loses_nothing() {
    if !have_tool(python3()) {
        return;
    }
    let mut lab = Lab::start(7);
    let (sender, _) = lab.mailbox(0, 0);
    let (rcpt, _) = lab.mailbox(1, 0);

    // Receiving side: port 25 of domain 2, from domain 1's address.
    let message = format!("From: {sender}\nTo: {rcpt}\nSubject: kill receiver\n\nbody\n");
    let v = lab.smtp(
        1,
        "smtp",
        "starttls",
        Some(&lab.ip(0)),
        json!([format!("MAIL FROM:<{sender}>"), format!("RCPT TO:<{rcpt}>"), {"data": message}]),
    );
    assert_step(&v, 2, 250, "2.0.0");
    lab.stop(1);
    wait_for_message(
        &lab.maildir_new(1, &rcpt),
        "Subject: kill receiver",
        Duration::from_secs(1),
    );

    // Sending side: domain 2 is down, so the message stays queued; kill
    // domain 1 right after 250, bring both back: the queue delivers it.
    let v = lab.submit(0, "submission", &rcpt, "kill sender");
    assert_step(&v, 3, 250, "2.0.0");
    lab.stop(0);
    let queue = lab.lab.data_dir(0).join("queue");
    let queued = fs::read_dir(&queue)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "msg"))
        .count();
    assert_eq!(queued, 1, "the message is in the spool");
    lab.restart(1);
    lab.restart(0);
    wait_for_message(
        &lab.maildir_new(1, &rcpt),
        "Subject: kill sender",
        Duration::from_secs(40),
    );
}

/// Domain 2 stopped, a message sent from domain 1, domain 2 started:
/// delivered by a retry. A permanent failure comes back as a DSN.
#[test]
fn retry_delivers_and_permanent_failure_bounces() {
    if !have_tool(python3()) {
        return;
    }
    let mut lab = Lab::start(7);
    let (sender, _) = lab.mailbox(0, 0);
    let (rcpt, _) = lab.mailbox(1, 0);
    let d2 = lab.lab.domain(1);
    lab.stop(1);
    let v = lab.submit(0, "submission", &rcpt, "retry me");
    assert_step(&v, 3, 250, "2.0.0");
    std::thread::sleep(Duration::from_secs(3));
    lab.restart(1);
    let got = wait_for_message(
        &lab.maildir_new(1, &rcpt),
        "Subject: retry me",
        Duration::from_secs(40),
    );
    check_relayed(&lab, &got, &lab.lab.domain(0));

    // Unknown mailbox on the remote side: 550 5.1.1 there, DSN here.
    let v = lab.submit(0, "submission", &format!("nobody@{d2}"), "bounce me");
    assert_step(&v, 3, 250, "2.0.0");
    let dsn = wait_for_message(
        &lab.maildir_new(0, &sender),
        "report-type=delivery-status",
        Duration::from_secs(30),
    );
    let text = fs::read_to_string(dsn).unwrap();
    assert!(
        text.contains(&format!("Final-Recipient: rfc822; nobody@{d2}")),
        "{text}"
    );
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(text.contains("Subject: bounce me"), "{text}");
}
