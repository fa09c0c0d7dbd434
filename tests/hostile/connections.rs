//! The connection and session layer (issue 13, cases 3 to 6 and the login
//! throttle): idle TLS handshakes, junk commands, pre-login literals, a
//! command of many literals, parallel password guesses. The server's CPU
//! time and RSS come from `/proc/<pid>/stat` and `/proc/<pid>/status`.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{Guard, LocalLab, have_tool, python_stdout, python3, wait_for_tcp};

const MESSAGE: &str = "From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: Before the attack\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <before-1@example.test>\r\n\r\nDelivered before the attack.\r\n";

/// A lab with server 0 running (all its ports) and a message in the INBOX
/// of mailbox 0; `patch` edits the rendered config first.
struct Target {
    lab: LocalLab,
    server: Guard,
}

impl Target {
    fn start(patch: &[(&str, &str)]) -> Self {
        let lab = LocalLab::render(7);
        let config = lab
            .path()
            .join(format!("servers/mail.{}/config.yaml", lab.domain(0)));
        let mut text = fs::read_to_string(&config).unwrap();
        for (from, to) in patch {
            assert!(text.contains(from), "{from} not in the config");
            text = text.replace(from, to);
        }
        fs::write(&config, text).unwrap();
        let (user, _) = lab.mailbox(0, 0);
        let dir = lab.data_dir(0).join("mail").join(user.to_ascii_lowercase());
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let name = format!("1790000001.M1P1Q1.test,S={}", MESSAGE.len());
        fs::write(dir.join("new").join(name), MESSAGE).unwrap();
        let server = lab.spawn_mail_waiting_for(0, &["smtp", "imap", "imaps", "pop3", "pop3s"]);
        Self { lab, server }
    }

    fn addr(&self, port: &str) -> SocketAddr {
        self.lab.addr(0, port)
    }

    /// The serving process's CPU time (user + system) and RSS.
    fn usage(&self) -> (Duration, u64) {
        let pid = self.server.child.id();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the ")" closing the command name: utime is the 14th
        // field of the line, stime the 15th (proc(5)); clock ticks of 1/100 s.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        (Duration::from_millis(ticks * 10), rss_kib)
    }

    /// A fresh client: the SMTP greeting on 25 and an IMAPS login that
    /// finds the message delivered before the attack, each within 3 s.
    fn assert_served(&self) {
        let t = Instant::now();
        let greeting = first_reply(self.addr("smtp"));
        assert!(greeting.starts_with("220 "), "{greeting}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        let t = Instant::now();
        let out = self.imaps(FRESH_CLIENT, &[]);
        assert!(out.contains("Before the attack"), "{out}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    /// Runs a Python imaplib script against 993 (args: ip, port, ca, host,
    /// user, password, extra...).
    fn imaps(&self, script: &str, extra: &[&str]) -> String {
        let (user, pw) = self.lab.mailbox(0, 0);
        let s = self.lab.server(0);
        let ip = s["ip"].as_str().unwrap().to_string();
        let port = s["ports"]["imaps"].to_string();
        let ca = self.lab.ca_cert().display().to_string();
        let host = s["hostname"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("mail.{}", self.lab.domain(0)));
        let mut args = vec![
            ip.as_str(),
            port.as_str(),
            ca.as_str(),
            host.as_str(),
            user.as_str(),
            pw.as_str(),
        ];
        args.extend_from_slice(extra);
        python_stdout(&format!("{IMAPS}{script}"), &args)
    }
}

const IMAPS: &str = r#"
import imaplib, ssl, sys, socket, time, threading
ip, port, ca, host, user, pw = sys.argv[1:7]
extra = sys.argv[7:]
ctx = ssl.create_default_context(cafile=ca)
class C(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((ip, int(self.port)), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=host)
def connect():
    return C(host, int(port), ssl_context=ctx, timeout=20)
"#;

const FRESH_CLIENT: &str = r#"
m = connect()
m.login(user, pw)
m.select('INBOX')
typ, data = m.fetch('1:*', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
print(data)
m.logout()
"#;

/// Reads the first reply of a fresh TCP connection (at most 5 s).
fn first_reply(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Reads until EOF or `limit` (bounded in time and bytes).
fn read_all(s: &mut TcpStream, limit: Duration) -> String {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline && all.len() < 4 << 20 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

fn python_ok() -> bool {
    have_tool(python3())
}

/// Case 4: 40 connections to 993 that never send a ClientHello do not lock
/// the host out (all clients share one address, as behind Docker's
/// gateway): the oldest idle ones give way and a fresh client is served
/// at once, while they are held.
#[test]
fn idle_tls_handshakes_do_not_lock_out_the_host() {
    if !python_ok() {
        return;
    }
    let t = Target::start(&[]);
    let held: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(t.addr("imaps")).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    t.assert_served();
    // The same against POP3S and the SMTP port with idle connections.
    let more: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(t.addr("smtp")).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    t.assert_served();
    // The oldest idle connections were closed to make room; a plaintext
    // one got the protocol's goodbye.
    let mut first = more.into_iter().next().unwrap();
    let text = read_all(&mut first, Duration::from_secs(3));
    assert!(text.contains("421 4.7.0 Idle connection closed"), "{text}");
    let mut closed = 0;
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut b = [0u8; 16];
        if matches!(s.read(&mut b), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed >= 8, "only {closed} idle handshakes closed");
}

/// The TLS handshake has its own timeout: a silent client on 993 is
/// closed after `tls_handshake_timeout_secs`.
#[test]
fn stalled_tls_handshake_times_out() {
    let t = Target::start(&[(
        "  command_timeout_secs: 300\n",
        "  command_timeout_secs: 300\n  tls_handshake_timeout_secs: 1\n",
    )]);
    let mut s = TcpStream::connect(t.addr("imaps")).unwrap();
    let started = Instant::now();
    let text = read_all(&mut s, Duration::from_secs(8));
    assert!(text.is_empty(), "{text}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
}

/// Case 5: 600 NOOPs in one SMTP session end it within a few hundred
/// (Postfix's smtpd_junk_command_limit, then the error limit).
#[test]
fn junk_commands_end_the_session() {
    if !python_ok() {
        return;
    }
    let t = Target::start(&[]);
    let mut s = TcpStream::connect(t.addr("smtp")).unwrap();
    let mut input = b"EHLO junk.test\r\n".to_vec();
    for _ in 0..600 {
        input.extend_from_slice(b"NOOP\r\n");
    }
    // The server may close before reading everything: ignore write errors.
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&input);
    });
    let text = read_all(&mut s, Duration::from_secs(30));
    let _ = writer.join();
    let ok = text.matches("250 2.0.0").count();
    assert!(text.contains("421 4.7.0 Too many errors"), "{text}");
    assert!((100..=130).contains(&ok), "{ok} NOOPs answered");
    t.assert_served();
}

/// Case 6: `a LOGIN {26214400}` on plaintext 143 is refused at once with
/// `* BYE`, never `+ Ready`; four such clients sending their 25 MiB anyway
/// leave the RSS under 64 MiB.
#[test]
fn large_prelogin_literal_is_refused() {
    if !python_ok() {
        return;
    }
    let t = Target::start(&[]);
    let chunk = vec![b'x'; 1 << 20];
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = t.addr("imap");
            let chunk = chunk.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                s.write_all(b"a LOGIN {26214400}\r\n").unwrap();
                let started = Instant::now();
                let mut reply = Vec::new();
                while !reply.ends_with(b"\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => reply.extend_from_slice(&buf[..n]),
                    }
                }
                let answered = started.elapsed();
                s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                for _ in 0..25 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
                (String::from_utf8_lossy(&reply).into_owned(), answered)
            })
        })
        .collect();
    let mut peak = 0;
    for c in clients {
        let (reply, answered) = c.join().unwrap();
        assert!(
            reply.starts_with("* BYE") && reply.contains("Literal size too large"),
            "{reply}"
        );
        assert!(!reply.contains("+ "), "{reply}");
        assert!(answered < Duration::from_secs(1), "{answered:?}");
        peak = peak.max(t.usage().1);
    }
    let (_, rss) = t.usage();
    let rss = rss.max(peak);
    eprintln!("case 6: server RSS {} KiB", rss);
    assert!(rss < 64 * 1024, "RSS {rss} KiB");
    t.assert_served();
}

/// Case 3: `a SEARCH TEXT {0+}` and 16,000 more ` TEXT {0+}` literals cost
/// under 1 s of server CPU, before login (refused past the pre-login
/// command limit) and after it (decoded once, answered).
#[test]
fn many_literals_cost_linear_time() {
    if !python_ok() {
        return;
    }
    let t = Target::start(&[]);
    let mut command = b"a SEARCH TEXT {0+}\r\n".to_vec();
    for _ in 0..16_000 {
        command.extend_from_slice(b" TEXT {0+}\r\n");
    }
    command.extend_from_slice(b"\r\n");
    let (cpu0, _) = t.usage();
    let mut s = TcpStream::connect(t.addr("imap")).unwrap();
    let mut w = s.try_clone().unwrap();
    // Written while the replies are read: the server may close early.
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&command);
    });
    let text = read_all(&mut s, Duration::from_secs(10));
    let _ = writer.join();
    assert!(text.starts_with("* OK"), "{text}");
    assert!(text.contains("* BYE"), "{text}");
    let (cpu1, _) = t.usage();
    eprintln!("case 3 before login: {:?} of server CPU", cpu1 - cpu0);
    assert!(cpu1 - cpu0 < Duration::from_secs(1), "{:?}", cpu1 - cpu0);
    // After login (993): the whole command is read, decoded once, answered.
    let out = t.imaps(MANY_LITERALS, &[]);
    assert!(
        out.contains("* SEARCH 1") && out.contains("a OK SEARCH completed"),
        "{out}"
    );
    let (cpu2, _) = t.usage();
    eprintln!("case 3 after login: {:?} of server CPU", cpu2 - cpu1);
    assert!(cpu2 - cpu1 < Duration::from_secs(1), "{:?}", cpu2 - cpu1);
    t.assert_served();
}

const MANY_LITERALS: &str = r#"
m = connect()
m.login(user, pw)
m.select('INBOX')
sock = m.sock
cmd = b'a SEARCH TEXT {0+}\r\n' + b' TEXT {0+}\r\n' * 16000 + b'\r\n'
sock.sendall(cmd)
buf = b''
sock.settimeout(20)
while b'\r\na ' not in b'\r\n' + buf:
    d = sock.recv(65536)
    if not d:
        break
    buf += d
print(buf.decode(errors='replace')[-300:])
"#;

/// The login throttle: parallel wrong guesses from one address are slowed
/// by a growing delay (none passes it), the right password is still
/// accepted after at most the capped delay.
#[test]
fn parallel_guesses_are_slowed_not_the_right_password_refused() {
    if !python_ok() {
        return;
    }
    let t = Target::start(&[(
        "  auth_failures_per_minute: 5\n",
        "  auth_failures_per_minute: 2\n  auth_failure_delay_ms: 300\n  auth_failure_delay_max_ms: 1200\n",
    )]);
    let out = t.imaps(GUESSES, &[]);
    let mut lines = out.lines();
    let guesses: f64 = lines.next().unwrap().parse().unwrap();
    let right: f64 = lines.next().unwrap().parse().unwrap();
    eprintln!("throttle: 8 parallel guesses {guesses:.2} s, then the right password {right:.2} s");
    // 2 free, then 0.3 + 0.6 + 1.2 x 4: the slowest waits at least 1.2 s.
    assert!(guesses >= 1.2, "{guesses}");
    assert!((1.1..3.0).contains(&right), "{right}");
    t.assert_served();
}

const GUESSES: &str = r#"
results = []
def guess(i):
    m = connect()
    try:
        m.login(user, 'wrong %d' % i)
        results.append('accepted')
    except imaplib.IMAP4.error:
        results.append('refused')
start = time.time()
threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
for th in threads: th.start()
for th in threads: th.join()
assert results == ['refused'] * 8, results
print(time.time() - start)
start = time.time()
m = connect()
m.login(user, pw)
print(time.time() - start)
m.logout()
"#;

/// Transcripts are bounded per session: a session of 600 long lines does
/// not write more than the per-session limit.
#[test]
fn transcripts_are_bounded_per_session() {
    let t = Target::start(&[(
        "  command_timeout_secs: 300\n",
        "  command_timeout_secs: 300\n  transcript_session_max_bytes: 20000\n  junk_command_limit: 1000\n  hard_error_limit: 1000\n",
    )]);
    let file = t.lab.data_dir(0).join("transcripts/smtp.jsonl");
    let before = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let mut s = TcpStream::connect(t.addr("smtp")).unwrap();
    let mut input = Vec::new();
    for _ in 0..600 {
        input.extend_from_slice(format!("NOOP {}\r\n", "n".repeat(200)).as_bytes());
    }
    input.extend_from_slice(b"QUIT\r\n");
    s.write_all(&input).unwrap();
    let text = read_all(&mut s, Duration::from_secs(20));
    assert!(
        text.contains("221 "),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    let grown = fs::metadata(&file).unwrap().len() - before;
    assert!(grown < 22_000, "transcript grew by {grown} bytes");
    // The session's lines end with the marker line, within the cap.
    let all = fs::read(&file).unwrap();
    let lines: Vec<serde_json::Value> = all[before as usize..]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let marker = lines
        .iter()
        .position(|l| {
            l["line"]
                .as_str()
                .unwrap()
                .contains("transcript limit reached")
        })
        .expect("no truncation line");
    let session = lines[marker]["session"].clone();
    let after = lines[marker + 1..]
        .iter()
        .filter(|l| l["session"] == session)
        .count();
    assert_eq!(after, 0, "lines logged after the marker");
    let noops = lines
        .iter()
        .filter(|l| l["session"] == session && l["line"].as_str().unwrap().starts_with("NOOP"))
        .count();
    assert!((10..600).contains(&noops), "{noops} NOOP lines logged");
}

/// A plaintext client reading CRLF lines (bounded in time by its socket's
/// read timeout).
struct Lines {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Lines {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        Self { s, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next line, CRLF removed; empty at EOF.
    fn line(&mut self) -> String {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&line).trim_end().to_string();
            }
            match self.s.read(&mut chunk) {
                Ok(0) => return String::new(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Reads lines until one starts with `prefix` (or EOF) and returns it.
    fn until(&mut self, prefix: &str) -> String {
        loop {
            let l = self.line();
            if l.is_empty() || l.starts_with(prefix) {
                return l;
            }
        }
    }

    /// The last line of an SMTP reply (`250-...` lines skipped).
    fn reply(&mut self) -> String {
        loop {
            let l = self.line();
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        }
    }

    /// An IMAP session on 143 logged in (plaintext logins allowed).
    fn imap(addr: SocketAddr, user: &str, pw: &str) -> Self {
        let mut c = Self::connect(addr);
        assert!(c.line().starts_with("* OK"));
        c.send(format!("l LOGIN \"{user}\" \"{pw}\"\r\n").as_bytes());
        let ok = c.until("l ");
        assert!(ok.starts_with("l OK"), "{ok}");
        c
    }

    /// An SMTP submission session on 587 after AUTH PLAIN, in DATA.
    fn smtp_data(addr: SocketAddr, user: &str, pw: &str) -> Self {
        use base64::Engine;
        let mut c = Self::connect(addr);
        assert!(c.reply().starts_with("220"));
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"));
        for (cmd, code) in [
            "EHLO budget.test".to_string(),
            format!("AUTH PLAIN {auth}"),
            format!("MAIL FROM:<{user}>"),
            format!("RCPT TO:<{user}>"),
            "DATA".to_string(),
        ]
        .iter()
        .zip(["250", "235", "250", "250", "354"])
        {
            c.send(format!("{cmd}\r\n").as_bytes());
            let r = c.reply();
            assert!(r.starts_with(code), "{cmd}: {r}");
        }
        c
    }
}

/// A message of about `size` bytes of 78-character lines.
fn sized_message(from: &str, subject: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{from}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.test>\r\n\r\n"
    )
    .into_bytes();
    let line = format!("{}\r\n", "b".repeat(78));
    while m.len() < size {
        m.extend_from_slice(line.as_bytes());
    }
    m.extend_from_slice(b".\r\n");
    m
}

/// The server's byte budget over real sockets: while one client holds most
/// of `max_buffered_bytes` (a synchronizing APPEND literal announced and
/// not yet sent, counted twice: its raw bytes and the decoded command), a second client's literal is refused (`NO` for `{n}`,
/// `* BYE` for a non-synchronizing `{n+}` it would have to read anyway) and
/// a message over SMTP gets `452 4.3.1`, each after the 5 s wait for the
/// budget and with the session and the server going on; once the first
/// client leaves the same APPEND and message are accepted.
#[test]
fn byte_budget_refuses_then_recovers() {
    if !python_ok() {
        return;
    }
    let t = Target::start(&[
        ("  allow_plaintext: false\n", "  allow_plaintext: true\n"),
        (
            "  max_literal_size: 26214400\n",
            "  max_literal_size: 26214400\n  max_buffered_bytes: 12000000\n",
        ),
    ]);
    let (user, pw) = t.lab.mailbox(0, 0);
    assert!(wait_for_tcp(t.addr("submission"), Duration::from_secs(10)));
    let mut holder = Lines::imap(t.addr("imap"), &user, &pw);
    holder.send(b"h APPEND INBOX {5000000}\r\n");
    let cont = holder.line();
    assert!(cont.starts_with("+ "), "{cont}");

    // Refused while the budget is held, each after at most a few seconds.
    let mut other = Lines::imap(t.addr("imap"), &user, &pw);
    let started = Instant::now();
    other.send(b"a APPEND INBOX {2000000}\r\n");
    let no = other.until("a ");
    let waited = started.elapsed();
    assert!(
        no.starts_with("a NO") && no.contains("holds too much data"),
        "{no}"
    );
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    other.send(b"n NOOP\r\n");
    assert!(other.until("n ").starts_with("n OK"), "session goes on");
    let mut blunt = Lines::imap(t.addr("imap"), &user, &pw);
    blunt.send(b"b APPEND INBOX {2000000+}\r\n");
    let bye = blunt.line();
    assert!(
        bye.starts_with("* BYE") && bye.contains("holds too much data"),
        "{bye}"
    );
    let mut smtp = Lines::smtp_data(t.addr("submission"), &user, &pw);
    let started = Instant::now();
    smtp.send(&sized_message(&user, "refused", 3_000_000));
    let busy = smtp.reply();
    assert!(busy.starts_with("452 4.3.1"), "{busy}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    smtp.send(b"RSET\r\n");
    assert!(smtp.reply().starts_with("250"), "SMTP session goes on");
    t.assert_served();

    // The holder leaves: its bytes come back, the same requests pass.
    drop(holder);
    std::thread::sleep(Duration::from_millis(300));
    other.send(b"c APPEND INBOX {2000000}\r\n");
    let cont = other.line();
    assert!(cont.starts_with("+ "), "{cont}");
    let mut data = sized_message(&user, "appended", 2_000_000);
    data.truncate(2_000_000);
    other.send(&data);
    other.send(b"\r\n");
    let ok = other.until("c ");
    assert!(ok.starts_with("c OK"), "{ok}");
    let mut smtp = Lines::smtp_data(t.addr("submission"), &user, &pw);
    smtp.send(&sized_message(&user, "accepted", 3_000_000));
    let ok = smtp.reply();
    assert!(ok.starts_with("250"), "{ok}");
    t.assert_served();
}

/// Transcript files are rotated under their total bound: many sessions
/// leave `smtp.jsonl` and at most `transcript_files_kept` rotated files,
/// each under `transcript_file_max_bytes`, every line whole JSON, the
/// newest session in the current file.
#[test]
fn transcript_files_are_rotated_under_their_bound() {
    let t = Target::start(&[(
        "  command_timeout_secs: 300\n",
        "  command_timeout_secs: 300\n  transcript_file_max_bytes: 20000\n  transcript_files_kept: 2\n",
    )]);
    let dir = t.lab.data_dir(0).join("transcripts");
    for i in 0..40 {
        let mut c = Lines::connect(t.addr("smtp"));
        assert!(c.reply().starts_with("220"));
        let mut input = format!("EHLO rotate{i}.test\r\n");
        for _ in 0..10 {
            input.push_str(&format!("NOOP session-{i:02}-{}\r\n", "r".repeat(100)));
        }
        input.push_str("QUIT\r\n");
        c.send(input.as_bytes());
        assert!(c.until("221").starts_with("221"));
    }
    // The server writes the last lines after the client saw 221.
    std::thread::sleep(Duration::from_millis(300));
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("smtp."))
        .collect();
    names.sort();
    assert_eq!(names, ["smtp.jsonl", "smtp.jsonl.1", "smtp.jsonl.2"]);
    let mut total = 0;
    for n in &names {
        let text = fs::read_to_string(dir.join(n)).unwrap();
        assert!(text.len() <= 20_000, "{n}: {} bytes", text.len());
        total += text.len();
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("{n}: {e}: {l}"));
        }
    }
    // 40 sessions wrote about 4 times the bound: the oldest are gone.
    let current = fs::read_to_string(dir.join("smtp.jsonl")).unwrap();
    assert!(
        current.contains("session-39-"),
        "newest session not in the current file"
    );
    let all: String = names
        .iter()
        .map(|n| fs::read_to_string(dir.join(n)).unwrap())
        .collect();
    assert!(!all.contains("session-00-"), "oldest session kept");
    eprintln!("transcripts: {} files, {total} bytes", names.len());
    assert!(total <= 60_000, "{total}");
}
