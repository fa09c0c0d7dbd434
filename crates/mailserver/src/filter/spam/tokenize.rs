//! Tokens for the Bayesian classifier.
//!
//! Words are runs of Unicode letters and digits (so Cyrillic words are words,
//! `char::is_alphanumeric`), lower-cased, 3 to 20 characters long; longer
//! runs become a `skip:<first letter> <length/10>` token as SpamBayes does.
//! Header tokens carry a prefix (`subject:`, `from:`), URL hosts become
//! `url:<host>`. Each token counts once per message.

use std::borrow::Cow;
use std::collections::HashSet;

use foldhash::fast::RandomState;

use super::analyze::Analysis;

/// Shortest word kept, in characters.
const MIN_WORD: usize = 3;
/// Longest word kept as is, in characters.
const MAX_WORD: usize = 20;

/// The distinct tokens of an analysed message, in byte order.
///
/// Words already in lower case are borrowed from the text, so a long body
/// costs one hash lookup per word, not an allocation; only the distinct
/// tokens are sorted.
pub fn tokens(analysis: &Analysis) -> Vec<Cow<'_, str>> {
    // foldhash: fast on short keys, seeded per process (the words come from
    // the sender, so not a fixed hash function).
    let mut seen: HashSet<Cow<'_, str>, RandomState> = HashSet::default();
    if let Some(subject) = &analysis.subject {
        words(subject, |w| {
            seen.insert(Cow::Owned(format!("subject:{w}")));
        });
    }
    if let Some(domain) = &analysis.from_domain {
        seen.insert(Cow::Owned(format!("from:{domain}")));
    }
    for host in &analysis.url_hosts {
        seen.insert(Cow::Owned(format!("url:{host}")));
    }
    // A 5 MiB newsletter adds nothing past its start.
    let text = analysis.scanned_body();
    words(text, |w| {
        seen.insert(w);
    });
    let mut out: Vec<Cow<'_, str>> = seen.into_iter().collect();
    out.sort_unstable();
    out
}

/// Calls `emit` with every word of `text`: the maximal runs of word
/// characters (see [`is_word_char`]), lower-cased.
///
/// One pass: a word's length in characters and whether it is its own lower
/// case are found while looking for its end.
pub fn words<'t>(text: &'t str, mut emit: impl FnMut(Cow<'t, str>)) {
    let bytes = text.as_bytes();
    let mut start = None;
    let (mut count, mut lower) = (0usize, true);
    let mut i = 0;
    while i < bytes.len() {
        let (c, len) = if bytes[i] < 0x80 {
            (char::from(bytes[i]), 1)
        } else {
            let c = text[i..].chars().next().unwrap_or('\0');
            (c, c.len_utf8())
        };
        if is_word_char(c) {
            if start.is_none() {
                start = Some(i);
                (count, lower) = (0, true);
            }
            count += 1;
            lower = lower && is_own_lower(c);
        } else if let Some(s) = start.take() {
            word(&text[s..i], count, lower, &mut emit);
        }
        i += len;
    }
    if let Some(s) = start {
        word(&text[s..], count, lower, &mut emit);
    }
}

/// Emits one word of `count` characters (`lower`: it is its own lower case).
fn word<'t>(raw: &'t str, count: usize, lower: bool, emit: &mut impl FnMut(Cow<'t, str>)) {
    if count < MIN_WORD {
        return;
    }
    let word = if lower {
        Cow::Borrowed(raw)
    } else {
        lowercase(raw)
    };
    if count > MAX_WORD {
        let first = word.chars().next().unwrap_or('?');
        emit(Cow::Owned(format!("skip:{first} {}", count / 10 * 10)));
    } else {
        emit(word);
    }
}

/// The character is its own (single-character) lower case. A capital sigma
/// is not, so the final-sigma rule of `to_lowercase` is kept.
fn is_own_lower(c: char) -> bool {
    match simple_lower(c) {
        Some(l) => l == c,
        None => {
            let mut l = c.to_lowercase();
            l.len() == 1 && l.next() == Some(c)
        }
    }
}

/// Letters, digits, `$` and `€` make words (`char::is_alphanumeric`, with
/// the common ranges answered without the Unicode tables).
fn is_word_char(c: char) -> bool {
    match c {
        'a'..='z' | 'A'..='Z' | '0'..='9' | '$' => true,
        '\0'..='\x7f' => false,
        // Cyrillic capitals and small letters (U+0400 to U+0481 are all letters).
        '\u{400}'..='\u{481}' => true,
        '€' => true,
        c => c.is_alphanumeric(),
    }
}

/// The lower case of a character where it is one character and known
/// without the Unicode tables (ASCII, the Cyrillic of Ukrainian and Russian);
/// `None` elsewhere.
pub fn simple_lower(c: char) -> Option<char> {
    match c {
        'A'..='Z' => Some(c.to_ascii_lowercase()),
        '\0'..='\x7f' => Some(c),
        // Ѐ..Џ -> ѐ..џ, А..Я -> а..я; а..џ are small already.
        '\u{400}'..='\u{40f}' => char::from_u32(c as u32 + 0x50),
        '\u{410}'..='\u{42f}' => char::from_u32(c as u32 + 0x20),
        '\u{430}'..='\u{45f}' => Some(c),
        _ => None,
    }
}

/// `text.to_lowercase()`, borrowed when that changes nothing.
pub fn lowercase(text: &str) -> Cow<'_, str> {
    let first_change = text.char_indices().find(|&(_, c)| !is_own_lower(c));
    let Some((start, _)) = first_change else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    for c in text[start..].chars() {
        match simple_lower(c) {
            Some(l) => out.push(l),
            // Σ lower-cases by context (final ς): leave it all to the library.
            None if c == 'Σ' => return Cow::Owned(text.to_lowercase()),
            None => out.extend(c.to_lowercase()),
        }
    }
    Cow::Owned(out)
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
            |w| got.push(w.into_owned()),
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
        words(&"x".repeat(45), |w| long.push(w.into_owned()));
        assert_eq!(long, ["skip:x 40"]);
    }

    #[test]
    fn lowercase_is_to_lowercase() {
        for text in [
            "plain ascii words",
            "MiXeD Case",
            "Вигравайте ГРОШІ сьогодні ЇЖАК Ґанок ЁЖИК Ўзбек",
            "ΟΔΟΣ ΣΑΣ ὈΔΥΣΣΕΎΣ",
            "İstanbul ǅungla ẞtraße",
            "",
        ] {
            assert_eq!(lowercase(text), text.to_lowercase(), "{text}");
        }
        assert!(matches!(
            lowercase("already lower сьогодні"),
            Cow::Borrowed(_)
        ));
        for c in (0..0x2200u32).filter_map(char::from_u32) {
            assert_eq!(
                is_word_char(c),
                c.is_alphanumeric() || c == '$' || c == '€',
                "{c:?}"
            );
            let s = c.to_string();
            assert_eq!(lowercase(&s), s.to_lowercase(), "{c:?}");
        }
    }

    /// The definition: split at non-word characters, count, lower-case.
    fn words_by_definition(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for raw in text.split(|c: char| !(c.is_alphanumeric() || c == '$' || c == '€')) {
            let count = raw.chars().count();
            if count < MIN_WORD {
                continue;
            }
            let word = raw.to_lowercase();
            if count > MAX_WORD {
                let first = word.chars().next().unwrap_or('?');
                out.push(format!("skip:{first} {}", count / 10 * 10));
            } else {
                out.push(word);
            }
        }
        out
    }

    #[test]
    fn words_are_the_definition() {
        let long = format!("{} ДУЖЕДОВГЕСЛОВОЯКЕНЕЗАКІНЧУЄТЬСЯ", "Ab".repeat(30));
        for text in [
            "",
            "ab",
            "abc",
            "Вигравайте ГРОШІ сьогодні! Free $$$ money, a b 2026 €€€",
            "ΟΔΟΣ ὈΔΥΣΣΕΎΣ İstanbul ǅungla ẞtraße Ґанок ЇЖАК",
            "tail word at the endЖ",
            "x\u{301}yz combining\u{483}марк",
            long.as_str(),
        ] {
            let mut got = Vec::new();
            words(text, |w| got.push(w.into_owned()));
            assert_eq!(got, words_by_definition(text), "{text}");
        }
    }

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("привіт", 3), "п");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
