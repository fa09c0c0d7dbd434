//! What every runtime and its callers share: the [`Runtime`] operations,
//! what they return, and [`RuntimeError`]. A leaf of `runtime/`: it imports
//! nothing of the runtimes, which all import it (docs/architecture.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plan::{Plan, RuntimeKind};

/// Errors of the runtimes. Every one is an environment problem (exit 3)
/// except [`RuntimeError::NotReady`] (a server did not come up: exit 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The Docker engine cannot be reached.
    #[error(
        "cannot reach the Docker engine at {host}: {detail}\n  what to do: start Docker (`sudo systemctl start docker`), check DOCKER_HOST, \
         or run the lab without Docker: `labctl up --runtime local`"
    )]
    Unreachable {
        /// DOCKER_HOST or the default socket.
        host: String,
        /// The cause.
        detail: String,
    },
    /// A Docker API call failed.
    #[error("Docker: {action}: {source}")]
    Docker {
        /// What was being done.
        action: String,
        /// bollard's error.
        source: bollard::errors::Error,
    },
    /// The subnet is used by another network.
    #[error(
        "the subnet {subnet} overlaps the Docker network {network:?} ({its})\n  what to do: remove that network (`docker network rm {network}`) or choose another subnet: `labctl up --subnet 10.99.N.0/24`"
    )]
    SubnetTaken {
        /// Our subnet.
        subnet: String,
        /// The other network's name.
        network: String,
        /// Its subnet.
        its: String,
    },
    /// A network with our name exists but is not ours or has another subnet.
    #[error(
        "a Docker network named {name:?} already exists ({why})\n  what to do: remove it (`docker network rm {name}`) or `labctl down --variant N`"
    )]
    NameTaken {
        /// The name.
        name: String,
        /// Why it cannot be reused.
        why: String,
    },
    /// The running executable cannot become the container image.
    #[error(
        "{exe}: {why}, so it cannot be the lab image labctl:{version}\n  what to do: build the image with `make image` (a static build), or run `labctl up --runtime local`"
    )]
    NotStatic {
        /// The executable.
        exe: String,
        /// What is wrong.
        why: String,
        /// labctl's version.
        version: &'static str,
    },
    /// A server did not answer in time or stopped.
    #[error("{0}")]
    NotReady(String),
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime keeps no such log (the servers of a local lab log to
    /// the terminal that runs them).
    #[error("{0}")]
    NoLogs(String),
    /// Something else about the environment.
    #[error("{0}")]
    Environment(String),
    /// A folder that labctl did not create, where it would chown or delete (issue 13).
    #[error("{0}")]
    NotALabDir(String),
}

impl RuntimeError {
    /// An I/O error with context.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// A lab found running (or stopped, or half-created).
#[derive(Debug, Clone)]
pub struct RunningLab {
    /// Variant number.
    pub variant: u32,
    /// Its runtime.
    pub runtime: RuntimeKind,
    /// The lab directory recorded when it was started (may be gone).
    pub dir: PathBuf,
    /// Its nodes.
    pub nodes: Vec<Node>,
}

/// One node of a running lab (a container, or a server task of the local process).
#[derive(Debug, Clone)]
pub struct Node {
    /// Container name (docker) or server name (local).
    pub name: String,
    /// What the node is.
    pub role: Role,
    /// The mail domain (mail nodes).
    pub domain: Option<String>,
    /// Whether it runs.
    pub state: NodeState,
    /// Container id (docker) or process id (local).
    pub id: String,
}

impl RunningLab {
    /// True when every node runs.
    pub fn is_running(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.iter().all(|n| n.state == NodeState::Running)
    }
}

/// What a node of a lab is (the `io.labctl.role` label of its container).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The lab's DNS server.
    Dns,
    /// A mail server.
    Mail,
}

impl Role {
    /// `dns` or `mail`, as in the labels and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Mail => "mail",
        }
    }
}

/// The state of a node: Docker's container states; a server task of the
/// local runtime is `Running` while its process lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Restarting after a crash.
    Restarting,
    /// Being removed.
    Removing,
    /// Stopped.
    Exited,
    /// Failed to stop or to be removed.
    Dead,
    /// A state this labctl does not know.
    Unknown,
}

impl NodeState {
    /// From Docker's name of a container state.
    pub fn from_docker(state: &str) -> NodeState {
        match state {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => Self::Unknown,
        }
    }

    /// The name `status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
            Self::Unknown => "unknown",
        }
    }
}

/// Options of `up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Recreate containers even if nothing changed.
    pub recreate: bool,
    /// Keep what was created when `up` fails.
    pub keep_on_failure: bool,
    /// How long to wait until every service answers.
    pub timeout: Duration,
}

/// What `down` removed.
#[derive(Debug, Default)]
pub struct Removed {
    /// Containers removed.
    pub containers: Vec<String>,
    /// Local lab processes stopped.
    pub processes: Vec<String>,
    /// Networks removed.
    pub networks: Vec<String>,
    /// Volumes removed.
    pub volumes: Vec<String>,
    /// Lab directories removed.
    pub dirs: Vec<PathBuf>,
}

impl Removed {
    /// True when nothing was there.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.processes.is_empty()
            && self.networks.is_empty()
            && self.volumes.is_empty()
            && self.dirs.is_empty()
    }

    /// Adds `other`.
    pub fn extend(&mut self, other: Removed) {
        self.containers.extend(other.containers);
        self.processes.extend(other.processes);
        self.networks.extend(other.networks);
        self.volumes.extend(other.volumes);
        self.dirs.extend(other.dirs);
    }
}

/// What a runtime does with a lab (containerlab's `ContainerRuntime`, cut
/// down to what the plan needs). Used with concrete types only.
#[allow(async_fn_in_trait)] // never used as `dyn`, and the futures run on one runtime
pub trait Runtime {
    /// Brings the rendered lab of `plan` up (converging), returning when every service answers.
    async fn up(
        &self,
        plan: &Plan,
        files_hash: &str,
        options: &UpOptions,
    ) -> Result<(), RuntimeError>;
    /// Labs of this runtime, optionally only `variant`.
    async fn labs(&self, variant: Option<u32>) -> Result<Vec<RunningLab>, RuntimeError>;
    /// Removes lab `variant` (every lab with `None`); with `purge`, its data too.
    async fn down(&self, variant: Option<u32>, purge: bool) -> Result<Removed, RuntimeError>;
}

/// The per-user folder of lock and state files (`$XDG_RUNTIME_DIR/labctl` or `/tmp/labctl-<uid>`).
pub fn state_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("labctl"),
        _ => PathBuf::from(format!("/tmp/labctl-{}", current_uid())),
    }
}

/// The uid of this process (the owner of `/proc/self`).
pub fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// SHA-256 over the rendered files (sorted, path and content), hex.
pub fn files_hash(dir: &Path, files: &[PathBuf]) -> Result<String, RuntimeError> {
    use sha2::{Digest, Sha256};
    let mut files = files.to_vec();
    files.sort();
    files.dedup();
    let mut h = Sha256::new();
    for f in &files {
        let body = std::fs::read(dir.join(f)).map_err(RuntimeError::io(format!(
            "cannot read {}",
            dir.join(f).display()
        )))?;
        h.update(f.to_string_lossy().as_bytes());
        h.update([0]);
        h.update((body.len() as u64).to_be_bytes());
        h.update(&body);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
