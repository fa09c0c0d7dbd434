//! Header fields the server adds: `Received` (RFC 5321 §4.4, with the
//! RFC 3848 `with` keywords ESMTP/ESMTPS/ESMTPA/ESMTPSA and the TLS version
//! and cipher), and the `Message-ID`/`Date` a submission server adds when
//! missing (RFC 6409 §8.2, §8.3).

use std::sync::atomic::{AtomicU64, Ordering};

use super::session::{SessionData, SessionParams};

/// The RFC 5322 §3.3 date-time of now.
pub fn rfc5322_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

/// A new queue/message id, unique within this server process.
pub fn new_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:x}{:05x}{:x}{:x}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `Received` header field (with CRLF) for a message of this session.
pub fn received(
    hostname: &str,
    params: &SessionParams,
    data: &SessionData,
    id: &str,
    rcpt: Option<&str>,
) -> String {
    let helo = data.helo.as_deref().unwrap_or("unknown");
    // RFC 3848 §2: ESMTP + S (TLS) + A (authenticated).
    let mut with = if data.esmtp { "ESMTP" } else { "SMTP" }.to_string();
    if params.tls.is_some() {
        with.push('S');
    }
    if data.auth.is_some() {
        with.push('A');
    }
    let mut h = format!(
        "Received: from {helo} ([{}])\r\n\tby {hostname} (maillab) with {with} id {id}",
        params.peer.ip()
    );
    if let Some(tls) = &params.tls {
        h.push_str(&format!(
            "\r\n\t(version={} cipher={})",
            tls.version, tls.cipher
        ));
    }
    if let Some(auth) = &data.auth {
        h.push_str(&format!("\r\n\t(authenticated sender: {})", auth.address()));
    }
    if let Some(rcpt) = rcpt {
        h.push_str(&format!("\r\n\tfor <{rcpt}>"));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_now()));
    h
}

/// True if the header section has a field named `name` (case-insensitive).
pub fn has_header(message: &[u8], name: &str) -> bool {
    let (head, _) = crate::message::split_header(message);
    head.split(|&b| b == b'\n').any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_headers() {
        let m = b"From: a@b\r\nmessage-id: <x@y>\r\n\r\nDate: body\r\n";
        assert!(has_header(m, "Message-ID"));
        assert!(!has_header(m, "Date"));
        // "Date:" in the body is no header field; nor in an empty header section.
        assert!(!has_header(b"\r\nDate: body\r\n", "Date"));
    }
}
