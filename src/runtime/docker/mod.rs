//! The Docker runtime (bollard): a bridge network `labNN`, the DNS
//! container and two mail containers with fixed addresses, one named volume
//! per mail server (README, "Network plan").
//!
//! Every object carries the labels of [`labels`](crate::naming::labels);
//! listing and teardown select by label only. Every call is bounded by
//! [`API_TIMEOUT`]; bollard always negotiates the API version, because the
//! engine may be older than bollard's default (Docker 20.10 speaks 1.41).

mod capture;
mod image;
mod network;
mod up;

pub use capture::{CaptureOutput, capture_container};

pub use image::{BINARY, check_static, elf_problem, reference as image_reference};
pub use network::Cidr;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::api::{Node, NodeState, Removed, Role, RunningLab, Runtime, RuntimeError, UpOptions};
use crate::naming::labels;
use crate::plan::{Plan, RuntimeKind};

/// The user the servers run as inside the containers (never root).
pub const CONTAINER_UID: u32 = 1000;
/// Its group.
pub const CONTAINER_GID: u32 = 1000;
/// Memory limit of each container: a mail server idles at ~25 MiB, holds a
/// message of up to the 25 MiB size limit several times over while it
/// verifies, scans and stores it, and needs 19 MiB per password check
/// (argon2id's default memory cost).
pub const MEMORY_LIMIT: i64 = 256 * 1024 * 1024;
/// Bound of every API call.
pub const API_TIMEOUT: Duration = Duration::from_secs(60);
/// The most [`Docker::read_files`] reads from one container folder.
pub const MAX_ARCHIVE: usize = 512 * 1024 * 1024;
/// The default engine address when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Docker {
    /// The bollard client (version negotiated).
    pub api: bollard::Docker,
    /// Where it is (`DOCKER_HOST` or the default socket).
    pub host: String,
}

/// True when the engine answered 404.
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Docker {
    /// Connects to `DOCKER_HOST` (or the default socket) and negotiates the API version.
    pub async fn connect() -> Result<Self, RuntimeError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let unreachable = |detail: String| RuntimeError::Unreachable {
            host: host.clone(),
            detail,
        };
        let api = bollard::Docker::connect_with_host(&host)
            .map_err(|e| unreachable(e.to_string()))?
            .with_timeout(API_TIMEOUT);
        let api = match tokio::time::timeout(Duration::from_secs(10), api.negotiate_version()).await
        {
            Ok(Ok(api)) => api,
            Ok(Err(e)) => return Err(unreachable(explain_connect_error(&host, &e))),
            Err(_) => return Err(unreachable("no answer within 10 s".into())),
        };
        Ok(Self { api, host })
    }

    /// Wraps a bollard error with what was being done.
    pub(crate) fn err(
        &self,
        action: impl Into<String>,
        source: bollard::errors::Error,
    ) -> RuntimeError {
        RuntimeError::Docker {
            action: action.into(),
            source,
        }
    }

    /// The engine's version and API version.
    pub async fn version(&self) -> Result<(String, String), RuntimeError> {
        let v = self
            .api
            .version()
            .await
            .map_err(|e| self.err("version", e))?;
        Ok((
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default(),
        ))
    }

    /// Containers of lab `variant` (every lab: `None`) of this instance,
    /// running or not.
    pub async fn containers(
        &self,
        variant: Option<u32>,
    ) -> Result<Vec<bollard::models::ContainerSummary>, RuntimeError> {
        let filters = HashMap::from([("label", labels::filters(variant))]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .api
            .list_containers(Some(options))
            .await
            .map_err(|e| self.err("list containers", e))?;
        Ok(list
            .into_iter()
            .filter(|c| c.labels.as_ref().and_then(labels::variant_of).is_some())
            .collect())
    }

    /// Every network (Docker's name filter matches substrings, so we filter ourselves).
    pub async fn networks(&self) -> Result<Vec<bollard::models::Network>, RuntimeError> {
        self.api
            .list_networks(Some(ListNetworksOptionsBuilder::default().build()))
            .await
            .map_err(|e| self.err("list networks", e))
    }

    /// Volumes of lab `variant` (every lab: `None`) of this instance.
    pub async fn volumes(
        &self,
        variant: Option<u32>,
    ) -> Result<Vec<bollard::models::Volume>, RuntimeError> {
        let filters = HashMap::from([("label", labels::filters(variant))]);
        let options = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let list = self
            .api
            .list_volumes(Some(options))
            .await
            .map_err(|e| self.err("list volumes", e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter(|v| labels::variant_of(&v.labels).is_some())
            .collect())
    }

    /// The last `tail` log lines of a container (`all` for every line).
    pub async fn log_lines(&self, container: &str, tail: &str) -> Vec<String> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(tail)
            .build();
        let mut out = Vec::new();
        let mut stream = self.api.logs(container, Some(options));
        while let Some(Ok(chunk)) = stream.next().await {
            out.extend(
                String::from_utf8_lossy(&chunk.into_bytes())
                    .lines()
                    .map(str::to_string),
            );
        }
        out
    }

    /// Streams the logs of `container` to stdout, prefixing each line.
    pub async fn stream_logs(
        &self,
        container: &str,
        prefix: &str,
        follow: bool,
    ) -> Result<(), RuntimeError> {
        use std::io::Write;
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .tail("all")
            .build();
        let mut stream = self.api.logs(container, Some(options));
        let mut partial = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(format!("logs of {container}"), e))?;
            partial.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "{prefix}{line}");
                let _ = out.flush();
            }
        }
        if !partial.is_empty() {
            println!("{prefix}{partial}");
        }
        Ok(())
    }

    /// Runs `cmd` inside the running `container` (as its user) and returns
    /// its exit code, stdout and stderr; bounded by [`API_TIMEOUT`].
    pub async fn exec(
        &self,
        container: &str,
        cmd: &[String],
    ) -> Result<(i64, Vec<u8>, Vec<u8>), RuntimeError> {
        use bollard::container::LogOutput;
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let what = || {
            format!(
                "exec {} in {container}",
                cmd.first().map_or("", String::as_str)
            )
        };
        let options = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        let exec = self
            .api
            .create_exec(container, options)
            .await
            .map_err(|e| self.err(what(), e))?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let run = async {
            if let StartExecResults::Attached { mut output, .. } = self
                .api
                .start_exec(&exec.id, None)
                .await
                .map_err(|e| self.err(what(), e))?
            {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(|e| self.err(what(), e))? {
                        LogOutput::StdOut { message } => stdout.extend_from_slice(&message),
                        LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                        _ => {}
                    }
                }
            }
            Ok::<(), RuntimeError>(())
        };
        tokio::time::timeout(API_TIMEOUT, run).await.map_err(|_| {
            RuntimeError::NotReady(format!("{}: no end within {API_TIMEOUT:?}", what()))
        })??;
        let code = self
            .api
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| self.err(what(), e))?
            .exit_code
            .unwrap_or(-1);
        Ok((code, stdout, stderr))
    }

    /// Writes `files` (path relative to `dir`, content) into `dir` of
    /// `container`, owned by the servers' user. `dir` must be on a volume
    /// (the containers' root file system is read-only).
    pub async fn write_files(
        &self,
        container: &str,
        dir: &str,
        files: &[(String, Vec<u8>)],
    ) -> Result<(), RuntimeError> {
        let bad = |e: std::io::Error| RuntimeError::Io {
            context: format!("packing files for {dir} of {container}"),
            source: e,
        };
        let mut tar = tar::Builder::new(Vec::new());
        let mut dirs = std::collections::BTreeSet::new();
        for (path, _) in files {
            let mut p = std::path::Path::new(path);
            while let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(parent.to_path_buf());
                p = parent;
            }
        }
        let header = |kind: tar::EntryType, mode: u32, size: u64| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(CONTAINER_UID.into());
            h.set_gid(CONTAINER_GID.into());
            h.set_size(size);
            h
        };
        for d in &dirs {
            let mut h = header(tar::EntryType::Directory, 0o750, 0);
            tar.append_data(&mut h, d, std::io::empty()).map_err(bad)?;
        }
        for (path, body) in files {
            let mut h = header(tar::EntryType::Regular, 0o640, body.len() as u64);
            tar.append_data(&mut h, path, body.as_slice())
                .map_err(bad)?;
        }
        let archive = tar.into_inner().map_err(bad)?;
        let options = UploadToContainerOptionsBuilder::default().path(dir).build();
        self.api
            .upload_to_container(container, Some(options), bollard::body_full(archive.into()))
            .await
            .map_err(|e| self.err(format!("write files into {dir} of {container}"), e))
    }

    /// The regular files under `dir` inside `container` (running or
    /// stopped), with their paths relative to `dir`, sorted by path: the
    /// engine's archive endpoint, so the (FROM scratch) image needs no tools.
    /// At most [`MAX_ARCHIVE`] bytes are read.
    pub async fn read_files(
        &self,
        container: &str,
        dir: &str,
    ) -> Result<Vec<(PathBuf, Vec<u8>)>, RuntimeError> {
        use std::io::Read;
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(dir)
            .build();
        let mut stream = self.api.download_from_container(container, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(format!("read {dir} of {container}"), e))?;
            if archive.len() + chunk.len() > MAX_ARCHIVE {
                return Err(RuntimeError::Environment(format!(
                    "{dir} of {container} is larger than {} MiB; remove old files with `labctl down --purge` and start again",
                    MAX_ARCHIVE >> 20
                )));
            }
            archive.extend_from_slice(&chunk);
        }
        let bad = |e: std::io::Error| RuntimeError::Io {
            context: format!("the archive of {dir} from {container}"),
            source: e,
        };
        let mut files = Vec::new();
        let mut tar = tar::Archive::new(archive.as_slice());
        for entry in tar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            // The archive's paths start with the folder's own name.
            let path = entry.path().map_err(bad)?.into_owned();
            let relative: PathBuf = path.components().skip(1).collect();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).map_err(bad)?;
            files.push((relative, body));
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    }

    /// Removes containers, then networks, then (with `purge`) volumes of
    /// lab `variant`, every one selected by label; NotFound counts as removed.
    async fn remove_lab_objects(
        &self,
        variant: Option<u32>,
        purge: bool,
    ) -> Result<Removed, RuntimeError> {
        let mut removed = Removed::default();
        for c in self.containers(variant).await? {
            let name = container_name(&c);
            let id = c.id.clone().unwrap_or_default();
            let options = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(false)
                .build();
            match self.api.remove_container(&id, Some(options)).await {
                Ok(()) => removed.containers.push(name),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(self.err(format!("remove container {name}"), e)),
            }
        }
        for n in self.networks().await? {
            let ours = n
                .labels
                .as_ref()
                .and_then(labels::variant_of)
                .is_some_and(|v| variant.is_none_or(|want| want == v));
            if !ours {
                continue;
            }
            let name = n.name.clone().unwrap_or_default();
            match self.api.remove_network(&name).await {
                Ok(()) => removed.networks.push(name),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(self.err(format!("remove network {name}"), e)),
            }
        }
        if purge {
            for v in self.volumes(variant).await? {
                let options = RemoveVolumeOptionsBuilder::default().force(true).build();
                match self.api.remove_volume(&v.name, Some(options)).await {
                    Ok(()) => removed.volumes.push(v.name.clone()),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(self.err(format!("remove volume {}", v.name), e)),
                }
            }
        }
        Ok(removed)
    }

    /// Every lab number that has a container, network or volume.
    pub async fn lab_numbers(&self) -> Result<Vec<u32>, RuntimeError> {
        Ok(self.recorded_dirs(None).await?.into_keys().collect())
    }

    /// Lab directories recorded in the labels of lab `variant`'s objects.
    pub(crate) async fn recorded_dirs(
        &self,
        variant: Option<u32>,
    ) -> Result<BTreeMap<u32, PathBuf>, RuntimeError> {
        let mut dirs = BTreeMap::new();
        let mut add = |l: Option<&HashMap<String, String>>| {
            if let Some(l) = l
                && let (Some(v), Some(d)) = (labels::variant_of(l), l.get(labels::DIR))
            {
                dirs.insert(v, PathBuf::from(d));
            }
        };
        for c in self.containers(variant).await? {
            add(c.labels.as_ref());
        }
        for v in self.volumes(variant).await? {
            add(Some(&v.labels));
        }
        for n in self.networks().await? {
            if n.labels
                .as_ref()
                .and_then(labels::variant_of)
                .is_some_and(|v| variant.is_none_or(|w| w == v))
            {
                add(n.labels.as_ref());
            }
        }
        Ok(dirs)
    }
}

/// A container's name without Docker's leading slash.
pub fn container_name(c: &bollard::models::ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

/// What to tell the user when the engine cannot be reached.
fn explain_connect_error(host: &str, e: &bollard::errors::Error) -> String {
    let text = e.to_string();
    if let Some(path) = host.strip_prefix("unix://") {
        match std::fs::metadata(path) {
            Err(_) => return format!("the socket {path} does not exist ({text})"),
            Ok(_) if text.contains("ermission denied") => {
                return format!(
                    "permission denied on {path}: add yourself to the docker group (`sudo usermod -aG docker $USER`, then log in again)"
                );
            }
            Ok(_) => {}
        }
    }
    text
}

impl Runtime for Docker {
    async fn up(
        &self,
        plan: &Plan,
        files_hash: &str,
        options: &UpOptions,
    ) -> Result<(), RuntimeError> {
        self.up_lab(plan, files_hash, options).await
    }

    async fn labs(&self, variant: Option<u32>) -> Result<Vec<RunningLab>, RuntimeError> {
        let mut labs: BTreeMap<u32, RunningLab> = BTreeMap::new();
        for c in self.containers(variant).await? {
            let l = c.labels.clone().unwrap_or_default();
            let Some(v) = labels::variant_of(&l) else {
                continue;
            };
            // A capture container is no node of the lab (`labctl capture`).
            if l.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_CAPTURE) {
                continue;
            }
            let lab = labs.entry(v).or_insert_with(|| RunningLab {
                variant: v,
                runtime: RuntimeKind::Docker,
                dir: l.get(labels::DIR).map(PathBuf::from).unwrap_or_default(),
                nodes: Vec::new(),
            });
            lab.nodes.push(Node {
                name: container_name(&c),
                role: match l.get(labels::ROLE).map(String::as_str) {
                    Some("dns") => Role::Dns,
                    _ => Role::Mail,
                },
                domain: l.get(labels::DOMAIN).cloned(),
                state: c
                    .state
                    .map_or(NodeState::Unknown, |s| NodeState::from_docker(s.as_ref())),
                id: c.id.clone().unwrap_or_default(),
            });
        }
        for lab in labs.values_mut() {
            lab.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(labs.into_values().collect())
    }

    async fn down(&self, variant: Option<u32>, purge: bool) -> Result<Removed, RuntimeError> {
        let dirs = if purge {
            self.recorded_dirs(variant).await?
        } else {
            BTreeMap::new()
        };
        // Issue 13: a folder that is not a lab directory stops `down --purge` before it removes anything.
        for (v, dir) in &dirs {
            crate::runtime::labdir::purgeable(dir, *v)?;
        }
        let mut removed = self.remove_lab_objects(variant, purge).await?;
        for (v, dir) in dirs {
            if crate::runtime::labdir::remove_lab_dir(&dir, v)? {
                removed.dirs.push(dir);
            }
        }
        Ok(removed)
    }
}
