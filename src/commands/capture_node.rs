//! `labctl capture-node` (hidden): inside a capture container, records the
//! node's packets to stdout until SIGTERM ([`crate::capture::node`]); run
//! in a mail node with `--key-log-on/--key-log-off FILE`, starts or stops
//! its server's TLS key log ([`mailserver::tls::CaptureKeyLog`]).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use mailserver::tls::CaptureKeyLog;

use crate::capture::node;
use crate::cli::CaptureNodeArgs;

/// Runs capture-node.
pub async fn run(args: &CaptureNodeArgs) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.key_log_on {
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // Only its owner (the server's user) reads the secrets.
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(file)
            .with_context(|| format!("cannot create {}", file.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(file) = &args.key_log_off {
        CaptureKeyLog::at(file.clone())
            .remove()
            .with_context(|| format!("cannot remove {}", file.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let socket = node::open().map_err(|e| crate::exit::environment(e.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let capture = tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
        node::run(&socket, &mut out, &flag)
    });
    tokio::pin!(capture);
    tokio::select! {
        r = &mut capture => { r.context("capture thread")??; }
        _ = crate::process::shutdown_signal() => {
            stop.store(true, Ordering::Relaxed);
            capture.await.context("capture thread")??;
        }
    }
    Ok(ExitCode::SUCCESS)
}
