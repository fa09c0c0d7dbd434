//! Spam filter tests: one per rule, thresholds and headers, overrides, and
//! the holdout sets (`corpus/holdout/{ham,spam}`, written apart from the
//! training corpus).

use super::analyze::GTUBE;
use super::*;

fn filter() -> SpamFilter {
    SpamFilter::new(None, None, 5.0, 10.0).expect("shipped rules load")
}

/// A well-formed plain message with the given subject, extra headers and body.
fn msg(subject: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Olena <olena@wood.org>\r\nTo: ivan@metal.com\r\nSubject: {subject}\r\n\
         Date: Sun, 22 Nov 2026 03:00:00 +0000\r\nMessage-ID: <m1@wood.org>\r\n{extra}\r\n{body}\r\n"
    )
    .into_bytes()
}

/// The rules that fire with these SPF, DKIM and DMARC result keywords.
fn fired_with(f: &SpamFilter, message: &[u8], spf: &str, dkim: &str, dmarc: &str) -> Vec<String> {
    let result = |keyword: &str| keyword.parse().expect("an RFC 8601 keyword");
    let input = FilterInput {
        message,
        spf: result(spf),
        dkim: result(dkim),
        dmarc: result(dmarc),
        ..Default::default()
    };
    f.score(&input)
        .unwrap()
        .tests
        .into_iter()
        .map(|t| t.0)
        .collect()
}

fn fired(message: &[u8]) -> Vec<String> {
    fired_with(&filter(), message, "none", "none", "none")
}

fn assert_fires(message: &[u8], rule: &str) {
    let got = fired(message);
    assert!(got.iter().any(|r| r == rule), "{rule} not in {got:?}");
}

fn assert_quiet(message: &[u8], rule: &str) {
    let got = fired(message);
    assert!(
        !got.iter().any(|r| r == rule),
        "{rule} unexpectedly in {got:?}"
    );
}

#[test]
fn gtube_is_refused() {
    let f = filter();
    let m = msg("hello", "", GTUBE);
    match f
        .check(&FilterInput {
            message: &m,
            ..Default::default()
        })
        .unwrap()
    {
        Verdict::Refuse(r) => {
            assert_eq!((r.code, r.status), (550, "5.7.1"));
            assert!(r.text.starts_with("Message refused as spam"), "{}", r.text);
            assert!(r.text.contains("GTUBE"), "{}", r.text);
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn header_rules() {
    assert_fires(
        b"From: a@wood.org\r\nSubject: hi\r\nMessage-ID: <x@y>\r\n\r\nhi\r\n",
        "MISSING_DATE",
    );
    assert_fires(
        b"From: a@wood.org\r\nSubject: hi\r\nDate: Sun, 22 Nov 2026 03:00:00 +0000\r\n\r\nhi\r\n",
        "MISSING_MID",
    );
    let ok = msg("Lab report", "", "see you");
    assert_quiet(&ok, "MISSING_DATE");
    assert_quiet(&ok, "MISSING_MID");
    assert_fires(
        &msg("hi", "Reply-To: x@other.example\r\n", "hi"),
        "FROM_REPLYTO_DIFF",
    );
    assert_quiet(
        &msg("hi", "Reply-To: olena@wood.org\r\n", "hi"),
        "FROM_REPLYTO_DIFF",
    );
    assert_fires(&msg("CHEAP WATCHES FOR YOU", "", "hi"), "SUBJ_ALL_CAPS");
    assert_fires(&msg("ТЕРМІНОВО ОТРИМАЙТЕ ПРИЗ", "", "hi"), "SUBJ_ALL_CAPS");
    assert_quiet(&msg("DNS and SPF notes", "", "hi"), "SUBJ_ALL_CAPS");
    assert_fires(&msg("test", "", "hi"), "SUBJECT_TEST");
    assert_fires(&msg("Тест пошти", "", "hi"), "SUBJECT_TEST");
    assert_quiet(&msg("Testimonials and contests", "", "hi"), "SUBJECT_TEST");
    assert_fires(&msg("Save 90% today!!!", "", "hi"), "SUBJ_MONEY");
}

#[test]
fn body_rules() {
    let html = |body: &str| {
        format!(
            "From: a@wood.org\r\nSubject: news\r\nDate: Sun, 22 Nov 2026 03:00:00 +0000\r\nMessage-ID: <h@wood.org>\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n{body}\r\n"
        )
        .into_bytes()
    };
    assert_fires(&html("<p>hello</p>"), "MIME_HTML_ONLY");
    assert_quiet(&msg("x", "", "plain"), "MIME_HTML_ONLY");
    let many: String = (0..10)
        .map(|i| format!("https://site{i}.example/p "))
        .collect();
    assert_fires(&msg("links", "", &many), "MANY_URLS");
    let nine: String = (0..9)
        .map(|i| format!("https://site{i}.example/p "))
        .collect();
    assert_quiet(&msg("links", "", &nine), "MANY_URLS");
    assert_fires(
        &msg("x", "", "log in at http://10.1.2.3/bank now"),
        "NUMERIC_HTTP_ADDR",
    );
    assert_quiet(
        &msg("x", "", "see https://wood.org/notes"),
        "NUMERIC_HTTP_ADDR",
    );
    assert_fires(
        &html("<a href=\"https://evil.example/x\">https://www.privatbank.ua/login</a>"),
        "MISLEADING_LINK",
    );
    assert_quiet(
        &html(
            "<a href=\"https://www.wood.org/x\">wood.org</a> <a href=\"https://t.example/\">read more</a>",
        ),
        "MISLEADING_LINK",
    );
}

#[test]
fn phrase_rules_in_three_languages() {
    assert_fires(
        &msg("offer", "", "Act now to claim your prize"),
        "SPAM_PHRASE_EN",
    );
    assert_fires(
        &msg("offer", "", "Act now, claim your prize, 100% free!"),
        "SPAM_PHRASES_EN_MANY",
    );
    assert_quiet(
        &msg("offer", "", "Act now, nothing else"),
        "SPAM_PHRASES_EN_MANY",
    );
    assert_fires(
        &msg("Увага", "", "Ви виграли   грошовий приз!"),
        "SPAM_PHRASE_UK",
    );
    assert_fires(
        &msg(
            "Увага",
            "",
            "Ви виграли! Терміново підтвердіть дані картки.",
        ),
        "SPAM_PHRASES_UK_MANY",
    );
    assert_fires(&msg("Акция", "", "Всё бесплатно"), "SPAM_PHRASE_RU");
    assert_fires(
        &msg(
            "Акция",
            "",
            "Подарочный сертификат! Бесплатное участие! Только сегодня!",
        ),
        "SPAM_PHRASES_RU_MANY",
    );
    assert_quiet(
        &msg("Звіт", "", "Надсилаю звіт з лабораторної"),
        "SPAM_PHRASE_UK",
    );
}

#[test]
fn authentication_rules() {
    let f = filter();
    let m = msg("Lab report", "", "report attached");
    let got = fired_with(&f, &m, "fail", "fail", "fail");
    for r in ["SPF_FAIL", "DKIM_INVALID", "DMARC_FAIL"] {
        assert!(got.iter().any(|g| g == r), "{r} not in {got:?}");
    }
    let got = fired_with(&f, &m, "softfail", "pass", "pass");
    for r in ["SPF_SOFTFAIL", "DKIM_VALID", "DMARC_PASS"] {
        assert!(got.iter().any(|g| g == r), "{r} not in {got:?}");
    }
    let got = fired_with(&f, &m, "pass", "none", "none");
    assert!(got.iter().any(|g| g == "SPF_PASS"), "{got:?}");
    assert!(
        !got.iter()
            .any(|g| g.starts_with("DKIM") || g.starts_with("DMARC")),
        "{got:?}"
    );
}

#[test]
fn bayes_bands() {
    let f = filter();
    let ham = msg(
        "Lab 3 notes",
        "",
        "Hi Ivan, here are my notes from the networking lab about DNS records and the SMTP session. See you at the seminar.",
    );
    let s = f
        .score(&FilterInput {
            message: &ham,
            ..Default::default()
        })
        .unwrap();
    assert!(s.bayes.unwrap() < 0.05, "{s:?}");
    assert!(s.tests.iter().any(|t| t.0.starts_with("BAYES_0")), "{s:?}");
}

#[test]
fn headers_and_junk_folder() {
    let f = filter();
    let low = Score {
        score: 1.2,
        tests: vec![("MISSING_MID".into(), 1.2)],
        bayes: None,
    };
    match f.verdict(&low) {
        Verdict::Accept { headers, folder } => {
            assert_eq!(folder, None);
            assert_eq!(headers.len(), 1);
            assert_eq!(headers[0].0, "X-Spam-Status");
            assert!(
                headers[0]
                    .1
                    .starts_with("No, score=1.2 required=5.0 tests=MISSING_MID"),
                "{}",
                headers[0].1
            );
        }
        v => panic!("{v:?}"),
    }
    let high = Score {
        score: 7.5,
        tests: vec![
            ("SUBJ_ALL_CAPS".into(), 1.5),
            ("BAYES_999".into(), 4.0),
            ("MISSING_DATE".into(), 2.0),
        ],
        bayes: Some(0.9995),
    };
    match f.verdict(&high) {
        Verdict::Accept { headers, folder } => {
            assert_eq!(folder.as_deref(), Some("Junk"));
            assert_eq!(headers[0], ("X-Spam-Flag".into(), "YES".into()));
            assert_eq!(headers[1], ("X-Spam-Score".into(), "7.5".into()));
            assert!(
                headers[2].1.starts_with(
                    "Yes, score=7.5 required=5.0 tests=BAYES_999,MISSING_DATE,SUBJ_ALL_CAPS"
                ),
                "{}",
                headers[2].1
            );
        }
        v => panic!("{v:?}"),
    }
    let reject = Score {
        score: 10.0,
        tests: high.tests.clone(),
        bayes: None,
    };
    match f.verdict(&reject) {
        Verdict::Refuse(r) => assert!(
            r.text.ends_with("BAYES_999, MISSING_DATE, SUBJ_ALL_CAPS"),
            "{}",
            r.text
        ),
        v => panic!("{v:?}"),
    }
}

#[test]
fn lab_rules_override_merge_and_replace() {
    let dir = std::env::temp_dir().join(format!("maillab-spamrules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.yaml");
    std::fs::write(
        &file,
        "rules:\n  - name: SUBJECT_TEST\n    score: 0\n    description: off in this lab\n    test: {builtin: gtube}\n  \
         - name: COURSE_WORD\n    score: 6.0\n    description: the course's own marker\n    test: {body: '(?i)\\bmaillab-spam\\b'}\n",
    )
    .unwrap();
    let f = SpamFilter::new(Some(&file), None, 5.0, 10.0).unwrap();
    let got = fired_with(
        &f,
        &msg("test", "", "MAILLAB-SPAM here"),
        "none",
        "none",
        "none",
    );
    assert!(got.contains(&"COURSE_WORD".to_string()), "{got:?}");
    assert!(!got.contains(&"SUBJECT_TEST".to_string()), "{got:?}");
    std::fs::write(&file, "replace: true\nrules: []\n").unwrap();
    let f = SpamFilter::new(Some(&file), None, 5.0, 10.0).unwrap();
    assert!(fired_with(&f, &msg("TEST", "", GTUBE), "none", "none", "none").is_empty());
    std::fs::write(
        &file,
        "rules:\n  - name: BAD\n    score: 1\n    description: x\n    test: {body: '('}\n",
    )
    .unwrap();
    let err = SpamFilter::new(Some(&file), None, 5.0, 10.0).unwrap_err();
    assert!(
        matches!(&err, SetupError::Rules(RulesError::Pattern { rule, .. }) if rule == "BAD"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("BAD") && text.contains("rules.yaml"),
        "{text}"
    );
    // A result keyword RFC 8601 does not know is refused, naming it.
    std::fs::write(
        &file,
        "rules:\n  - name: ODD\n    score: 1\n    description: x\n    test: {spf: [failed]}\n",
    )
    .unwrap();
    let err = SpamFilter::new(Some(&file), None, 5.0, 10.0).unwrap_err();
    assert!(
        matches!(&err, SetupError::Rules(RulesError::Parse { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"failed\""), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn holdout(class: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus/holdout")
        .join(class);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Holdout ham: 30 messages, none tagged (false positives: 0).
#[test]
fn holdout_ham_has_no_false_positives() {
    let f = filter();
    let set = holdout("ham");
    assert_eq!(set.len(), 30);
    let mut tagged = Vec::new();
    for (name, m) in &set {
        let s = f
            .score(&FilterInput {
                message: m,
                ..Default::default()
            })
            .unwrap();
        eprintln!(
            "ham  {name:40} {:5.1} bayes={:?} {:?}",
            s.score, s.bayes, s.tests
        );
        if s.score >= 5.0 {
            tagged.push(format!("{name}: {s:?}"));
        }
    }
    assert!(tagged.is_empty(), "false positives: {tagged:#?}");
}

/// Holdout spam: 30 messages, at least 90% tagged or refused.
#[test]
fn holdout_spam_is_caught() {
    let f = filter();
    let set = holdout("spam");
    assert_eq!(set.len(), 30);
    let mut missed = Vec::new();
    for (name, m) in &set {
        let s = f
            .score(&FilterInput {
                message: m,
                ..Default::default()
            })
            .unwrap();
        eprintln!(
            "spam {name:40} {:5.1} bayes={:?} {:?}",
            s.score, s.bayes, s.tests
        );
        if s.score < 5.0 {
            missed.push(format!("{name}: {s:?}"));
        }
    }
    let caught = set.len() - missed.len();
    eprintln!("holdout spam caught: {caught}/{}", set.len());
    assert!(
        caught * 10 >= set.len() * 9,
        "caught {caught}/30; missed: {missed:#?}"
    );
}

#[test]
fn submission_verdict_has_names_of_its_own() {
    let mut h = vec![
        ("X-Spam-Flag".to_string(), "YES".to_string()),
        ("X-Spam-Status".to_string(), "Yes, score=9.0".to_string()),
        ("Other".to_string(), "x".to_string()),
    ];
    super::outbound_names(&mut h);
    let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["X-Outbound-Spam-Flag", "X-Outbound-Spam-Status", "Other"]
    );
}
