use std::time::{Duration, Instant};

use super::*;

/// `levels` messages each nested in the previous as `message/rfc822`.
pub(crate) fn nested_rfc822(levels: usize) -> Vec<u8> {
    let mut m = b"From: a@b.test\r\nSubject: nest\r\n".to_vec();
    for _ in 0..levels {
        m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nbottom\r\n");
    m
}

/// `levels` multiparts each nested in the previous.
pub(crate) fn nested_multipart(levels: usize) -> Vec<u8> {
    let mut m = b"From: a@b.test\r\nSubject: nest\r\n".to_vec();
    for i in 0..levels {
        m.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nbottom\r\n");
    for i in (0..levels).rev() {
        m.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    m
}

/// One multipart with `parts` small text parts.
pub(crate) fn many_parts(parts: usize) -> Vec<u8> {
    let mut m = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n".to_vec();
    for _ in 0..parts {
        m.extend_from_slice(b"--x\r\n\r\np\r\n");
    }
    m.extend_from_slice(b"--x--\r\n");
    m
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

#[test]
fn plain_and_ordinary_mime_pass_with_their_depth() {
    let l = Limits::default();
    let plain = b"Received: from a\r\nReceived: from b\r\nFrom: a@b.test\r\n\r\nhi\r\n";
    let s = check(plain, &l).unwrap();
    assert_eq!((s.depth, s.parts, s.hops), (0, 1, 2));
    // multipart/mixed > message/rfc822 > multipart/alternative: depth 3.
    let m = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
--o\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--o\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@d.test\r\n\
Content-Type: multipart/alternative; boundary=\"i\"\r\n\r\n\
--i\r\nContent-Type: text/plain\r\n\r\nplain\r\n--i\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--i--\r\n\
--o--\r\n";
    let s = check(m, &l).unwrap();
    assert_eq!(s.depth, 3);
    assert_eq!(
        s.parts, 6,
        "mixed, text, rfc822, its alternative, plain, html"
    );
    let parsed = parse_bounded(m).expect("parses");
    assert_eq!(
        parsed.parts.len(),
        3,
        "the top message: mixed, text, rfc822"
    );
}

#[test]
fn nesting_at_the_limit_parses_and_one_more_is_refused() {
    let l = Limits::default();
    let at = nested_rfc822(DEFAULT_MAX_DEPTH);
    assert_eq!(check(&at, &l).unwrap().depth, DEFAULT_MAX_DEPTH);
    // Parsed and dropped on this test thread's 2 MiB stack.
    assert!(parse_bounded(&at).is_some());
    let over = nested_rfc822(DEFAULT_MAX_DEPTH + 1);
    assert_eq!(
        check(&over, &l),
        Err(LimitError::TooDeep(DEFAULT_MAX_DEPTH))
    );
    assert!(parse_bounded(&over).is_none());
    let at = nested_multipart(DEFAULT_MAX_DEPTH);
    assert_eq!(check(&at, &l).unwrap().depth, DEFAULT_MAX_DEPTH);
    let over = nested_multipart(DEFAULT_MAX_DEPTH + 1);
    assert_eq!(
        check(&over, &l),
        Err(LimitError::TooDeep(DEFAULT_MAX_DEPTH))
    );
}

#[test]
fn hostile_shapes_are_refused_in_linear_time() {
    let l = Limits::default();
    // The repro: 40,000 nested message/rfc822 (about 1.3 MB).
    let m = nested_rfc822(40_000);
    assert!(m.len() > 1_200_000);
    let (r, t) = timed(|| check(&m, &l));
    assert_eq!(r, Err(LimitError::TooDeep(100)));
    assert!(t < Duration::from_millis(500), "{t:?}");
    // 10^5 levels of both kinds: stops at the limit, bounded time.
    for m in [nested_rfc822(100_000), nested_multipart(100_000)] {
        let (r, t) = timed(|| parse_bounded(&m).is_none());
        assert!(r);
        assert!(t < Duration::from_millis(500), "{t:?}");
    }
    // 100,000 parts.
    let m = many_parts(100_000);
    let (r, t) = timed(|| check(&m, &l));
    assert_eq!(r, Err(LimitError::TooManyParts(DEFAULT_MAX_PARTS)));
    assert!(t < Duration::from_millis(500), "{t:?}");
    assert!(check(&many_parts(DEFAULT_MAX_PARTS - 1), &l).is_ok());
}

#[test]
fn linear_in_the_size_of_a_wide_message() {
    // Time grows with bytes, not bytes squared: 4x the parts stays well
    // under 16x the time (with room for noise).
    let l = Limits {
        max_parts: usize::MAX,
        ..Limits::default()
    };
    let small = many_parts(25_000);
    let big = many_parts(100_000);
    let (_, a) = timed(|| check(&small, &l).unwrap());
    let (_, b) = timed(|| check(&big, &l).unwrap());
    assert!(b < a * 10 + Duration::from_millis(50), "{a:?} then {b:?}");
}

#[test]
fn missing_boundaries_over_and_over_are_too_complex() {
    // Every part announces a multipart whose boundary never occurs:
    // mail-parser scans to the end for each one.
    let mut m = b"Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n".to_vec();
    for i in 0..4000 {
        m.extend_from_slice(
            format!("--x\r\nContent-Type: multipart/mixed; boundary=\"never{i}\"\r\n\r\n")
                .as_bytes(),
        );
        m.extend_from_slice(&[b'a'; 400]);
        m.extend_from_slice(b"\r\n");
    }
    let (r, t) = timed(|| check(&m, &Limits::default()));
    assert_eq!(r, Err(LimitError::TooComplex));
    assert!(t < Duration::from_millis(500), "{t:?}");
}

#[test]
fn header_sections_are_bounded_before_parsing() {
    let l = Limits::default();
    let mut m = Vec::new();
    for _ in 0..=DEFAULT_MAX_HEADER_FIELDS {
        m.extend_from_slice(b"X-A: b\r\n");
    }
    m.extend_from_slice(b"\r\nbody\r\n");
    assert_eq!(
        check(&m, &l),
        Err(LimitError::TooManyHeaderFields(DEFAULT_MAX_HEADER_FIELDS))
    );
    let mut m = b"Subject: x".to_vec();
    for _ in 0..(DEFAULT_MAX_HEADER_BYTES / 500) + 1 {
        m.extend_from_slice(b"\r\n ");
        m.extend_from_slice(&[b'y'; 500]);
    }
    m.extend_from_slice(b"\r\n\r\nbody\r\n");
    assert_eq!(
        check(&m, &l),
        Err(LimitError::HeaderTooLarge(DEFAULT_MAX_HEADER_BYTES))
    );
    // A body-less message still counts its header.
    assert_eq!(check(b"Subject: x\r\n", &l).unwrap().parts, 0);
}

#[test]
fn encoded_nested_messages_are_followed() {
    use base64::Engine;
    let inner = nested_rfc822(60);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&inner);
    let mut m = nested_rfc822(0);
    m.truncate(m.len() - b"Content-Type: text/plain\r\n\r\nbottom\r\n".len());
    let mut outer = m.clone();
    for _ in 0..50 {
        outer.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    outer.extend_from_slice(
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    outer.extend_from_slice(b64.as_bytes());
    outer.extend_from_slice(b"\r\n");
    // 51 levels outside, the decoded message one deeper, then 60 inside.
    assert_eq!(
        check(&outer, &Limits::default()),
        Err(LimitError::TooDeep(DEFAULT_MAX_DEPTH))
    );
    let l = Limits {
        max_depth: 200,
        ..Limits::default()
    };
    assert_eq!(check(&outer, &l).unwrap().depth, 51 + 60);
}
