//! One module per command; `run` dispatches.

pub mod render;
pub mod serve_mail;
pub mod spam;
pub mod variants;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::exit;
use crate::variant::Catalog;

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let catalog = || Catalog::load(cli.variants_dir.as_deref());
    match cli.command {
        Command::Variants { json } => variants::run(&catalog()?, json),
        Command::Render(args) => render::run(&catalog()?, &args).map(|_| ExitCode::SUCCESS),
        Command::Up(_) => Err(exit::not_implemented("up")),
        Command::Status { .. } => Err(exit::not_implemented("status")),
        Command::Verify { .. } => Err(exit::not_implemented("verify")),
        Command::Down { .. } => Err(exit::not_implemented("down")),
        Command::Logs { .. } => Err(exit::not_implemented("logs")),
        Command::Trace { .. } => Err(exit::not_implemented("trace")),
        Command::Send(_) => Err(exit::not_implemented("send")),
        Command::Inspect { .. } => Err(exit::not_implemented("inspect")),
        Command::Dns(_) => Err(exit::not_implemented("dns")),
        Command::Spam(cmd) => spam::run(&cmd),
        Command::Doctor => Err(exit::not_implemented("doctor")),
        Command::ServeDns(_) => Err(exit::not_implemented("serve-dns")),
        Command::ServeMail(args) => serve_mail::run(&args),
    }
}

/// Logging of the servers: JSON lines on stderr (what `docker logs` shows),
/// level from `RUST_LOG` (default `info`).
pub fn init_server_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Completes on SIGTERM (docker stop) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
