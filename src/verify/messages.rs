//! The test messages verify sends (RFC 5322, MIME RFC 2045/2046): plain
//! text, the EICAR test file in the body, as a base64 attachment, inside a
//! deflated zip archive and a zip inside a zip, GTUBE, and a message that
//! looks like spam.

use base64::Engine;

use crate::analysis::headers;

/// The EICAR anti-malware test file (eicar.org), 68 bytes.
pub const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// GTUBE, the Generic Test for Unsolicited Bulk Email (SpamAssassin).
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// The EICAR file as a file on disk may be: the 68 characters and trailing
/// white space (eicar.org allows up to 128 bytes). The white space makes
/// deflate code the file with Huffman codes instead of storing it (a
/// 68-byte string without repeats is otherwise stored as it is).
pub fn eicar_file() -> Vec<u8> {
    format!("{EICAR}\r\n{}", " ".repeat(56)).into_bytes()
}

/// A Message-ID unique to this run and purpose (RFC 5322 §3.6.4).
pub fn message_id(token: &str, purpose: &str, from: &str) -> String {
    let domain = from.rsplit('@').next().unwrap_or("labctl.invalid");
    format!("<verify-{token}-{purpose}@{domain}>")
}

/// Whether the message's Message-ID is `id`.
pub fn has_message_id(raw: &[u8], id: &str) -> bool {
    let fields = headers::header_fields(raw);
    headers::value(&fields, "Message-ID").is_some_and(|v| v.trim() == id)
}

fn date() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

fn head(from: &str, to: &str, subject: &str, message_id: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n",
        date()
    )
}

/// A plain text message.
pub fn plain(from: &str, to: &str, subject: &str, message_id: &str, body: &str) -> Vec<u8> {
    format!(
        "{}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{body}",
        head(from, to, subject, message_id)
    )
    .into_bytes()
}

/// base64 in lines of 76 characters (RFC 2045 §6.8).
pub fn base64_lines(data: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(data);
    b.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned() + "\r\n")
        .collect()
}

/// A multipart/mixed message: a text part and one attachment (RFC 2046 §5.1.3).
pub fn with_attachment(
    from: &str,
    to: &str,
    subject: &str,
    message_id: &str,
    text: &str,
    (name, content_type, data): (&str, &str, &[u8]),
) -> Vec<u8> {
    let boundary = format!("=_labctl_{}", message_id.len() * 7919);
    format!(
        "{}Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
--{boundary}\r\nContent-Type: {content_type}; name=\"{name}\"\r\n\
Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\
--{boundary}--\r\n",
        head(from, to, subject, message_id),
        base64_lines(data)
    )
    .into_bytes()
}

/// A zip archive (PKWARE APPNOTE 6.3.10) holding one file, compressed
/// with deflate (method 8, RFC 1951), so its content is not in the archive
/// verbatim and a scanner has to inflate it.
pub fn zip_deflated(name: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("writing to a Vec");
    let packed = enc.finish().expect("writing to a Vec");
    let crc = crc32fast::hash(data);
    let (size, csize, nlen) = (data.len() as u32, packed.len() as u32, name.len() as u16);
    let (time, date) = (0u16, (2026 - 1980) << 9 | 1 << 5 | 1);
    let mut z = Vec::new();
    // Local file header (APPNOTE §4.3.7): version 2.0, no flags, deflate.
    z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    for v in [20u16, 0, 8, time, date] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, csize, size] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&nlen.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(&packed);
    // Central directory header (§4.3.12).
    let cd_offset = z.len() as u32;
    z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    for v in [20u16, 20, 0, 8, time, date] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, csize, size] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    for v in [nlen, 0, 0, 0, 0] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    z.extend_from_slice(&0u32.to_le_bytes()); // offset of the local header
    z.extend_from_slice(name.as_bytes());
    let cd_size = z.len() as u32 - cd_offset;
    // End of central directory (§4.3.16).
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&cd_size.to_le_bytes());
    z.extend_from_slice(&cd_offset.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

/// A message that reads like unsolicited bulk mail (English phrases that
/// content filters score), without GTUBE: it should be tagged, not refused.
pub fn spammy(from: &str, to: &str, message_id: &str) -> Vec<u8> {
    let body = "Dear friend,\r\n\r\n\
CONGRATULATIONS! You have been selected as the WINNER of our international lottery.\r\n\
You have won $1,000,000 (ONE MILLION DOLLARS). This is not spam, 100% free, no risk.\r\n\
Act now! Limited time offer: click here to claim your prize http://198.51.100.7/claim\r\n\
Send your bank account details to receive the money transfer. Cheap viagra, casino bonus.\r\n\
Make money fast, work from home, earn extra cash. Unsubscribe here.\r\n";
    plain(
        from,
        to,
        "CONGRATULATIONS!!! You are a WINNER - claim your $1,000,000 prize now",
        message_id,
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eicar_is_the_standard_string() {
        assert_eq!(EICAR.len(), 68);
        assert!(EICAR.starts_with(r"X5O!P%@AP[4\PZX54(P^)7CC)7}$"));
        assert_eq!(GTUBE.len(), 68);
    }

    #[test]
    fn zip_is_deflated_and_inflates_to_the_file() {
        use std::io::Read;
        let file = eicar_file();
        assert_eq!(file.len(), 126);
        let z = zip_deflated("eicar.com", &file);
        assert_eq!(&z[..4], b"PK\x03\x04");
        assert_eq!(u16::from_le_bytes([z[8], z[9]]), 8, "method deflate");
        assert!(z.windows(4).any(|w| w == b"PK\x01\x02"));
        assert_eq!(&z[z.len() - 22..z.len() - 18], b"PK\x05\x06");
        // Not verbatim: a scanner must inflate it.
        assert!(!z.windows(EICAR.len()).any(|w| w == EICAR.as_bytes()));
        let csize = u32::from_le_bytes(z[18..22].try_into().unwrap()) as usize;
        let packed = &z[30 + 9..30 + 9 + csize];
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(packed)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, file);
        assert_eq!(
            u32::from_le_bytes(z[14..18].try_into().unwrap()),
            crc32fast::hash(&file)
        );
        // Nested: not verbatim in the outer archive either.
        let nested = zip_deflated("inner.zip", &z);
        assert!(!nested.windows(EICAR.len()).any(|w| w == EICAR.as_bytes()));
    }

    #[test]
    fn messages_parse_and_carry_their_id() {
        let id = message_id("t1", "probe", "gold@metal.com");
        assert_eq!(id, "<verify-t1-probe@metal.com>");
        let m = plain("gold@metal.com", "zinc@zone07.org", "s", &id, "hi\r\n");
        assert!(has_message_id(&m, &id));
        assert!(!has_message_id(&m, "<other@x>"));
        let a = with_attachment(
            "a@b",
            "c@d",
            "s",
            &id,
            "see attachment",
            ("eicar.com", "application/octet-stream", EICAR.as_bytes()),
        );
        let text = String::from_utf8(a).unwrap();
        assert!(text.contains(&base64::engine::general_purpose::STANDARD.encode(EICAR)[..60]));
        assert!(text.ends_with("--\r\n"));
    }
}
