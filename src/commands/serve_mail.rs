//! `labctl serve-mail --config FILE`: the mail containers' entrypoint.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::ServeMailArgs;

/// Runs one mail server until SIGTERM or Ctrl-C.
pub fn run(args: &ServeMailArgs) -> anyhow::Result<ExitCode> {
    crate::commands::init_server_logging();
    let config = mailserver::config::Config::load(&args.config)
        .map_err(|e| crate::exit::usage(e.to_string()))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        mailserver::run(config, crate::commands::shutdown_signal())
            .await
            .map_err(|e| match e {
                mailserver::Error::Bind { .. } => crate::exit::environment(e.to_string()),
                other => anyhow::Error::new(other)
                    .context(format!("serve-mail {}", args.config.display())),
            })
    })?;
    Ok(ExitCode::SUCCESS)
}
