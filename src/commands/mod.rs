//! One module per command; `run` dispatches.

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

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    crate::runtime::instance::check().map_err(crate::exit::usage)?;
    let catalog = || Catalog::load(cli.variants_dir.as_deref());
    match cli.command {
        Command::Variants { json } => variants::run(&catalog()?, json),
        Command::Render(args) => render::run(&catalog()?, &args).map(|_| ExitCode::SUCCESS),
        Command::Up(args) => up::run(&catalog()?, &args),
        Command::Status { variant, json } => status::run(variant, json),
        Command::Down {
            variant,
            all,
            purge,
        } => down::run(variant, all, purge),
        Command::Logs {
            variant,
            server,
            follow,
        } => logs::run(variant, server.as_deref(), follow),
        Command::Verify {
            variant,
            json,
            junit,
            only,
            list,
            dir,
        } => verify::run(
            &catalog()?,
            &verify::Options {
                variant,
                dir: dir.as_deref(),
                json,
                junit: junit.as_deref(),
                only: &only,
                list,
            },
        ),
        Command::Trace {
            variant,
            message_id,
            dir,
        } => trace::run(variant, dir.as_deref(), message_id.as_deref()),
        Command::Send(args) => send::run(&args),
        Command::Inspect {
            address,
            last: _,
            uid,
            folder,
            variant,
            dir,
        } => inspect::run(&inspect::Options {
            address: &address,
            uid,
            folder: &folder,
            variant,
            dir: dir.as_deref(),
        }),
        Command::Dns(args) => dns::run(&args),
        Command::Spam(cmd) => spam::run(&cmd),
        Command::Doctor => doctor::run(&catalog()?),
        Command::Image => image::run(),
        Command::ServeDns(args) => serve_dns::run(&args),
        Command::ServeMail(args) => serve_mail::run(&args),
        Command::Inject(args) => inject::run(&args),
    }
}

/// Re-executes this process with the containers' glibc malloc tunables
/// ([`MALLOC_TUNABLES`](crate::runtime::docker::MALLOC_TUNABLES)) when
/// `GLIBC_TUNABLES` is not set (glibc reads it only at start), so mail
/// servers outside Docker (`up --runtime local`, `serve-mail` by hand) give
/// freed memory back the same way. Returns when the variable is set already
/// or the re-exec is not possible (then the process goes on as it is).
pub fn ensure_malloc_tunables() {
    use std::os::unix::process::CommandExt;
    let Some((key, value)) = crate::runtime::docker::MALLOC_TUNABLES.split_once('=') else {
        return;
    };
    if std::env::var_os(key).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(key, value)
        .exec();
    eprintln!(
        "note: cannot restart {} with {key} set ({error}); going on without",
        exe.display()
    );
}

/// Logging of the servers: JSON lines on stderr (what `docker logs` shows),
/// level from `RUST_LOG` (default `info`; hickory-server's own two lines per
/// DNS query only from `warn`, the DNS query log has them as JSON already).
pub fn init_server_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,hickory_server=warn".into());
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
