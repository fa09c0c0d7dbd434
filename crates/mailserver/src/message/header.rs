//! Where the header section of a message ends (RFC 5322 §2.1): the one
//! rule SMTP (trace fields, `Date`/`Message-ID` checks, DSNs), IMAP
//! (`BODY[HEADER]`, `BODY[TEXT]`, `RFC822.HEADER`, SEARCH) and POP3 (`TOP`)
//! all cut a message by.

/// Offset just past the empty line that ends the header section, where the
/// body starts (RFC 5322 §2.1: "header fields ... optionally followed by a
/// message body", separated by an empty line).
///
/// - A message that starts with an empty line has an empty header section;
///   its body starts after that line.
/// - Lines may end in CRLF or a bare LF (a stored message, or a client that
///   sends bare LFs): the first line that is empty either way ends the
///   header section.
/// - With no empty line the whole message is the header section and the
///   body is empty: `raw.len()`.
pub fn header_end(raw: &[u8]) -> usize {
    let mut line = 0;
    while line < raw.len() {
        let rest = &raw[line..];
        if rest.starts_with(b"\n") {
            return line + 1;
        }
        if rest.starts_with(b"\r\n") {
            return line + 2;
        }
        match memchr::memchr(b'\n', rest) {
            Some(eol) => line += eol + 1,
            None => break,
        }
    }
    raw.len()
}

/// The header section (with its empty line) and the body, cut at
/// [`header_end`].
pub fn split_header(raw: &[u8]) -> (&[u8], &[u8]) {
    raw.split_at(header_end(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_body_with_crlf() {
        let m = b"From: a@b\r\nSubject: x\r\n\r\nbody\r\n\r\nmore\r\n";
        assert_eq!(header_end(m), 25);
        assert_eq!(
            split_header(m),
            (
                &b"From: a@b\r\nSubject: x\r\n\r\n"[..],
                &b"body\r\n\r\nmore\r\n"[..]
            )
        );
    }

    #[test]
    fn empty_header_section() {
        // RFC 5322 §2.1: no header fields, the empty line, then the body.
        assert_eq!(
            split_header(b"\r\nbody\r\n\r\n"),
            (&b"\r\n"[..], &b"body\r\n\r\n"[..])
        );
        assert_eq!(
            split_header(b"\nbody\n\nx"),
            (&b"\n"[..], &b"body\n\nx"[..])
        );
        assert_eq!(header_end(b"\r\n"), 2);
    }

    #[test]
    fn lf_only_and_mixed_line_ends() {
        assert_eq!(header_end(b"A: b\nC: d\n\nbody"), 11);
        // An LF-terminated field followed by a CRLF empty line.
        assert_eq!(header_end(b"A: b\n\r\nbody"), 7);
        // A CRLF field followed by a bare-LF empty line.
        assert_eq!(header_end(b"A: b\r\n\nbody"), 7);
    }

    #[test]
    fn folded_fields_are_not_empty_lines() {
        let m = b"Subject: a\r\n  folded\r\n\tagain\r\n\r\nbody";
        assert_eq!(&m[header_end(m)..], b"body");
    }

    #[test]
    fn no_body() {
        let m = b"A: b\r\n\r\n";
        assert_eq!(header_end(m), m.len());
        assert_eq!(split_header(m).1, b"");
    }

    #[test]
    fn no_separator() {
        // No empty line: all header section, no body.
        for m in [&b"A: b\r\nC: d\r\n"[..], b"A: b", b"A: b\r", b""] {
            assert_eq!(header_end(m), m.len(), "{m:?}");
        }
    }
}
