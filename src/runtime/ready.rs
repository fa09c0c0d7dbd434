//! Readiness: a service is up when a TCP connection to its address succeeds
//! (from the host to the container address, or to the loopback address of
//! the local runtime).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

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
