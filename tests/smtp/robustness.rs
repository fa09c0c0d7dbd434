//! Misbehaving clients: limits, timeouts and arbitrary bytes are answered,
//! and the server goes on.

use super::*;

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
    // Which one gave way is the server's choice (the longest idle); exactly
    // one of the held connections is told so and closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = vec![Vec::new(); held.len()];
    let mut told = Vec::new();
    while told.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        for (i, s) in held.iter_mut().enumerate() {
            s.set_nonblocking(true).unwrap();
            let mut chunk = [0u8; 512];
            while let Ok(n) = std::io::Read::read(s, &mut chunk) {
                if n == 0 {
                    break;
                }
                seen[i].extend_from_slice(&chunk[..n]);
            }
            if String::from_utf8_lossy(&seen[i]).contains("421 4.7.0 Idle connection") {
                told.push(i);
            }
        }
    }
    assert_eq!(told.len(), 1, "connections told to give way: {told:?}");
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
