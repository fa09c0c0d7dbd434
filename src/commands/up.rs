//! `labctl up`: render the lab, then bring it up with its runtime (Docker:
//! converging, in the background; local: in the foreground).

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::UpArgs;
use crate::commands::render::plan_and_render;
use crate::runtime::{LabRuntime, Served, UpOptions, lock};
use crate::variant::Catalog;

/// Runs `labctl up`.
pub async fn run(catalog: &Catalog, args: &UpArgs) -> anyhow::Result<ExitCode> {
    catalog.get(args.render.variant)?;
    let options = UpOptions {
        recreate: args.recreate,
        keep_on_failure: args.keep_on_failure,
        timeout: Duration::from_secs(args.timeout),
    };
    let runtime = LabRuntime::connect(args.render.runtime).await?;
    let lock = lock::lock(args.render.variant)?;
    let (plan, rendered) = plan_and_render(catalog, &args.render)?;
    if runtime.up(&plan, &rendered.files, &options, lock).await? == Served::Detached {
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
    }
    Ok(ExitCode::SUCCESS)
}
