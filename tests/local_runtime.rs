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

/// Issue 13: `down --purge` deletes only a folder that labctl made. With the
/// marker (and the lab.json that would adopt an older lab directory) gone,
/// it refuses with exit 2 and removes nothing: the lab keeps running and the
/// folder keeps its files. Once the folder is a lab directory again, the
/// same command stops the lab and deletes it.
#[test]
fn down_purge_refuses_a_folder_labctl_did_not_make_and_removes_nothing() {
    let _labs = lock_labs();
    let state = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab-06");
    let subnet = format!("127.{}.6.0/24", 200 + std::process::id() % 50);
    let env = |cmd: &mut Command| {
        cmd.env("XDG_RUNTIME_DIR", state.path())
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    };
    let mut up = labctl();
    up.args([
        "up",
        "--variant",
        "6",
        "--runtime",
        "local",
        "--subnet",
        &subnet,
        "--dir",
    ])
    .arg(&dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    env(&mut up);
    let mut guard = Guard {
        child: up.spawn().expect("spawn labctl up --runtime local"),
        name: "labctl up --runtime local".into(),
    };
    let status = || {
        let mut cmd = labctl();
        cmd.args(["status", "--variant", "6", "--json"]);
        env(&mut cmd);
        run(&mut cmd)
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !status().status.success() {
        assert!(Instant::now() < deadline, "the local lab did not come up");
        assert!(
            guard.child.try_wait().unwrap().is_none(),
            "labctl up exited early"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let marker = dir.join(".labctl-lab");
    assert!(marker.is_file(), "render wrote no marker");
    std::fs::remove_file(&marker).unwrap();
    std::fs::rename(dir.join("lab.json"), tmp.path().join("lab.json")).unwrap();
    let files = |d: &std::path::Path| std::fs::read_dir(d).unwrap().count();
    let before = files(&dir);

    let purge = || {
        let mut cmd = labctl();
        cmd.args(["down", "--variant", "6", "--purge"]);
        env(&mut cmd);
        run(&mut cmd)
    };
    let o = purge();
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("not a lab directory of labctl"), "{e}");
    assert!(
        e.contains("removed nothing") && e.contains("what to do"),
        "{e}"
    );
    assert!(
        guard.child.try_wait().unwrap().is_none(),
        "the lab was stopped"
    );
    assert!(status().status.success(), "the lab is no longer found");
    assert_eq!(files(&dir), before, "files were removed");

    // An older lab directory (its lab.json records it) is adopted: purged.
    std::fs::rename(tmp.path().join("lab.json"), dir.join("lab.json")).unwrap();
    let o = purge();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("removed lab directory"),
        "{}",
        stdout(&o)
    );
    assert!(!dir.exists());
    let deadline = Instant::now() + Duration::from_secs(15);
    while guard.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "labctl up did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    guard.kill();
}
