//! What callers do with the nodes of a running lab, whatever runtime runs
//! it: read and write a node's files, read or stream its logs, and run a
//! labctl command inside it ("from the node": with its address and its view
//! of the lab's files). [`LabRuntime`] is the one type that knows which
//! runtime a lab is on; no code outside `src/runtime/` asks.
//!
//! | operation | Docker | local |
//! |---|---|---|
//! | a node's files | the engine's archive endpoint | `<lab>/data/<node>/` |
//! | a node's log | the container's output | the DNS query log file; the mail servers log to the terminal of `up` |
//! | a labctl command in a node | `docker exec` of the image's binary | this executable as a child process, on the host |

use std::path::{Path, PathBuf};

use crate::plan::RuntimeKind;
use crate::render::{CONTAINER_DATA_DIR, CONTAINER_LAB_DIR, layout};

use super::api::RuntimeError;
use super::docker::{BINARY, Docker};

/// The runtime of one lab, connected.
#[derive(Clone)]
pub enum LabRuntime {
    /// Containers on a Docker engine.
    Docker(Docker),
    /// Servers of a `labctl up --runtime local` process on loopback.
    Local,
}

/// A node of a lab, as the runtimes address it.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'a> {
    /// The lab directory (where the local runtime keeps the node's data).
    pub lab_dir: &'a Path,
    /// The container's name (Docker).
    pub container: &'a str,
    /// What the node is.
    pub role: NodeRole<'a>,
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole<'a> {
    /// The lab's DNS server.
    Dns,
    /// The mail server of a domain.
    Mail(&'a str),
}

/// A path as a node sees it.
#[derive(Debug, Clone, Copy)]
pub enum NodePath<'a> {
    /// Under the node's own data folder (transcripts, Maildirs, queue...).
    Data(&'a str),
    /// A file of the rendered lab directory that the node reads (its
    /// config, the CA certificate...).
    Lab(&'a str),
}

/// An argument of a labctl command run in a node: text, or a path that
/// each runtime turns into the node's view of it.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    /// Passed as it is.
    Text(String),
    /// Turned into the path of this file in the node.
    Path(NodePath<'a>),
}

impl From<&str> for Arg<'_> {
    fn from(s: &str) -> Self {
        Self::Text(s.to_string())
    }
}

impl From<String> for Arg<'_> {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

/// What a command run in a node printed, and how it ended.
#[derive(Debug)]
pub struct ExecOutput {
    /// Its exit code (-1 when the runtime could not tell).
    pub code: i64,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl NodeRef<'_> {
    /// The node's data folder on the host (local runtime).
    fn local_data(&self) -> PathBuf {
        match self.role {
            NodeRole::Dns => self.lab_dir.join(layout::LOCAL_DNS_DATA),
            NodeRole::Mail(domain) => self.lab_dir.join(layout::local_data(domain)),
        }
    }
}

impl LabRuntime {
    /// The runtime of `kind` (Docker: connects to the engine).
    pub async fn connect(kind: RuntimeKind) -> Result<Self, RuntimeError> {
        Ok(match kind {
            RuntimeKind::Docker => Self::Docker(Docker::connect().await?),
            RuntimeKind::Local => Self::Local,
        })
    }

    /// The host's own address in a lab of `subnet`, when clients must bind
    /// to it: in the local runtime clients bind to the gateway `.1`, so the
    /// servers see "the host" as a fixed address outside every SPF policy;
    /// on Docker the kernel uses the bridge's address, which is that `.1`.
    pub fn host_address(kind: RuntimeKind, subnet: &str) -> Option<std::net::IpAddr> {
        match kind {
            RuntimeKind::Docker => None,
            RuntimeKind::Local => {
                let base = subnet
                    .split('/')
                    .next()?
                    .parse::<std::net::Ipv4Addr>()
                    .ok()?;
                let [a, b, c, _] = base.octets();
                Some(std::net::Ipv4Addr::new(a, b, c, 1).into())
            }
        }
    }

    /// `path` as `node` sees it.
    fn node_path(&self, node: &NodeRef<'_>, path: NodePath<'_>) -> PathBuf {
        match (self, path) {
            (Self::Docker(_), NodePath::Data(rel)) => Path::new(CONTAINER_DATA_DIR).join(rel),
            (Self::Docker(_), NodePath::Lab(rel)) => Path::new(CONTAINER_LAB_DIR).join(rel),
            (Self::Local, NodePath::Data(rel)) => node.local_data().join(rel),
            (Self::Local, NodePath::Lab(rel)) => node.lab_dir.join(rel),
        }
    }

    /// The regular files under `dir` of `node`, with their paths relative
    /// to `dir`, sorted by path.
    pub async fn read_files(
        &self,
        node: &NodeRef<'_>,
        dir: NodePath<'_>,
    ) -> Result<Vec<(PathBuf, Vec<u8>)>, RuntimeError> {
        let path = self.node_path(node, dir);
        match self {
            Self::Docker(docker) => {
                docker
                    .read_files(node.container, &path.to_string_lossy())
                    .await
            }
            Self::Local => read_local_files(&path),
        }
    }

    /// Writes `files` (path relative to `dir`, content) under `dir` of `node`.
    pub async fn write_files(
        &self,
        node: &NodeRef<'_>,
        dir: NodePath<'_>,
        files: &[(String, Vec<u8>)],
    ) -> Result<(), RuntimeError> {
        let path = self.node_path(node, dir);
        match self {
            Self::Docker(docker) => {
                docker
                    .write_files(node.container, &path.to_string_lossy(), files)
                    .await
            }
            Self::Local => {
                for (rel, body) in files {
                    let file = path.join(rel);
                    if let Some(parent) = file.parent() {
                        std::fs::create_dir_all(parent).map_err(RuntimeError::io(format!(
                            "cannot create {}",
                            parent.display()
                        )))?;
                    }
                    std::fs::write(&file, body)
                        .map_err(RuntimeError::io(format!("cannot write {}", file.display())))?;
                }
                Ok(())
            }
        }
    }

    /// Every line `node` logged so far: the container's output on Docker;
    /// locally the DNS node's query log (the mail servers of a local lab
    /// log to the terminal that runs it, so they have none here).
    pub async fn log_lines(&self, node: &NodeRef<'_>) -> Result<Vec<String>, RuntimeError> {
        match (self, node.role) {
            (Self::Docker(docker), _) => Ok(docker.log_lines(node.container, "all").await),
            (Self::Local, NodeRole::Dns) => {
                let path = node.lab_dir.join(layout::LOCAL_DNS_QUERY_LOG);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(text.lines().map(str::to_string).collect()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                    Err(e) => Err(RuntimeError::Io {
                        context: format!("cannot read {}", path.display()),
                        source: e,
                    }),
                }
            }
            (Self::Local, NodeRole::Mail(_)) => Err(RuntimeError::NoLogs(
                "the servers of a local lab log to the terminal that runs `labctl up --runtime local`"
                    .into(),
            )),
        }
    }

    /// Streams the logs of `nodes` to stdout, each line prefixed with its
    /// node's name when there are several.
    pub async fn stream_logs(
        &self,
        nodes: &[NodeRef<'_>],
        follow: bool,
    ) -> Result<(), RuntimeError> {
        let Self::Docker(docker) = self else {
            return Err(RuntimeError::NoLogs(
                "its servers log to the terminal that runs `labctl up --runtime local`".into(),
            ));
        };
        let prefixed = nodes.len() > 1;
        let streams = nodes.iter().map(|n| {
            let prefix = if prefixed {
                format!("{}| ", n.container)
            } else {
                String::new()
            };
            async move { docker.stream_logs(n.container, &prefix, follow).await }
        });
        for r in futures_util::future::join_all(streams).await {
            r?;
        }
        Ok(())
    }

    /// Runs `labctl ARGS` inside `node`: on Docker the image's binary
    /// through the engine's exec (from the container's address), locally
    /// this executable as a child process on the host.
    pub async fn exec_labctl(
        &self,
        node: &NodeRef<'_>,
        args: &[Arg<'_>],
    ) -> Result<ExecOutput, RuntimeError> {
        let args: Vec<String> = args
            .iter()
            .map(|a| match a {
                Arg::Text(t) => t.clone(),
                Arg::Path(p) => self.node_path(node, *p).to_string_lossy().into_owned(),
            })
            .collect();
        match self {
            Self::Docker(docker) => {
                let mut cmd = vec![BINARY.to_string()];
                cmd.extend(args);
                let (code, stdout, stderr) = docker.exec(node.container, &cmd).await?;
                Ok(ExecOutput {
                    code,
                    stdout,
                    stderr,
                })
            }
            Self::Local => {
                let exe = std::env::current_exe()
                    .map_err(RuntimeError::io("cannot find this executable"))?;
                let out = tokio::process::Command::new(&exe)
                    .args(&args)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output();
                let out = tokio::time::timeout(super::docker::API_TIMEOUT, out)
                    .await
                    .map_err(|_| {
                        RuntimeError::NotReady(format!(
                            "labctl {}: no end within {:?}",
                            args.first().map_or("", String::as_str),
                            super::docker::API_TIMEOUT
                        ))
                    })?
                    .map_err(RuntimeError::io(format!("cannot run {}", exe.display())))?;
                Ok(ExecOutput {
                    code: out.status.code().map_or(-1, i64::from),
                    stdout: out.stdout,
                    stderr: out.stderr,
                })
            }
        }
    }
}

/// The regular files under `dir` (recursively), relative paths, sorted.
fn read_local_files(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, RuntimeError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let entries = std::fs::read_dir(&here)
            .map_err(RuntimeError::io(format!("cannot read {}", here.display())))?;
        for entry in entries.filter_map(Result::ok) {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(name);
            } else if kind.is_file() {
                let body = std::fs::read(entry.path()).map_err(RuntimeError::io(format!(
                    "cannot read {}",
                    entry.path().display()
                )))?;
                out.push((name, body));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
