//! Issue 6: IMAP4rev1 and POP3 over the Maildir store, driven by Python's
//! imaplib and poplib and by curl over real TCP and TLS, plus property
//! tests that feed arbitrary bytes into both session types.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mailserver::admission::Life;
use mailserver::server::{Accepted, Service};
use serde_json::Value;

use crate::common::python_stdout as py;
use crate::common::{LocalLab, have_tool, run, stderr, stdout};

const PLAIN: &str = "From: Alice Example <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nCc: carol@example.test\r\nSubject: Hello lab\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <plain-1@example.test>\r\n\r\nFirst line of the plain message.\r\nThe word zebra is here.\r\n";

const MULTIPART: &str = "From: Dave <dave@example.test>\r\nTo: bob@example.test\r\nSubject: Report attached\r\nDate: Tue, 03 Nov 2026 11:00:00 +0000\r\nMessage-ID: <multi-1@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\nThis is a multi-part message.\r\n--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the attachment.\r\n--BOUNDARY\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n\r\nJVBERi0xLjQKJcOkw7zDtsOfCg==\r\n--BOUNDARY--\r\n";

/// The Maildir of a mailbox of server 0 (the path `Store::maildir` uses).
fn maildir(lab: &LocalLab, address: &str) -> PathBuf {
    lab.data_dir(0)
        .join("mail")
        .join(address.to_ascii_lowercase())
}

/// Delivers like the SMTP side does: write into tmp/, rename into new/.
fn deliver(lab: &LocalLab, address: &str, n: usize, message: &str) {
    let dir = maildir(lab, address);
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let name = format!("1790000{n:03}.M1P1Q{n}.test,S={}", message.len());
    fs::write(dir.join("tmp").join(&name), message).unwrap();
    fs::rename(dir.join("tmp").join(&name), dir.join("new").join(&name)).unwrap();
}

fn host_ip(lab: &LocalLab) -> String {
    lab.server(0)["ip"].as_str().unwrap().to_string()
}

fn port(lab: &LocalLab, name: &str) -> String {
    lab.server(0)["ports"][name].to_string()
}

const IMAP_SESSION: &str = r#"
import imaplib, ssl, sys, json, os, time, socket
ip, port993, port143, ca, host, user, pw, newdir = sys.argv[1:9]
ctx = ssl.create_default_context(cafile=ca)

# Connect to the lab address, verify the certificate for the host name.
class IMAP4_IP(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return socket.create_connection((ip, int(self.port)), timeout)

class IMAP4_SSL_IP(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((ip, int(self.port)), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=host)

# Port 143: LOGINDISABLED and LOGIN refused before STARTTLS.
m = IMAP4_IP(host, int(port143))
assert 'LOGINDISABLED' in m.capabilities, m.capabilities
try:
    m.login(user, pw)
    raise SystemExit('LOGIN before STARTTLS was accepted')
except imaplib.IMAP4.error as e:
    assert 'STARTTLS' in str(e), e
m.starttls(ssl_context=ctx)
assert 'LOGINDISABLED' not in m.capabilities, m.capabilities
m.login(user, pw)
typ, data = m.select('INBOX')
assert typ == 'OK' and int(data[0]) == 2, data
m.logout()

m = IMAP4_SSL_IP(host, int(port993), ssl_context=ctx)
m.login(user, pw)
typ, boxes = m.list()
assert typ == 'OK' and any(b'INBOX' in b for b in boxes), boxes
typ, data = m.select('INBOX')
assert int(data[0]) == 2, data
out = {}
typ, data = m.fetch('1', '(BODY[])')
assert typ == 'OK' and b'zebra' in data[0][1], data
typ, data = m.fetch('1', '(FLAGS)')
assert b'\\Seen' in data[0], data          # BODY[] sets \Seen
typ, data = m.fetch('2', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
assert data[0][1].strip() == b'Subject: Report attached', data
typ, data = m.fetch('2', '(FLAGS)')
assert b'\\Seen' not in data[0], data      # PEEK does not
typ, data = m.fetch('2', '(BODYSTRUCTURE)')
bs = data[0].decode().upper()
assert '"APPLICATION" "PDF"' in bs and '"MIXED"' in bs and 'REPORT.PDF' in bs, bs
typ, data = m.fetch('1', '(ENVELOPE)')
env = data[0].decode()
assert '"Hello lab"' in env and '"alice" "example.test"' in env and '"<plain-1@example.test>"' in env, env
typ, data = m.fetch('1', '(BODY.PEEK[TEXT]<6.4>)')
assert data[0][1] == b'line', data
typ, data = m.store('2', '+FLAGS', '(\\Flagged)')
assert typ == 'OK' and b'\\Flagged' in data[0], data
typ, data = m.search(None, 'FLAGGED')
assert data[0] == b'2', data
typ, data = m.search(None, 'UNSEEN')
assert data[0] == b'2', data
typ, data = m.search(None, 'OR', 'FROM', 'alice', 'SUBJECT', 'report')
assert data[0] == b'1 2', data
typ, data = m.search(None, 'TEXT', 'zebra')
assert data[0] == b'1', data
typ, data = m.search(None, 'BODY', 'attachment', 'NOT', 'SEEN')
assert data[0] == b'2', data
typ, data = m.search(None, 'HEADER', 'Message-ID', 'multi-1')
assert data[0] == b'2', data
typ, data = m.search(None, 'SINCE', '1-Jan-2000', 'LARGER', '10', 'SMALLER', '100000')
assert data[0] == b'1 2', data
typ, data = m.uid('SEARCH', None, 'ALL')
uids = data[0].split()
assert len(uids) == 2, data
typ, data = m.create('Archive')
assert typ == 'OK', data
typ, data = m.copy('1', 'Archive')
assert typ == 'OK' and b'COPYUID' in data[0], data
typ, data = m._simple_command('MOVE', '2', 'Archive')
assert typ == 'OK', data
typ, data = m.select('Archive')
assert int(data[0]) == 2, data
typ, data = m.fetch('1:*', '(UID FLAGS)')
assert b'\\Flagged' in data[1], data
typ, data = m.store('1', '+FLAGS', '(\\Deleted)')
typ, data = m.expunge()
assert typ == 'OK' and data == [b'1'], data
typ, data = m.select('Archive')
assert int(data[0]) == 1, data
typ, data = m.append('Archive', '(\\Seen)', None, b'Subject: appended\r\n\r\nappended body\r\n')
assert typ == 'OK' and b'APPENDUID' in data[0], data
typ, data = m.status('Archive', '(MESSAGES UIDNEXT UNSEEN)')
assert b'MESSAGES 2' in data[0] and b'UNSEEN 1' in data[0], data

# IDLE on INBOX: a delivery by another process wakes it within a second.
typ, data = m.select('INBOX')
assert int(data[0]) == 1, data
tag = m._new_tag()
m.send(tag + b' IDLE\r\n')
line = m.readline()
assert line.startswith(b'+'), line
time.sleep(0.3)
name = '1790000999.M9P9Q9.idle,S=28'
with open(os.path.join(newdir, '..', 'tmp', name), 'wb') as f:
    f.write(b'Subject: during idle\r\n\r\nhi\r\n')
start = time.time()
os.rename(os.path.join(newdir, '..', 'tmp', name), os.path.join(newdir, name))
m.sock.settimeout(5)
line = m.readline()
waited = time.time() - start
assert line.strip() == b'* 2 EXISTS', line
assert waited < 1.0, waited
m.send(b'DONE\r\n')
while True:
    line = m.readline()
    if line.startswith(tag):
        assert b'OK' in line, line
        break
m.sock.settimeout(None)
typ, data = m.fetch('1:*', '(UID FLAGS)')
for item in data:
    out[item.decode()] = 1
m.logout()
print(json.dumps(sorted(out)))
"#;

const IMAP_STATE: &str = r#"
import imaplib, ssl, sys, json, socket
ip, port993, ca, host, user, pw = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
class IMAP4_SSL_IP(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((ip, int(self.port)), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=host)
m = IMAP4_SSL_IP(host, int(port993), ssl_context=ctx)
m.login(user, pw)
out = {}
for box in ['INBOX', 'Archive']:
    typ, data = m.select(box)
    typ, validity = m.response('UIDVALIDITY')
    typ, data = m.fetch('1:*', '(UID FLAGS)')
    out[box] = sorted(d.decode() for d in data)
    out[box + ' validity'] = validity[0].decode()
m.logout()
print(json.dumps(out, sort_keys=True))
"#;

/// The Done-when list for IMAP: imaplib over 993 and 143+STARTTLS, then
/// the same flags and UIDs after reconnecting and after a server restart.
#[test]
fn imaplib_session_idle_and_restart_persistence() {
    let lab = LocalLab::render(7);
    let (user, pw) = lab.mailbox(0, 0);
    deliver(&lab, &user, 1, PLAIN);
    deliver(&lab, &user, 2, MULTIPART);
    let host = format!("mail.{}", lab.domain(0));
    let ip = host_ip(&lab);
    let ca = lab.ca_cert().display().to_string();
    let newdir = maildir(&lab, &user).join("new").display().to_string();
    let mut server = lab.spawn_mail_waiting_for(0, &["imap", "imaps"]);
    let (p993, p143) = (port(&lab, "imaps"), port(&lab, "imap"));
    py(
        IMAP_SESSION,
        &[&ip, &p993, &p143, &ca, &host, &user, &pw, &newdir],
    );
    // Transcripts: the TLS upgrade is marked, the password never written.
    let log = fs::read_to_string(lab.data_dir(0).join("transcripts/imap.jsonl")).unwrap();
    assert!(
        log.contains("STARTTLS TLS1."),
        "no TLS upgrade in the transcript"
    );
    assert!(
        log.contains("LOGIN") && log.contains("***"),
        "no redacted LOGIN"
    );
    assert!(!log.contains(&pw), "the password is in the IMAP transcript");
    let state = |_: ()| -> Value {
        serde_json::from_str(&py(IMAP_STATE, &[&ip, &p993, &ca, &host, &user, &pw])).unwrap()
    };
    let before = state(());
    assert_eq!(
        before["Archive"],
        serde_json::json!(["1 (UID 2 FLAGS (\\Flagged))", "2 (UID 3 FLAGS (\\Seen))"]),
        "{before}"
    );
    assert!(
        before["INBOX"][1].as_str().unwrap().contains("UID 3"),
        "{before}"
    );
    assert_eq!(state(()), before, "flags and UIDs changed after reconnect");
    server.kill();
    let _server = lab.spawn_mail_waiting_for(0, &["imaps"]);
    assert_eq!(state(()), before, "flags and UIDs changed after a restart");
    // New mail after the restart gets a higher UID.
    deliver(&lab, &user, 3, PLAIN);
    let after = state(());
    assert!(
        after["INBOX"][2].as_str().unwrap().contains("UID 4"),
        "{after}"
    );
}

const POP_SESSION: &str = r#"
import poplib, ssl, sys, socket
ip, port995, port110, ca, host, user, pw = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=ca)
class POP3_IP(poplib.POP3):
    def _create_socket(self, timeout):
        return socket.create_connection((ip, self.port), timeout)

class POP3_SSL_IP(poplib.POP3_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((ip, self.port), timeout)
        return self.context.wrap_socket(sock, server_hostname=host)

# Port 110: USER before STLS refused, then STLS.
p = POP3_IP(host, int(port110))
assert 'STLS' in p.capa(), p.capa()
try:
    p.user(user)
    raise SystemExit('USER before STLS was accepted')
except poplib.error_proto as e:
    assert 'STLS' in str(e), e
p.stls(context=ctx)
p.user(user); p.pass_(pw)
count, size = p.stat()
assert count == 3, (count, size)
p.quit()

p = POP3_SSL_IP(host, int(port995), context=ctx)
p.user(user); p.pass_(pw)
count, size = p.stat()
assert count == 3 and size > 0, (count, size)
resp, listing, _ = p.list()
assert len(listing) == 3, listing
resp, uidl, _ = p.uidl()
assert len(uidl) == 3 and all(b'.' in u.split()[1] for u in uidl), uidl
resp, lines, _ = p.top(1, 1)
assert b'Subject: Hello lab' in lines and lines[-1] == b'First line of the plain message.', lines
resp, lines, _ = p.retr(2)
assert b'Content-Type: multipart/mixed; boundary="BOUNDARY"' in lines, lines
# A second session is refused while this one holds the maildrop.
q = POP3_SSL_IP(host, int(port995), context=ctx)
q.user(user)
try:
    q.pass_(pw)
    raise SystemExit('second POP3 session accepted')
except poplib.error_proto as e:
    assert 'IN-USE' in str(e), e
q.quit()
p.dele(1)
assert p.stat()[0] == 2
p.rset()
assert p.stat()[0] == 3
p.dele(3)
p.quit()

p = POP3_SSL_IP(host, int(port995), context=ctx)
p.user(user); p.pass_(pw)
assert p.stat()[0] == 2, p.stat()
resp, uidl2, _ = p.uidl()
assert [u.split()[1] for u in uidl2] == [u.split()[1] for u in uidl[:2]], (uidl, uidl2)
p.quit()

# RFC 1939 §6: the maildrop is released by the time QUIT is answered (not
# when the connection closes), so a client that sends PASS on its next
# session as soon as it reads that answer is never told [IN-USE].
p = POP3_SSL_IP(host, int(port995), context=ctx)
p.user(user); p.pass_(pw)
for round in range(100):
    q = POP3_SSL_IP(host, int(port995), context=ctx)
    q.user(user)
    assert p._shortcmd('QUIT').startswith(b'+OK')
    try:
        q.pass_(pw)
    except poplib.error_proto as e:
        raise SystemExit(f'round {round}: login right after QUIT refused: {e}')
    p.close()
    p = q
p.quit()
print('ok')
"#;

const TWO_SESSIONS: &str = r#"
import imaplib, ssl, sys, socket, time, os
ip, port993, ca, host, user, pw, newdir = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=ca)
class IMAP4_SSL_IP(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((ip, int(self.port)), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=host)
a = IMAP4_SSL_IP(host, int(port993), ssl_context=ctx); a.login(user, pw)
b = IMAP4_SSL_IP(host, int(port993), ssl_context=ctx); b.login(user, pw)
assert a.select('INBOX')[1] == [b'2'] and b.select('INBOX')[1] == [b'2']
# A flags message 1: B sees FETCH FLAGS at NOOP.
a.store('1', '+FLAGS', '(\\Flagged)')
typ, data = b.noop()
fetch = b.untagged_responses.pop('FETCH', [])
assert any(b'\\Flagged' in f for f in fetch), (fetch, b.untagged_responses)
# A expunges message 1: B sees EXPUNGE at NOOP.
a.store('1', '+FLAGS', '(\\Deleted)'); a.expunge()
b.noop()
assert b.untagged_responses.pop('EXPUNGE', []) == [b'1'], b.untagged_responses
# A changes flags while B idles: B wakes with the FETCH.
tag = b._new_tag()
b.send(tag + b' IDLE\r\n')
assert b.readline().startswith(b'+')
a.store('1', '+FLAGS', '(\\Answered)')
b.sock.settimeout(5)
line = b.readline()
assert line.startswith(b'* 1 FETCH') and b'\\Answered' in line, line
b.send(b'DONE\r\n')
while not b.readline().startswith(tag):
    pass
b.sock.settimeout(None)
# A delivery: both see EXISTS at NOOP, and the new message is \Recent in one only.
name = '1790000555.M5P5Q5.two,S=19'
with open(os.path.join(newdir, '..', 'tmp', name), 'wb') as f:
    f.write(b'Subject: two\r\n\r\nx\r\n')
os.rename(os.path.join(newdir, '..', 'tmp', name), os.path.join(newdir, name))
a.untagged_responses.clear(); b.untagged_responses.clear()
a.noop(); b.noop()
assert a.untagged_responses.get('EXISTS') == [b'2'], a.untagged_responses
assert b.untagged_responses.get('EXISTS') == [b'2'], b.untagged_responses
# A already had message 2 as \Recent (it selected first); the new one is
# \Recent in exactly one of the two sessions.
recent = [int(x.untagged_responses['RECENT'][-1]) for x in (a, b)]
assert sum(recent) == 2, recent
a.logout(); b.logout()
print('ok')
"#;

/// Two sessions on one folder stay consistent (RFC 3501 §5.2, §7.4.1).
#[test]
fn two_imap_sessions_stay_consistent() {
    let lab = LocalLab::render(7);
    let (user, pw) = lab.mailbox(0, 0);
    deliver(&lab, &user, 1, PLAIN);
    deliver(&lab, &user, 2, MULTIPART);
    let host = format!("mail.{}", lab.domain(0));
    let ip = host_ip(&lab);
    let ca = lab.ca_cert().display().to_string();
    let newdir = maildir(&lab, &user).join("new").display().to_string();
    let _server = lab.spawn_mail_waiting_for(0, &["imaps"]);
    let out = py(
        TWO_SESSIONS,
        &[&ip, &port(&lab, "imaps"), &ca, &host, &user, &pw, &newdir],
    );
    assert_eq!(out.trim(), "ok");
}

/// The Done-when list for POP3: poplib over 995 and 110+STLS.
#[test]
fn poplib_session_lock_and_deletion_on_quit() {
    let lab = LocalLab::render(7);
    let (user, pw) = lab.mailbox(0, 0);
    deliver(&lab, &user, 1, PLAIN);
    deliver(&lab, &user, 2, MULTIPART);
    deliver(&lab, &user, 3, PLAIN);
    let host = format!("mail.{}", lab.domain(0));
    let ip = host_ip(&lab);
    let ca = lab.ca_cert().display().to_string();
    let _server = lab.spawn_mail_waiting_for(0, &["pop3", "pop3s"]);
    let out = py(
        POP_SESSION,
        &[
            &ip,
            &port(&lab, "pop3s"),
            &port(&lab, "pop3"),
            &ca,
            &host,
            &user,
            &pw,
        ],
    );
    assert_eq!(out.trim(), "ok");
    let log = fs::read_to_string(lab.data_dir(0).join("transcripts/pop3.jsonl")).unwrap();
    assert!(
        log.contains("PASS ***") && log.contains("STLS TLS1."),
        "{log}"
    );
    assert!(!log.contains(&pw), "the password is in the POP3 transcript");
    assert_eq!(
        fs::read_dir(maildir(&lab, &user).join("cur"))
            .unwrap()
            .count(),
        2
    );
}

/// curl reads a message over imaps:// and pop3s:// trusting only the lab CA.
#[test]
fn curl_reads_over_imaps_and_pop3s() {
    if !have_tool("curl") {
        return;
    }
    let lab = LocalLab::render(7);
    let (user, pw) = lab.mailbox(0, 0);
    deliver(&lab, &user, 1, PLAIN);
    let host = format!("mail.{}", lab.domain(0));
    let ip = host_ip(&lab);
    let _server = lab.spawn_mail_waiting_for(0, &["imaps", "pop3s"]);
    for (scheme, port_name, path) in [("imaps", "imaps", "INBOX;UID=1"), ("pop3s", "pop3s", "1")] {
        let p = port(&lab, port_name);
        let out = run(Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(lab.ca_cert())
            .args(["--resolve", &format!("{host}:{p}:{ip}")])
            .args(["-u", &format!("{user}:{pw}")])
            .arg(format!("{scheme}://{host}:{p}/{path}")));
        assert!(out.status.success(), "curl {scheme}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("The word zebra is here."),
            "curl {scheme}: {}",
            stdout(&out)
        );
    }
}

/// A context for in-memory sessions, from the rendered server config.
fn context(lab: &LocalLab) -> Arc<mailserver::server::Context> {
    let mut config = mailserver::config::Config::load(
        &lab.path()
            .join(format!("servers/mail.{}/config.yaml", lab.domain(0))),
    )
    .unwrap();
    // Session tests run with zero error delays.
    config.limits.error_delay_ms = 0;
    Arc::new(mailserver::server::Context::new(config).unwrap())
}

/// Feeds `input` into a session over an in-memory pipe; returns what it answered.
async fn feed<F, Fut>(start: F, input: Vec<u8>) -> Vec<u8>
where
    F: FnOnce(tokio::io::DuplexStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, server) = tokio::io::duplex(64 * 1024);
    let session = tokio::spawn(start(server));
    let (mut rd, mut wr) = tokio::io::split(client);
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 || out.len() > 4 << 20 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let _ = wr.write_all(&input).await;
    let _ = wr.shutdown().await;
    tokio::time::timeout(Duration::from_secs(20), session)
        .await
        .expect("session did not end")
        .expect("session panicked");
    drop(wr);
    reader.await.unwrap()
}

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Arbitrary input: random bytes mixed with protocol fragments.
fn arbitrary(rng: &mut Rng) -> Vec<u8> {
    const PIECES: [&[u8]; 16] = [
        b"a1 ",
        b"LOGIN ",
        b"SELECT INBOX",
        b"FETCH 1:* (BODY[])",
        b"{5}\r\n",
        b"{4294967295}\r\n",
        b"\"",
        b"(",
        b")",
        b"\r\n",
        b"USER x\r\n",
        b"PASS y\r\n",
        b"RETR 1\r\n",
        b"* ",
        b"IDLE\r\n",
        b"STLS\r\n",
    ];
    let mut out = Vec::new();
    let len = rng.next() % 64;
    for _ in 0..len {
        if rng.next().is_multiple_of(2) {
            out.extend_from_slice(PIECES[(rng.next() % 16) as usize]);
        } else {
            let n = rng.next() % 40;
            out.extend((0..n).map(|_| rng.next() as u8));
        }
    }
    out
}

/// Property: arbitrary bytes never panic either session, every session
/// ends when the input does, and the output stays bounded.
#[test]
fn arbitrary_bytes_into_imap_and_pop3_sessions() {
    let lab = LocalLab::render(7);
    let ctx = context(&lab);
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    rt.block_on(async {
        for case in 0..150 {
            let input = arbitrary(&mut rng);
            let c = ctx.clone();
            let out = feed(
                move |s| {
                    let t = c.transcripts.session("imap", peer);
                    mailserver::imap::serve(
                        c,
                        Accepted::plain(s, peer, Service::Imap, t, Life::detached()),
                    )
                },
                input.clone(),
            )
            .await;
            assert!(
                out.starts_with(b"* OK"),
                "case {case}: {:?}",
                String::from_utf8_lossy(&out)
            );
            let c = ctx.clone();
            let out = feed(
                move |s| {
                    let t = c.transcripts.session("pop3", peer);
                    mailserver::pop3::serve(
                        c,
                        Accepted::plain(s, peer, Service::Pop3, t, Life::detached()),
                    )
                },
                input,
            )
            .await;
            assert!(
                out.starts_with(b"+OK"),
                "case {case}: {:?}",
                String::from_utf8_lossy(&out)
            );
        }
    });
}

/// A literal announced as 1 GB is refused before any of it is read, and a
/// 1 MB line without an end is cut off (connection caps: tests/hostile).
#[test]
fn huge_literal_long_line_and_connection_limit() {
    let lab = LocalLab::render(7);
    let ctx = context(&lab);
    let peer: std::net::SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = ctx.clone();
        let out = feed(
            move |s| {
                let t = c.transcripts.session("imap", peer);
                mailserver::imap::serve(
                    c,
                    Accepted::plain(s, peer, Service::Imap, t, Life::detached()),
                )
            },
            b"a1 APPEND INBOX {1000000000}\r\na2 NOOP\r\n".to_vec(),
        )
        .await;
        let text = String::from_utf8_lossy(&out);
        // Before login: refused at once and closed, as Dovecot.
        assert!(
            text.contains("* BYE [TOOBIG] Literal size too large"),
            "{text}"
        );
        assert!(!text.contains("a2 OK"), "{text}");
        assert!(!text.contains("+ Ready"), "{text}");

        let mut long = vec![b'x'; 1 << 20];
        long.extend_from_slice(b"\r\na3 NOOP\r\n");
        let c = ctx.clone();
        let out = feed(
            move |s| {
                let t = c.transcripts.session("imap", peer);
                mailserver::imap::serve(
                    c,
                    Accepted::plain(s, peer, Service::Imap, t, Life::detached()),
                )
            },
            long.clone(),
        )
        .await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("* BAD Command line longer"), "{text}");
        assert!(text.contains("a3 OK"), "{text}");

        let c = ctx.clone();
        let out = feed(
            move |s| {
                let t = c.transcripts.session("pop3", peer);
                mailserver::pop3::serve(
                    c,
                    Accepted::plain(s, peer, Service::Pop3, t, Life::detached()),
                )
            },
            long,
        )
        .await;
        assert!(String::from_utf8_lossy(&out).contains("-ERR Command line longer"));
    });
}

/// Records what the IMAP side hands to the spam filter's training hook.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(usize, bool)>>);

impl mailserver::filter::JunkTraining for Recorder {
    fn learn(&self, message: &[u8], spam: bool) {
        self.0.lock().unwrap().push((message.len(), spam));
    }
}

/// Sends one command and reads up to its tagged reply.
async fn command<S>(s: &mut S, tag: &str, line: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !line.is_empty() {
        s.write_all(format!("{tag} {line}\r\n").as_bytes())
            .await
            .unwrap();
        s.flush().await.unwrap();
    }
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("reply timeout")
            .unwrap();
        assert!(
            n == 1,
            "connection closed: {}",
            String::from_utf8_lossy(&out)
        );
        out.push(b[0]);
        if out.ends_with(b"\r\n") {
            let text = String::from_utf8_lossy(&out).into_owned();
            let last = text
                .trim_end()
                .rsplit("\r\n")
                .next()
                .unwrap_or("")
                .to_string();
            if last.starts_with(&format!("{tag} ")) {
                return text;
            }
        }
    }
}

/// MOVE into `Junk` trains spam, MOVE out of it trains ham (the filters
/// issue plugs its classifier into `Context::junk_training`).
#[test]
fn moving_into_and_out_of_junk_calls_the_training_hook() {
    let lab = LocalLab::render(7);
    let (user, pw) = lab.mailbox(0, 0);
    deliver(&lab, &user, 1, PLAIN);
    let config = mailserver::config::Config::load(
        &lab.path()
            .join(format!("servers/mail.{}/config.yaml", lab.domain(0))),
    )
    .unwrap();
    let mut ctx = mailserver::server::Context::new(config).unwrap();
    let recorder = Arc::new(Recorder::default());
    ctx.junk_training = Some(recorder.clone());
    let ctx = Arc::new(ctx);
    let host = format!("mail.{}", lab.domain(0));
    let peer: std::net::SocketAddr = "127.0.0.1:40002".parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let t = ctx.transcripts.session("imap", peer);
        tokio::spawn(mailserver::imap::serve(
            ctx,
            Accepted::plain(server, peer, Service::Imap, t, Life::detached()),
        ));
        assert!(command(&mut client, "*", "").await.starts_with("* OK"));
        assert!(command(&mut client, "a", "STARTTLS").await.contains("a OK"));
        let connector = tokio_rustls::TlsConnector::from(
            mailserver::tls::client_config(&lab.ca_cert()).unwrap(),
        );
        let name = rustls_pki_types::ServerName::try_from(host).unwrap();
        let mut tls = connector.connect(name, client).await.unwrap();
        let login = command(&mut tls, "b", &format!("LOGIN \"{user}\" \"{pw}\"")).await;
        assert!(login.contains("b OK"), "{login}");
        command(&mut tls, "c", "CREATE Junk").await;
        assert!(
            command(&mut tls, "d", "SELECT INBOX")
                .await
                .contains("d OK")
        );
        let moved = command(&mut tls, "e", "MOVE 1 Junk").await;
        assert!(
            moved.contains("e OK") && moved.contains("COPYUID"),
            "{moved}"
        );
        assert_eq!(*recorder.0.lock().unwrap(), vec![(PLAIN.len(), true)]);
        assert!(command(&mut tls, "f", "SELECT Junk").await.contains("f OK"));
        let back = command(&mut tls, "g", "UID MOVE 1:* INBOX").await;
        assert!(back.contains("g OK"), "{back}");
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec![(PLAIN.len(), true), (PLAIN.len(), false)]
        );
        command(&mut tls, "h", "LOGOUT").await;
    });
}
