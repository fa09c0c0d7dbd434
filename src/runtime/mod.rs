//! Runtimes: they execute a [`Plan`] whose files are rendered (docs/architecture.md).
//!
//! * [`docker`]: containers on a bridge network through bollard.
//! * [`local`]: the same servers in one foreground process on loopback.
//!
//! Both implement the small [`Runtime`] trait; [`discover`] finds running
//! labs of either kind (Docker by labels, local by state files), so
//! `status`, `verify` and `down` work from any folder.

pub mod docker;
pub mod local;
pub mod lock;
mod nodes;
pub mod ready;

pub use nodes::{Arg, ExecOutput, LabRuntime, NodePath, NodeRef, NodeRole};

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

/// Fails unless `dir` is a lab directory made by labctl (its marker, see
/// [`crate::render::claim`]): nothing is chowned or deleted elsewhere.
pub fn ensure_lab_dir(dir: &Path) -> Result<(), RuntimeError> {
    use crate::render::claim::{Ownership, ownership, refusal};
    match ownership(dir) {
        Ownership::Ours => Ok(()),
        _ => Err(RuntimeError::NotALabDir(refusal(dir))),
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
    /// `dns` or `mail`.
    pub role: String,
    /// The mail domain (mail nodes).
    pub domain: Option<String>,
    /// `running`, `exited`, `restarting`...
    pub state: String,
    /// Container id (docker) or process id (local).
    pub id: String,
}

impl RunningLab {
    /// True when every node runs.
    pub fn is_running(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.iter().all(|n| n.state == "running")
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

/// How [`LabRuntime::up`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The lab runs on in the background (Docker containers).
    Detached,
    /// The lab ran in this process until Ctrl-C or SIGTERM (local runtime).
    Foreground,
}

impl LabRuntime {
    /// Brings the rendered lab of `plan` up. `lock` (the lab's lock, taken
    /// before rendering) is held until the lab answers on Docker, and
    /// released before a local lab starts serving in the foreground.
    pub async fn up(
        &self,
        plan: &Plan,
        rendered: &[PathBuf],
        options: &UpOptions,
        lock: lock::LabLock,
    ) -> Result<Served, RuntimeError> {
        match self {
            Self::Docker(docker) => {
                let hash = files_hash(&plan.dir, rendered)?;
                docker.up(plan, &hash, options).await?;
                drop(lock);
                Ok(Served::Detached)
            }
            Self::Local => {
                drop(lock);
                crate::process::ensure_malloc_tunables();
                local::Local.up(plan, "", options).await?;
                Ok(Served::Foreground)
            }
        }
    }

    /// Labs of this runtime, optionally only `variant`.
    pub async fn labs(&self, variant: Option<u32>) -> Result<Vec<RunningLab>, RuntimeError> {
        match self {
            Self::Docker(docker) => docker.labs(variant).await,
            Self::Local => local::Local.labs(variant).await,
        }
    }

    /// Removes lab `variant` (every lab with `None`); with `purge`, its data too.
    pub async fn down(&self, variant: Option<u32>, purge: bool) -> Result<Removed, RuntimeError> {
        match self {
            Self::Docker(docker) => docker.down(variant, purge).await,
            Self::Local => local::Local.down(variant, purge).await,
        }
    }

    /// The lab directories recorded for lab `variant` (what `down --purge`
    /// would delete).
    pub async fn lab_dirs(&self, variant: u32) -> Result<Vec<PathBuf>, RuntimeError> {
        match self {
            Self::Docker(docker) => Ok(docker
                .recorded_dirs(Some(variant))
                .await?
                .into_values()
                .collect()),
            Self::Local => Ok(self
                .labs(Some(variant))
                .await?
                .into_iter()
                .map(|l| l.dir)
                .collect()),
        }
    }

    /// The variants that have anything of a lab here (for `down --all`).
    pub async fn lab_numbers(&self) -> Result<Vec<u32>, RuntimeError> {
        match self {
            Self::Docker(docker) => docker.lab_numbers().await,
            Self::Local => Ok(self.labs(None).await?.iter().map(|l| l.variant).collect()),
        }
    }
}

/// Every runtime of this machine: the local one, and Docker when its
/// engine answers (else the error that says why not).
pub async fn available() -> (Vec<LabRuntime>, Option<RuntimeError>) {
    match docker::Docker::connect().await {
        Ok(d) => (vec![LabRuntime::Local, LabRuntime::Docker(d)], None),
        Err(e) => (vec![LabRuntime::Local], Some(e)),
    }
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

/// Every lab found: Docker ones (by labels) and local ones (by state files).
///
/// An unreachable Docker engine is an error only when no local lab matches:
/// a machine without Docker still sees its local labs.
pub async fn discover(variant: Option<u32>) -> Result<Vec<RunningLab>, RuntimeError> {
    let (runtimes, unreachable) = available().await;
    let mut labs = Vec::new();
    for runtime in &runtimes {
        labs.extend(runtime.labs(variant).await?);
    }
    if let Some(e) = unreachable
        && labs.is_empty()
    {
        return Err(e);
    }
    labs.sort_by_key(|l| l.variant);
    Ok(labs)
}
