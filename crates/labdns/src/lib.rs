//! labdns: the mail lab's own authoritative DNS server (docs/dns.md).
//!
//! It serves the BIND zone files that `labctl render` writes into
//! `<lab>/dns/` (one per mail domain, the reverse zone of the lab subnet and
//! an empty root zone) with hickory-server, over UDP and TCP (RFC 1035 §4.2,
//! RFC 7766). Answers are authoritative (AA, RFC 1035 §4.1.1); a name that
//! does not exist is NXDOMAIN and an empty answer NODATA, both with the
//! zone's SOA in the authority section (RFC 2308 §2). Because it is also
//! authoritative for the root, every name outside the lab is NXDOMAIN, never
//! REFUSED: the lab is a closed world, and DMARC's tree walk
//! (RFC 7489 §6.6.3) needs a clean NXDOMAIN. SIGHUP reloads the zone files
//! without dropping a query; a broken file on reload keeps the old zones.
//!
//! Non-features: recursion (RA is never set), zone transfers (AXFR is
//! refused), dynamic update, DNSSEC.
//!
//! The public interface is [`Options`], [`run`] and [`Error`].
#![forbid(unsafe_code)]

mod error;
pub mod fuzzing;
mod handler;
mod query_log;
mod zones;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

pub use error::Error;
pub use query_log::rcode_mnemonic;

use handler::LabHandler;
use query_log::QueryLog;

/// A TCP client that sends nothing for this long is disconnected (RFC 7766 §6.2.3).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Folder of `*.zone` files (`<lab>/dns`).
    pub zones_dir: PathBuf,
    /// Addresses to answer on, each over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// One JSON line per query goes here (`/dev/stdout` is stdout); `None` is off.
    pub query_log: Option<PathBuf>,
}

/// Loads the zones, binds every address (UDP and TCP) and answers queries
/// until `shutdown` completes. SIGHUP reloads the zone files.
///
/// Fails before answering anything when a zone file is broken (the error
/// names the file, the line and the reason) or an address cannot be bound
/// (the error names the address).
pub async fn run(options: Options, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
    if options.listen.is_empty() {
        return Err(Error::NoListen);
    }
    let zones = zones::load_dir(&options.zones_dir)?;
    let log = QueryLog::open(options.query_log.as_deref())?;

    let mut sockets = Vec::with_capacity(options.listen.len());
    for &addr in &options.listen {
        let udp = UdpSocket::bind(addr).await.map_err(|source| Error::Bind {
            addr,
            proto: "UDP",
            source,
        })?;
        // The same port over TCP (a UDP port 0 picks the port for both).
        let tcp_addr = udp.local_addr().unwrap_or(addr);
        let tcp = TcpListener::bind(tcp_addr)
            .await
            .map_err(|source| Error::Bind {
                addr: tcp_addr,
                proto: "TCP",
                source,
            })?;
        sockets.push((udp, tcp));
    }

    tracing::info!(
        dir = %options.zones_dir.display(),
        "serving {}",
        zones.summary()
    );
    let handler = Arc::new(LabHandler::new(zones.catalog, log));
    let mut server = Server::new(SharedHandler(Arc::clone(&handler)));
    for (udp, tcp) in sockets {
        let addr = udp.local_addr().map(|a| a.to_string()).unwrap_or_default();
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::info!("listening for DNS on {addr} (UDP and TCP)");
    }

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| Error::Serve(format!("cannot handle SIGHUP: {e}")))?;
    let reload_dir = options.zones_dir.clone();
    let reloader = Arc::clone(&handler);
    let reloads = async move {
        while hangup.recv().await.is_some() {
            reload(&reloader, &reload_dir);
        }
        std::future::pending::<()>().await;
    };

    tokio::select! {
        () = shutdown => {}
        () = reloads => {}
        result = server.block_until_done() => {
            return result.map_err(|e| Error::Serve(e.to_string()));
        }
    }
    tracing::info!("shutting down the DNS server");
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| Error::Serve(e.to_string()))
}

/// Loads the zone files again; on success the next query is answered from
/// them, on failure the old zones stay and the error is logged.
fn reload(handler: &LabHandler, dir: &std::path::Path) {
    match zones::load_dir(dir) {
        Ok(zones) => {
            tracing::info!("reloaded {}", zones.summary());
            handler.replace(zones.catalog);
        }
        Err(e) => tracing::error!("reload failed, keeping the previous zones: {e}"),
    }
}

/// The handler shared between the server and the reloader.
struct SharedHandler(Arc<LabHandler>);

#[async_trait::async_trait]
impl hickory_server::server::RequestHandler for SharedHandler {
    async fn handle_request<
        R: hickory_server::server::ResponseHandler,
        T: hickory_server::net::runtime::Time,
    >(
        &self,
        request: &hickory_server::server::Request,
        response_handle: R,
    ) -> hickory_server::server::ResponseInfo {
        self.0
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::TokioResolver;
    use hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
    };
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

    const ZONE: &str = "$ORIGIN lab.test.\n$TTL 300\n\
        @ IN SOA ns.lab.test. hostmaster.lab.test. ( 1 3600 600 86400 60 )\n\
        @ IN NS ns.lab.test.\n\
        @ IN MX 10 mail.lab.test.\n\
        mail IN A 10.0.0.11\n";

    fn resolver(server: SocketAddr) -> TokioResolver {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let config = ResolverConfig::from_parts(
            None,
            vec![],
            vec![NameServerConfig::new(server.ip(), true, vec![udp])],
        );
        let mut options = ResolverOpts::default();
        options.use_hosts_file = ResolveHosts::Never;
        TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .unwrap()
    }

    /// The local runtime's use: `run` in-process, answering until its shutdown future completes.
    #[tokio::test]
    async fn runs_in_process_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lab.test.zone"), ZONE).unwrap();
        let addr: SocketAddr = "127.86.0.53:10053".parse().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(
            Options {
                zones_dir: dir.path().to_path_buf(),
                listen: vec![addr],
                query_log: Some(dir.path().join("q.log")),
            },
            async {
                let _ = stopped.await;
            },
        ));
        let resolver = resolver(addr);
        let mut answer = None;
        for _ in 0..50 {
            if let Ok(a) = resolver.ipv4_lookup("mail.lab.test.").await {
                answer = Some(a);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ips: Vec<String> = answer
            .expect("no answer from the in-process server")
            .answers()
            .iter()
            .map(|r| r.data.to_string())
            .collect();
        assert_eq!(ips, ["10.0.0.11"]);

        // A second server on the same address fails, naming it.
        let err = run(
            Options {
                zones_dir: dir.path().to_path_buf(),
                listen: vec![addr],
                query_log: None,
            },
            std::future::pending(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Bind { .. }), "{err}");
        assert!(err.to_string().contains("127.86.0.53:10053"), "{err}");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("run did not return after shutdown")
            .unwrap()
            .unwrap();
        let log = std::fs::read_to_string(dir.path().join("q.log")).unwrap();
        assert!(
            log.lines()
                .any(|l| l.contains("\"name\":\"mail.lab.test.\"")),
            "{log}"
        );
    }
}
