//! Runtimes: they execute a [`Plan`] whose files are rendered (docs/architecture.md).
//!
//! * [`docker`]: containers on a bridge network through bollard.
//! * [`local`]: the same servers in one foreground process on loopback.
//!
//! Both implement the small [`Runtime`] trait; [`discover`] finds running
//! labs of either kind (Docker by labels, local by state files), so
//! `status`, `verify` and `down` work from any folder.

mod api;
pub mod docker;
pub mod labdir;
pub mod local;
pub mod lock;
mod nodes;
pub mod ready;

pub use api::{
    Node, NodeState, Removed, Role, RunningLab, Runtime, RuntimeError, UpOptions, current_uid,
    files_hash, hex, state_dir,
};
pub use labdir::ensure_lab_dir;
pub use nodes::{Arg, ExecOutput, LabRuntime, NodePath, NodeRef, NodeRole};

use std::path::PathBuf;

use crate::plan::Plan;

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
