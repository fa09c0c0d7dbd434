//! The Docker runtime end to end (issue 7): `up` on an engine without the
//! lab image, `status --json`, convergence, several labs at once, `down`,
//! an unreachable engine and a taken subnet. Checked with independent
//! clients: the `docker` CLI, `dig`, and TCP connects from the host.
//!
//! Docker tests are serialised (one lock) and remove what they created in a
//! drop guard, also when they fail. Without Docker they say they are
//! skipped; with `CI=true` Docker is required.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

use labctl::naming::labels;
use serde_json::Value;

use crate::common::{INSTANCE, have_tool, in_ci, labctl, lock_labs as lock, run, stderr, stdout};

/// The tests' labs use 10.78.N.0/24, so they run beside a user's lab of the
/// same variant (10.77.N.0/24, and another instance: see `common::INSTANCE`).
fn subnet(variant: u32) -> String {
    format!("10.78.{variant}.0/24")
}

/// The name of the tests' lab `variant` (`test-lab07`).
fn lab_name(variant: u32) -> String {
    labctl::naming::instance::lab_name_in(Some(INSTANCE), variant)
}

/// The Docker label filter of the tests' instance.
fn instance_filter() -> String {
    format!("label={}={INSTANCE}", labels::INSTANCE)
}

/// True when the engine answers; otherwise the test is skipped (fails in CI).
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

/// Removes every lab of the tests' instance (and a test network) when dropped.
struct Cleanup {
    networks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = labctl().args(["down", "--all", "--purge"]).output();
        for n in &self.networks {
            let _ = Command::new("docker").args(["network", "rm", n]).output();
        }
    }
}

fn docker(args: &[&str]) -> String {
    let o = run(Command::new("docker").args(args));
    assert!(o.status.success(), "docker {args:?}: {}", stderr(&o));
    stdout(&o)
}

/// Names or ids listed by `docker <kind> ls` for objects with our label.
fn ours(kind: &str) -> BTreeSet<String> {
    let filter = instance_filter();
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "-a", "-q", "--no-trunc", "--filter", &filter],
        "network" => vec!["network", "ls", "-q", "--filter", &filter],
        _ => vec!["volume", "ls", "-q", "--filter", &filter],
    };
    docker(&args).lines().map(str::to_string).collect()
}

fn container_ids(variant: u32) -> BTreeSet<String> {
    let filter = format!("label={}={variant:02}", labels::LAB);
    docker(&[
        "ps",
        "-a",
        "-q",
        "--no-trunc",
        "--filter",
        &filter,
        "--filter",
        &instance_filter(),
    ])
    .lines()
    .map(str::to_string)
    .collect()
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

fn up(variant: u32, dir: &std::path::Path) -> Output {
    run(labctl()
        .args([
            "up",
            "--variant",
            &variant.to_string(),
            "--timeout",
            "60",
            "--subnet",
            &subnet(variant),
            "--dir",
        ])
        .arg(dir.join(format!("lab-{variant:02}"))))
}

/// The documented `status --json` object of one lab (docs/status-json.md).
fn check_status_schema(j: &Value, variant: u64) {
    assert_eq!(j["variant"], variant, "{j}");
    assert_eq!(j["runtime"], "docker");
    assert_eq!(j["state"], "running", "{j}");
    let ca = j["ca_cert"].as_str().expect("ca_cert");
    assert!(
        ca.starts_with('/') && std::path::Path::new(ca).exists(),
        "{ca}"
    );
    let net = format!("10.78.{variant}");
    assert_eq!(j["dns"]["ip"], format!("{net}.53"));
    assert_eq!(j["dns"]["port"], 53);
    let servers = j["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2);
    for (s, host) in servers.iter().zip([11, 12]) {
        let domain = s["domain"].as_str().expect("domain");
        assert_eq!(s["hostname"], format!("mail.{domain}"));
        assert_eq!(s["ip"], format!("{net}.{host}"));
        assert_eq!(
            s["container"],
            format!("{}-mail.{domain}", lab_name(variant as u32))
        );
        assert_eq!(s["state"], "running");
        let ports = s["ports"].as_object().expect("ports");
        let names: Vec<&str> = ports.keys().map(String::as_str).collect();
        for name in [
            "smtp",
            "submission",
            "submissions",
            "imap",
            "imaps",
            "pop3",
            "pop3s",
        ] {
            assert!(names.contains(&name), "port {name} missing: {names:?}");
            assert!(ports[name].as_u64().is_some_and(|p| p > 0));
        }
        let boxes = s["mailboxes"].as_array().expect("mailboxes");
        assert!(!boxes.is_empty());
        for m in boxes {
            assert!(m["address"].as_str().is_some_and(|a| a.ends_with(domain)));
            assert!(m["password"].as_str().is_some_and(|p| p.len() >= 8));
        }
    }
}

/// Every port of the servers answers a TCP connect from the host; the DNS
/// answers `dig` over UDP and TCP.
fn check_answers(j: &Value) {
    for s in j["servers"].as_array().unwrap() {
        for name in mailserver::service::Service::ALL.map(|s| s.name()) {
            let addr: SocketAddr = format!("{}:{}", s["ip"].as_str().unwrap(), s["ports"][name])
                .parse()
                .unwrap();
            assert!(
                TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok(),
                "{name} of {} does not answer on {addr}",
                s["hostname"]
            );
        }
    }
    if have_tool("dig") {
        let dns = j["dns"]["ip"].as_str().unwrap();
        let domain = j["servers"][0]["domain"].as_str().unwrap();
        for transport in ["+notcp", "+tcp"] {
            let o = run(Command::new("dig")
                .arg(format!("@{dns}"))
                .args([domain, "MX", "+short", "+time=2", "+tries=2", transport]));
            ok(&o, "dig");
            assert!(
                stdout(&o).contains(&format!("mail.{domain}.")),
                "dig {transport} {domain} MX: {}",
                stdout(&o)
            );
        }
    }
}

/// Issue 13 (docs/security.md): the DNS container mounts only its zones; a
/// mail container the CA certificate and its own certificate, key, DKIM key
/// and config folder (read-only) and its data volume; no container sees the
/// CA key or the other domain's keys.
fn check_mounts(j: &Value) {
    let mounts = |container: &str| -> Vec<Value> {
        let json = docker(&["inspect", "-f", "{{json .Mounts}}", container]);
        serde_json::from_str(&json).expect("docker inspect .Mounts is JSON")
    };
    let destinations = |m: &[Value]| -> BTreeSet<String> {
        m.iter()
            .map(|m| m["Destination"].as_str().unwrap().to_string())
            .collect()
    };
    let dns = mounts(j["dns"]["container"].as_str().unwrap());
    assert_eq!(
        destinations(&dns),
        BTreeSet::from(["/lab/dns".to_string()]),
        "{dns:?}"
    );
    let domains: Vec<String> = j["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["domain"].as_str().unwrap().to_string())
        .collect();
    for s in j["servers"].as_array().unwrap() {
        let d = s["domain"].as_str().unwrap();
        let m = mounts(s["container"].as_str().unwrap());
        let expected: BTreeSet<String> = [
            "/lab/ca/ca.crt".to_string(),
            format!("/lab/certs/mail.{d}.crt"),
            format!("/lab/certs/mail.{d}.key"),
            format!("/lab/dkim/{d}.key"),
            format!("/lab/servers/mail.{d}"),
            "/data".to_string(),
        ]
        .into();
        assert_eq!(destinations(&m), expected, "{d}: {m:?}");
        for mount in &m {
            let source = mount["Source"].as_str().unwrap_or_default();
            assert!(!source.ends_with("ca.key"), "{d} mounts {source}");
            for other in domains.iter().filter(|o| *o != d) {
                assert!(!source.contains(other.as_str()), "{d} mounts {source}");
            }
            if mount["Type"] == "bind" {
                assert_eq!(mount["RW"], false, "{d}: {mount}");
            }
        }
    }
}

fn status_json(variant: Option<u32>) -> Value {
    let mut cmd = labctl();
    cmd.args(["status", "--json"]);
    if let Some(v) = variant {
        cmd.args(["--variant", &v.to_string()]);
    }
    let o = run(&mut cmd);
    ok(&o, "status --json");
    serde_json::from_str(&stdout(&o)).expect("status --json is JSON")
}

#[test]
fn docker_lab_up_converges_runs_beside_others_and_goes_down() {
    let _l = lock();
    if !docker_available() {
        return;
    }
    let _cleanup = Cleanup { networks: vec![] };
    let _ = labctl().args(["down", "--all", "--purge"]).output();
    // An engine without the lab image: `up` makes it from the binary.
    let image = format!("labctl:{}", env!("CARGO_PKG_VERSION"));
    let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
    let tmp = tempfile::tempdir().unwrap();

    let o = up(7, tmp.path());
    ok(&o, "up --variant 7");
    assert!(
        stderr(&o).contains("created from this executable"),
        "{}",
        stderr(&o)
    );
    let j = status_json(Some(7));
    check_status_schema(&j, 7);
    check_answers(&j);
    check_mounts(&j);
    let ids = container_ids(7);
    assert_eq!(ids.len(), 3, "{ids:?}");

    // Converges: a second run keeps every container.
    let o = up(7, tmp.path());
    ok(&o, "second up --variant 7");
    assert_eq!(container_ids(7), ids, "the second up replaced containers");
    assert_eq!(stderr(&o).matches("unchanged").count(), 3, "{}", stderr(&o));

    // Several labs at once.
    for v in [1, 15] {
        ok(&up(v, tmp.path()), &format!("up --variant {v}"));
    }
    let all = status_json(None);
    let labs = all.as_array().expect("several labs: an array");
    let variants: Vec<u64> = labs
        .iter()
        .map(|l| l["variant"].as_u64().unwrap())
        .collect();
    assert_eq!(variants, [1, 7, 15]);
    for l in labs {
        let v = l["variant"].as_u64().unwrap();
        check_status_schema(l, v);
        check_answers(l);
    }
    assert_eq!(container_ids(7), ids);

    // `down` of one lab from another folder keeps its data volumes...
    let o = run(labctl().args(["down", "--variant", "1"]).current_dir("/"));
    ok(&o, "down --variant 1");
    assert!(container_ids(1).is_empty());
    let filter = format!("label={}=01", labels::LAB);
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &filter,
            "--filter",
            &instance_filter()
        ])
        .lines()
        .count(),
        2
    );
    // ... `--purge` removes everything, lab directories included.
    let o = run(labctl().args(["down", "--all", "--purge"]).current_dir("/"));
    ok(&o, "down --all --purge");
    for kind in ["container", "network", "volume"] {
        assert!(ours(kind).is_empty(), "{kind}s left: {:?}", ours(kind));
    }
    assert!(!tmp.path().join("lab-07").exists());
    // Idempotent.
    for args in [
        &["down", "--all"][..],
        &["down", "--variant", "7"][..],
        &["down"][..],
    ] {
        let o = run(labctl().args(args));
        ok(&o, &format!("{args:?} with nothing up"));
        assert!(stdout(&o).contains("nothing to remove"), "{}", stdout(&o));
    }
}

#[test]
fn docker_taken_subnet_is_refused_naming_the_network() {
    let _l = lock();
    if !docker_available() {
        return;
    }
    let name = "labctl-test-taken";
    let _cleanup = Cleanup {
        networks: vec![name.into()],
    };
    let _ = Command::new("docker")
        .args(["network", "rm", name])
        .output();
    docker(&[
        "network",
        "create",
        "--label",
        &format!("{}=test", labels::LAB),
        "--subnet",
        &subnet(9),
        name,
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let o = up(9, tmp.path());
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(name), "{}", stderr(&o));
    assert!(stderr(&o).contains("--subnet"), "{}", stderr(&o));
    assert!(container_ids(9).is_empty());
    // The other network is not ours: `down --all` leaves it alone.
    ok(&run(labctl().args(["down", "--all"])), "down --all");
    assert!(
        docker(&["network", "ls", "-q", "--filter", &format!("name={name}")])
            .lines()
            .next()
            .is_some()
    );
}

#[test]
fn unreachable_docker_is_an_environment_error() {
    let state = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["up", "--variant", "7"][..],
        &["status"][..],
        &["status", "--json"][..],
        &["down"][..],
        &["down", "--variant", "7"][..],
        &["down", "--all"][..],
    ] {
        let o = run(labctl()
            .args(args)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            // no local labs either
            .env("XDG_RUNTIME_DIR", state.path())
            .current_dir(tmp.path()));
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("/nonexistent/docker.sock") && e.contains("what to do"),
            "{args:?}: {e}"
        );
    }
    // Nothing was written by `up`.
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
}

/// `verify --json` of a running lab, run from another folder (the lab is
/// found by its labels): the parsed report and the raw output.
fn verify_json(variant: u32, extra: &[&str]) -> (Output, Value) {
    let o = run(labctl()
        .args(["verify", "--json", "--variant", &variant.to_string()])
        .args(extra)
        .current_dir("/"));
    let json = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| {
        panic!(
            "verify --json of variant {variant}: {e}\n{}\n{}",
            stdout(&o),
            stderr(&o)
        )
    });
    (o, json)
}

/// The failed checks of a report, as `id name: evidence` lines.
fn failures(json: &Value) -> Vec<String> {
    json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["result"] != "pass")
        .map(|c| format!("{} {}: {}", c["id"], c["name"], c["evidence"]))
        .collect()
}

/// The CI smoke test (issue 8): `up -> verify -> down` for variant 7 on
/// Docker, with send, inspect, trace and spam train, all run from another
/// folder (the lab is found by its labels), transcripts read from the
/// containers' volumes, the teardown in a guard.
#[test]
fn docker_smoke_up_send_trace_verify_train_down_variant_7() {
    let _l = lock();
    if !docker_available() {
        return;
    }
    let _cleanup = Cleanup { networks: vec![] };
    let tmp = tempfile::tempdir().unwrap();
    ok(&up(7, tmp.path()), "up --variant 7");
    let lab: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("lab-07/lab.json")).unwrap())
            .unwrap();
    let mailbox = |i: usize| {
        lab["servers"][i]["mailboxes"][0]["address"]
            .as_str()
            .unwrap()
    };

    // send, then inspect (polled until the relay delivered) and trace, from
    // another folder: the first message of the lab, so the servers' DNS
    // caches are cold and the trace shows their lookups.
    let o = run(labctl()
        .args([
            "send",
            "--from",
            mailbox(0),
            "--to",
            mailbox(1),
            "--subject",
            "smoke",
        ])
        .current_dir("/"));
    ok(&o, "send");
    let id = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("send prints the Message-ID")
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let o = run(labctl()
            .args(["inspect", mailbox(1), "--last", "--variant", "7"])
            .current_dir("/"));
        if o.status.success() && stdout(&o).contains(&id) {
            assert!(stdout(&o).contains("dkim   pass"), "{}", stdout(&o));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} not delivered: {}",
            stdout(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = run(labctl()
        .args(["trace", "--variant", "7", "--message-id", &id])
        .current_dir("/"));
    ok(&o, "trace --variant 7");
    let t = stdout(&o);
    assert!(
        t.contains("2 SMTP session(s)") && t.contains("<== TLS from here on"),
        "{t}"
    );
    // The lookups the servers made, from the DNS container's query log:
    // the sender asks for the MX, the receiver for the DKIM key.
    assert!(t.contains(" MX -> NOERROR"), "{t}");
    assert!(t.contains("._domainkey."), "{t}");

    let junit = tmp.path().join("verify.xml");
    let o = run(labctl()
        .args(["verify", "--variant", "7", "--junit"])
        .arg(&junit)
        .current_dir("/"));
    let table = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{table}\n{}", stderr(&o));
    let last = table.lines().last().unwrap_or("");
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite") && !xml.contains("<failure"),
        "{xml}"
    );
    // Every requirement was checked on Docker, R7's altered copy from the
    // sending container's own address and R12's transcripts included.
    let (_, json) = verify_json(7, &["--only", "R7", "--only", "R12"]);
    for c in json["checks"].as_array().unwrap() {
        assert_eq!(c["result"], "pass", "{c}");
    }
    let evidence = json.to_string();
    assert!(evidence.contains("injected from 10.78.7.11"), "{evidence}");
    assert!(evidence.contains("transcript found"), "{evidence}");

    // spam train: the messages go into the volumes and are trained there;
    // the model persists (the second run starts from the first's counts).
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/spam-train");
    let train = || {
        let o = run(labctl()
            .args(["spam", "train", "--variant", "7", "--spam"])
            .args((1..=3).map(|i| format!("{data}/campaign-{i}.eml")))
            .current_dir("/"));
        ok(&o, "spam train --variant 7");
        stdout(&o)
    };
    let spam_known = |text: &str, host: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{host}: trained 3 spam")))
            .unwrap_or_else(|| panic!("no line for {host}: {text}"));
        line.split("knows ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let (first, second) = (train(), train());
    for s in lab["servers"].as_array().unwrap() {
        let host = s["hostname"].as_str().unwrap();
        assert_eq!(
            spam_known(&second, host),
            spam_known(&first, host) + 3,
            "{first}\n{second}"
        );
    }

    let o = run(labctl()
        .args(["down", "--variant", "7", "--purge"])
        .current_dir("/"));
    ok(&o, "down --variant 7 --purge");
    assert!(container_ids(7).is_empty());
}

/// `verify` passes on every variant on Docker, five labs at a time (their
/// subnets differ, so a batch runs side by side).
#[test]
fn docker_verify_passes_on_all_15_variants() {
    let _l = lock();
    if !docker_available() {
        return;
    }
    let _cleanup = Cleanup { networks: vec![] };
    let tmp = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for batch in [1..=5, 6..=10, 11..=15] {
        for v in batch.clone() {
            ok(&up(v, tmp.path()), &format!("up --variant {v}"));
        }
        for v in batch.clone() {
            let started = std::time::Instant::now();
            let (o, json) = verify_json(v, &[]);
            let summary = json["summary"].to_string();
            eprintln!("variant {v}: {summary} in {:.1?}", started.elapsed());
            if o.status.code() != Some(0) {
                failed.push(format!("variant {v}: {:#?}", failures(&json)));
            }
        }
        ok(
            &run(labctl().args(["down", "--all", "--purge"])),
            "down --all --purge",
        );
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// The rendered compose.yml brings up a lab that `verify` passes, found by
/// its labels from another folder, and `labctl down` removes it.
#[test]
fn docker_compose_file_runs_a_lab_that_verify_passes() {
    let _l = lock();
    if !docker_available() {
        return;
    }
    if !have_tool("docker-compose") {
        assert!(!in_ci(), "docker-compose is required in CI");
        eprintln!("SKIPPED: no docker-compose");
        return;
    }
    let uid = labctl::runtime::current_uid();
    let container_uid = labctl::runtime::docker::CONTAINER_UID;
    if uid != 0 && uid != container_uid {
        eprintln!("SKIPPED: the servers (uid {container_uid}) could not read files of uid {uid}");
        return;
    }
    let _cleanup = Cleanup { networks: vec![] };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab-02");
    ok(
        &run(labctl()
            .args(["render", "--variant", "2", "--subnet", &subnet(2), "--dir"])
            .arg(&dir)),
        "render",
    );
    ok(&run(labctl().arg("image")), "image");
    if uid == 0 {
        let owner = format!("{container_uid}:{container_uid}");
        ok(
            &run(Command::new("chown").args(["-R", &owner]).arg(&dir)),
            "chown",
        );
    }
    // As compose/README.md says: from the folder that holds the lab folder.
    let compose = |args: &[&str]| {
        run(Command::new("docker-compose")
            .args(["-p", &lab_name(2), "-f", "lab-02/compose.yml"])
            .args(args)
            .current_dir(tmp.path()))
    };
    // Every object compose makes carries the project's labels, so the
    // Cleanup guard (`labctl down --all --purge`) removes them on failure too.
    ok(&compose(&["up", "-d"]), "docker-compose up -d");
    // Ready when every mail port answers (compose does not wait).
    let lab: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for s in lab["servers"].as_array().unwrap() {
        for port in ["smtp", "submission", "imaps", "pop3s"] {
            let addr: SocketAddr = format!("{}:{}", s["ip"].as_str().unwrap(), s["ports"][port])
                .parse()
                .unwrap();
            while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{addr} ({port}) does not answer"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let (o, json) = verify_json(2, &[]);
    assert_eq!(o.status.code(), Some(0), "{:#?}", failures(&json));
    check_mounts(&status_json(Some(2)));
    // Network and volumes carry the labels too: `down --purge` removes all.
    let o = run(labctl()
        .args(["down", "--variant", "2", "--purge"])
        .current_dir("/"));
    ok(&o, "down --variant 2 --purge");
    for kind in ["container", "network", "volume"] {
        assert!(ours(kind).is_empty(), "{kind}s left: {:?}", ours(kind));
    }
}
