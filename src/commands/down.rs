//! `labctl down [--variant N | --all] [--purge]`: remove labs, found by
//! labels (Docker) and state files (local). Idempotent: nothing to remove
//! is success.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::exit;
use crate::runtime::labdir::{purgeable, remove_lab_dir};
use crate::runtime::{self, LabRuntime, Removed, discover, lock};

/// Runs `labctl down`.
pub async fn run(variant: Option<u32>, all: bool, purge: bool) -> anyhow::Result<ExitCode> {
    async {
        let (runtimes, unreachable) = runtime::available().await;
        if let Some(e) = unreachable {
            // Without Docker only local labs can be removed; say why if there are none.
            if all || LabRuntime::Local.labs(variant).await?.is_empty() {
                return Err(e.into());
            }
            eprintln!("warning: {e}");
        }
        let variants: BTreeSet<u32> = match (variant, all) {
            (Some(v), _) => BTreeSet::from([v]),
            (None, true) => {
                let mut set = BTreeSet::new();
                for runtime in &runtimes {
                    set.extend(runtime.lab_numbers().await?);
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
                for runtime in &runtimes {
                    for dir in runtime.lab_dirs(*v).await? {
                        purgeable(&dir, *v)?;
                    }
                }
            }
        }
        let mut removed = Removed::default();
        for v in &variants {
            let _lock = lock::lock(*v)?;
            for runtime in &runtimes {
                removed.extend(runtime.down(Some(*v), purge).await?);
            }
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
    }.await
}
