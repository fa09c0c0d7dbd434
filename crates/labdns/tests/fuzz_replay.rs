//! Replays the DNS fuzz corpus on stable (`make test`): every seed and every
//! regression input of `fuzz/{seeds,regressions}/dns/` goes through the
//! fuzz target's entry point ([`labdns::fuzzing::Harness::run`]), bounded
//! to [`LIMIT`] each. docs/fuzzing.md.

use std::path::{Path, PathBuf};

use labdns::fuzzing::{Harness, LIMIT};

fn files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join("dns");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_and_regression_input_is_answered_in_bounded_time() {
    let h = Harness::new().unwrap();
    let seeds = files("seeds");
    assert!(!seeds.is_empty(), "no DNS seeds");
    for file in seeds.iter().chain(&files("regressions")) {
        let data = std::fs::read(file).unwrap();
        if let Err(slow) = h.run(&data) {
            panic!("{}: {slow} (bound {LIMIT:?})", file.display());
        }
    }
}

#[test]
fn queries_get_authoritative_answers() {
    let h = Harness::new().unwrap();
    // MX example.test over UDP: NOERROR, AA, one answer (RFC 1035 §4.1.1).
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x07example\x04test\x00\x00\x0f\x00\x01");
    let a = h.query(&q, false).unwrap().expect("an answer");
    assert_eq!(&a[..2], &[0x12, 0x34]);
    assert_eq!(a[2] & 0x84, 0x84, "QR and AA");
    assert_eq!(a[3] & 0x0f, 0, "NOERROR");
    assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
    // A name outside the lab: NXDOMAIN from the root zone.
    let mut q = vec![0x00, 0x01, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x03foo\x05other\x00\x00\x01\x00\x01");
    let a = h.query(&q, false).unwrap().expect("an answer");
    assert_eq!(a[3] & 0x0f, 3, "NXDOMAIN");
    // A response is never answered; garbage is not a request.
    let mut r = q.clone();
    r[2] |= 0x80;
    assert!(h.query(&r, false).unwrap().is_none());
    assert!(h.query(b"\x01\x02", true).unwrap().is_none());
}
