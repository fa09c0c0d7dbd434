//! `labctl serve-dns --zones DIR --listen ADDR:PORT [--listen ...] [--query-log FILE]`:
//! the DNS container's entrypoint (and the local runtime's DNS, in-process).

use std::process::ExitCode;

use crate::cli::ServeDnsArgs;

/// Runs the lab DNS server until SIGTERM or Ctrl-C; SIGHUP reloads the zones.
pub async fn run(args: &ServeDnsArgs) -> anyhow::Result<ExitCode> {
    crate::process::init_server_logging();
    let options = labdns::Options {
        zones_dir: args.zones.clone(),
        listen: args.listen.clone(),
        query_log: args.query_log.clone(),
    };
    async {
        labdns::run(options, crate::process::shutdown_signal())
            .await
            .map_err(|e| match e {
                labdns::Error::Bind { .. } | labdns::Error::QueryLog { .. } => {
                    crate::exit::environment(e.to_string())
                }
                labdns::Error::Zone { .. }
                | labdns::Error::ZoneDir { .. }
                | labdns::Error::NoZones { .. }
                | labdns::Error::NoListen => crate::exit::usage(e.to_string()),
                other => anyhow::Error::new(other).context("serve-dns"),
            })
    }
    .await?;
    Ok(ExitCode::SUCCESS)
}
