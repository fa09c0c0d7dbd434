//! What the spam rules and the classifier look at, computed once per message.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use mail_parser::{MimeHeaders, PartType};
use regex::Regex;

/// The GTUBE string (SpamAssassin's "Generic Test for Unsolicited Bulk Email").
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Text analysed at most per message (body text past this is not scored).
const MAX_TEXT: usize = 256 * 1024;

/// Body text the phrase rules and the classifier's tokens read, at most:
/// SpamAssassin's `body_part_scan_size` (50,000 bytes, which it applies per
/// text part), "safer and faster scanning of large messages". What makes a
/// message spam is at its start; URLs and links are still counted further.
pub const BODY_SCAN_SIZE: usize = 50_000;

static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\bhttps?://([^\s/?#<>"'()\[\]]+)[^\s<>"']*"#).expect("url regex")
});
static LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?is)<a\s[^>]*?href\s*=\s*["']?([^"'\s>]+)[^>]*>(.*?)</a\s*>"#)
        .expect("link regex")
});
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)<[^>]*>").expect("tag regex"));
static SCRIPT_STYLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?is)<(script|style)\b.*?</(script|style)\s*>").expect("script regex")
});
static DOMAIN_IN_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    // A URL, a www. name, or a name under a common top-level domain (so that
    // link text such as "report.pdf" is not taken for a domain).
    Regex::new(
        r"(?i)(?:https?://|www\.)((?:[a-z0-9-]+\.)+[a-z]{2,})|\b((?:[a-z0-9-]+\.)+(?:com|org|net|edu|gov|mil|int|info|biz|io|co|me|ua|ru|uk|de|fr|pl|us|eu))\b",
    )
    .expect("domain regex")
});

/// Facts about one message.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Decoded Subject.
    pub subject: Option<String>,
    /// A Date header is present (RFC 5322 §3.6 requires one).
    pub has_date: bool,
    /// A Message-ID header is present (RFC 5322 §3.6.4 says it SHOULD be).
    pub has_message_id: bool,
    /// Domain of the first From address, lower case.
    pub from_domain: Option<String>,
    /// Domain of the first Reply-To address, lower case.
    pub reply_to_domain: Option<String>,
    /// Body text: text/plain parts and tag-stripped text/html parts.
    pub text: String,
    /// Some text/html body and no text/plain body.
    pub html_only: bool,
    /// URLs found in the bodies (HTML attributes included).
    pub urls: Vec<String>,
    /// Distinct hosts of those URLs, lower case.
    pub url_hosts: BTreeSet<String>,
    /// URLs whose host is an IPv4 or IPv6 literal.
    pub ip_urls: usize,
    /// `<a>` links whose text shows one domain and whose target is another.
    pub misleading_links: usize,
    /// The GTUBE string appears in the raw message.
    pub gtube: bool,
}

fn domain_of(address: Option<&str>) -> Option<String> {
    address
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
}

fn host_of(url: &str) -> Option<String> {
    URL.captures(url).map(|c| {
        let host = c[1].rsplit('@').next().unwrap_or("");
        let host = if host.starts_with('[') {
            host.split(']')
                .next()
                .unwrap_or(host)
                .trim_start_matches('[')
        } else {
            host.split(':').next().unwrap_or(host)
        };
        host.trim_end_matches('.').to_ascii_lowercase()
    })
}

/// Registered-domain approximation: the last two labels.
fn base_domain(host: &str) -> String {
    let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
    let n = labels.len();
    if n <= 2 {
        host.to_string()
    } else {
        labels[n - 2..].join(".")
    }
}

/// Tag-stripped text of an HTML body (with entities for spaces and quotes decoded).
pub fn html_text(html: &str) -> String {
    let without = SCRIPT_STYLE.replace_all(html, " ");
    let text = TAG.replace_all(&without, " ");
    text.replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

impl Analysis {
    /// Analyses a raw message.
    pub fn of(raw: &[u8]) -> Self {
        let mut a = Analysis {
            gtube: memchr::memmem::find(raw, GTUBE.as_bytes()).is_some(),
            ..Default::default()
        };
        let Some(message) = crate::message::parse_bounded(raw) else {
            return a;
        };
        a.subject = message.subject().map(str::to_string);
        a.has_date = message.date().is_some()
            || message
                .headers()
                .iter()
                .any(|h| h.name.as_str().eq_ignore_ascii_case("Date"));
        a.has_message_id = message.message_id().is_some();
        a.from_domain = domain_of(
            message
                .from()
                .and_then(|f| f.first())
                .and_then(|f| f.address()),
        );
        a.reply_to_domain = domain_of(
            message
                .reply_to()
                .and_then(|f| f.first())
                .and_then(|f| f.address()),
        );

        let (mut plain, mut html) = (0usize, 0usize);
        let mut html_sources = Vec::new();
        for part in &message.parts {
            if part.attachment_name().is_some() || part.is_attachment_disposition() {
                continue;
            }
            match &part.body {
                PartType::Text(t) => {
                    if !t.trim().is_empty() {
                        plain += 1;
                    }
                    if a.text.len() < MAX_TEXT {
                        a.text.push_str(t);
                        a.text.push('\n');
                    }
                }
                PartType::Html(h) => {
                    html += 1;
                    if a.text.len() < MAX_TEXT {
                        a.text.push_str(&html_text(h));
                        a.text.push('\n');
                    }
                    html_sources.push(h.to_string());
                }
                _ => {}
            }
        }
        a.html_only = html > 0 && plain == 0;
        if a.text.len() > MAX_TEXT {
            let cut = super::tokenize::truncate(&a.text, MAX_TEXT).len();
            a.text.truncate(cut);
        }

        let mut seen = BTreeSet::new();
        let sources =
            std::iter::once(a.text.as_str()).chain(html_sources.iter().map(String::as_str));
        for source in sources {
            for m in URL.find_iter(super::tokenize::truncate(source, MAX_TEXT)) {
                let url = m
                    .as_str()
                    .trim_end_matches(['.', ',', ';', ')'])
                    .to_string();
                if seen.insert(url.clone()) {
                    a.urls.push(url);
                }
            }
        }
        for url in &a.urls {
            if let Some(host) = host_of(url) {
                if host.parse::<std::net::IpAddr>().is_ok() {
                    a.ip_urls += 1;
                }
                a.url_hosts.insert(host);
            }
        }
        for html in &html_sources {
            for c in LINK.captures_iter(super::tokenize::truncate(html, MAX_TEXT)) {
                let (Some(target), shown) = (host_of(&c[1]), html_text(&c[2])) else {
                    continue;
                };
                if let Some(d) = DOMAIN_IN_TEXT.captures(shown.trim()) {
                    let shown_host = d.get(1).or_else(|| d.get(2)).map_or("", |m| m.as_str());
                    let shown_host = shown_host.to_ascii_lowercase();
                    if base_domain(&shown_host) != base_domain(&target) {
                        a.misleading_links += 1;
                    }
                }
            }
        }
        a
    }

    /// The body text the phrase rules, `body` rules and the classifier read:
    /// its first [`BODY_SCAN_SIZE`] bytes, cut at a character boundary.
    pub fn scanned_body(&self) -> &str {
        super::tokenize::truncate(&self.text, BODY_SCAN_SIZE)
    }

    /// Subject and body text, lower case, whitespace collapsed: what phrase rules match.
    ///
    /// The same as `format!("{subject} {body}")` (`body`: the text's first
    /// [`BODY_SCAN_SIZE`] bytes) split at white space (Unicode White_Space,
    /// as `split_whitespace`), joined with single spaces and lower-cased, in
    /// one pass over the text.
    pub fn phrase_text(&self) -> String {
        let body = self.scanned_body();
        let mut s = String::with_capacity(body.len() + 64);
        let mut space = false;
        for part in [self.subject.as_deref().unwrap_or(""), body] {
            for c in part.chars() {
                if c.is_whitespace() {
                    space = !s.is_empty();
                    continue;
                }
                if space {
                    s.push(' ');
                    space = false;
                }
                match super::tokenize::simple_lower(c) {
                    Some(l) => s.push(l),
                    // Σ lower-cases by context (final ς): the library's way.
                    None if c == 'Σ' => return self.phrase_text_slow(),
                    None => s.extend(c.to_lowercase()),
                }
            }
            space = !s.is_empty();
        }
        s
    }

    /// [`Analysis::phrase_text`] by the definition.
    fn phrase_text_slow(&self) -> String {
        let subject = self.subject.as_deref().unwrap_or("");
        let body = self.scanned_body();
        format!("{subject} {body}")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }
}

trait AttachmentDisposition {
    fn is_attachment_disposition(&self) -> bool;
}

impl AttachmentDisposition for mail_parser::MessagePart<'_> {
    fn is_attachment_disposition(&self) -> bool {
        self.content_disposition()
            .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_domains() {
        let a = Analysis::of(
            b"From: Bank <service@bank.example>\r\nReply-To: x@evil.example\r\nSubject: Hi\r\n\r\nhello\r\n",
        );
        assert_eq!(a.subject.as_deref(), Some("Hi"));
        assert!(!a.has_date && !a.has_message_id);
        assert_eq!(a.from_domain.as_deref(), Some("bank.example"));
        assert_eq!(a.reply_to_domain.as_deref(), Some("evil.example"));
        assert!(!a.html_only && !a.gtube);
    }

    #[test]
    fn urls_ip_urls_and_misleading_links() {
        let html = "<html><body><p>Hello</p><a href=\"http://192.168.7.1/login\">https://www.paypal.com/</a> \
                    <a href='https://news.wood.org/x'>news.wood.org</a> <a href=\"https://t.example/u\">click here</a></body></html>";
        let msg = format!("Subject: x\r\nContent-Type: text/html\r\n\r\n{html}\r\n");
        let a = Analysis::of(msg.as_bytes());
        assert!(a.html_only);
        // The link text of the first link is a URL too.
        assert_eq!(a.urls.len(), 4, "{:?}", a.urls);
        assert_eq!(a.ip_urls, 1);
        assert_eq!(a.misleading_links, 1);
        assert!(a.url_hosts.contains("192.168.7.1"));
        assert!(a.text.contains("Hello") && !a.text.contains("<p>"));
        let files = "<a href=\"https://files.wood.org/r.pdf\">report.pdf</a>";
        let msg = format!("Subject: x\r\nContent-Type: text/html\r\n\r\n{files}\r\n");
        assert_eq!(Analysis::of(msg.as_bytes()).misleading_links, 0);
    }

    #[test]
    fn phrase_text_is_the_definition() {
        for (subject, text) in [
            (
                Some("  Ви   ВИГРАЛИ "),
                "Act\u{a0}NOW,\r\n\tclick  HERE \u{2003}ΟΔΟΣ\n",
            ),
            (None, "  ЇЖАК   Ґанок "),
            (Some("x"), ""),
            (None, ""),
            (Some(""), "\n\n"),
        ] {
            let a = Analysis {
                subject: subject.map(str::to_string),
                text: text.to_string(),
                ..Default::default()
            };
            assert_eq!(
                a.phrase_text(),
                a.phrase_text_slow(),
                "{subject:?} {text:?}"
            );
        }
    }

    #[test]
    fn phrase_text_reads_the_first_body_scan_size_bytes() {
        let filler = "lorem ipsum ".repeat(BODY_SCAN_SIZE / 12 + 10);
        let a = Analysis {
            subject: Some("Hi".into()),
            text: format!("early words {filler} late words"),
            ..Default::default()
        };
        let text = a.phrase_text();
        assert!(text.starts_with("hi early words lorem"), "{}", &text[..40]);
        assert!(!text.contains("late words"));
        assert!(text.len() <= "hi ".len() + BODY_SCAN_SIZE);
    }

    #[test]
    fn gtube_found() {
        let msg = format!("Subject: x\r\n\r\n{GTUBE}\r\n");
        assert!(Analysis::of(msg.as_bytes()).gtube);
    }
}
