//! Process plumbing shared by the commands and the runtimes, below both:
//! the one async runtime of the CLI, signals, the servers' logging set-up
//! and their glibc malloc tunables.

use std::future::Future;
use std::sync::OnceLock;

/// The async runtime of this process: one for the whole CLI, built on
/// first use (a command that needs none never starts its threads).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| {
                // Only when the kernel refuses threads or an epoll instance:
                // nothing labctl does can go on then.
                eprintln!("error: cannot start the async runtime: {e}");
                std::process::exit(3)
            })
    })
}

/// Runs `future` to completion on the CLI's one async runtime. Commands call
/// it once at their top (never from inside another `block_on`).
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// glibc malloc settings of the servers (read by the static binary at start).
/// By default glibc raises its mmap threshold after the first large block is
/// freed, and then keeps freed large blocks (argon2's 19 MiB per password
/// check, message buffers) in per-thread arenas: a mail server grew from
/// 23 MiB to 240 MiB resident after one `verify` and was OOM-killed under
/// load. A fixed threshold gives every block above it back to the kernel on
/// free; two arenas bound the rest.
pub const MALLOC_TUNABLES: &str =
    "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=262144:glibc.malloc.arena_max=2";

/// Re-executes this process with the containers' glibc malloc tunables
/// ([`MALLOC_TUNABLES`]) when
/// `GLIBC_TUNABLES` is not set (glibc reads it only at start), so mail
/// servers outside Docker (`up --runtime local`, `serve-mail` by hand) give
/// freed memory back the same way. Returns when the variable is set already
/// or the re-exec is not possible (then the process goes on as it is).
pub fn ensure_malloc_tunables() {
    use std::os::unix::process::CommandExt;
    let Some((key, value)) = MALLOC_TUNABLES.split_once('=') else {
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
