//! One module per command; `run` dispatches.

pub mod capture;
pub mod capture_node;
pub mod dns;
pub mod doctor;
pub mod down;
pub mod image;
pub mod inject;
pub mod inspect;
pub mod logs;
pub mod render;
pub mod send;
pub mod serve_dns;
pub mod serve_mail;
pub mod spam;
pub mod status;
pub mod trace;
pub mod up;
pub mod variants;
pub mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::variant::Catalog;

/// Runs one command, on the CLI's one async runtime ([`crate::process::block_on`] in `main`).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    crate::naming::instance::check().map_err(|e| crate::exit::usage(e.to_string()))?;
    let catalog = || Catalog::load(cli.variants_dir.as_deref());
    match cli.command {
        Command::Variants { json } => variants::run(&catalog()?, json),
        Command::Render(args) => render::run(&catalog()?, &args).map(|_| ExitCode::SUCCESS),
        Command::Up(args) => up::run(&catalog()?, &args).await,
        Command::Status { variant, json } => status::run(variant, json).await,
        Command::Down {
            variant,
            all,
            purge,
        } => down::run(variant, all, purge).await,
        Command::Logs {
            variant,
            server,
            follow,
        } => logs::run(variant, server.as_deref(), follow).await,
        Command::Verify {
            variant,
            json,
            junit,
            only,
            list,
            dir,
        } => {
            verify::run(
                &catalog()?,
                &verify::Options {
                    variant,
                    dir: dir.as_deref(),
                    json,
                    junit: junit.as_deref(),
                    only: &only,
                    list,
                },
            )
            .await
        }
        Command::Trace {
            variant,
            message_id,
            dir,
        } => trace::run(variant, dir.as_deref(), message_id.as_deref()).await,
        Command::Send(args) => send::run(&args).await,
        Command::Inspect {
            address,
            last: _,
            uid,
            folder,
            variant,
            dir,
        } => {
            inspect::run(&inspect::Options {
                address: &address,
                uid,
                folder: &folder,
                variant,
                dir: dir.as_deref(),
            })
            .await
        }
        Command::Dns(args) => dns::run(&args).await,
        Command::Capture(args) => capture::run(&catalog()?, &args).await,
        Command::CaptureNode(args) => capture_node::run(&args).await,
        Command::Spam(cmd) => spam::run(&cmd).await,
        Command::Doctor => doctor::run(&catalog()?).await,
        Command::Image => image::run().await,
        Command::ServeDns(args) => serve_dns::run(&args).await,
        Command::ServeMail(args) => serve_mail::run(&args).await,
        Command::Inject(args) => inject::run(&args).await,
    }
}
