//! The server: the services and the one listener path of SMTP, IMAP and
//! POP3 (see docs/connections.md).
//!
//! [`run`] loads nothing by itself: it takes a parsed [`Config`], builds the
//! [`Context`] (TLS, accounts, store, transcripts), binds every configured
//! port (failing fast, naming the port, if one is taken). Each accepted
//! connection is admitted ([`crate::admission`]: global and per-address
//! caps, the oldest idle pre-login connection gives way), gets its TLS
//! handshake on the implicit-TLS ports (RFC 8314 §3.2, bounded by
//! `limits.tls_handshake_timeout_secs`), and is handed to the protocol
//! module of its [`Service`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::admission::Life;
use crate::config::Config;
use crate::error::Error;
use crate::transcript::Transcript;

pub use crate::context::Context;
pub use crate::service::{Ports, Service};
pub use crate::tls::TlsActive;

/// A boxed session future.
pub type Session = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A client stream as the protocols see it: TCP, or TLS over TCP on the
/// implicit-TLS ports (any stream in session tests).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// An admitted connection, handed to its protocol once implicit TLS (if
/// any) is up. The server hands out a [`BoxStream`]; session tests and
/// the fuzzing harness any [`Stream`] (an in-memory pipe).
pub struct Accepted<S = BoxStream> {
    /// The stream (already TLS on 465, 993, 995).
    pub stream: S,
    /// The client.
    pub peer: SocketAddr,
    /// The port's service.
    pub service: Service,
    /// TLS facts on the implicit-TLS ports.
    pub tls: Option<TlsActive>,
    /// The session's transcript.
    pub transcript: Transcript,
    /// Idle phases and eviction (see [`crate::admission`]).
    pub life: Life,
}

impl<S: Stream> Accepted<S> {
    /// A connection without implicit TLS.
    pub fn plain(
        stream: S,
        peer: SocketAddr,
        service: Service,
        transcript: Transcript,
        life: Life,
    ) -> Self {
        Accepted {
            stream,
            peer,
            service,
            tls: None,
            transcript,
            life,
        }
    }
}

/// The session handler of a service.
pub type Handler = fn(Arc<Context>, Accepted) -> Session;

/// The handler of each service; a protocol module registers itself here.
fn handler(service: Service) -> Handler {
    match service {
        Service::Smtp | Service::Submission | Service::Submissions => crate::smtp::handle,
        Service::Imap | Service::Imaps => crate::imap::handler,
        Service::Pop3 | Service::Pop3s => crate::pop3::handler,
    }
}

/// The "too many connections" reply of a service's protocol.
fn refusal(service: Service) -> String {
    match service {
        Service::Smtp | Service::Submission | Service::Submissions => {
            crate::smtp::reply::TOO_MANY_CONNECTIONS.to_wire()
        }
        Service::Imap | Service::Imaps => crate::imap::TOO_MANY_CONNECTIONS.to_string(),
        Service::Pop3 | Service::Pop3s => crate::pop3::TOO_MANY_CONNECTIONS.to_string(),
    }
}

/// The TLS handshake of implicit TLS (RFC 8314 §3.2), STARTTLS (RFC 3207,
/// RFC 3501 §6.2.1) and STLS (RFC 2595 §4): bounded by the handshake
/// timeout, and an idle phase (a stalled handshake gives way to a new
/// client). `None`: failed, timed out or evicted (logged).
/// `what` names it in the transcript (`TLS`, `STARTTLS`, `STLS`).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Context,
    stream: S,
    life: &Life,
    transcript: &Transcript,
    what: &str,
) -> Option<(tokio_rustls::server::TlsStream<S>, TlsActive)> {
    let limit = ctx.config.limits.tls_handshake_timeout();
    let accept = tokio::time::timeout(limit, ctx.tls_acceptor.accept(stream));
    match life.idle(accept).await {
        None => transcript.info(&format!(
            "{what} handshake abandoned: an idle connection gave way"
        )),
        Some(Err(_)) => transcript.info(&format!(
            "{what} handshake timed out after {} s",
            limit.as_secs()
        )),
        Some(Ok(Err(e))) => transcript.info(&format!("{what} handshake failed: {e}")),
        Some(Ok(Ok(tls))) => {
            let info = TlsActive::of(tls.get_ref().1);
            transcript.info(&format!("{what} {} {}", info.version, info.cipher));
            return Some((tls, info));
        }
    }
    None
}

/// One accepted connection: admission, implicit TLS, then the protocol.
async fn connection(
    ctx: Arc<Context>,
    mut stream: TcpStream,
    peer: SocketAddr,
    service: Service,
    handle: Handler,
) {
    let _ = stream.set_nodelay(true);
    let transcript = ctx.transcripts.session(service.protocol(), peer);
    let local = stream.local_addr().map(|a| a.to_string());
    transcript.info(&format!(
        "connection from {peer} to {} ({})",
        service.name(),
        local.unwrap_or_default()
    ));
    let Some(slot) = ctx.connections.admit(peer.ip()) else {
        transcript.info("too many connections and none idle to give way: refused");
        if !service.implicit_tls() {
            let r = refusal(service);
            transcript.server(&r);
            let write = tokio::io::AsyncWriteExt::write_all(&mut stream, r.as_bytes());
            let _ = tokio::time::timeout(ctx.config.limits.write_timeout(), write).await;
        }
        return;
    };
    let life = slot.life().clone();
    let (stream, tls): (BoxStream, _) = if service.implicit_tls() {
        match handshake(&ctx, stream, &life, &transcript, "TLS").await {
            Some((tls, info)) => (Box::new(tls), Some(info)),
            None => return,
        }
    } else {
        (Box::new(stream), None)
    };
    let accepted = Accepted {
        stream,
        peer,
        service,
        tls,
        transcript,
        life,
    };
    handle(ctx, accepted).await;
    drop(slot);
}

/// Binds every configured service's port.
async fn bind(config: &Config) -> Result<Vec<(Service, TcpListener)>, Error> {
    let mut listeners = Vec::new();
    for (service, port) in config.listen.ports.enabled() {
        let addr = SocketAddr::new(config.listen.address, port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr,
                service: service.name(),
                source,
            })?;
        listeners.push((service, listener));
    }
    Ok(listeners)
}

/// Runs the server until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
    let listeners = bind(&config).await?;
    let ctx = Arc::new(Context::new(config)?);
    let mut tasks = tokio::task::JoinSet::new();
    // The queue's delivery worker; it resumes whatever the spool holds.
    tasks.spawn(crate::queue::worker::run(ctx.clone()));
    for (service, listener) in listeners {
        let ctx = ctx.clone();
        let handle = handler(service);
        tracing::info!(service = service.name(), addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
        tasks.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        tokio::spawn(connection(ctx.clone(), stream, peer, service, handle));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(service = service.name(), error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    shutdown.await;
    tasks.shutdown().await;
    Ok(())
}
