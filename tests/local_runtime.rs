//! The local runtime (issue 7): `up --runtime local` runs the DNS and both
//! mail servers in one foreground process; `status` finds it through its
//! state file, `dig` gets answers, `down` (another process) stops it
//! cleanly. No Docker needed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Guard, have_tool, labctl, lock_labs, run, stderr, stdout};

#[test]
fn local_lab_runs_in_one_process_and_stops_on_down() {
    let _labs = lock_labs();
    let state = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let subnet = format!("127.{}.5.0/24", 200 + std::process::id() % 50);
    let child = labctl()
        .args([
            "up",
            "--variant",
            "5",
            "--runtime",
            "local",
            "--subnet",
            &subnet,
            "--dir",
        ])
        .arg(tmp.path().join("lab-05"))
        .env("XDG_RUNTIME_DIR", state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn labctl up --runtime local");
    let mut guard = Guard {
        child,
        name: "labctl up --runtime local".into(),
    };
    let status = || {
        run(labctl()
            .args(["status", "--variant", "5", "--json"])
            .env("XDG_RUNTIME_DIR", state.path()))
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let j: Value = loop {
        let o = status();
        if o.status.success() {
            break serde_json::from_str(&stdout(&o)).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the local lab did not come up: {}",
            stderr(&o)
        );
        assert!(
            guard.child.try_wait().unwrap().is_none(),
            "labctl up exited early"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(j["runtime"], "local");
    assert_eq!(j["state"], "running");
    assert_eq!(j["dns"]["port"], 10053);
    assert_eq!(j["servers"][0]["ports"]["smtp"], 10025);
    let dns = j["dns"]["ip"].as_str().unwrap().to_string();
    assert!(dns.starts_with("127."), "{dns}");
    let domain = j["servers"][0]["domain"].as_str().unwrap().to_string();
    if have_tool("dig") {
        let o = run(Command::new("dig").args([
            &format!("@{dns}"),
            "-p",
            "10053",
            &domain,
            "MX",
            "+short",
            "+time=2",
        ]));
        assert!(
            stdout(&o).contains(&format!("mail.{domain}.")),
            "dig: {}",
            stdout(&o)
        );
    }
    // The table lists its three servers.
    let o = run(labctl().arg("status").env("XDG_RUNTIME_DIR", state.path()));
    assert!(
        stdout(&o).contains(&format!("mail.{domain}")),
        "{}",
        stdout(&o)
    );

    // `down` from another process stops it: the foreground process exits 0.
    let o = run(labctl()
        .args(["down", "--variant", "5"])
        .env("XDG_RUNTIME_DIR", state.path()));
    assert!(o.status.success(), "down: {}", stderr(&o));
    assert!(stdout(&o).contains("stopped lab05"), "{}", stdout(&o));
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = guard.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "labctl up did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "labctl up exited with {exit:?}");
    assert_eq!(status().status.code(), Some(1));
    assert!(
        std::fs::read_dir(state.path())
            .unwrap()
            .flatten()
            .all(|e| e.path().extension().is_none_or(|x| x != "json"))
    );
    guard.kill();
}
