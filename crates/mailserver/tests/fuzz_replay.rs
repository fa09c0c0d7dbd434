//! Replays the fuzz corpus on stable (`make test`): every seed
//! (`fuzz/seeds/<target>/`) and every crash or slow input the fuzzers found
//! (`fuzz/regressions/<target>/`) goes through the same entry point as its
//! fuzz target ([`mailserver::fuzzing`]), which bounds each input to
//! [`LIMIT`]; a hang is caught by a wall-clock bound per file. docs/fuzzing.md.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use mailserver::fuzzing::{Harness, LIMIT, Target};

/// A file that does not return within this is a hang (the entry's own
/// bound cannot stop a loop that never yields).
const HANG: Duration = Duration::from_secs(20);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted.
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

fn harness() -> Harness {
    let cert = rcgen::generate_simple_self_signed(vec!["mail.example.test".to_string()]).unwrap();
    Harness::new(&cert.cert.pem(), &cert.signing_key.serialize_pem()).expect("harness")
}

/// Runs every file of `kind` through its target on a worker thread; panics
/// naming the first file that is slow, hangs or crashes the session.
fn replay(kind: &str) -> usize {
    let jobs: Vec<(Target, PathBuf)> = Target::ALL
        .iter()
        .flat_map(|t| files(kind, t.name()).into_iter().map(move |f| (*t, f)))
        .collect();
    let (to_worker, jobs_rx) = mpsc::channel::<(Target, PathBuf)>();
    let (done_tx, done) = mpsc::channel::<Result<(), String>>();
    std::thread::spawn(move || {
        let h = harness();
        for (target, file) in jobs_rx {
            let data = std::fs::read(&file).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.run(target, &data)));
            let r = match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(slow)) => Err(format!("slow: {slow}")),
                Err(_) => Err("the session panicked".to_string()),
            };
            if done_tx.send(r).is_err() {
                return;
            }
        }
    });
    for (target, file) in &jobs {
        to_worker.send((*target, file.clone())).unwrap();
        match done.recv_timeout(HANG) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{} ({}): {e}", file.display(), target.name()),
            Err(_) => panic!(
                "{} ({}): no end after {HANG:?}",
                file.display(),
                target.name()
            ),
        }
    }
    jobs.len()
}

#[test]
fn every_regression_input_is_handled_in_bounded_time() {
    let n = replay("regressions");
    eprintln!("{n} regression inputs replayed, each under {LIMIT:?}");
}

#[test]
fn every_seed_runs_through_its_target() {
    // The seeds exist for every target, so this test shows the entry points work on stable.
    for t in Target::ALL {
        assert!(
            !files("seeds", t.name()).is_empty(),
            "no seeds for {}",
            t.name()
        );
    }
    assert!(replay("seeds") >= Target::ALL.len());
}

/// The entry points really run sessions: a server that answered nothing, or
/// a mailbox that was not reset, would fail here.
#[test]
fn sessions_answer_and_log_in() {
    let h = harness();
    let greeting_only = h.smtp(b"", false).unwrap();
    assert!(
        greeting_only > 10,
        "no SMTP greeting ({greeting_only} bytes)"
    );
    let ehlo = h.smtp(b"EHLO x\r\nQUIT\r\n", false).unwrap();
    assert!(ehlo > greeting_only);
    // After LOGIN and SELECT, FETCH returns the three seed messages' bodies.
    let fetched = h.imap(b"c FETCH 1:3 (BODY[])\r\n", true).unwrap();
    let bare = h.imap(b"c NOOP\r\n", true).unwrap();
    assert!(fetched > bare + 300, "FETCH {fetched} bytes, NOOP {bare}");
    // Deleting in one session leaves the next one its three messages again.
    h.pop3(b"DELE 1\r\nDELE 2\r\nDELE 3\r\nQUIT\r\n", true)
        .unwrap();
    let list = h.pop3(b"LIST\r\n", true).unwrap();
    let empty = h.pop3(b"LIST\r\n", false).unwrap();
    assert!(
        list > empty,
        "LIST after login {list} bytes, before {empty}"
    );
    // A zip with one entry: the message, its two parts and the entry.
    let seed = std::fs::read(fuzz_dir().join("seeds/zip/stored")).unwrap();
    assert!(h.zip(&seed).unwrap() >= 3);
}
