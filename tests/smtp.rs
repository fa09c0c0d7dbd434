//! Issue 4: the SMTP MX, submission, queue and relay, driven over real TCP
//! by independent clients: Python's smtplib (and dkimpy for DKIM), swaks,
//! openssl s_client, with labdns serving the rendered zones and two
//! `labctl serve-mail` instances on loopback addresses (one replaced by
//! Python's smtpd to relay to an MX without PIPELINING).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Guard, LocalLab, have_tool, python, python3, run, stderr, stdout};

/// A generic SMTP conversation with Python's smtplib. The spec (JSON) says
/// where to connect (`host`, `port`, `mode`: plain | starttls | tls,
/// `tls_name`, `ca`, `source` address), the EHLO name, and `steps`: a raw
/// command line (answered with `[code, text]`), `{"login": [user, pw]}`,
/// or `{"data": message, "repeat": [line, n]}` (LF line ends; MAIL/RCPT must come before as raw lines). The
/// result has `ehlo_plain` and `ehlo` (extension names before and after
/// TLS) and one `[code, text]` per step; `-1` when the server closed.
const SMTP_CLIENT: &str = r#"
import json, smtplib, ssl, sys
spec = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=spec['ca'])
src = (spec['source'], 0) if spec.get('source') else None
name = spec.get('tls_name')
class TLS(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        self._host = name
        return super()._get_socket(host, port, timeout)
out = {'steps': [], 'ehlo_plain': [], 'ehlo': []}
try:
    if spec['mode'] == 'tls':
        s = TLS(context=ctx, timeout=60, source_address=src)
    else:
        s = smtplib.SMTP(timeout=60, source_address=src)
    s.connect(spec['host'], spec['port'])
    s.ehlo(spec.get('helo', 'client.example'))
    out['ehlo_plain'] = sorted(s.esmtp_features.keys())
    if spec['mode'] == 'starttls':
        s._host = name
        s.starttls(context=ctx)
        s.ehlo(spec.get('helo', 'client.example'))
    out['ehlo'] = sorted(s.esmtp_features.keys())
    out['auth'] = s.esmtp_features.get('auth', '').strip()
    for step in spec['steps']:
        try:
            if isinstance(step, str):
                code, msg = s.docmd(step)
            elif 'login' in step:
                try:
                    code, msg = s.login(*step['login'])
                except smtplib.SMTPAuthenticationError as e:
                    code, msg = e.smtp_code, e.smtp_error
                except smtplib.SMTPNotSupportedError as e:
                    code, msg = 0, str(e).encode()
            else:
                body = step['data']
                if 'repeat' in step:
                    body += step['repeat'][0] * step['repeat'][1]
                try:
                    code, msg = s.data(body.replace('\n', '\r\n').encode())
                except smtplib.SMTPDataError as e:
                    code, msg = e.smtp_code, e.smtp_error
            out['steps'].append([code, msg.decode(errors='replace')])
        except smtplib.SMTPServerDisconnected as e:
            out['steps'].append([-1, str(e)])
            break
    try:
        s.quit()
    except Exception:
        pass
except Exception as e:
    out['error'] = repr(e)
print(json.dumps(out))
"#;

/// Verifies the DKIM signature of a file with dkimpy, asking the lab DNS.
const DKIM_VERIFY: &str = r#"
import sys, dkim, dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = [sys.argv[2]]; r.port = int(sys.argv[3])
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    try:
        a = r.resolve(name, 'TXT', tcp=True)
    except Exception:
        return None
    return b''.join(b''.join(x.strings) for x in a)
d = dkim.DKIM(open(sys.argv[1], 'rb').read())
print('PASS' if d.verify(dnsfunc=dnsfunc) else 'FAIL', d.domain.decode() if d.domain else '')
"#;

/// Signs a message with dkimpy (key file, domain, selector), optionally
/// alters the body afterwards, and sends it with smtplib from `source`.
const DKIM_SEND: &str = r#"
import json, smtplib, sys, dkim
spec = json.loads(sys.argv[1])
msg = spec['message'].replace('\n', '\r\n').encode()
sig = dkim.sign(msg, spec['selector'].encode(), spec['domain'].encode(),
                open(spec['key'], 'rb').read(),
                include_headers=[b'From', b'To', b'Subject', b'Date', b'Message-ID'])
signed = sig + msg
if spec['alter']:
    signed = signed.replace(b'Pay 10 EUR', b'Pay 99 EUR')
s = smtplib.SMTP(timeout=60, source_address=(spec['source'], 0))
s.connect(spec['host'], spec['port'])
s.ehlo(spec['helo'])
out = []
for cmd in ['MAIL FROM:<%s>' % spec['from'], 'RCPT TO:<%s>' % spec['to']]:
    code, m = s.docmd(cmd)
    out.append([code, m.decode()])
try:
    code, m = s.data(signed)
except smtplib.SMTPDataError as e:
    code, m = e.smtp_code, e.smtp_error
out.append([code, m.decode()])
s.quit()
print(json.dumps(out))
"#;

/// A running lab: DNS plus the two mail servers (`None` when stopped).
struct Lab {
    lab: LocalLab,
    _dns: Guard,
    mail: [Option<Guard>; 2],
}

impl Lab {
    fn start(variant: u32) -> Self {
        let lab = LocalLab::render(variant);
        let dns = lab.spawn_dns();
        let m0 = lab.spawn_mail(0);
        let m1 = lab.spawn_mail(1);
        Self {
            lab,
            _dns: dns,
            mail: [Some(m0), Some(m1)],
        }
    }

    fn ip(&self, i: usize) -> String {
        self.lab.server(i)["ip"].as_str().unwrap().to_string()
    }

    /// An address of the lab subnet that is no server's (a foreign client).
    fn foreign_ip(&self) -> String {
        let ip = self.ip(0);
        let (net, _) = ip.rsplit_once('.').unwrap();
        format!("{net}.99")
    }

    fn stop(&mut self, i: usize) {
        if let Some(mut g) = self.mail[i].take() {
            g.kill();
        }
    }

    fn restart(&mut self, i: usize) {
        self.stop(i);
        self.mail[i] = Some(self.lab.spawn_mail(i));
    }

    fn mailbox(&self, i: usize, k: usize) -> (String, String) {
        self.lab.mailbox(i, k)
    }

    fn maildir_new(&self, i: usize, address: &str) -> PathBuf {
        self.lab.data_dir(i).join("mail").join(address).join("new")
    }

    /// Runs an smtplib conversation against service `port` of server `i`.
    fn smtp(&self, i: usize, port: &str, mode: &str, source: Option<&str>, steps: Value) -> Value {
        let addr: SocketAddr = self.lab.addr(i, port);
        let spec = json!({
            "host": addr.ip().to_string(), "port": addr.port(), "mode": mode,
            "tls_name": format!("mail.{}", self.lab.domain(i)),
            "ca": self.lab.ca_cert(), "source": source, "steps": steps,
        });
        let out = python(SMTP_CLIENT, &[&spec.to_string()]);
        assert!(out.status.success(), "smtplib: {}", stderr(&out));
        let v: Value = serde_json::from_str(stdout(&out).trim())
            .unwrap_or_else(|e| panic!("smtplib output {e}: {}", stdout(&out)));
        assert!(v.get("error").is_none(), "smtplib failed: {v}");
        v
    }

    /// Submits a message from mailbox (i, 0) to `to` over 587 or 465.
    fn submit(&self, i: usize, port: &str, to: &str, subject: &str) -> Value {
        let (user, password) = self.mailbox(i, 0);
        let mode = if port == "submissions" {
            "tls"
        } else {
            "starttls"
        };
        let message = format!(
            "From: {user}\nTo: {to}\nSubject: {subject}\nMIME-Version: 1.0\nContent-Type: text/plain\n\nHello from {user}.\n.a line that starts with a dot\n"
        );
        self.smtp(
            i,
            port,
            mode,
            None,
            json!([{"login": [user, password]}, format!("MAIL FROM:<{user}>"), format!("RCPT TO:<{to}>"), {"data": message}]),
        )
    }

    fn dkim_verify(&self, file: &Path) -> String {
        let dns = self.lab.dns_addr();
        let out = python(
            DKIM_VERIFY,
            &[
                file.to_str().unwrap(),
                &dns.ip().to_string(),
                &dns.port().to_string(),
            ],
        );
        assert!(out.status.success(), "dkimpy: {}", stderr(&out));
        stdout(&out).trim().to_string()
    }
}

/// The `[code, text]` of step `n`.
fn step(v: &Value, n: usize) -> (i64, String) {
    let s = &v["steps"][n];
    (
        s[0].as_i64()
            .unwrap_or_else(|| panic!("step {n} missing in {v}")),
        s[1].as_str().unwrap_or("").to_string(),
    )
}

fn assert_step(v: &Value, n: usize, code: i64, enhanced: &str) {
    let (c, text) = step(v, n);
    assert!(
        c == code && text.starts_with(enhanced),
        "step {n}: expected {code} {enhanced}, got {c} {text}\n{v}"
    );
}

/// Waits until `dir` holds a message containing `needle`; returns its path.
fn wait_for_message(dir: &Path, needle: &str, timeout: Duration) -> PathBuf {
    wait_for_message_in(&[dir.to_path_buf()], needle, timeout)
}

/// Waits until one of `dirs` holds a message containing `needle`; returns its path.
fn wait_for_message_in(dirs: &[PathBuf], needle: &str, timeout: Duration) -> PathBuf {
    let deadline = Instant::now() + timeout;
    loop {
        for dir in dirs {
            if let Ok(entries) = fs::read_dir(dir) {
                for e in entries.flatten() {
                    let text = fs::read(e.path()).unwrap_or_default();
                    if String::from_utf8_lossy(&text).contains(needle) {
                        return e.path();
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no message with {needle:?} in {dirs:?} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The header section of a message file, unfolded, one field per line.
fn headers(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    let head = text.split("\r\n\r\n").next().unwrap().to_string();
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields
}

fn field<'a>(fields: &'a [String], name: &str) -> Vec<&'a String> {
    fields
        .iter()
        .filter(|f| {
            f.len() > name.len()
                && f[..name.len()].eq_ignore_ascii_case(name)
                && f.as_bytes()[name.len()] == b':'
        })
        .collect()
}

/// Checks a relayed message: DKIM by dkimpy, Authentication-Results, Received.
fn check_relayed(lab: &Lab, path: &Path, from_domain: &str) {
    let verdict = lab.dkim_verify(path);
    assert_eq!(
        verdict,
        format!("PASS {from_domain}"),
        "dkimpy on {}",
        path.display()
    );
    let fields = headers(path);
    let ar = field(&fields, "Authentication-Results");
    assert_eq!(ar.len(), 1, "one Authentication-Results: {fields:?}");
    for result in ["spf=pass", "dkim=pass", "dmarc=pass"] {
        assert!(ar[0].contains(result), "{result} missing in {}", ar[0]);
    }
    assert!(
        ar[0].contains(&format!("header.d={from_domain}")),
        "{}",
        ar[0]
    );
    let received = field(&fields, "Received");
    assert!(
        received
            .iter()
            .any(|r| r.contains("with ESMTPS ") && r.contains("version=TLS")),
        "Received with ESMTPS and TLS version: {received:?}"
    );
    assert!(
        received.iter().any(|r| r.contains("with ESMTPSA ")),
        "Received with ESMTPSA: {received:?}"
    );
    assert_eq!(field(&fields, "Received-SPF").len(), 1);
    assert!(field(&fields, "Received-SPF")[0].starts_with("Received-SPF: pass"));
    let sig = field(&fields, "DKIM-Signature");
    assert!(
        sig[0].contains(&format!("d={from_domain};")) && sig[0].contains("c=relaxed/relaxed"),
        "{sig:?}"
    );
    assert_eq!(field(&fields, "Message-ID").len(), 1, "Message-ID added");
    assert_eq!(field(&fields, "Date").len(), 1, "Date added");
    let text = fs::read_to_string(path).unwrap();
    assert!(
        text.contains("\r\n.a line that starts with a dot\r\n"),
        "dot-stuffing undone"
    );
}

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

/// Relay, AUTH and sender rules of SPEC section 7.
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

fn base64(s: &str) -> String {
    use std::fmt::Write;
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= n {
                let _ = write!(out, "{}", T[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

/// One swaks conversation with server `i`'s service `port`; `args` add the
/// TLS, AUTH and envelope options. Returns the exit status and the dialogue.
fn swaks(lab: &Lab, i: usize, port: &str, args: &[&str]) -> (bool, String) {
    let addr = lab.lab.addr(i, port);
    let out = run(Command::new("swaks")
        .args(["--server", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--helo", "swaks.client.test", "--timeout", "20"])
        .args(args)
        .stdin(std::process::Stdio::null()));
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
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

/// Limits: long lines, oversized messages, too many connections; a
/// misbehaving client is answered and disconnected, the server goes on.
#[test]
fn limits_answer_and_disconnect() {
    if !have_tool(python3()) {
        return;
    }
    let lab = Lab::start(7);
    let (sender, _) = lab.mailbox(0, 0);
    let (rcpt, _) = lab.mailbox(1, 0);
    let own = lab.ip(0);
    let long = format!("NOOP {}", "x".repeat(2000));
    let v = lab.smtp(1, "smtp", "plain", Some(&own), json!([long, "NOOP"]));
    assert_step(&v, 0, 500, "5.5.2");
    assert_eq!(step(&v, 1).0, -1, "disconnected after the long line: {v}");
    // SIZE declared over the limit, then a real oversized message.
    // 420,000 lines of 66 octets: 27.7 MB, over the 25 MiB limit.
    let big = json!({
        "data": format!("From: {sender}\nTo: {rcpt}\nSubject: big\n\n"),
        "repeat": ["0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", 420_000],
    });
    let v = lab.smtp(
        1,
        "smtp",
        "plain",
        Some(&own),
        json!([
            format!("MAIL FROM:<{sender}> SIZE=999999999"),
            format!("MAIL FROM:<{sender}>"),
            format!("RCPT TO:<{rcpt}>"),
            big,
            "NOOP",
        ]),
    );
    assert_step(&v, 0, 552, "5.3.4");
    assert_step(&v, 3, 552, "5.3.4");
    assert_step(&v, 4, 250, "2.0.0");

    // More connections from one address than the limit: the oldest idle
    // one gives way with 421 (as Dovecot's login processes), the new one
    // is served.
    let addr = lab.lab.addr(1, "smtp");
    let mut held = Vec::new();
    for _ in 0..32 {
        let s = std::net::TcpStream::connect(addr).unwrap();
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = std::net::TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 256];
    let n = std::io::Read::read(&mut extra, &mut buf).unwrap();
    let greeting = String::from_utf8_lossy(&buf[..n]);
    assert!(greeting.starts_with("220 "), "{greeting}");
    held[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut all = Vec::new();
    let _ = std::io::Read::read_to_end(&mut held[0], &mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("421 4.7.0 Idle connection"), "{text}");
    drop(held);
    // The server keeps serving.
    std::thread::sleep(Duration::from_millis(300));
    let v = lab.smtp(1, "smtp", "plain", Some(&own), json!(["NOOP"]));
    assert_step(&v, 0, 250, "2.0.0");
}

/// Command timeout: `421 4.4.2` and the connection is closed.
#[test]
fn command_timeout_closes_with_421() {
    let lab = LocalLab::render(7);
    let config = lab
        .path()
        .join(format!("servers/mail.{}/config.yaml", lab.domain(1)));
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("command_timeout_secs: 300", "command_timeout_secs: 1"),
    )
    .unwrap();
    let _dns = lab.spawn_dns();
    let _m = lab.spawn_mail(1);
    let mut s = std::net::TcpStream::connect(lab.addr(1, "smtp")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("220 "), "{text}");
    assert!(text.contains("\r\n421 4.4.2 "), "{text}");
}

/// Arbitrary bytes into SMTP sessions over TCP: the server neither panics
/// nor grows without bound, and answers a well-formed session afterwards.
#[test]
fn arbitrary_bytes_do_not_break_the_server() {
    use std::io::{Read, Write};
    let lab = LocalLab::render(7);
    let _dns = lab.spawn_dns();
    let mut m = lab.spawn_mail(1);
    let addr = lab.addr(1, "smtp");
    let pid = m.child.id();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let prefixes: [&[u8]; 6] = [
        b"",
        b"EHLO x\r\n",
        b"EHLO x\r\nMAIL FROM:<a@b>\r\n",
        b"HELO x\r\nRCPT TO:<",
        b"EHLO x\r\nAUTH PLAIN\r\n",
        b"EHLO x\r\nDATA\r\n",
    ];
    for round in 0..200 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let len = (next() % 4096) as usize;
        let mut data: Vec<u8> = prefixes[round % prefixes.len()].to_vec();
        data.extend((0..len).map(|_| {
            let r = next();
            // Mostly printable with CR/LF, sometimes any byte.
            match r % 10 {
                0 => b'\n',
                1 => b'\r',
                2 => (r >> 8) as u8,
                _ => b' ' + ((r >> 8) % 95) as u8,
            }
        }));
        let _ = s.write_all(&data);
        let mut sink = [0u8; 4096];
        let _ = s.read(&mut sink);
    }
    // Still alive and serving.
    assert!(m.child.try_wait().unwrap().is_none(), "server exited");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"EHLO fuzz.example\r\nQUIT\r\n").unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("250 ") && text.contains("221 2.0.0"),
        "{text}"
    );
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    if let Some(rss) = status.lines().find(|l| l.starts_with("VmRSS:")) {
        let kb: u64 = rss
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(
            kb < 200 * 1024,
            "resident memory {kb} kB after the fuzz rounds"
        );
    }
}
