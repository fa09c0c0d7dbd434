//! `labctl up`: render the lab, then bring it up on Docker (converging) or
//! run it locally in the foreground.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::UpArgs;
use crate::commands::render::plan_and_render;
use crate::plan::RuntimeKind;
use crate::runtime::docker::Docker;
use crate::runtime::local::Local;
use crate::runtime::{Runtime, UpOptions, files_hash, lock};
use crate::variant::Catalog;

/// Runs `labctl up`.
pub async fn run(catalog: &Catalog, args: &UpArgs) -> anyhow::Result<ExitCode> {
    catalog.get(args.render.variant)?;
    let options = UpOptions {
        recreate: args.recreate,
        keep_on_failure: args.keep_on_failure,
        timeout: Duration::from_secs(args.timeout),
    };
    match args.render.runtime {
        RuntimeKind::Docker => async {
            let docker = Docker::connect().await?;
            let _lock = lock::lock(args.render.variant)?;
            let (plan, rendered) = plan_and_render(catalog, &args.render)?;
            let hash = files_hash(&plan.dir, &rendered.files)?;
            docker.up(&plan, &hash, &options).await?;
            println!(
                "{} is up (variant {}): dns {}, {}",
                plan.name,
                plan.variant.number,
                plan.dns.ip,
                plan.servers
                    .iter()
                    .map(|s| format!("{} {}", s.hostname, s.ip))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!(
                "  lab directory {} (passwords in credentials.txt)\n  next: labctl status --variant {n} | labctl verify --variant {n} | labctl down --variant {n}",
                plan.dir.display(),
                n = plan.variant.number
            );
            Ok(ExitCode::SUCCESS)
        }.await,
        RuntimeKind::Local => {
            crate::process::ensure_malloc_tunables();
            let (plan, _) = {
                let _lock = lock::lock(args.render.variant)?;
                plan_and_render(catalog, &args.render)?
            };
            Local.up(&plan, "", &options).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
