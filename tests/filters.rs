//! Filters: `labctl spam train` on a rendered local lab.
//!
//! The end-to-end checks over SMTP (EICAR and GTUBE refused on 25 and 587,
//! holdout sets delivered/tagged) come with the SMTP service.

use std::path::Path;

use mailserver::filter::FilterInput;
use mailserver::filter::spam::SpamFilter;

use crate::common::{LocalLab, labctl, run, stderr, stdout, without_running_labs};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/spam-train");

fn score(data_dir: &Path, message: &[u8]) -> f64 {
    let filter = SpamFilter::new(None, Some(data_dir), 5.0, 10.0).expect("spam filter");
    filter
        .score(&FilterInput {
            message,
            ..Default::default()
        })
        .expect("score")
        .score
}

/// The model of both servers changes on disk, the borderline message
/// crosses the tag threshold, and a second run adds to the saved model.
#[test]
fn spam_train_changes_a_borderline_verdict_and_persists() {
    let lab = LocalLab::render(7);
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(lab.path(), work.path().join("lab-07")).unwrap();
    let borderline = std::fs::read(Path::new(DATA).join("borderline.eml")).unwrap();
    let before = score(&lab.data_dir(0), &borderline);
    assert!(before < 5.0, "borderline message already tagged: {before}");

    let campaign: Vec<String> = (1..=3)
        .map(|i| format!("{DATA}/campaign-{i}.eml"))
        .collect();
    let out = run(labctl()
        .current_dir(work.path())
        .args(["spam", "train", "--spam"])
        .args(&campaign));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for i in 0..2 {
        let domain = lab.domain(i);
        assert!(
            text.contains(&format!("mail.{domain}: trained 3 spam")),
            "{text}"
        );
        assert!(lab.data_dir(i).join("spam/bayes.json").is_file());
    }
    let after = score(&lab.data_dir(0), &borderline);
    assert!(
        after >= 5.0,
        "still below the tag threshold after training: {before} -> {after}"
    );

    // The saved model is the starting point of the next run (persistence).
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.data_dir(1).join("spam/bayes.json")).unwrap())
            .unwrap();
    let out = run(labctl()
        .current_dir(work.path())
        .args(["spam", "train", "--variant", "7", "--ham"])
        .arg(Path::new(DATA).join("borderline.eml")));
    assert!(out.status.success(), "{}", stderr(&out));
    let second: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.data_dir(1).join("spam/bayes.json")).unwrap())
            .unwrap();
    assert_eq!(second["nham"], first["nham"].as_u64().unwrap() + 1);
    assert_eq!(second["nspam"], first["nspam"]);
}

#[test]
fn spam_train_explains_bad_input() {
    let work = tempfile::tempdir().unwrap();
    let out = run(without_running_labs(&mut labctl())
        .current_dir(work.path())
        .args(["spam", "train", "--spam"])
        .arg(Path::new(DATA).join("borderline.eml")));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no lab found"), "{}", stderr(&out));

    let lab = LocalLab::render(7);
    std::os::unix::fs::symlink(lab.path(), work.path().join("lab-07")).unwrap();
    let junk = work.path().join("notmail.bin");
    std::fs::write(&junk, b"\x00\x01binary").unwrap();
    let out = run(labctl()
        .current_dir(work.path())
        .args(["spam", "train", "--ham"])
        .arg(&junk));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not an e-mail message"),
        "{}",
        stderr(&out)
    );
}

/// The `clamd://` backend against a real clamd with a one-signature
/// database (no signature download): EICAR zipped is refused with clamd's
/// name for it, a clean message passes, a stopped clamd is an error.
#[test]
fn clamd_backend_refuses_eicar_from_a_real_clamd() {
    use mailserver::filter::malware::MalwareFilter;
    use mailserver::filter::{Filter, Verdict};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    if !crate::common::have_tool("clamd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let eicar = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let hex: String = eicar.bytes().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    std::fs::write(
        dir.path().join("db/lab.ndb"),
        format!("Lab.Test.Eicar:0:*:{hex}\n"),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("clamd.conf");
    std::fs::write(
        &conf,
        format!(
            "Foreground yes\nTCPSocket {port}\nTCPAddr 127.0.0.1\nDatabaseDirectory {}\nLogFile {}\nUser root\n",
            dir.path().join("db").display(),
            dir.path().join("clamd.log").display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new("clamd")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("clamd starts");
    let mut guard = crate::common::Guard {
        child,
        name: "clamd".to_string(),
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pong = TcpStream::connect(addr).ok().and_then(|mut s| {
            s.write_all(b"zPING\0").ok()?;
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).ok()?;
            Some(buf == *b"PONG\0")
        });
        if pong == Some(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clamd did not answer PING within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let scanner = MalwareFilter::new(&format!("clamd://{addr}"), None).unwrap();
    let check = |message: &[u8]| {
        scanner.check(&mailserver::filter::FilterInput {
            message,
            ..Default::default()
        })
    };
    let plain = format!("From: a@metal.com\r\nSubject: x\r\n\r\n{eicar}\r\n");
    match check(plain.as_bytes()).unwrap() {
        Verdict::Refuse(r) => {
            assert_eq!((r.code, r.status), (554, "5.7.1"));
            assert!(r.text.contains("Lab.Test.Eicar"), "{}", r.text);
        }
        v => panic!("EICAR accepted by clamd backend: {v:?}"),
    }
    let clean = b"From: a@metal.com\r\nSubject: notes\r\n\r\nlab notes\r\n";
    assert!(matches!(check(clean).unwrap(), Verdict::Accept { .. }));
    guard.kill();
    let err = check(clean).unwrap_err();
    assert!(err.message.contains(&addr.to_string()), "{}", err.message);
}
