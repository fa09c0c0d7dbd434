//! SMTP: the MX on port 25 (RFC 5321), submission on 587 (RFC 6409) with
//! STARTTLS (RFC 3207), and submission over implicit TLS on 465 (RFC 8314).
//!
//! Implements: EHLO/HELO, STARTTLS, AUTH PLAIN/LOGIN (RFC 4954, 4616),
//! MAIL (SIZE RFC 1870, BODY=8BITMIME RFC 6152), RCPT, DATA, RSET, NOOP,
//! VRFY (always 252), QUIT; PIPELINING (RFC 2920) and enhanced status codes
//! (RFC 2034, 3463). Non-features: BDAT/CHUNKING, DSN parameters (RFC 3461),
//! SMTPUTF8, LMTP, EXPN, ETRN.
//!
//! The session ([`session::Session`]) is generic over its stream; STARTTLS
//! consumes the plaintext session and starts a new one on the TLS stream
//! with all client state cleared (RFC 3207 §4.2).

mod data;
mod ehlo;
pub mod headers;
mod inbound;
mod mail;
mod rcpt;
pub mod reply;
mod sasl;
pub mod session;
mod submission;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::{ConnectionSlot, Context, Service};
use crate::transcript::Transcript;
use session::{Next, Session, TlsActive};

/// The registered handler of the SMTP services (see `server::handler`).
pub fn handle(
    ctx: Arc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
    service: Service,
    slot: Option<ConnectionSlot>,
) -> crate::server::Session {
    Box::pin(async move {
        let transcript = ctx.transcripts.session("smtp", peer);
        transcript.info(&format!(
            "connection from {peer} to {} ({})",
            service.name(),
            stream
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        ));
        serve(ctx, stream, peer, service, slot, transcript).await;
    })
}

/// Serves one connection on any stream (TCP in production, duplex in tests).
pub async fn serve<S>(
    ctx: Arc<Context>,
    mut stream: S,
    peer: SocketAddr,
    service: Service,
    slot: Option<ConnectionSlot>,
    transcript: Transcript,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some(_slot) = slot else {
        let r = reply::TOO_MANY_CONNECTIONS.to_wire();
        transcript.server(&r);
        transcript.info("too many connections from this address, refused");
        let _ = stream.write_all(r.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    };
    let handshake = ctx.config.limits.command_timeout();
    if service.implicit_tls() {
        // RFC 8314 §3.3: TLS from the first byte, then the SMTP greeting.
        let acceptor = ctx.tls_acceptor.clone();
        let tls = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                transcript.info(&format!("TLS handshake failed: {e}"));
                return;
            }
            Err(_) => {
                transcript.info("TLS handshake timed out");
                return;
            }
        };
        let info = tls_active(tls.get_ref().1);
        transcript.info(&format!("TLS {} {}", info.version, info.cipher));
        let mut session = Session::new(ctx, tls, peer, service, Some(info), transcript);
        session.run(true).await;
        close(session.into_stream()).await;
        return;
    }
    let mut session = Session::new(ctx.clone(), stream, peer, service, None, transcript.clone());
    if session.run(true).await != Next::StartTls {
        close(session.into_stream()).await;
        return;
    }
    // RFC 3207 §4.2: the plaintext session is consumed; nothing learned
    // before TLS (HELO, AUTH, transaction) carries over.
    let stream = session.into_stream();
    let acceptor = ctx.tls_acceptor.clone();
    let tls = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            transcript.info(&format!("TLS handshake failed: {e}"));
            return;
        }
        Err(_) => {
            transcript.info("TLS handshake timed out");
            return;
        }
    };
    let info = tls_active(tls.get_ref().1);
    transcript.info(&format!("STARTTLS: {} {}", info.version, info.cipher));
    let mut session = Session::new(ctx, tls, peer, service, Some(info), transcript);
    session.run(false).await;
    close(session.into_stream()).await;
}

fn tls_active(conn: &rustls::ServerConnection) -> TlsActive {
    let (version, cipher) = crate::tls::describe(conn);
    TlsActive { version, cipher }
}

async fn close<S: AsyncWrite + Unpin>(mut stream: S) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.shutdown()).await;
}
