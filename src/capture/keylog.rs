//! The TLS secrets of a capture (docs/capture.md): the mail servers' key
//! logs (`<data>/capture/keys.log` of each mail node, written only while it
//! exists: [`mailserver::tls::CaptureKeyLog`]) and labctl's own clients'
//! (`<lab>/capture/labctl-keys.log`, the same rule), all in the NSS key
//! log format that goes into the pcapng's Decryption Secrets Block.

use mailserver::tls::CaptureKeyLog;

/// The key log of a mail node, relative to its data folder.
pub fn server_key_log_path() -> String {
    format!("{}/{}", CaptureKeyLog::DIR, CaptureKeyLog::FILE)
}

/// Only well-formed NSS key log lines of `text` (a label, then two hex
/// fields), each once: what a reader of the DSB may trust.
pub fn clean_lines(text: &str, seen: &mut std::collections::BTreeSet<String>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let ok = f.len() == 3
            && !f[0].is_empty()
            && f[0]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            && f[1..].iter().all(|h| {
                !h.is_empty() && h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit())
            });
        if ok && seen.insert(line.to_string()) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_key_log_lines_pass_once() {
        let mut seen = Default::default();
        let text = "CLIENT_RANDOM 0a0b 0c0d\n# comment\nCLIENT_RANDOM 0a0b 0c0d\nSERVER_HANDSHAKE_TRAFFIC_SECRET 01 zz\nEXPORTER_SECRET 01 02 03\nCLIENT_TRAFFIC_SECRET_0 ff 00\n";
        assert_eq!(
            clean_lines(text, &mut seen),
            "CLIENT_RANDOM 0a0b 0c0d\nCLIENT_TRAFFIC_SECRET_0 ff 00\n"
        );
        assert_eq!(clean_lines("CLIENT_RANDOM 0a0b 0c0d\n", &mut seen), "");
    }
}
