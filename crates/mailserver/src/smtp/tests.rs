//! Session tests over `tokio::io::duplex`: a real [`Context`] (generated
//! certificate, ed25519 DKIM key, argon2 account), a DNS stub that answers
//! NXDOMAIN to everything, and a `cmd(line, expected)` helper.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};

use crate::config::Config;
use crate::server::{Accepted, Context, Service};

const PASSWORD: &str = "correct horse";

/// A DNS server that answers every query with NXDOMAIN (the fuzz harness's).
async fn nxdomain_dns() -> SocketAddr {
    crate::fuzzing::nxdomain_dns()
        .await
        .expect("a UDP socket on loopback")
}

async fn context(max_line: usize, max_size: usize) -> Arc<Context> {
    let dir = std::env::temp_dir().join(format!(
        "smtp-session-test-{}-{}",
        std::process::id(),
        crate::smtp::headers::new_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["mail.example.test".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let dkim = mail_auth::common::crypto::Ed25519Key::generate_pkcs8().unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&dkim)
    );
    std::fs::write(dir.join("dkim.pem"), pem).unwrap();
    let hash = {
        use argon2::password_hash::PasswordHasher;
        argon2::Argon2::default()
            .hash_password_with_salt(PASSWORD.as_bytes(), b"sixteen byte slt")
            .unwrap()
            .to_string()
    };
    let dns = nxdomain_dns().await;
    let yaml = format!(
        r#"
hostname: mail.example.test
domain: example.test
listen: {{address: 127.0.0.1, ports: {{smtp: 0, submission: 0, submissions: 0, imap: 0, imaps: 0, pop3: 0, pop3s: 0}}}}
tls: {{cert: cert.pem, key: key.pem, ca: cert.pem}}
dns: {{server: "{dns}"}}
data_dir: data
mailboxes:
  - {{address: user@example.test, password_hash: "{hash}"}}
  - {{address: other@example.test, password_hash: "{hash}"}}
dkim: {{selector: s, algorithm: ed25519-sha256, key: dkim.pem, headers: [From, To, Subject]}}
policy: {{spf_fail: reject, spf_softfail: mark, spf_temperror: tempfail, dkim_verify: true, dkim_invalid: reject, dmarc_enforce: true}}
relay: {{port: 25, require_tls: true, verify_certificate: true, retry_schedule_secs: [1], max_age_secs: 60}}
scanner: {{engine: "off"}}
spam: {{enabled: false, tag_threshold: 5.0, reject_threshold: 10.0}}
limits: {{max_line_length: {max_line}, max_message_size: {max_size}, max_connections_per_ip: 4, command_timeout_secs: 5, auth_failures_per_minute: 3, max_literal_size: 1000}}
"#
    );
    let config = Config::from_yaml(&yaml, &dir.join("config.yaml")).unwrap();
    Arc::new(Context::new(config).unwrap())
}

/// A client end of a session.
struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Reads one (possibly multi-line) reply.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn send(&mut self, raw: &str) {
        self.io.get_mut().write_all(raw.as_bytes()).await.unwrap();
    }

    /// Sends a command, asserts the reply starts with `expected`.
    async fn cmd(&mut self, line: &str, expected: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        let r = self.reply().await;
        assert!(
            r.starts_with(expected),
            "{line:?}: expected {expected:?}, got {r:?}"
        );
        r
    }
}

/// Starts a session of `service` over a duplex pipe.
async fn session(ctx: &Arc<Context>, service: Service) -> Client<DuplexStream> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let transcript = ctx.transcripts.session("smtp", peer);
    let life = crate::admission::Life::detached();
    let accepted = Accepted::plain(server, peer, service, transcript, life);
    tokio::spawn(super::serve(ctx.clone(), accepted));
    let mut c = Client {
        io: BufReader::new(client),
    };
    let greeting = c.reply().await;
    assert!(greeting.starts_with("220 mail.example.test"), "{greeting}");
    c
}

#[tokio::test]
async fn ehlo_advertises_exactly_what_the_port_does() {
    let ctx = context(1000, 100_000).await;
    let mut c = session(&ctx, Service::Smtp).await;
    let r = c.cmd("EHLO client.test", "250").await;
    assert_eq!(
        r,
        "250-mail.example.test Hello client.test [192.0.2.7]\r\n250-PIPELINING\r\n250-SIZE 100000\r\n\
         250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
    );
    // RFC 4954 / docs/smtp.md: never AUTH on 25.
    c.cmd("AUTH PLAIN AHVzZXIAcA==", "503 5.5.1").await;
    let mut c = session(&ctx, Service::Submission).await;
    let r = c.cmd("EHLO client.test", "250").await;
    assert!(!r.contains("AUTH"), "{r}");
    c.cmd("AUTH PLAIN AHVzZXIAcA==", "530 5.7.0").await;
    c.cmd("MAIL FROM:<user@example.test>", "530 5.7.0").await;
}

#[tokio::test]
async fn starttls_discards_injected_commands_and_resets_state() {
    let ctx = context(1000, 100_000).await;
    let mut c = session(&ctx, Service::Submission).await;
    c.cmd("EHLO client.test", "250").await;
    // RFC 3207 §4.2 / CVE-2011-0411: a command pipelined after STARTTLS
    // in the same packet must not be executed inside TLS.
    c.send("STARTTLS\r\nEHLO injected\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("220 2.0.0"), "{r}");
    let plain = c.io.into_inner();
    let tls = crate::queue::no_verify::connector()
        .connect(
            rustls_pki_types::ServerName::try_from("mail.example.test").unwrap(),
            plain,
        )
        .await
        .unwrap();
    let mut c = Client {
        io: BufReader::new(tls),
    };
    // Nothing learned before TLS survives: EHLO is needed again.
    c.cmd("MAIL FROM:<user@example.test>", "503 5.5.1").await;
    let r = c.cmd("EHLO client.test", "250").await;
    assert!(
        r.contains("250 AUTH PLAIN LOGIN") && !r.contains("STARTTLS"),
        "{r}"
    );
    c.cmd("STARTTLS", "503 5.5.1").await;
    // Wrong password, then the right one (PLAIN), then sender rules.
    let bad = base64::engine::general_purpose::STANDARD.encode("\0user@example.test\0nope");
    c.cmd(&format!("AUTH PLAIN {bad}"), "535 5.7.8").await;
    let good = base64::engine::general_purpose::STANDARD
        .encode(format!("\0user@example.test\0{PASSWORD}"));
    c.cmd("AUTH PLAIN", "334 ").await;
    c.cmd(&good, "235 2.7.0").await;
    c.cmd("MAIL FROM:<other@example.test>", "553 5.7.1").await;
    c.cmd("MAIL FROM:<user@example.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1").await;
    c.cmd("RCPT TO:<other@example.test>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    c.send("From: user@example.test\r\nTo: other@example.test\r\nSubject: t\r\n\r\n..dot\r\nbare LF\nend\r\n.\r\n")
        .await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let dir = ctx
        .store
        .maildir("other@example.test", "INBOX")
        .unwrap()
        .join("new");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.contains("DKIM-Signature: v=1; a=ed25519-sha256;"),
        "{text}"
    );
    assert!(text.contains("with ESMTPSA"), "{text}");
    assert!(
        text.contains("Message-ID: <") && text.contains("\r\nDate: "),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n\r\n.dot\r\nbare LF\r\nend\r\n"),
        "{text:?}"
    );
}

#[tokio::test]
async fn auth_failures_are_slowed_down() {
    let ctx = context(1000, 100_000).await;
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = "192.0.2.8:40000".parse().unwrap();
    let tls_info = super::session::TlsActive {
        version: "TLS1.3".into(),
        cipher: "test".into(),
    };
    let transcript = ctx.transcripts.session("smtp", peer);
    let mut s = super::session::Session::new(
        ctx.clone(),
        server,
        peer,
        Service::Submissions,
        Some(tls_info),
        transcript,
    );
    tokio::spawn(async move { s.run(true).await });
    let mut c = Client {
        io: BufReader::new(client),
    };
    c.reply().await;
    c.cmd("EHLO x", "250").await;
    let bad = base64::engine::general_purpose::STANDARD.encode("\0user@example.test\0nope");
    for _ in 0..3 {
        c.cmd(&format!("AUTH PLAIN {bad}"), "535 5.7.8").await;
    }
    let good = base64::engine::general_purpose::STANDARD
        .encode(format!("\0user@example.test\0{PASSWORD}"));
    // Past the free failures the right password waits the auth penalty
    // (1 s by default), and is accepted.
    // AUTH LOGIN cancelled with "*".
    c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6").await;
    c.cmd("*", "501 5.0.0").await;
    let t = std::time::Instant::now();
    c.cmd(&format!("AUTH PLAIN {good}"), "235 2.7.0").await;
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn limits_line_length_size_and_connections() {
    let ctx = context(600, 2000).await;
    let mut c = session(&ctx, Service::Smtp).await;
    c.cmd("EHLO x", "250").await;
    c.cmd("MAIL FROM:<a@b.test> SIZE=5000", "552 5.3.4").await;
    c.cmd("MAIL FROM:<>", "250 2.1.0").await;
    c.cmd("RCPT TO:<user@example.test>", "250 2.1.5").await;
    c.cmd("RCPT TO:<user@elsewhere.test>", "554 5.7.1").await;
    c.cmd("DATA", "354").await;
    let big = "x".repeat(100) + "\r\n";
    c.send(&format!("Subject: big\r\n\r\n{}.\r\n", big.repeat(50)))
        .await;
    let r = c.reply().await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    c.cmd("NOOP", "250").await;
    c.cmd(&format!("NOOP {}", "y".repeat(700)), "500 5.5.2")
        .await;
    assert_eq!(c.reply().await, "", "closed after the long line");

    // Connections per address: 4 allowed; with all 4 idle before any
    // transaction, the oldest gives way to a 5th with 421 and the 5th is
    // served. With none idle, the 5th is refused.
    let mut held = Vec::new();
    for i in 0..4 {
        let slot = ctx.connections.admit(peer_ip()).unwrap();
        held.push((admitted(&ctx, &slot, i).await, slot));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let slot = ctx
        .connections
        .admit(peer_ip())
        .expect("an idle one gives way");
    let mut fifth = admitted(&ctx, &slot, 9).await;
    let bye = held[0].0.reply().await;
    assert!(bye.starts_with("421 4.7.0 Idle connection closed"), "{bye}");
    fifth.cmd("EHLO x", "250").await;
    fifth.cmd("MAIL FROM:<>", "250 2.1.0").await;
    for (c, _) in &mut held[1..] {
        c.cmd("EHLO x", "250").await;
        c.cmd("MAIL FROM:<>", "250 2.1.0").await;
    }
    // All four in a transaction: nobody gives way.
    assert!(ctx.connections.admit(peer_ip()).is_none());
}

fn peer_ip() -> std::net::IpAddr {
    "192.0.2.77".parse().unwrap()
}

/// A session admitted through the registry (as the listener does).
async fn admitted(
    ctx: &Arc<Context>,
    slot: &crate::admission::Slot,
    port: u16,
) -> Client<DuplexStream> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer = SocketAddr::new(peer_ip(), 40000 + port);
    let transcript = ctx.transcripts.session("smtp", peer);
    let life = slot.life().clone();
    let accepted = Accepted::plain(server, peer, Service::Smtp, transcript, life);
    tokio::spawn(super::serve(ctx.clone(), accepted));
    let mut c = Client {
        io: BufReader::new(client),
    };
    let greeting = c.reply().await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    c
}

/// Property test: arbitrary bytes (random, and random mutations of a valid
/// session) never panic the session and never grow its buffers past the
/// limits: the session always ends (EOF, error limit or line limit).
#[tokio::test]
async fn arbitrary_input_never_panics() {
    let ctx = context(1000, 10_000).await;
    let valid = b"EHLO a\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nAUTH LOGIN\r\nQUIT\r\n";
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let mut input: Vec<u8> = if round % 2 == 0 {
            (0..(rnd() % 3000)).map(|_| rnd() as u8).collect()
        } else {
            let mut v = valid.to_vec();
            for _ in 0..(rnd() % 8) {
                let i = (rnd() as usize) % v.len();
                v[i] = rnd() as u8;
            }
            v
        };
        if round % 7 == 0 {
            // One very long line: must be cut at the line limit.
            input.extend(std::iter::repeat_n(b'A', 200_000));
        }
        let (mut client, server) = tokio::io::duplex(8 * 1024);
        let peer: SocketAddr = "192.0.2.9:1".parse().unwrap();
        let transcript = ctx.transcripts.session("smtp", peer);
        let mut s = super::session::Session::new(
            ctx.clone(),
            server,
            peer,
            Service::Smtp,
            None,
            transcript,
        );
        let task = tokio::spawn(async move {
            s.run(true).await;
        });
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            // Drain the replies so the session never blocks on writing.
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut sink).await;
        });
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("session ends")
            .expect("no panic");
        let _ = writer.await;
    }
}
