//! Scored rules: a name, a score, a description and a test, read from YAML.
//!
//! The shipped file is `crates/mailserver/rules/spam-rules.yaml` (embedded).
//! A lab's `spam.rules` file is merged over it by name: a rule with a known
//! name replaces the shipped one (`score: 0` turns it off), new names are
//! added; `replace: true` at the top drops the shipped rules altogether.

use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde::Deserialize;

use super::analyze::Analysis;
use crate::auth::AuthResult;

/// The shipped rules.
pub const SHIPPED_RULES: &str = include_str!("../../../rules/spam-rules.yaml");

/// Why the rules could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The rules shipped in the binary do not parse (a build error).
    #[error("shipped spam rules: {0}")]
    Shipped(#[source] serde_yaml::Error),
    /// The lab's rules file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The rules file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The lab's rules file does not parse.
    #[error("{path}: {source}")]
    Parse {
        /// The rules file.
        path: PathBuf,
        /// What is wrong, and where.
        source: serde_yaml::Error,
    },
    /// A rule's regular expression does not compile.
    #[error("{origin}: rule {rule}: bad pattern {pattern:?}: {source}")]
    Pattern {
        /// Which rules: the shipped ones, or a lab file merged over them.
        origin: String,
        /// The rule's name.
        rule: String,
        /// The pattern.
        pattern: String,
        /// What the regex crate said.
        source: regex::Error,
    },
    /// The phrases of the phrase rules could not be built into one automaton.
    #[error("phrase rules: {0}")]
    Phrases(#[source] aho_corasick::BuildError),
}

/// A rules file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    /// Drop the shipped rules instead of merging.
    #[serde(default)]
    replace: bool,
    rules: Vec<RuleDef>,
}

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    name: String,
    score: f64,
    description: String,
    /// Written as a one-key map (`{builtin: gtube}`), not a YAML tag.
    #[serde(with = "serde_yaml::with::singleton_map")]
    test: TestDef,
}

/// The test of a rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum TestDef {
    /// A check written in code.
    Builtin(Builtin),
    /// A regular expression over one header field's decoded value.
    Header { name: String, pattern: String },
    /// A regular expression over subject and body text.
    Body(String),
    /// Phrases (case-insensitive, whitespace-normalised) in subject or body;
    /// fires when at least `min` of them occur.
    Phrases {
        #[serde(default = "one")]
        min: usize,
        list: Vec<String>,
    },
    /// At least this many URLs.
    UrlsAtLeast(usize),
    /// The classifier's probability in `[min, max)`.
    Bayes { min: f64, max: f64 },
    /// SPF result is one of these (RFC 8601 §2.7.2 keywords).
    Spf(Vec<AuthResult>),
    /// DKIM result is one of these.
    Dkim(Vec<AuthResult>),
    /// DMARC result is one of these.
    Dmarc(Vec<AuthResult>),
}

fn one() -> usize {
    1
}

/// Checks written in code.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// The GTUBE test string.
    Gtube,
    /// No Date header.
    MissingDate,
    /// No Message-ID header.
    MissingMessageId,
    /// Reply-To in another domain than From.
    FromReplyToMismatch,
    /// Subject in capitals (at least 10 letters, 80% upper case).
    SubjectAllCaps,
    /// HTML body without a text alternative.
    HtmlOnly,
    /// A URL whose host is an IP address.
    IpUrl,
    /// Link text showing another domain than the link's target.
    MisleadingLink,
}

/// A compiled test.
#[derive(Debug, Clone)]
enum Test {
    Builtin(Builtin),
    Header(String, Regex),
    Body(Regex),
    /// At least `min` of these phrases (indexes into [`Phrases`]) occur.
    Phrases(usize, Vec<usize>),
    UrlsAtLeast(usize),
    Bayes(f64, f64),
    Spf(Vec<AuthResult>),
    Dkim(Vec<AuthResult>),
    Dmarc(Vec<AuthResult>),
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name (upper case by convention), shown in `tests=`.
    pub name: String,
    /// Score added when the test fires.
    pub score: f64,
    /// What it means.
    pub description: String,
    test: Test,
}

/// What a rule sees besides the analysis.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// Raw header block access for `Header` tests.
    pub raw: &'a [u8],
    /// Classifier probability, if the model is trained enough.
    pub bayes: Option<f64>,
    /// SPF result.
    pub spf: AuthResult,
    /// DKIM result.
    pub dkim: AuthResult,
    /// DMARC result.
    pub dmarc: AuthResult,
}

/// The rule set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// The phrases of every phrase rule, matched in one pass.
    phrases: Phrases,
}

/// The distinct phrases of all phrase rules in one Aho-Corasick automaton,
/// built once when the rules load: a message's text is read once whatever
/// the number of phrases, instead of once per phrase.
#[derive(Debug, Clone, Default)]
struct Phrases {
    /// Normalised phrases (lower case, single spaces), each once.
    list: Vec<String>,
    /// Indexes in `list` of the non-empty phrases: pattern `p` of the
    /// automaton is `list[ids[p]]`.
    ids: Vec<usize>,
    /// Over the non-empty phrases.
    automaton: Option<AhoCorasick>,
}

impl Phrases {
    /// The index of a normalised phrase, added if new.
    fn intern(&mut self, phrase: String) -> usize {
        match self.list.iter().position(|p| *p == phrase) {
            Some(i) => i,
            None => {
                self.list.push(phrase);
                self.list.len() - 1
            }
        }
    }

    fn build(&mut self) -> Result<(), RulesError> {
        // An empty phrase occurs in every text; it never enters the automaton.
        self.ids = (0..self.list.len())
            .filter(|&i| !self.list[i].is_empty())
            .collect();
        self.automaton = if self.ids.is_empty() {
            None
        } else {
            let patterns = self.ids.iter().map(|&i| self.list[i].as_str());
            Some(AhoCorasick::new(patterns).map_err(RulesError::Phrases)?)
        };
        Ok(())
    }

    /// Which phrases occur in `text` (already normalised like the phrases).
    fn found(&self, text: &str) -> Vec<bool> {
        let mut found: Vec<bool> = self.list.iter().map(String::is_empty).collect();
        if let Some(ac) = &self.automaton {
            let mut missing = found.iter().filter(|f| !**f).count();
            for m in ac.find_overlapping_iter(text) {
                let slot = &mut found[self.ids[m.pattern().as_usize()]];
                if !*slot {
                    *slot = true;
                    missing -= 1;
                    if missing == 0 {
                        break;
                    }
                }
            }
        }
        found
    }
}

impl RuleSet {
    /// The shipped rules merged with `override_file` (if given and present).
    pub fn load(override_file: Option<&Path>) -> Result<Self, RulesError> {
        let shipped: RulesFile =
            serde_yaml::from_str(SHIPPED_RULES).map_err(RulesError::Shipped)?;
        let mut defs = shipped.rules;
        if let Some(path) = override_file.filter(|p| p.exists()) {
            let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let lab: RulesFile =
                serde_yaml::from_str(&text).map_err(|source| RulesError::Parse {
                    path: path.to_path_buf(),
                    source,
                })?;
            if lab.replace {
                defs.clear();
            }
            for def in lab.rules {
                match defs.iter_mut().find(|d| d.name == def.name) {
                    Some(d) => *d = def,
                    None => defs.push(def),
                }
            }
        }
        let origin = override_file.map_or("shipped spam rules".to_string(), |p| {
            format!("spam rules ({} merged over the shipped ones)", p.display())
        });
        let mut phrases = Phrases::default();
        let rules = defs
            .into_iter()
            .map(|d| compile(d, &origin, &mut phrases))
            .collect::<Result<_, _>>()?;
        phrases.build()?;
        Ok(Self { rules, phrases })
    }

    /// The rules that fire, with their scores.
    pub fn evaluate<'r>(&'r self, a: &Analysis, ctx: &Context<'_>) -> Vec<&'r Rule> {
        let wanted = self
            .rules
            .iter()
            .any(|r| r.score != 0.0 && matches!(r.test, Test::Phrases(..)));
        let found = if wanted {
            self.phrases.found(&a.phrase_text())
        } else {
            Vec::new()
        };
        self.rules
            .iter()
            .filter(|r| r.score != 0.0 && r.fires(a, ctx, &found))
            .collect()
    }
}

fn compile(def: RuleDef, origin: &str, phrases: &mut Phrases) -> Result<Rule, RulesError> {
    let regex = |p: &str| {
        Regex::new(p).map_err(|source| RulesError::Pattern {
            origin: origin.to_string(),
            rule: def.name.clone(),
            pattern: p.to_string(),
            source,
        })
    };
    let test = match &def.test {
        TestDef::Builtin(b) => Test::Builtin(*b),
        TestDef::Header { name, pattern } => Test::Header(name.clone(), regex(pattern)?),
        TestDef::Body(pattern) => Test::Body(regex(pattern)?),
        TestDef::Phrases { min, list } => Test::Phrases(
            *min,
            list.iter()
                .map(|p| {
                    phrases.intern(
                        p.split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                            .to_lowercase(),
                    )
                })
                .collect(),
        ),
        TestDef::UrlsAtLeast(n) => Test::UrlsAtLeast(*n),
        TestDef::Bayes { min, max } => Test::Bayes(*min, *max),
        TestDef::Spf(v) => Test::Spf(v.clone()),
        TestDef::Dkim(v) => Test::Dkim(v.clone()),
        TestDef::Dmarc(v) => Test::Dmarc(v.clone()),
    };
    Ok(Rule {
        name: def.name,
        score: def.score,
        description: def.description,
        test,
    })
}

impl Rule {
    /// `phrases_found[i]`: phrase `i` of the rule set occurs in the message.
    fn fires(&self, a: &Analysis, ctx: &Context<'_>, phrases_found: &[bool]) -> bool {
        match &self.test {
            Test::Builtin(b) => builtin(*b, a),
            Test::Header(name, re) if name.eq_ignore_ascii_case("subject") => {
                a.subject.as_deref().is_some_and(|s| re.is_match(s))
            }
            Test::Header(name, re) => header_values(ctx.raw, name).iter().any(|v| re.is_match(v)),
            Test::Body(re) => {
                a.subject.as_deref().is_some_and(|s| re.is_match(s))
                    || re.is_match(a.scanned_body())
            }
            Test::Phrases(min, list) => list.iter().filter(|&&i| phrases_found[i]).count() >= *min,
            Test::UrlsAtLeast(n) => a.urls.len() >= *n,
            Test::Bayes(min, max) => ctx.bayes.is_some_and(|p| p >= *min && p < *max),
            Test::Spf(list) => list.contains(&ctx.spf),
            Test::Dkim(list) => list.contains(&ctx.dkim),
            Test::Dmarc(list) => list.contains(&ctx.dmarc),
        }
    }
}

fn builtin(b: Builtin, a: &Analysis) -> bool {
    match b {
        Builtin::Gtube => a.gtube,
        Builtin::MissingDate => !a.has_date,
        Builtin::MissingMessageId => !a.has_message_id,
        Builtin::FromReplyToMismatch => match (&a.from_domain, &a.reply_to_domain) {
            (Some(f), Some(r)) => f != r,
            _ => false,
        },
        Builtin::SubjectAllCaps => a.subject.as_deref().is_some_and(|s| {
            let letters: Vec<char> = s.chars().filter(|c| c.is_alphabetic()).collect();
            let upper = letters.iter().filter(|c| c.is_uppercase()).count();
            letters.len() >= 10 && upper * 10 >= letters.len() * 8
        }),
        Builtin::HtmlOnly => a.html_only,
        Builtin::IpUrl => a.ip_urls > 0,
        Builtin::MisleadingLink => a.misleading_links > 0,
    }
}

/// Decoded values of a header field in the top-level header block.
fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    let Some(message) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return Vec::new();
    };
    message
        .headers()
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .filter_map(|h| match &h.value {
            mail_parser::HeaderValue::Text(t) => Some(t.to_string()),
            mail_parser::HeaderValue::TextList(l) => Some(l.join(", ")),
            _ => message
                .header_raw(h.name.as_str())
                .map(|s| s.trim().to_string()),
        })
        .collect()
}
