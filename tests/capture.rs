//! `labctl capture` on a Docker lab (issue 16): the replay's pcapng read by
//! Debian's tshark with nothing but the file (the TLS secrets are inside),
//! no capture container or key log left after the end, Ctrl-C or a kill,
//! and no TLS secret written by any server while no capture runs.
//!
//! The lab runs in its own instance and subnet (`captest-lab12`,
//! 10.79.12.0/24), so it never meets another test's or a user's lab, and
//! is removed by a drop guard also when the test fails.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{have_tool, in_ci, lock_labs, run, stderr, stdout};

const INSTANCE: &str = "captest";
const VARIANT: u32 = 12;
const SUBNET: &str = "10.79.12.0/24";

fn labctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labctl"));
    cmd.env("LABCTL_INSTANCE", INSTANCE);
    cmd
}

/// Removes the test's lab when dropped.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = labctl().args(["down", "--all", "--purge"]).output();
    }
}

fn docker_available() -> bool {
    let ok = have_tool("docker")
        && Command::new("docker")
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!in_ci(), "Docker is required in CI");
        eprintln!("SKIPPED: no Docker engine");
    }
    ok
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Names of the capture containers of the test's instance.
fn capture_containers() -> Vec<String> {
    let o = run(Command::new("docker").args([
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label={}={INSTANCE}", labctl::naming::labels::INSTANCE),
        "--filter",
        &format!(
            "label={}={}",
            labctl::naming::labels::ROLE,
            labctl::naming::labels::ROLE_CAPTURE
        ),
    ]));
    ok(&o, "docker ps");
    stdout(&o).lines().map(str::to_string).collect()
}

/// The files of a mail container's capture folder (`docker cp` of the
/// folder; none when it does not exist).
fn key_log_files(container: &str) -> Vec<String> {
    let o = run(Command::new("docker").args(["cp", &format!("{container}:/data/capture"), "-"]));
    if !o.status.success() {
        assert!(
            stderr(&o).contains("Could not find") || stderr(&o).contains("No such"),
            "docker cp: {}",
            stderr(&o)
        );
        return Vec::new();
    }
    let mut archive = tar::Archive::new(o.stdout.as_slice());
    archive
        .entries()
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.header().entry_type().is_file())
        .map(|e| {
            format!(
                "{} ({} bytes)",
                e.path().unwrap().display(),
                e.header().size().unwrap_or(0)
            )
        })
        .collect()
}

/// No capture container, no key log in either mail server or the lab directory.
fn assert_nothing_left(lab: &Value, dir: &Path, when: &str) {
    assert_eq!(
        capture_containers(),
        Vec::<String>::new(),
        "{when}: capture containers left"
    );
    for s in lab["servers"].as_array().unwrap() {
        let c = s["container"].as_str().unwrap();
        assert_eq!(
            key_log_files(c),
            Vec::<String>::new(),
            "{when}: key log left in {c}"
        );
    }
    assert!(
        !dir.join("capture/labctl-keys.log").exists(),
        "{when}: labctl's key log left"
    );
}

/// Frame numbers tshark shows for `filter`, reading only the file.
fn tshark(file: &Path, filter: &str) -> Vec<String> {
    let o = run(Command::new("tshark").arg("-r").arg(file).args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]));
    ok(&o, &format!("tshark -Y {filter}"));
    let warnings: Vec<&str> = std::str::from_utf8(&o.stderr)
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Running as user \"root\""))
        .collect();
    assert!(warnings.is_empty(), "tshark warned: {warnings:?}");
    stdout(&o).lines().map(str::to_string).collect()
}

/// Starts `labctl capture ARGS` and waits until it records.
fn start_capture(args: &[&str]) -> std::process::Child {
    let mut child = labctl()
        .args(["capture", "--variant", &VARIANT.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("recording ") => break,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("capture did not start recording: {seen:?}");
            }
        }
    }
    std::thread::spawn(move || for _ in rx {});
    child
}

fn wait_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("capture did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn docker_capture_replay_is_decrypted_by_tshark_and_leaves_nothing() {
    if !docker_available() || !have_tool("tshark") {
        return;
    }
    let _lock = lock_labs();
    let _cleanup = Cleanup;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(format!("lab-{VARIANT:02}"));
    ok(
        &run(labctl()
            .args([
                "up",
                "--variant",
                &VARIANT.to_string(),
                "--timeout",
                "90",
                "--subnet",
                SUBNET,
                "--dir",
            ])
            .arg(&dir)),
        "up",
    );
    let lab: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
    let domain = |i: usize| lab["servers"][i]["domain"].as_str().unwrap().to_string();
    let ip = |i: usize| lab["servers"][i]["ip"].as_str().unwrap().to_string();
    let mailbox = |i: usize| {
        lab["servers"][i]["mailboxes"][0]["address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let send = || {
        run(labctl()
            .args(["send", "--from", &mailbox(0), "--to", &mailbox(1), "--dir"])
            .arg(&dir))
    };

    // A fresh lab: no key log anywhere. (No message is sent before the
    // replay: the sender's resolver would answer the MX and DKIM lookups
    // from its cache, and the relay could reuse an open connection.)
    assert_nothing_left(&lab, &dir, "before any capture");

    // The replay, read by tshark with nothing but the file.
    let file = tmp.path().join("t.pcapng");
    let o = run(labctl()
        .args([
            "capture",
            "--variant",
            &VARIANT.to_string(),
            "--replay",
            "-o",
        ])
        .arg(&file));
    ok(&o, "capture --replay");
    assert!(stdout(&o).contains("wireshark "), "{}", stdout(&o));
    let (d1, d2) = (domain(0), domain(1));
    let checks = [
        ("MX query for the recipient's domain", format!("dns.flags.response == 0 && dns.qry.type == 15 && dns.qry.name == \"{d2}\"")),
        ("its answer", format!("dns.flags.response == 1 && dns.qry.type == 15 && dns.qry.name == \"{d2}\" && dns.count.answers > 0")),
        ("AUTH PLAIN on 587 after STARTTLS", "tcp.port == 587 && smtp.req.command == \"AUTH\" && smtp.req.parameter contains \"PLAIN\"".into()),
        ("STARTTLS accepted on 587", "tcp.port == 587 && smtp.response.code == 220 && smtp.rsp.parameter contains \"TLS\"".into()),
        ("AUTH PLAIN on 465", "tcp.port == 465 && smtp.req.command == \"AUTH\" && smtp.req.parameter contains \"PLAIN\"".into()),
        ("STARTTLS accepted on the relay hop on 25", "tcp.port == 25 && smtp.response.code == 220 && smtp.rsp.parameter contains \"TLS\"".into()),
        ("MAIL FROM of the relay hop on 25", format!("tcp.port == 25 && smtp.req.command == \"MAIL\" && smtp.req.parameter contains \"{}\"", mailbox(0))),
        ("RCPT TO of the relay hop on 25", format!("tcp.port == 25 && smtp.req.command == \"RCPT\" && smtp.req.parameter contains \"{}\"", mailbox(1))),
        ("DKIM key TXT query from the receiver", format!("dns.flags.response == 0 && dns.qry.type == 16 && dns.qry.name contains \"._domainkey.{d1}\" && ip.src == {}", ip(1))),
        ("IMAP LOGIN on 993", "tcp.port == 993 && imap.request.command == \"LOGIN\"".into()),
        ("POP3 USER on 995", "tcp.port == 995 && pop.request.command == \"USER\"".into()),
    ];
    let mut missing = Vec::new();
    for (what, filter) in &checks {
        if tshark(&file, filter).is_empty() {
            missing.push(format!("{what}: {filter}"));
        }
    }
    assert!(
        missing.is_empty(),
        "tshark does not show:\n{}\ncapture said:\n{}\n{}",
        missing.join("\n"),
        stdout(&o),
        stderr(&o)
    );
    // The file names the lab, variant and nodes.
    let o = run(Command::new("capinfos").arg(&file));
    if o.status.success() {
        let info = stdout(&o);
        assert!(info.contains(&format!("variant {VARIANT}")), "{info}");
        assert!(info.contains(&format!("mail.{d1}")), "{info}");
    }
    assert_nothing_left(&lab, &dir, "after --replay");

    // Ctrl-C: the capture ends, writes its file and removes what it made.
    let mut child = start_capture(&["-o", tmp.path().join("i.pcapng").to_str().unwrap()]);
    ok(&send(), "send during a capture");
    ok(
        &run(Command::new("kill").args(["-INT", &child.id().to_string()])),
        "kill -INT",
    );
    let status = wait_within(&mut child, Duration::from_secs(60));
    assert!(status.success(), "capture interrupted: {status:?}");
    assert!(
        !tshark(
            &tmp.path().join("i.pcapng"),
            "tcp.port == 587 && smtp.req.command == \"AUTH\""
        )
        .is_empty(),
        "the interrupted capture holds the submission, decrypted"
    );
    assert_nothing_left(&lab, &dir, "after SIGINT");

    // Killed: its containers and key logs stay until the next capture.
    let mut child = start_capture(&["-o", tmp.path().join("k.pcapng").to_str().unwrap()]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !capture_containers().is_empty(),
        "a killed capture leaves its containers"
    );
    let o = run(labctl()
        .args([
            "capture",
            "--variant",
            &VARIANT.to_string(),
            "--duration",
            "1",
            "-o",
        ])
        .arg(tmp.path().join("n.pcapng")));
    ok(&o, "the next capture");
    assert!(
        stderr(&o).contains("removed the capture containers"),
        "{}",
        stderr(&o)
    );
    assert_nothing_left(&lab, &dir, "after the capture that followed a killed one");

    // And no server writes a secret once the captures are over.
    ok(&send(), "send after the captures");
    std::thread::sleep(Duration::from_secs(2));
    assert_nothing_left(&lab, &dir, "after the captures");
}
