//! `labctl serve-mail --config FILE`: the mail containers' entrypoint.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use mailserver::config::{Config, PrecompiledRules, ScannerEngine};
use mailserver::filter::malware::yara::YaraEngine;

use crate::cli::ServeMailArgs;

/// Runs one mail server until SIGTERM or Ctrl-C.
pub async fn run(args: &ServeMailArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(&args.config).map_err(|e| crate::exit::usage(e.to_string()))?;
    if args.compile_scanner_rules {
        let rules = YaraEngine::compile_serialized(config.scanner.rules_dir.as_deref())
            .map_err(|e| crate::exit::usage(format!("malware scanner: {e}")))?;
        std::io::stdout()
            .lock()
            .write_all(&rules)
            .context("cannot write the compiled rules")?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::process::ensure_malloc_tunables();
    crate::process::init_server_logging();
    if config.scanner.engine == ScannerEngine::Builtin {
        config.scanner.precompiled = compile_in_child(&args.config)?;
    }
    async {
        mailserver::run(config, crate::process::shutdown_signal())
            .await
            .map_err(|e| match e {
                mailserver::Error::Bind { .. } => crate::exit::environment(e.to_string()),
                other => anyhow::Error::new(other)
                    .context(format!("serve-mail {}", args.config.display())),
            })
    }
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Compiles the scanner's rules in a child `serve-mail --compile-scanner-rules`,
/// so the yara-x compiler and Cranelift (about 9 MB of code run once) never
/// become resident in the server; the server loads the rules' native code.
/// A rule that does not compile is the child's error, shown as it is. When
/// the child cannot run at all, the server compiles the rules itself.
fn compile_in_child(config: &Path) -> anyhow::Result<Option<PrecompiledRules>> {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::warn!(error = %e, "cannot find the labctl binary; compiling the scanner rules in the server");
            return Ok(None);
        }
    };
    let output = match Command::new(&exe)
        .args(["serve-mail", "--compile-scanner-rules", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            tracing::warn!(error = %e, exe = %exe.display(), "cannot run the rule compiler; compiling the scanner rules in the server");
            return Ok(None);
        }
    };
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr);
        return Err(crate::exit::usage(
            why.trim().trim_start_matches("error: ").to_string(),
        ));
    }
    Ok(Some(PrecompiledRules(std::sync::Arc::new(output.stdout))))
}
