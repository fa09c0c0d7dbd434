//! Readiness: a service is up when a TCP connection to its address succeeds
//! (from the host to the container address, or to the loopback address of
//! the local runtime).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::plan::{MailNode, Plan};

/// One address to wait for.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The node it belongs to (container or server name).
    pub node: String,
    /// The service (`dns`, `smtp`, `imaps`...).
    pub service: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Probe {
    /// The lab DNS server, shown as `node`.
    pub fn dns(plan: &Plan, node: &str) -> Probe {
        Probe {
            node: node.into(),
            service: "dns".into(),
            addr: plan.dns.addr(),
        }
    }

    /// Every enabled service of a mail server, shown as `node`.
    pub fn mail(server: &MailNode, node: &str) -> Vec<Probe> {
        server
            .ports
            .enabled()
            .map(|(service, port)| Probe {
                node: node.into(),
                service: service.name().into(),
                addr: SocketAddr::new(server.ip.into(), port),
            })
            .collect()
    }
}

/// `node service (addr), ...`: the probes that did not answer, for an error.
pub fn describe(left: &[Probe]) -> String {
    left.iter()
        .map(|p| format!("{} {} ({})", p.node, p.service, p.addr))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tries each probe once; returns the ones that did not answer.
pub async fn pending(probes: &[Probe]) -> Vec<Probe> {
    let attempts = probes.iter().map(|p| async move {
        let ok = matches!(
            tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(p.addr)).await,
            Ok(Ok(_))
        );
        (!ok).then(|| p.clone())
    });
    futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Waits until every probe answers or `deadline` passes; `check` runs
/// between rounds (it may fail fast, e.g. when a container exited) and
/// `progress` hears how many answered.
pub async fn wait_all<F, Fut, E>(
    probes: &[Probe],
    deadline: Instant,
    mut check: F,
    mut progress: impl FnMut(usize, usize),
) -> Result<Result<(), Vec<Probe>>, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let mut left = probes.to_vec();
    loop {
        left = pending(&left).await;
        progress(probes.len() - left.len(), probes.len());
        if left.is_empty() {
            return Ok(Ok(()));
        }
        if Instant::now() >= deadline {
            return Ok(Err(left));
        }
        check().await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
