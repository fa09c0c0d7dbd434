//! The local runtime: DNS and both mail servers as tokio tasks of ONE
//! foreground process, on the loopback addresses and port map of the local
//! plan (ports >= 1024, no root, no Docker). Ctrl-C or SIGTERM stops it
//! cleanly. A state file `<state dir>/labNN.json` (pid, lab directory) lets
//! `status`, `verify` and `down` of other processes find it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::api::{
    Node, NodeState, Removed, Role, RunningLab, Runtime, RuntimeError, UpOptions, state_dir,
};
use super::labdir::{purgeable, remove_lab_dir};
use super::ready::{self, Probe};
use crate::plan::{Plan, RuntimeKind};
use crate::render::layout;

/// The local runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

/// What the state file of a running local lab holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Variant number.
    pub variant: u32,
    /// The foreground process.
    pub pid: u32,
    /// The lab directory.
    pub dir: PathBuf,
    /// Server names (`dns`, `mail.<domain>`).
    pub servers: Vec<String>,
}

fn state_file(variant: u32) -> PathBuf {
    state_dir().join(format!(
        "{}.json",
        crate::naming::instance::lab_name(variant)
    ))
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

/// State files of live local labs (stale ones are deleted).
fn states(variant: Option<u32>) -> Vec<State> {
    let Ok(entries) = std::fs::read_dir(state_dir()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Some(state) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<State>(&b).ok())
        else {
            continue;
        };
        // Only this instance's labs: the file is named after the lab.
        if path != state_file(state.variant) || variant.is_some_and(|v| v != state.variant) {
            continue;
        }
        if alive(state.pid) {
            out.push(state);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    out.sort_by_key(|s| s.variant);
    out
}

/// The state file of the running lab; removed when the process ends (also
/// on error).
struct StateGuard(PathBuf);

impl StateGuard {
    /// Writes the state file that lets other processes find this lab.
    fn write(plan: &Plan, variant: u32) -> Result<StateGuard, RuntimeError> {
        let path = state_file(variant);
        std::fs::create_dir_all(state_dir()).map_err(RuntimeError::io(format!(
            "cannot create {}",
            state_dir().display()
        )))?;
        let state = State {
            variant,
            pid: std::process::id(),
            dir: plan.dir.clone(),
            servers: std::iter::once("dns".to_string())
                .chain(plan.servers.iter().map(|s| s.hostname.clone()))
                .collect(),
        };
        std::fs::write(&path, serde_json::to_vec_pretty(&state).expect("json"))
            .map_err(RuntimeError::io(format!("cannot write {}", path.display())))?;
        Ok(StateGuard(path))
    }
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The lab's nodes, running as tasks of this process; each ends with
/// `Err(name: reason)` if it fails.
type Nodes = tokio::task::JoinSet<Result<(), String>>;

impl Local {
    /// Runs the lab in this process until `shutdown` completes (Ctrl-C).
    pub async fn run(
        &self,
        plan: &Plan,
        options: &UpOptions,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), RuntimeError> {
        let start = Instant::now();
        let variant = u32::from(plan.variant.number);
        if let Some(other) = states(Some(variant)).first() {
            return Err(RuntimeError::Environment(format!(
                "lab{variant:02} already runs locally (pid {}, {})\n  what to do: stop it with Ctrl-C there or `labctl down --variant {variant}`",
                other.pid,
                other.dir.display()
            )));
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut nodes = start_nodes(plan, &stop_rx)?;
        if let Err(e) = wait_ready(plan, options, &mut nodes).await {
            let _ = stop_tx.send(true);
            nodes.shutdown().await;
            return Err(e);
        }
        let _state = StateGuard::write(plan, variant)?;
        eprintln!(
            "{} (local) is up in {:.1}s: dns {}, {}; Ctrl-C stops it",
            plan.name,
            start.elapsed().as_secs_f64(),
            plan.dns.addr(),
            plan.servers
                .iter()
                .map(|s| format!("{} {}", s.hostname, s.ip))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let failed = tokio::select! {
            _ = shutdown => None,
            Some(done) = nodes.join_next() => Some(done),
        };
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while nodes.join_next().await.is_some() {}
        })
        .await;
        nodes.abort_all();
        match failed {
            None => {
                eprintln!("{} (local) stopped", plan.name);
                Ok(())
            }
            Some(done) => Err(node_ended(done)),
        }
    }
}

/// Why a node task ended before it was told to stop.
fn node_ended(done: Result<Result<(), String>, tokio::task::JoinError>) -> RuntimeError {
    RuntimeError::NotReady(match done {
        Ok(Err(e)) => e,
        Ok(Ok(())) => "a server stopped".into(),
        Err(e) => format!("a server crashed: {e}"),
    })
}

/// Loads both mail servers' configs, then starts DNS and the mail servers as
/// tasks that stop when `stop` turns true.
fn start_nodes(
    plan: &Plan,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Nodes, RuntimeError> {
    let mut configs = Vec::new();
    for s in &plan.servers {
        let path = plan.dir.join(layout::server_config(&s.domain));
        let config = mailserver::config::Config::load(&path)
            .map_err(|e| RuntimeError::Environment(format!("{}: {e}", path.display())))?;
        configs.push((s.hostname.clone(), config));
    }
    let query_log = plan.dir.join(layout::LOCAL_DNS_QUERY_LOG);
    if let Some(dir) = query_log.parent() {
        std::fs::create_dir_all(dir)
            .map_err(RuntimeError::io(format!("cannot create {}", dir.display())))?;
    }
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut nodes = Nodes::new();
    let dns_options = labdns::Options {
        zones_dir: plan.dir.join(layout::DNS_DIR),
        listen: vec![plan.dns.addr()],
        query_log: Some(query_log),
    };
    let rx = stop.clone();
    nodes.spawn(async move {
        labdns::run(dns_options, stopped(rx))
            .await
            .map_err(|e| format!("dns: {e}"))
    });
    for (name, config) in configs {
        let rx = stop.clone();
        nodes.spawn(async move {
            mailserver::run(config, stopped(rx))
                .await
                .map_err(|e| format!("{name}: {e}"))
        });
    }
    Ok(nodes)
}

/// Waits until every service answers; fails when a node ends first or the
/// timeout passes.
async fn wait_ready(
    plan: &Plan,
    options: &UpOptions,
    nodes: &mut Nodes,
) -> Result<(), RuntimeError> {
    let mut probes = vec![Probe::dns(plan, "dns")];
    for s in &plan.servers {
        probes.extend(Probe::mail(s, &s.hostname));
    }
    let deadline = Instant::now() + options.timeout;
    let outcome = tokio::select! {
        r = ready::wait_all(&probes, deadline, || async { Ok::<(), RuntimeError>(()) }, |_, _| {}) => r?,
        Some(done) = nodes.join_next() => return Err(node_ended(done)),
    };
    outcome.map_err(|left| {
        RuntimeError::NotReady(format!(
            "not answering after {} s: {}",
            options.timeout.as_secs(),
            ready::describe(&left)
        ))
    })
}

impl Runtime for Local {
    /// Runs in the foreground until Ctrl-C or SIGTERM.
    async fn up(
        &self,
        plan: &Plan,
        _files_hash: &str,
        options: &UpOptions,
    ) -> Result<(), RuntimeError> {
        self.run(plan, options, crate::process::shutdown_signal())
            .await
    }

    async fn labs(&self, variant: Option<u32>) -> Result<Vec<RunningLab>, RuntimeError> {
        Ok(states(variant)
            .into_iter()
            .map(|s| RunningLab {
                variant: s.variant,
                runtime: RuntimeKind::Local,
                dir: s.dir.clone(),
                nodes: s
                    .servers
                    .iter()
                    .map(|name| Node {
                        name: name.clone(),
                        role: if name == "dns" { Role::Dns } else { Role::Mail },
                        domain: name.strip_prefix("mail.").map(str::to_string),
                        state: NodeState::Running,
                        id: s.pid.to_string(),
                    })
                    .collect(),
            })
            .collect())
    }

    async fn down(&self, variant: Option<u32>, purge: bool) -> Result<Removed, RuntimeError> {
        let mut removed = Removed::default();
        if purge {
            for s in states(variant) {
                purgeable(&s.dir, s.variant)?;
            }
        }
        for s in states(variant) {
            // SIGTERM: the process stops its servers and removes its state file.
            let status = std::process::Command::new("kill")
                .args(["-TERM", &s.pid.to_string()])
                .status()
                .map_err(RuntimeError::io("cannot run kill"))?;
            if !status.success() && alive(s.pid) {
                return Err(RuntimeError::Environment(format!(
                    "cannot stop the local lab{:02} (pid {})",
                    s.variant, s.pid
                )));
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while alive(s.pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = std::fs::remove_file(state_file(s.variant));
            removed.processes.push(format!(
                "lab{:02} (local runtime, pid {})",
                s.variant, s.pid
            ));
            if purge && remove_lab_dir(&s.dir, s.variant)? {
                removed.dirs.push(s.dir.clone());
            }
        }
        Ok(removed)
    }
}
