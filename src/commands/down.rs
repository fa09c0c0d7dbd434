//! `labctl down [--variant N | --all] [--purge]`: remove labs, found by
//! labels (Docker) and state files (local). Idempotent: nothing to remove
//! is success.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::exit;
use crate::runtime::docker::Docker;
use crate::runtime::local::{Local, purgeable, remove_lab_dir};
use crate::runtime::{Removed, Runtime, discover, lock};

/// Runs `labctl down`.
pub fn run(variant: Option<u32>, all: bool, purge: bool) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let local_labs = Local.labs(variant).await?;
        let docker = match Docker::connect().await {
            Ok(d) => Some(d),
            // Without Docker only local labs can be removed; say why if there are none.
            Err(e) if local_labs.is_empty() || all => return Err(e.into()),
            Err(e) => {
                eprintln!("warning: {e}");
                None
            }
        };
        let variants: BTreeSet<u32> = match (variant, all) {
            (Some(v), _) => BTreeSet::from([v]),
            (None, true) => {
                let mut set: BTreeSet<u32> = local_labs.iter().map(|l| l.variant).collect();
                if let Some(d) = &docker {
                    set.extend(d.lab_numbers().await?);
                }
                set
            }
            (None, false) => {
                let labs = discover(None).await?;
                let set: BTreeSet<u32> = labs.iter().map(|l| l.variant).collect();
                if set.len() > 1 {
                    return Err(exit::usage(format!(
                        "several labs are up ({}); say which: `labctl down --variant N`, or `labctl down --all`",
                        set.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                    )));
                }
                set
            }
        };
        if purge {
            // Issue 13: every folder --purge would delete is checked before
            // anything (container, process, volume, folder) is removed.
            for v in &variants {
                let mut dirs: Vec<PathBuf> = Local
                    .labs(Some(*v))
                    .await?
                    .into_iter()
                    .map(|l| l.dir)
                    .collect();
                if let Some(d) = &docker {
                    dirs.extend(d.recorded_dirs(Some(*v)).await?.into_values());
                }
                for dir in dirs {
                    purgeable(&dir, *v)?;
                }
            }
        }
        let mut removed = Removed::default();
        for v in &variants {
            let _lock = lock::lock(*v)?;
            if let Some(d) = &docker {
                removed.extend(d.down(Some(*v), purge).await?);
            }
            removed.extend(Local.down(Some(*v), purge).await?);
            if purge && variant.is_some() {
                // The default lab directory of this folder, if no label recorded it.
                // A guess, not a recorded folder: one that labctl did not make is kept, said once.
                let dir = std::path::absolute(PathBuf::from(format!("lab-{v:02}")))?;
                match remove_lab_dir(&dir, *v) {
                    Ok(true) => removed.dirs.push(dir),
                    Ok(false) => {}
                    Err(_) => eprintln!(
                        "note: kept {}: not a lab directory of labctl (no {} file)",
                        dir.display(),
                        crate::render::layout::MARKER
                    ),
                }
            }
        }
        if removed.is_empty() {
            println!("nothing to remove");
        }
        for name in &removed.processes {
            println!("stopped {name}");
        }
        for (what, list) in [
            ("container", &removed.containers),
            ("network", &removed.networks),
            ("volume", &removed.volumes),
        ] {
            for name in list {
                println!("removed {what} {name}");
            }
        }
        for dir in &removed.dirs {
            println!("removed lab directory {}", dir.display());
        }
        Ok(ExitCode::SUCCESS)
    })
}
