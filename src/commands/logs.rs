//! `labctl logs [--variant N] [SERVER] [--follow]`: the servers' logs
//! (container logs; JSON lines from the servers).

use std::process::ExitCode;

use crate::exit;
use crate::runtime::{LabRuntime, NodeRef, NodeRole, Role, RunningLab, RuntimeError, discover};

/// The one lab a command means: `--variant N`, or the only lab up.
pub async fn one_lab(variant: Option<u32>) -> anyhow::Result<RunningLab> {
    let mut labs = discover(variant).await?;
    match (labs.len(), variant) {
        (1, _) => Ok(labs.remove(0)),
        (0, Some(v)) => Err(exit::check_failed(format!(
            "lab{v:02} is not up (start it with `labctl up --variant {v}`)"
        ))),
        (0, None) => Err(exit::check_failed(
            "no lab is up (start one with `labctl up --variant N`)",
        )),
        _ => Err(exit::usage(format!(
            "several labs are up ({}); say which with --variant N",
            labs.iter()
                .map(|l| l.variant.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Runs `labctl logs`.
pub async fn run(
    variant: Option<u32>,
    server: Option<&str>,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    async {
        let lab = one_lab(variant).await?;
        let nodes: Vec<_> = lab
            .nodes
            .iter()
            .filter(|n| match server {
                None => true,
                Some(s) => {
                    n.name == s
                        || (s == "dns" && n.role == Role::Dns)
                        || n.domain
                            .as_deref()
                            .is_some_and(|d| s == d || s == format!("mail.{d}"))
                }
            })
            .collect();
        if nodes.is_empty() {
            return Err(exit::usage(format!(
                "lab{:02} has no server {:?}; its servers: dns, {}",
                lab.variant,
                server.unwrap_or_default(),
                lab.nodes
                    .iter()
                    .filter_map(|n| n.domain.as_ref().map(|d| format!("mail.{d}")))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let runtime = LabRuntime::connect(lab.runtime).await?;
        let refs: Vec<NodeRef<'_>> = nodes
            .iter()
            .map(|n| NodeRef {
                lab_dir: &lab.dir,
                container: &n.name,
                role: match &n.domain {
                    Some(d) => NodeRole::Mail(d),
                    None => NodeRole::Dns,
                },
            })
            .collect();
        runtime
            .stream_logs(&refs, follow)
            .await
            .map_err(|e| match e {
                RuntimeError::NoLogs(why) => {
                    exit::usage(format!("lab{:02} runs locally: {why}", lab.variant))
                }
                e => e.into(),
            })?;
        Ok(ExitCode::SUCCESS)
    }
    .await
}
