//! Shared test harness: render a lab with the real `labctl` binary, start its
//! servers as child processes on loopback, and drive them with independent
//! clients (Python's standard library, openssl, dig, curl, swaks).
//!
//! Every child is killed when its guard drops, also when a test fails.
#![allow(dead_code)] // each test module uses a different part of the harness

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The instance every test runs in (`LABCTL_INSTANCE`): the tests' labs are
/// `test-labNN`, so `make test` neither sees nor removes a user's lab.
pub const INSTANCE: &str = "test";

/// The labctl binary under test, in the tests' instance.
pub fn labctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labctl"));
    cmd.env("LABCTL_INSTANCE", INSTANCE);
    cmd
}

/// Labs are found by variant number across runtimes (Docker labels, local
/// state files), so tests that start labs through `labctl up` run one at a
/// time: one Docker test's lab 5 must not be another test's local lab 5.
static LABS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the lab namespace for one test (see [`LABS`]).
pub fn lock_labs() -> std::sync::MutexGuard<'static, ()> {
    LABS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `cmd` sees no running lab: no local state files and no Docker engine
/// (for tests of what happens when no lab is found, while other tests run labs).
pub fn without_running_labs(cmd: &mut Command) -> &mut Command {
    cmd.env("XDG_RUNTIME_DIR", "/nonexistent/labctl-test")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
}

/// Runs a command, returning its output (panics if it cannot start).
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// True when running in CI, where every external tool is required.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `tool` is on PATH. In CI a missing tool fails the test (the
/// `.ci/run` script installs them); elsewhere the test says it is skipped.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(!in_ci(), "{tool} is required in CI (.ci/run installs it)");
        eprintln!("SKIPPED: {tool} is not installed (run .ci/run or apt-get install it)");
    }
    found
}

/// A child process killed on drop.
pub struct Guard {
    pub child: Child,
    pub name: String,
}

impl Guard {
    /// Kills the child now (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until a TCP port accepts connections.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A unique loopback /24 per lab in this test run, so labs never collide.
fn unique_subnet() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let second = 100 + (std::process::id() % 100);
    format!("127.{second}.{n}.0/24")
}

/// A lab rendered for the local runtime into a temporary folder.
pub struct LocalLab {
    pub dir: tempfile::TempDir,
    pub variant: u32,
    /// lab.json
    pub json: Value,
}

impl LocalLab {
    /// Renders variant `n` for the local runtime on a fresh loopback subnet.
    pub fn render(n: u32) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lab-{n:02}-"))
            .tempdir()
            .unwrap();
        let out = run(labctl()
            .args([
                "render",
                "--variant",
                &n.to_string(),
                "--runtime",
                "local",
                "--subnet",
                &unique_subnet(),
                "--dir",
            ])
            .arg(dir.path()));
        assert!(out.status.success(), "render failed: {}", stderr(&out));
        let json =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("lab.json")).unwrap())
                .unwrap();
        Self {
            dir,
            variant: n,
            json,
        }
    }

    /// The lab directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.path().join("ca/ca.crt")
    }

    /// The DNS server's address.
    pub fn dns_addr(&self) -> SocketAddr {
        format!(
            "{}:{}",
            self.json["dns"]["ip"].as_str().unwrap(),
            self.json["dns"]["port"]
        )
        .parse()
        .unwrap()
    }

    /// Server `i` (0: domain 1, 1: domain 2) as in lab.json.
    pub fn server(&self, i: usize) -> &Value {
        &self.json["servers"][i]
    }

    /// The domain of server `i`.
    pub fn domain(&self, i: usize) -> String {
        self.server(i)["domain"].as_str().unwrap().to_string()
    }

    /// The address of a port of server `i` (`smtp`, `submission`, `imaps`...).
    pub fn addr(&self, i: usize, port: &str) -> SocketAddr {
        let s = self.server(i);
        format!("{}:{}", s["ip"].as_str().unwrap(), s["ports"][port])
            .parse()
            .unwrap()
    }

    /// The `(address, password)` of mailbox `k` of server `i`.
    pub fn mailbox(&self, i: usize, k: usize) -> (String, String) {
        let m = &self.server(i)["mailboxes"][k];
        (
            m["address"].as_str().unwrap().to_string(),
            m["password"].as_str().unwrap().to_string(),
        )
    }

    /// The data folder of server `i` (local runtime).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.path()
            .join("data")
            .join(format!("mail.{}", self.domain(i)))
    }

    /// Starts `labctl serve-dns` for this lab, with its query log where the
    /// local runtime keeps it, and waits until it answers on TCP.
    pub fn spawn_dns(&self) -> Guard {
        let addr = self.dns_addr();
        let query_log = self.path().join("data/dns/queries.jsonl");
        std::fs::create_dir_all(query_log.parent().unwrap()).expect("create data/dns");
        spawn_listening(
            labctl()
                .args(["serve-dns", "--zones"])
                .arg(self.path().join("dns"))
                .args(["--listen", &addr.to_string()])
                .arg("--query-log")
                .arg(&query_log),
            "serve-dns",
            addr,
        )
    }

    /// Starts `labctl serve-mail` for server `i` and waits until its SMTP ports answer.
    pub fn spawn_mail(&self, i: usize) -> Guard {
        self.spawn_mail_waiting_for(i, &["smtp", "submission", "submissions"])
    }

    /// Starts `labctl serve-mail` for server `i` and waits until the named
    /// ports (`imap`, `imaps`, `pop3`, `pop3s`, `smtp`...) answer.
    pub fn spawn_mail_waiting_for(&self, i: usize, ports: &[&str]) -> Guard {
        let config = self
            .path()
            .join(format!("servers/mail.{}/config.yaml", self.domain(i)));
        let child = labctl()
            .args(["serve-mail", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn serve-mail");
        let guard = Guard {
            child,
            name: format!("mail.{}", self.domain(i)),
        };
        for port in ports {
            let addr = self.addr(i, port);
            assert!(
                wait_for_tcp(addr, Duration::from_secs(10)),
                "serve-mail did not listen on {addr} ({port})"
            );
        }
        guard
    }
}

/// Starts a server (stdout discarded, stderr shown) and waits until `addr`
/// answers on TCP; the guard kills it.
pub fn spawn_listening(cmd: &mut Command, name: &str, addr: SocketAddr) -> Guard {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let guard = Guard {
        child,
        name: name.into(),
    };
    assert!(
        wait_for_tcp(addr, Duration::from_secs(10)),
        "{name} did not listen on {addr}"
    );
    guard
}

/// Debian's python3 (it has the python3-dkim and python3-dnspython packages
/// that `.ci/install-test-deps` installs); any python3 on PATH otherwise.
pub fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs a Python 3 script with arguments; the script gets them as `sys.argv[1:]`.
pub fn python(script: &str, args: &[&str]) -> Output {
    run(Command::new(python3()).arg("-c").arg(script).args(args))
}

/// Runs a Python script and returns its stdout, failing the test with its
/// output when it fails.
pub fn python_stdout(script: &str, args: &[&str]) -> String {
    let out = python(script, args);
    assert!(
        out.status.success(),
        "python failed:\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}
