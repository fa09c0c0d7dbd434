//! `labctl verify`: every requirement of the assignment checked live
//! (see [`crate::verify`]). Exit 0 all passed, 1 a check failed, 2 it could
//! not run (no lab, unreadable CA).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::exit;
use crate::lab::Lab;
use crate::variant::Catalog;
use crate::verify::{self, Ctx, report};

/// Options of `verify`.
#[derive(Debug)]
pub struct Options<'a> {
    /// The lab's variant.
    pub variant: Option<u32>,
    /// The lab directory.
    pub dir: Option<&'a Path>,
    /// Print JSON.
    pub json: bool,
    /// Write JUnit XML here.
    pub junit: Option<&'a Path>,
    /// Only these ids.
    pub only: &'a [String],
    /// Only list the checks.
    pub list: bool,
}

/// Runs verify.
pub async fn run(catalog: &Catalog, o: &Options<'_>) -> anyhow::Result<ExitCode> {
    let only = verify::parse_only(o.only).map_err(exit::usage)?;
    if o.list {
        print!("{}", report::list(&verify::groups(), &only));
        return Ok(ExitCode::SUCCESS);
    }
    let lab = Lab::find(o.variant, o.dir)
        .await
        .map_err(|e| exit::usage(e.to_string()))?;
    let variant = catalog
        .get(lab.variant)
        .with_context(|| {
            format!(
                "the lab in {} is of variant {}",
                lab.dir.display(),
                lab.variant
            )
        })?
        .clone();
    let report = async {
        let ctx = Ctx::new(lab, variant).map_err(|e| exit::usage(format!("cannot verify: {e}")))?;
        anyhow::Ok(verify::run(&ctx, &only).await)
    }
    .await?;
    if let Some(path) = o.junit {
        std::fs::write(path, report::junit(&report))
            .with_context(|| format!("cannot write the JUnit report {}", path.display()))?;
    }
    if o.json {
        print!("{}", report::json(&report));
    } else {
        print!("{}", report::table(&report));
    }
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::Kind::CheckFailed as u8)
    })
}
