//! Tokens for the Bayesian classifier.
//!
//! Words are runs of Unicode letters and digits (so Cyrillic words are words,
//! `char::is_alphanumeric`), lower-cased, 3 to 20 characters long; longer
//! runs become a `skip:<first letter> <length/10>` token as SpamBayes does.
//! Header tokens carry a prefix (`subject:`, `from:`), URL hosts become
//! `url:<host>`. Each token counts once per message.

use std::collections::BTreeSet;

use super::analyze::Analysis;

/// Shortest word kept, in characters.
const MIN_WORD: usize = 3;
/// Longest word kept as is, in characters.
const MAX_WORD: usize = 20;
/// Body characters tokenized at most (a 5 MiB newsletter adds nothing past this).
const MAX_TEXT: usize = 64 * 1024;

/// The distinct tokens of an analysed message.
pub fn tokens(analysis: &Analysis) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(subject) = &analysis.subject {
        words(subject, |w| {
            out.insert(format!("subject:{w}"));
        });
    }
    if let Some(domain) = &analysis.from_domain {
        out.insert(format!("from:{domain}"));
    }
    for host in &analysis.url_hosts {
        out.insert(format!("url:{host}"));
    }
    let text = truncate(&analysis.text, MAX_TEXT);
    words(text, |w| {
        out.insert(w);
    });
    out
}

/// Calls `emit` with every word of `text`.
pub fn words(text: &str, mut emit: impl FnMut(String)) {
    for raw in text.split(|c: char| !(c.is_alphanumeric() || c == '$' || c == '€')) {
        let count = raw.chars().count();
        if count < MIN_WORD {
            continue;
        }
        let word = raw.to_lowercase();
        if count > MAX_WORD {
            let first = word.chars().next().unwrap_or('?');
            emit(format!("skip:{first} {}", count / 10 * 10));
        } else {
            emit(word);
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyrillic_and_latin_words() {
        let mut got = Vec::new();
        words(
            "Вигравайте ГРОШІ сьогодні! Free $$$ money, a b 2026",
            |w| got.push(w),
        );
        assert_eq!(
            got,
            [
                "вигравайте",
                "гроші",
                "сьогодні",
                "free",
                "$$$",
                "money",
                "2026"
            ]
        );
        let mut long = Vec::new();
        words(&"x".repeat(45), |w| long.push(w));
        assert_eq!(long, ["skip:x 40"]);
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("привіт", 3), "п");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
