//! The delivery worker: takes due messages from the spool, resolves the
//! recipient domain's MX (RFC 5321 §5.1) through the lab DNS, connects from
//! the server's own address to the MX on the relay port, requires STARTTLS
//! (RFC 3207) with the peer certificate verified against the lab CA for the
//! MX host name, and sends. 4xx replies and connection failures are retried
//! on the config's schedule (RFC 5321 §4.5.4.1); 5xx replies and expiry
//! produce a DSN to the sender (RFC 3464).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_send::SmtpClient;
use mail_send::smtp::message::Parameters;
use smtp_proto::{EXT_PIPELINING, EXT_START_TLS};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{QueuedMessage, RcptState, now_secs};
use crate::server::Context;

/// How long one SMTP conversation step may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the spool is scanned when nothing wakes the worker.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Delivery attempts in flight at once: below the peers' connections-per-
/// address limit (32 by default), so a busy queue is never refused with 421.
const MAX_IN_FLIGHT: usize = 16;

/// How long an idle relay connection is kept for the next message.
const POOL_IDLE: Duration = Duration::from_secs(5);
/// Idle relay connections kept at most: one per delivery in flight, so a
/// busy queue never closes a connection only to open a new one (a TLS
/// handshake on both sides) for the next message.
const POOL_SIZE: usize = MAX_IN_FLIGHT;

/// An established relay connection: the client and whether the server
/// offered PIPELINING (RFC 2920) in its EHLO reply.
struct Relay<T: AsyncRead + AsyncWrite> {
    client: SmtpClient<T>,
    pipelining: bool,
}

/// Idle TLS connections to MX hosts, reused for the next message to the
/// same host (RFC 5321 §4.5.4.1 encourages sending several messages over
/// one connection); each reuse starts with RSET.
#[derive(Default)]
pub struct Pool {
    idle: std::sync::Mutex<Vec<Idle>>,
}

/// An idle pooled connection: peer address, MX host name, idle since.
type Idle = (SocketAddr, String, std::time::Instant, Relay<TlsStream>);

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    fn take(&self, addr: SocketAddr, host: &str) -> Option<Relay<TlsStream>> {
        let mut idle = self.idle.lock().ok()?;
        idle.retain(|(_, _, since, _)| since.elapsed() < POOL_IDLE);
        let i = idle
            .iter()
            .position(|(a, h, _, _)| *a == addr && h == host)?;
        Some(idle.swap_remove(i).3)
    }

    fn put(&self, addr: SocketAddr, host: &str, client: Relay<TlsStream>) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|(_, _, since, _)| since.elapsed() < POOL_IDLE);
            if idle.len() >= POOL_SIZE {
                return;
            }
            idle.push((addr, host.to_string(), std::time::Instant::now(), client));
        }
    }
}

/// The result of trying one recipient.
#[derive(Debug, Clone)]
enum Outcome {
    Delivered(String),
    /// Retry later.
    Temporary(String),
    /// Give up, send a DSN.
    Permanent(String),
}

/// Runs the worker until the task is dropped.
pub async fn run(ctx: Arc<Context>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    loop {
        for id in ctx.queue.due(now_secs()) {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            if !ctx.queue.claim(&id) {
                continue;
            }
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let q = ctx.clone();
                let rid = id.clone();
                match tokio::task::spawn_blocking(move || q.queue.read(&rid)).await {
                    Ok(Ok((record, body))) => attempt(&ctx, record, body).await,
                    other => {
                        // Left in the spool, not retried until a restart.
                        tracing::error!(%id, ?other, "queue record unreadable, left in the spool");
                        ctx.queue.set_index(&id, None);
                    }
                }
                ctx.queue.release(&id);
                ctx.queue.wake();
            });
        }
        ctx.queue.wait(SCAN_INTERVAL).await;
    }
}

/// One delivery attempt of a queued message.
async fn attempt(ctx: &Arc<Context>, mut record: QueuedMessage, body: Vec<u8>) {
    // Group pending recipients by domain: one connection per domain.
    let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &record.recipients {
        if r.state == RcptState::Pending {
            let domain = r.address.rsplit_once('@').map_or("", |(_, d)| d);
            by_domain
                .entry(domain.to_ascii_lowercase())
                .or_default()
                .push(r.address.clone());
        }
    }
    for (domain, rcpts) in by_domain {
        let results = deliver_domain(ctx, &record.mail_from, &domain, &rcpts, &body).await;
        for (address, outcome) in results {
            if let Some(r) = record.recipients.iter_mut().find(|r| r.address == address) {
                let (state, text) = match outcome {
                    Outcome::Delivered(t) => (RcptState::Delivered, t),
                    Outcome::Temporary(t) => (RcptState::Pending, t),
                    Outcome::Permanent(t) => (RcptState::Failed, t),
                };
                tracing::info!(id = %record.id, rcpt = %address, ?state, result = %text, "delivery attempt");
                r.state = state;
                r.last_result = Some(text);
            }
        }
    }
    record.attempts += 1;
    let now = now_secs();
    let relay = &ctx.config.relay;
    let expired = now.saturating_sub(record.created) >= relay.max_age_secs;
    if expired {
        for r in record.recipients.iter_mut() {
            if r.state == RcptState::Pending {
                r.state = RcptState::Failed;
                let last = r.last_result.clone().unwrap_or_default();
                r.last_result = Some(format!(
                    "gave up after {} attempts in {} s; last result: {last}",
                    record.attempts, relay.max_age_secs
                ));
            }
        }
    }
    let pending = record
        .recipients
        .iter()
        .any(|r| r.state == RcptState::Pending);
    let delay = retry_delay(&relay.retry_schedule_secs, record.attempts);
    let id = record.id.clone();
    let ctx2 = ctx.clone();
    let result = if pending {
        record.next_attempt = now + delay;
        tokio::task::spawn_blocking(move || ctx2.queue.save(&record)).await
    } else {
        // The entry goes only once the bounce of its failed recipients is
        // delivered or queued; otherwise it stays, and the bounce is tried
        // again after the delay (the recipients are not retried: none is
        // pending).
        tokio::task::spawn_blocking(move || {
            match super::dsn::send_failures(&ctx2, &record, &body) {
                Ok(()) => ctx2.queue.remove(&record.id),
                Err(e) => {
                    tracing::error!(id = %record.id, error = %e, "bounce not queued, entry kept");
                    record.next_attempt = now + delay;
                    ctx2.queue.save(&record)
                }
            }
        })
        .await
    };
    if !matches!(result, Ok(Ok(()))) {
        // Backoff on every failure: a record that could not be saved is
        // not due again before the delay, even though the file still says
        // it is (RFC 5321 §4.5.4.1: retries are spaced).
        tracing::error!(%id, ?result, "queue update failed, retried after {delay} s");
        ctx.queue.set_index(&id, Some(now + delay));
    }
}

/// The delay before the next attempt after `attempts` attempts, from the
/// retry schedule (its last entry repeats).
fn retry_delay(schedule: &[u64], attempts: u32) -> u64 {
    let idx = (attempts as usize).saturating_sub(1);
    schedule.get(idx).or(schedule.last()).copied().unwrap_or(60)
}

/// Resolves the MX hosts of `domain` (RFC 5321 §5.1), best first, with
/// their IPv4 addresses. An empty list with `Err` is a permanent failure.
async fn resolve_mx(ctx: &Context, domain: &str) -> Result<Vec<(String, Vec<IpAddr>)>, Outcome> {
    let resolver = ctx.authenticator.resolver();
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    let mut hosts: Vec<(u16, String)> = match resolver.mx_lookup(fqdn.as_str()).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                hickory_proto::rr::RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .collect(),
        Err(e) if e.is_no_records_found() => {
            if e.is_nx_domain() {
                return Err(Outcome::Permanent(format!(
                    "550 5.1.2 domain {domain} does not exist (DNS NXDOMAIN)"
                )));
            }
            // RFC 5321 §5.1: no MX -> the domain itself is the implicit MX.
            vec![(0, fqdn.clone())]
        }
        Err(e) => {
            return Err(Outcome::Temporary(format!(
                "451 4.4.3 MX lookup for {domain} failed: {e}"
            )));
        }
    };
    hosts.sort_by_key(|(p, _)| *p);
    let mut out = Vec::new();
    for (_, host) in hosts {
        let ips: Vec<IpAddr> = match resolver.ipv4_lookup(host.as_str()).await {
            Ok(l) => l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    hickory_proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        out.push((host.trim_end_matches('.').to_string(), ips));
    }
    Ok(out)
}

/// Delivers to the recipients of one domain; one outcome per recipient.
async fn deliver_domain(
    ctx: &Context,
    mail_from: &str,
    domain: &str,
    rcpts: &[String],
    body: &[u8],
) -> Vec<(String, Outcome)> {
    let all = |o: Outcome| rcpts.iter().map(|r| (r.clone(), o.clone())).collect();
    let hosts = match resolve_mx(ctx, domain).await {
        Ok(h) => h,
        Err(o) => return all(o),
    };
    let mut last = Outcome::Temporary(format!("451 4.4.4 no reachable MX host for {domain}"));
    for (host, ips) in hosts {
        for ip in ips {
            let addr = SocketAddr::new(ip, ctx.config.relay.port);
            match send_to(ctx, addr, &host, mail_from, rcpts, body).await {
                Ok(results) => return results,
                Err(o) => {
                    tracing::info!(%addr, %host, outcome = ?o, "MX attempt failed");
                    last = o;
                }
            }
        }
    }
    all(last)
}

/// A reply as text: `code x.y.z message` (RFC 3463 code when present).
fn reply_text(r: &smtp_proto::Response<String>) -> String {
    if r.esc[0] > 0 {
        format!(
            "{} {}.{}.{} {}",
            r.code, r.esc[0], r.esc[1], r.esc[2], r.message
        )
    } else {
        format!("{} {}", r.code, r.message)
    }
}

/// An error before any recipient was answered: the whole attempt's outcome.
fn conversation_error(e: mail_send::Error, step: &str) -> Outcome {
    match e {
        mail_send::Error::UnexpectedReply(r) if r.code() >= 500 => {
            Outcome::Permanent(format!("{} (at {step})", reply_text(&r)))
        }
        mail_send::Error::UnexpectedReply(r) => {
            Outcome::Temporary(format!("{} (at {step})", reply_text(&r)))
        }
        other => Outcome::Temporary(format!("451 4.4.2 {step}: {other}")),
    }
}

/// One SMTP conversation with `addr`, leaving from our own address.
async fn send_to(
    ctx: &Context,
    addr: SocketAddr,
    host: &str,
    mail_from: &str,
    rcpts: &[String],
    body: &[u8],
) -> Result<Vec<(String, Outcome)>, Outcome> {
    let relay = &ctx.config.relay;
    let local = ctx.config.listen.address;
    if let Some(pooled) = ctx.queue.pool.take(addr, host) {
        // An error here came before any message data was sent (see
        // `converse`): the idle connection may have been closed by the
        // peer, so the message goes over a fresh one instead.
        match converse(pooled, true, mail_from, rcpts, body).await {
            Ok((results, relay)) => {
                if let Some(relay) = relay {
                    ctx.queue.pool.put(addr, host, relay);
                }
                return Ok(results);
            }
            Err(o) => {
                tracing::debug!(%addr, %host, outcome = ?o, "pooled connection failed, reconnecting")
            }
        }
    }
    let mut client = SmtpClient::connect_using(local, addr, SMTP_TIMEOUT)
        .await
        .map_err(|e| Outcome::Temporary(format!("451 4.4.1 connect to {host} [{addr}]: {e}")))?;
    // Without TCP_NODELAY the end-of-data line (a second small TLS record
    // right after the message) waits for the peer's delayed ACK: ~40 ms per
    // message on Linux (Nagle's algorithm, RFC 896, vs RFC 1122 delayed ACKs).
    let _ = client.stream.set_nodelay(true);
    let greeting = client
        .read()
        .await
        .map_err(|e| conversation_error(e, "greeting"))?;
    if greeting.code() != 220 {
        return Err(conversation_error(
            mail_send::Error::UnexpectedReply(greeting),
            "greeting",
        ));
    }
    let hostname = ctx.config.hostname.clone();
    let ehlo = client
        .ehlo(&hostname)
        .await
        .map_err(|e| conversation_error(e, "EHLO"))?;
    if !ehlo.has_capability(EXT_START_TLS) {
        if relay.require_tls {
            return Err(Outcome::Temporary(format!(
                "451 4.7.10 {host} [{addr}] does not offer STARTTLS and the relay policy requires TLS"
            )));
        }
        let plain = Relay {
            client,
            pipelining: ehlo.has_capability(EXT_PIPELINING),
        };
        let (results, relay) = converse(plain, false, mail_from, rcpts, body).await?;
        if let Some(relay) = relay {
            let _ = relay.client.quit().await;
        }
        return Ok(results);
    }
    // RFC 3207 §4.1, RFC 7672-style authentication by the lab CA: the
    // certificate must be valid for the MX host name.
    let connector = if relay.verify_certificate {
        ctx.tls_connector.clone()
    } else {
        super::no_verify::connector()
    };
    let mut client = client
        .start_tls(&connector, host)
        .await
        .map_err(|e| match e {
            mail_send::Error::UnexpectedReply(_) => conversation_error(e, "STARTTLS"),
            other => Outcome::Temporary(format!(
                "451 4.7.5 TLS with {host} [{addr}] failed: {other}"
            )),
        })?;
    // RFC 3207 §4.2: the capabilities are asked again after the upgrade.
    let ehlo = client
        .ehlo(&hostname)
        .await
        .map_err(|e| conversation_error(e, "EHLO after STARTTLS"))?;
    let tls = Relay {
        client,
        pipelining: ehlo.has_capability(EXT_PIPELINING),
    };
    let (results, relay) = converse(tls, false, mail_from, rcpts, body).await?;
    if let Some(relay) = relay {
        ctx.queue.pool.put(addr, host, relay);
    }
    Ok(results)
}

fn positive(r: &smtp_proto::Response<String>) -> bool {
    (200..300).contains(&r.code())
}

/// One transaction: [RSET,] MAIL, RCPT for each recipient, DATA, the
/// message. With PIPELINING (RFC 2920 §3.1) the commands up to DATA go in
/// one write and their replies are read together: two round trips per
/// message instead of four or more. `Err` only comes before any message
/// data was sent; afterwards the outcome is per recipient. The connection
/// comes back when it is still usable (for the pool or QUIT).
async fn converse<T: AsyncRead + AsyncWrite + Unpin>(
    relay: Relay<T>,
    rset: bool,
    mail_from: &str,
    rcpts: &[String],
    body: &[u8],
) -> Result<(Vec<(String, Outcome)>, Option<Relay<T>>), Outcome> {
    let Relay {
        mut client,
        pipelining,
    } = relay;
    let mut results = Vec::new();
    let mut accepted = Vec::new();
    if pipelining {
        let mut cmds = Vec::with_capacity(rcpts.len() + 3);
        if rset {
            cmds.push("RSET\r\n".to_string());
        }
        cmds.push(format!("MAIL FROM:<{mail_from}>\r\n"));
        cmds.extend(rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")));
        cmds.push("DATA\r\n".to_string());
        let replies = client
            .cmds(&cmds)
            .await
            .map_err(|e| conversation_error(e, "MAIL FROM"))?;
        let mut replies = replies.into_iter();
        let mut next = |step: &str| {
            replies
                .next()
                .ok_or_else(|| Outcome::Temporary(format!("451 4.4.2 {step}: reply missing")))
        };
        let unexpected = |r, step| conversation_error(mail_send::Error::UnexpectedReply(r), step);
        if rset {
            let r = next("RSET")?;
            if !positive(&r) {
                return Err(unexpected(r, "RSET"));
            }
        }
        let r = next("MAIL FROM")?;
        if !positive(&r) {
            return Err(unexpected(r, "MAIL FROM"));
        }
        for rcpt in rcpts {
            let r = next("RCPT TO")?;
            if positive(&r) {
                accepted.push(rcpt.clone());
            } else {
                results.push((rcpt.clone(), unexpected(r, "RCPT TO")));
            }
        }
        let r = next("DATA")?;
        if r.code() != 354 {
            // RFC 2920 §3.1: no recipient accepted, DATA refused.
            let o = unexpected(r, "DATA");
            results.extend(accepted.into_iter().map(|a| (a, o.clone())));
            return Ok((results, Some(Relay { client, pipelining })));
        }
        if accepted.is_empty() {
            // 354 with no recipient: dropping the connection aborts the
            // transaction (RFC 5321 §3.8), nothing is delivered.
            return Ok((results, None));
        }
    } else {
        if rset {
            client
                .rset()
                .await
                .map_err(|e| conversation_error(e, "RSET"))?;
        }
        client
            .mail_from(mail_from, &Parameters::default())
            .await
            .map_err(|e| conversation_error(e, "MAIL FROM"))?;
        for rcpt in rcpts {
            match client.rcpt_to(rcpt, &Parameters::default()).await {
                Ok(()) => accepted.push(rcpt.clone()),
                Err(e) => results.push((rcpt.clone(), conversation_error(e, "RCPT TO"))),
            }
        }
        if accepted.is_empty() {
            return Ok((results, Some(Relay { client, pipelining })));
        }
        match client.cmd(b"DATA\r\n").await {
            Ok(r) if r.code() == 354 => {}
            Ok(r) => {
                let o = conversation_error(mail_send::Error::UnexpectedReply(r), "DATA");
                results.extend(accepted.into_iter().map(|a| (a, o.clone())));
                return Ok((results, Some(Relay { client, pipelining })));
            }
            Err(e) => {
                let o = conversation_error(e, "DATA");
                results.extend(accepted.into_iter().map(|a| (a, o.clone())));
                return Ok((results, None));
            }
        }
    }
    // mail-send terminates with CRLF.CRLF itself; drop our final CRLF so the
    // body is not extended by an empty line at every hop.
    let body = body.strip_suffix(b"\r\n").unwrap_or(body);
    let sent = tokio::time::timeout(SMTP_TIMEOUT, async {
        client.write_message(body).await?;
        client.read().await
    })
    .await;
    let (outcome, reusable) = match sent {
        Ok(Ok(r)) if positive(&r) => (Outcome::Delivered(reply_text(&r)), true),
        Ok(Ok(r)) => (
            conversation_error(mail_send::Error::UnexpectedReply(r), "DATA"),
            true,
        ),
        Ok(Err(e)) => (conversation_error(e, "DATA"), false),
        Err(_) => (conversation_error(mail_send::Error::Timeout, "DATA"), false),
    };
    results.extend(accepted.into_iter().map(|r| (r, outcome.clone())));
    Ok((results, reusable.then_some(Relay { client, pipelining })))
}
