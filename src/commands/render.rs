//! `labctl render`: write the lab directory.

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::RenderArgs;
use crate::plan::{Plan, PlanOptions};
use crate::render::{self, RenderOptions, Rendered};
use crate::variant::Catalog;

/// The lab directory for `args`: `--dir`, or `./lab-NN`; always absolute.
pub fn lab_dir(args: &RenderArgs) -> anyhow::Result<PathBuf> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("lab-{:02}", args.variant)));
    std::path::absolute(&dir)
        .with_context(|| format!("cannot resolve the lab directory {}", dir.display()))
}

/// Plans the lab of `args`.
pub fn plan(catalog: &Catalog, args: &RenderArgs) -> anyhow::Result<Plan> {
    let variant = catalog.get(args.variant)?;
    let options = PlanOptions {
        runtime: args.runtime,
        dir: lab_dir(args)?,
        subnet: args.subnet.clone(),
    };
    Ok(Plan::build(variant, &options)?)
}

/// Plans and renders; returns the plan and what was written.
pub fn plan_and_render(catalog: &Catalog, args: &RenderArgs) -> anyhow::Result<(Plan, Rendered)> {
    let plan = plan(catalog, args)?;
    let options = RenderOptions {
        fresh: args.fresh,
        templates: args.templates.clone(),
    };
    let rendered = render::render(&plan, &options)
        .with_context(|| format!("cannot render the lab directory {}", plan.dir.display()))?;
    Ok((plan, rendered))
}

/// Runs `labctl render`.
pub fn run(catalog: &Catalog, args: &RenderArgs) -> anyhow::Result<()> {
    let (plan, rendered) = plan_and_render(catalog, args)?;
    println!(
        "rendered {} (variant {}, {} runtime) into {}",
        plan.name,
        plan.variant.number,
        plan.runtime.as_str(),
        plan.dir.display()
    );
    for file in &rendered.files {
        println!("  {}", file.display());
    }
    Ok(())
}
