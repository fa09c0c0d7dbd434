//! The SMTP MX, submission, queue and relay (docs/smtp.md), driven over real TCP
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

mod dkim;
mod queue;
mod relay;
mod robustness;
mod spf;
mod submission;

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
