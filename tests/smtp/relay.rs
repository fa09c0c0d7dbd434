//! Relay between the two lab servers: submission on one, DKIM-signed,
//! relayed over verified STARTTLS, verified and delivered on the other, for
//! each kind of SPF policy; and relay to an MX without PIPELINING.

use super::*;

/// Submission on 587 (STARTTLS + AUTH) from domain 1 to domain 2 and on
/// 465 from domain 2 to domain 1: signed, relayed, verified, delivered.
fn relay_both_directions(variant: u32) {
    if !have_tool(python3()) {
        return;
    }
    let lab = Lab::start(variant);
    let (to1, _) = lab.mailbox(0, 1);
    let (to2, _) = lab.mailbox(1, 0);
    let d1 = lab.lab.domain(0);
    let d2 = lab.lab.domain(1);

    let v = lab.submit(0, "submission", &to2, "over 587");
    assert!(
        v["ehlo"].as_array().unwrap().contains(&json!("auth")),
        "{v}"
    );
    assert_step(&v, 0, 235, "2.7.0");
    assert_step(&v, 3, 250, "2.0.0");
    let got = wait_for_message(
        &lab.maildir_new(1, &to2),
        "Subject: over 587",
        Duration::from_secs(30),
    );
    check_relayed(&lab, &got, &d1);

    let v = lab.submit(1, "submissions", &to1, "over 465");
    assert_step(&v, 3, 250, "2.0.0");
    let got = wait_for_message(
        &lab.maildir_new(0, &to1),
        "Subject: over 465",
        Duration::from_secs(30),
    );
    check_relayed(&lab, &got, &d2);
}

#[test]
fn relay_variant_7_mx_fail_all() {
    relay_both_directions(7);
}

#[test]
fn relay_variant_3_a_mx() {
    relay_both_directions(3);
}

#[test]
fn relay_variant_4_ptr_mx() {
    relay_both_directions(4);
}

#[test]
fn relay_variant_2_mx_softfail_all() {
    relay_both_directions(2);
}

/// An MX that does not offer PIPELINING: Python's `smtpd` (standard library,
/// Python 3.11; no STARTTLS either). It writes each message as JSON to
/// `<out>`, and to `<out>.pipelined` what a client sent ahead of a reply in
/// the command phase: RFC 2920 §3.1 forbids that when PIPELINING is not
/// offered.
const NON_PIPELINING_MX: &str = r#"
import asyncore, json, os, smtpd, sys
addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class Channel(smtpd.SMTPChannel):
    def found_terminator(self):
        # asynchat leaves in ac_in_buffer what arrived after this line.
        if self.smtp_state == self.COMMAND and self.ac_in_buffer:
            with open(out + '.pipelined', 'a') as f:
                f.write(repr(self.ac_in_buffer) + '\n')
        super().found_terminator()
class Server(smtpd.SMTPServer):
    channel_class = Channel
    def process_message(self, peer, mailfrom, rcpttos, data, **kw):
        with open(out + '.tmp', 'w') as f:
            json.dump({'from': mailfrom, 'to': rcpttos, 'data': data.decode()}, f)
        os.rename(out + '.tmp', out)
Server((addr, port), None, decode_data=False)
print('listening', flush=True)
asyncore.loop()
"#;

/// The relay to an MX without PIPELINING goes command by command (RFC 2920
/// §3.1) and delivers to every recipient: server 2 is replaced by Python's
/// smtpd on its address, and server 1 relays without TLS to it.
#[test]
fn relay_to_an_mx_without_pipelining_waits_for_each_reply() {
    if !have_tool(python3()) {
        return;
    }
    let mut lab = Lab::start(7);
    let config = lab
        .lab
        .path()
        .join(format!("servers/mail.{}/config.yaml", lab.lab.domain(0)));
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains("require_tls: true"), "{text}");
    fs::write(
        &config,
        text.replace("require_tls: true", "require_tls: false"),
    )
    .unwrap();
    lab.restart(0);
    lab.stop(1);
    let mx = lab.lab.addr(1, "smtp");
    let out = lab.lab.path().join("smtpd-received.json");
    let _mx = crate::common::spawn_listening(
        Command::new(python3())
            .args(["-W", "ignore", "-c", NON_PIPELINING_MX])
            .args([&mx.ip().to_string(), &mx.port().to_string()])
            .arg(&out),
        "python3 smtpd",
        mx,
    );

    let (user, password) = lab.mailbox(0, 0);
    let (to1, _) = lab.mailbox(1, 0);
    let (to2, _) = lab.mailbox(1, 1);
    let message =
        format!("From: {user}\nTo: {to1}, {to2}\nSubject: no pipelining\n\nTwo recipients.\n");
    let v = lab.smtp(
        0,
        "submission",
        "starttls",
        None,
        json!([{"login": [user, password]}, format!("MAIL FROM:<{user}>"),
               format!("RCPT TO:<{to1}>"), format!("RCPT TO:<{to2}>"), {"data": message}]),
    );
    assert_step(&v, 4, 250, "2.0.0");

    let deadline = Instant::now() + Duration::from_secs(30);
    while !out.exists() {
        assert!(Instant::now() < deadline, "smtpd received nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    let got: Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(got["from"], user.as_str());
    assert_eq!(
        got["to"],
        json!([to1, to2]),
        "one transaction, both recipients"
    );
    let data = got["data"].as_str().unwrap();
    assert!(data.contains("Subject: no pipelining"), "{data}");
    assert!(
        data.contains(&format!("d={};", lab.lab.domain(0))),
        "signed: {data}"
    );
    let ahead = out.with_extension("json.pipelined");
    assert!(
        !ahead.exists(),
        "commands sent ahead of a reply: {}",
        fs::read_to_string(&ahead).unwrap_or_default()
    );
}
