//! The header fields of a delivered message, explained: the Received chain
//! hop by hop (RFC 5321 §4.4), Authentication-Results (RFC 8601), the
//! DKIM-Signature tags (RFC 6376 §3.5), Received-SPF (RFC 7208 §9.1) and the
//! spam verdict (SpamAssassin-style X-Spam-* fields).

use std::fmt::Write;

/// The header section of a message as `(name, unfolded value)` pairs, in
/// order (RFC 5322 §2.2.3 unfolding).
pub fn header_fields(message: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(message);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    fields
}

/// The values of every field called `name` (case-insensitive), in order.
pub fn values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The first value of `name`.
pub fn value<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    values(fields, name).into_iter().next()
}

/// The body of a message (after the first empty line).
pub fn body(message: &[u8]) -> &[u8] {
    let pos = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|p| p + 2));
    pos.map(|p| &message[p..]).unwrap_or(b"")
}

/// One Received field, split into its clauses (RFC 5321 §4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// `from` clause with its comment (the client's name and address).
    pub from: String,
    /// `by` clause (the server that added the field).
    pub by: String,
    /// `with` protocol (`ESMTPS`, `ESMTPSA`... RFC 3848).
    pub with: String,
    /// `id` clause (the server's session or queue id).
    pub id: String,
    /// `for` clause.
    pub for_: String,
    /// The date after `;`.
    pub date: String,
    /// The comments, e.g. the TLS version and cipher.
    pub comments: Vec<String>,
}

impl Received {
    /// Whether the hop was protected by TLS: the `with` protocol says so
    /// (ESMTPS/ESMTPSA, RFC 3848 §1) or a comment names a TLS version.
    pub fn tls(&self) -> bool {
        let with = self.with.to_ascii_uppercase();
        with.ends_with('S') && with.starts_with("ESMTP")
            || with.ends_with("SA") && with.starts_with("ESMTP")
            || self.comments.iter().any(|c| c.contains("TLS"))
    }

    /// Whether the client authenticated (ESMTPA/ESMTPSA, RFC 3848 §1).
    pub fn authenticated(&self) -> bool {
        self.with.to_ascii_uppercase().ends_with('A') && self.with.len() > 5
    }
}

/// Parses one Received value.
pub fn parse_received(value: &str) -> Received {
    let (clauses, date) = match value.rfind(';') {
        Some(p) => (&value[..p], value[p + 1..].trim().to_string()),
        None => (value, String::new()),
    };
    let mut r = Received {
        date,
        ..Received::default()
    };
    // Tokenise: words, and parenthesised comments kept whole (nesting allowed).
    let mut tokens: Vec<String> = Vec::new();
    let mut chars = clauses.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' {
            let mut depth = 0;
            let mut s = String::new();
            for c in chars.by_ref() {
                s.push(c);
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            tokens.push(s);
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '(' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            tokens.push(s);
        }
    }
    let mut current: Option<&str> = None;
    for t in &tokens {
        let key = t.to_ascii_lowercase();
        if matches!(key.as_str(), "from" | "by" | "with" | "id" | "for" | "via") {
            current = Some(match key.as_str() {
                "from" => "from",
                "by" => "by",
                "with" => "with",
                "id" => "id",
                "for" => "for",
                _ => "via",
            });
            continue;
        }
        if t.starts_with('(') {
            r.comments
                .push(t.trim_start_matches('(').trim_end_matches(')').to_string());
            // Only the `from` clause carries a comment as part of it (TCP-info, RFC 5321 §4.4).
            if current != Some("from") {
                continue;
            }
        }
        let slot = match current {
            Some("from") => &mut r.from,
            Some("by") => &mut r.by,
            Some("with") => &mut r.with,
            Some("id") => &mut r.id,
            Some("for") => &mut r.for_,
            _ => continue,
        };
        if !slot.is_empty() {
            slot.push(' ');
        }
        slot.push_str(t);
    }
    r
}

/// `tag=value` pairs of a tag-list (RFC 6376 §3.2), whitespace removed from values.
pub fn tag_list(value: &str) -> Vec<(String, String)> {
    value
        .split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.chars().filter(|c| !c.is_whitespace()).collect(),
            )
        })
        .collect()
}

/// One method result of Authentication-Results (RFC 8601 §2.2), e.g.
/// `dkim=pass header.d=metal.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// `spf`, `dkim`, `dmarc`, `iprev`...
    pub method: String,
    /// `pass`, `fail`, `softfail`...
    pub result: String,
    /// The rest (reason, properties).
    pub details: String,
}

/// Parses Authentication-Results: the authserv-id and the method results.
pub fn parse_auth_results(value: &str) -> (String, Vec<MethodResult>) {
    let mut parts = value.split(';').map(str::trim);
    let authserv = parts.next().unwrap_or("").to_string();
    let results = parts
        .filter_map(|p| {
            let (mr, details) = p.split_once(char::is_whitespace).unwrap_or((p, ""));
            let (method, result) = mr.split_once('=')?;
            Some(MethodResult {
                method: method.trim().to_ascii_lowercase(),
                result: result.trim().to_ascii_lowercase(),
                details: details.trim().to_string(),
            })
        })
        .collect();
    (authserv, results)
}

/// The result of `method` in any Authentication-Results field added by `authserv` (any when `None`).
pub fn auth_result(
    fields: &[(String, String)],
    authserv: Option<&str>,
    method: &str,
) -> Option<MethodResult> {
    values(fields, "Authentication-Results")
        .into_iter()
        .map(parse_auth_results)
        .filter(|(id, _)| {
            authserv.is_none_or(|a| {
                id.split_whitespace()
                    .next()
                    .is_some_and(|i| i.eq_ignore_ascii_case(a))
            })
        })
        .flat_map(|(_, r)| r)
        .find(|r| r.method == method)
}

/// Shortens a long base64 value for display.
fn short(v: &str) -> String {
    if v.len() > 24 {
        format!("{}...{} ({} chars)", &v[..12], &v[v.len() - 8..], v.len())
    } else {
        v.to_string()
    }
}

/// The spam verdict: `(flagged, score, rules)` from X-Spam-Flag,
/// X-Spam-Score and the `tests=` list of X-Spam-Status.
pub fn spam_verdict(fields: &[(String, String)]) -> Option<(bool, String, Vec<String>)> {
    let flag = value(fields, "X-Spam-Flag");
    let status = value(fields, "X-Spam-Status");
    if flag.is_none() && status.is_none() {
        return None;
    }
    let flagged = flag.is_some_and(|f| f.trim().eq_ignore_ascii_case("YES"))
        || status.is_some_and(|s| s.trim_start().to_ascii_lowercase().starts_with("yes"));
    let score = value(fields, "X-Spam-Score")
        .map(str::to_string)
        .or_else(|| {
            status.and_then(|s| {
                s.split_whitespace()
                    .find_map(|w| w.strip_prefix("score=").map(str::to_string))
            })
        })
        .unwrap_or_default();
    let rules = status
        .and_then(|s| s.split("tests=").nth(1))
        .map(|t| {
            t.split(|c: char| c == ',' || c.is_whitespace())
                .take_while(|w| !w.contains('='))
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Some((flagged, score, rules))
}

/// The explanation `labctl inspect` prints.
pub fn explain(message: &[u8]) -> String {
    let fields = header_fields(message);
    let mut out = String::new();
    let one = |n: &str| value(&fields, n).unwrap_or("(none)").to_string();
    let _ = writeln!(out, "Message");
    for n in ["From", "To", "Subject", "Date", "Message-ID"] {
        let _ = writeln!(out, "  {n:<11} {}", one(n));
    }

    let received: Vec<Received> = values(&fields, "Received")
        .into_iter()
        .map(parse_received)
        .collect();
    let _ = writeln!(
        out,
        "\nReceived chain ({} hops, oldest first; each server adds its field on top, RFC 5321 §4.4)",
        received.len()
    );
    for (i, r) in received.iter().rev().enumerate() {
        let _ = writeln!(
            out,
            "  hop {}: {} -> {}",
            i + 1,
            or_dash(&r.from),
            or_dash(&r.by)
        );
        let mut how = format!("with {}", or_dash(&r.with));
        if r.authenticated() {
            how.push_str(" (client authenticated)");
        }
        how.push_str(if r.tls() { ", TLS" } else { ", no TLS" });
        let _ = writeln!(out, "         {how}");
        for c in r.comments.iter().filter(|c| c.contains("TLS")) {
            let _ = writeln!(out, "         {c}");
        }
        if !r.id.is_empty() {
            let _ = writeln!(out, "         id {}", r.id);
        }
        if !r.date.is_empty() {
            let _ = writeln!(out, "         at {}", r.date);
        }
    }

    let _ = writeln!(out, "\nAuthentication-Results (RFC 8601)");
    let ars = values(&fields, "Authentication-Results");
    if ars.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for ar in ars {
        let (id, results) = parse_auth_results(ar);
        let _ = writeln!(out, "  by {id}");
        for r in results {
            let _ = writeln!(out, "    {:<6} {:<9} {}", r.method, r.result, r.details);
        }
    }
    for spf in values(&fields, "Received-SPF") {
        let _ = writeln!(out, "  Received-SPF: {spf}");
    }

    let _ = writeln!(out, "\nDKIM-Signature (RFC 6376 §3.5)");
    let sigs = values(&fields, "DKIM-Signature");
    if sigs.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for sig in sigs {
        let tags = tag_list(sig);
        let tag = |k: &str| {
            tags.iter()
                .find(|(t, _)| t == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let _ = writeln!(out, "  d  = {:<40} signing domain", tag("d"));
        let _ = writeln!(
            out,
            "  s  = {:<40} selector: key at {}._domainkey.{}",
            tag("s"),
            tag("s"),
            tag("d")
        );
        let _ = writeln!(out, "  a  = {:<40} algorithm", tag("a"));
        let _ = writeln!(out, "  c  = {:<40} canonicalization header/body", tag("c"));
        let _ = writeln!(out, "  h  = {:<40} signed header fields", tag("h"));
        let _ = writeln!(out, "  bh = {:<40} hash of the body", short(&tag("bh")));
        let _ = writeln!(out, "  b  = {:<40} the signature", short(&tag("b")));
    }

    let _ = writeln!(out, "\nSpam verdict");
    match spam_verdict(&fields) {
        None => {
            let _ = writeln!(out, "  (no X-Spam-* fields)");
        }
        Some((flagged, score, rules)) => {
            let _ = writeln!(
                out,
                "  {} score {}",
                if flagged { "SPAM" } else { "not spam" },
                if score.is_empty() { "?" } else { &score }
            );
            if !rules.is_empty() {
                let _ = writeln!(out, "  rules: {}", rules.join(", "));
            }
            if let Some(s) = value(&fields, "X-Spam-Status") {
                let _ = writeln!(out, "  X-Spam-Status: {s}");
            }
        }
    }
    out
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = concat!(
        "Return-Path: <gold@metal.com>\r\n",
        "Received: from mail.metal.com (mail.metal.com [10.77.7.11])\r\n",
        "\tby mail.zone07.org with ESMTPS id mail.zone07.org-smtp-1-4\r\n",
        "\t(version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384)\r\n",
        "\tfor <copper@zone07.org>; Sun, 22 Nov 2026 03:00:01 +0000\r\n",
        "Authentication-Results: mail.zone07.org; dkim=pass header.d=metal.com header.s=lab;\r\n",
        " spf=pass smtp.mailfrom=metal.com; dmarc=pass header.from=metal.com\r\n",
        "X-Spam-Flag: NO\r\n",
        "X-Spam-Status: No, score=0.4 required=5.0 tests=HTML_NONE,MISSING_DATE autolearn=no\r\n",
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=metal.com; s=lab;\r\n",
        " h=From:To:Subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n",
        " b=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgbG9uZyBlbm91Z2g=\r\n",
        "Received: from [10.77.7.1] (helo=host) by mail.metal.com with ESMTPSA id mail.metal.com-submission-1-2; Sun, 22 Nov 2026 03:00:00 +0000\r\n",
        "From: gold@metal.com\r\n",
        "To: copper@zone07.org\r\n",
        "Subject: hi\r\n",
        "Message-ID: <x1@metal.com>\r\n",
        "\r\n",
        "body\r\n",
    );

    #[test]
    fn received_clauses() {
        let f = header_fields(SAMPLE.as_bytes());
        let r: Vec<_> = values(&f, "Received")
            .into_iter()
            .map(parse_received)
            .collect();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].by, "mail.zone07.org");
        assert_eq!(r[0].with, "ESMTPS");
        assert_eq!(r[0].id, "mail.zone07.org-smtp-1-4");
        assert!(
            r[0].from
                .starts_with("mail.metal.com (mail.metal.com [10.77.7.11])")
        );
        assert!(r[0].tls() && !r[0].authenticated());
        assert!(r[0].comments.iter().any(|c| c.contains("TLSv1.3")));
        assert_eq!(r[0].date, "Sun, 22 Nov 2026 03:00:01 +0000");
        assert!(r[1].tls() && r[1].authenticated());
        let plain = parse_received("from a by b with ESMTP id 1; date");
        assert!(!plain.tls() && !plain.authenticated());
    }

    #[test]
    fn auth_results_and_dkim_tags() {
        let f = header_fields(SAMPLE.as_bytes());
        let dkim = auth_result(&f, Some("mail.zone07.org"), "dkim").unwrap();
        assert_eq!(dkim.result, "pass");
        assert_eq!(dkim.details, "header.d=metal.com header.s=lab");
        assert_eq!(auth_result(&f, None, "spf").unwrap().result, "pass");
        assert!(auth_result(&f, Some("mail.metal.com"), "dkim").is_none());
        let tags = tag_list(value(&f, "DKIM-Signature").unwrap());
        assert!(tags.contains(&("d".into(), "metal.com".into())));
        assert!(tags.contains(&("h".into(), "From:To:Subject".into())));
        let (flagged, score, rules) = spam_verdict(&f).unwrap();
        assert!(!flagged);
        assert_eq!(score, "0.4");
        assert_eq!(rules, ["HTML_NONE", "MISSING_DATE"]);
    }

    #[test]
    fn explanation_names_every_part() {
        let text = explain(SAMPLE.as_bytes());
        assert!(text.contains("Received chain (2 hops"), "{text}");
        assert!(
            text.contains("hop 1: [10.77.7.1] (helo=host) -> mail.metal.com"),
            "{text}"
        );
        assert!(
            text.contains("with ESMTPSA (client authenticated), TLS"),
            "{text}"
        );
        assert!(text.contains("hop 2: mail.metal.com"), "{text}");
        assert!(text.contains("version=TLSv1.3"), "{text}");
        assert!(text.contains("dkim   pass"), "{text}");
        assert!(
            text.contains("selector: key at lab._domainkey.metal.com"),
            "{text}"
        );
        assert!(text.contains("not spam score 0.4"), "{text}");
        assert_eq!(body(SAMPLE.as_bytes()), b"body\r\n");
    }
}
