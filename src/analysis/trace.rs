//! Session transcripts (the JSON lines the servers write, one per protocol
//! line) grouped into sessions, and the sessions that carried one message
//! picked out and put in order: submission, relay, delivery.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Deserialize;

/// One transcript line.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// RFC 3339 time.
    pub time: String,
    /// The server that wrote it.
    pub host: String,
    /// Session id.
    pub session: String,
    /// `smtp`, `submission`, `imap`...
    pub proto: String,
    /// The other end.
    pub peer: String,
    /// `c` client to server, `s` server to client, `i` event.
    pub dir: String,
    /// The line.
    pub line: String,
}

/// One session: its lines in order.
#[derive(Debug, Clone)]
pub struct Session {
    /// Session id.
    pub id: String,
    /// The server that wrote it.
    pub host: String,
    /// Protocol.
    pub proto: String,
    /// The other end.
    pub peer: String,
    /// Its lines.
    pub entries: Vec<Entry>,
}

impl Session {
    /// Time of the first line.
    pub fn start(&self) -> &str {
        self.entries.first().map(|e| e.time.as_str()).unwrap_or("")
    }

    /// Whether the session was upgraded to TLS (or began with it).
    pub fn tls(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.dir == "i" && is_tls_event(&e.line))
    }

    /// Whether any line contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        self.entries.iter().any(|e| e.line.contains(needle))
    }
}

/// Whether an event line marks TLS.
fn is_tls_event(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains("tls") && !l.contains("fail")
}

/// Parses JSON lines; lines that are not transcript entries are skipped
/// and counted.
pub fn parse(lines: &[String]) -> (Vec<Entry>, usize) {
    let mut bad = 0;
    let entries = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).map_err(|_| bad += 1).ok())
        .collect();
    (entries, bad)
}

/// Groups entries into sessions, ordered by their first line's time.
pub fn sessions(entries: Vec<Entry>) -> Vec<Session> {
    let mut out: Vec<Session> = Vec::new();
    for e in entries {
        match out
            .iter_mut()
            .find(|s| s.id == e.session && s.host == e.host)
        {
            Some(s) => s.entries.push(e),
            None => out.push(Session {
                id: e.session.clone(),
                host: e.host.clone(),
                proto: e.proto.clone(),
                peer: e.peer.clone(),
                entries: vec![e],
            }),
        }
    }
    out.sort_by(|a, b| a.start().cmp(b.start()));
    out
}

/// The SMTP sessions that carried the message with `message_id`: those
/// that mention its Message-ID, or whose session id a Received field of the
/// message names (`ids`), in time order.
pub fn hops<'a>(sessions: &'a [Session], message_id: &str, ids: &[String]) -> Vec<&'a Session> {
    let bare = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let ids: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    sessions
        .iter()
        .filter(|s| !s.proto.contains("imap") && !s.proto.contains("pop"))
        .filter(|s| {
            (!bare.is_empty() && s.mentions(bare))
                || ids.contains(s.id.as_str())
                || ids.iter().any(|id| !id.is_empty() && s.mentions(id))
        })
        .collect()
}

/// The Message-ID of the last message any SMTP session mentions, for
/// `trace` without `--message-id`.
pub fn last_message_id(sessions: &[Session]) -> Option<String> {
    sessions.iter().rev().find_map(|s| {
        s.entries.iter().rev().find_map(|e| {
            let l = &e.line;
            let p = l.to_ascii_lowercase().find("message-id")?;
            let rest = &l[p..];
            let open = rest.find('<')?;
            let close = rest[open..].find('>')?;
            Some(rest[open..open + close + 1].to_string())
        })
    })
}

/// The last delivery a transcript records: `(queue id, mailbox, folder)`
/// from the server's `delivered <id> to <mailbox> (<folder>)` event.
pub fn last_delivery(sessions: &[Session]) -> Option<(String, String, String)> {
    sessions.iter().rev().find_map(|s| {
        s.entries.iter().rev().find_map(|e| {
            let rest = e.line.strip_prefix("delivered ")?;
            let (id, rest) = rest.split_once(" to ")?;
            let (mailbox, folder) = rest.split_once(' ').unwrap_or((rest, "(INBOX)"));
            Some((
                id.to_string(),
                mailbox.to_string(),
                folder.trim_matches(['(', ')']).to_string(),
            ))
        })
    })
}

/// One line of the lab DNS server's query log.
#[derive(Debug, Clone, Deserialize)]
pub struct DnsQuery {
    /// RFC 3339 time.
    pub time: String,
    /// Who asked (`ip:port`).
    pub client: String,
    /// The name.
    pub name: String,
    /// The record type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The answer's code.
    pub rcode: String,
}

/// The queries `client_ip` made between `from` and `to` (RFC 3339 times).
pub fn dns_between(lines: &[String], client_ip: &str, from: &str, to: &str) -> Vec<DnsQuery> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<DnsQuery>(l).ok())
        .filter(|q| {
            q.client.rsplit_once(':').map(|(ip, _)| ip) == Some(client_ip)
                && q.time.as_str() >= from
                && q.time.as_str() <= to
        })
        .collect()
}

/// Renders hops for `labctl trace`.
pub fn render(hops: &[&Session]) -> String {
    let mut out = String::new();
    for (i, s) in hops.iter().enumerate() {
        let _ = writeln!(
            out,
            "hop {}: {} session {} on {} with {}{}",
            i + 1,
            s.proto,
            s.id,
            s.host,
            s.peer,
            if s.tls() { " (TLS)" } else { "" }
        );
        let mut tls = false;
        for e in &s.entries {
            let time = e.time.get(11..23).unwrap_or(&e.time);
            let mark = match (e.dir.as_str(), tls) {
                ("c", false) => "C: ",
                ("c", true) => "C~ ",
                ("s", false) => "S: ",
                ("s", true) => "S~ ",
                _ => "-- ",
            };
            if e.dir == "i" && is_tls_event(&e.line) {
                tls = true;
                let _ = writeln!(out, "  {time} {mark}{}   <== TLS from here on", e.line);
            } else {
                let _ = writeln!(out, "  {time} {mark}{}", e.line);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(host: &str, session: &str, proto: &str, t: &str, dir: &str, l: &str) -> String {
        serde_json::json!({"time": format!("2026-11-22T03:00:{t}Z"), "host": host, "session": session,
            "proto": proto, "peer": "10.77.7.1:40000", "dir": dir, "line": l})
        .to_string()
    }

    #[test]
    fn groups_and_picks_the_hops_of_one_message() {
        let lines = vec![
            line(
                "mail.metal.com",
                "sub-1",
                "submission",
                "01.000",
                "s",
                "220 mail.metal.com ESMTP",
            ),
            line(
                "mail.metal.com",
                "sub-1",
                "submission",
                "01.100",
                "c",
                "STARTTLS",
            ),
            line(
                "mail.metal.com",
                "sub-1",
                "submission",
                "01.200",
                "i",
                "TLS started TLSv1.3",
            ),
            line(
                "mail.zone07.org",
                "in-7",
                "smtp",
                "02.000",
                "s",
                "220 mail.zone07.org",
            ),
            line(
                "mail.metal.com",
                "sub-1",
                "submission",
                "01.300",
                "c",
                "AUTH PLAIN ***",
            ),
            line(
                "mail.metal.com",
                "sub-1",
                "submission",
                "01.400",
                "i",
                "queued message-id <m1@metal.com>",
            ),
            line(
                "mail.zone07.org",
                "in-7",
                "smtp",
                "02.500",
                "i",
                "delivered <m1@metal.com> to copper@zone07.org",
            ),
            line(
                "mail.zone07.org",
                "in-8",
                "smtp",
                "03.000",
                "i",
                "queued message-id <other@metal.com>",
            ),
            line(
                "mail.zone07.org",
                "imap-1",
                "imap",
                "04.000",
                "c",
                "a1 SEARCH m1@metal.com",
            ),
            "not json".to_string(),
        ];
        let (entries, bad) = parse(&lines);
        assert_eq!(bad, 1);
        let all = sessions(entries);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].entries.len(), 5);
        assert!(all[0].tls() && !all[1].tls());
        let hops = hops(&all, "<m1@metal.com>", &[]);
        assert_eq!(
            hops.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["sub-1", "in-7"]
        );
        let by_id = super::hops(&all, "<nothing@x>", &["in-8".to_string()]);
        assert_eq!(by_id.len(), 1);
        assert_eq!(last_message_id(&all).as_deref(), Some("<other@metal.com>"));
        let text = render(&hops);
        assert!(
            text.contains("hop 1: submission session sub-1 on mail.metal.com"),
            "{text}"
        );
        assert!(text.contains("C: STARTTLS"), "{text}");
        assert!(text.contains("<== TLS from here on"), "{text}");
        assert!(text.contains("C~ AUTH PLAIN ***"), "{text}");
        assert!(
            text.contains("hop 2: smtp session in-7 on mail.zone07.org"),
            "{text}"
        );
    }
}
