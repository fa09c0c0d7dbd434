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
#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::server::{Accepted, Context, Stream};
use session::{Next, Session};

/// The registered handler of the SMTP services (see `server::handler`).
pub fn handle(ctx: Arc<Context>, a: Accepted) -> crate::server::Session {
    Box::pin(serve(ctx, a))
}

/// Serves one admitted connection on any stream (TCP or TLS in
/// production, duplex in tests); `a.tls` is `Some` on the implicit-TLS port
/// 465 (RFC 8314 §3.3: TLS from the first byte, then the greeting).
pub async fn serve<S: Stream>(ctx: Arc<Context>, a: Accepted<S>) {
    let (peer, service, transcript, life) = (a.peer, a.service, a.transcript, a.life);
    if a.tls.is_some() {
        let mut session =
            Session::new(ctx, a.stream, peer, service, a.tls, transcript).with_life(life);
        session.run(true).await;
        close(session.into_stream()).await;
        return;
    }
    let mut session = Session::new(
        ctx.clone(),
        a.stream,
        peer,
        service,
        None,
        transcript.clone(),
    )
    .with_life(life.clone());
    if session.run(true).await != Next::StartTls {
        close(session.into_stream()).await;
        return;
    }
    // RFC 3207 §4.2: the plaintext session is consumed; nothing learned
    // before TLS (HELO, AUTH, transaction) carries over.
    let stream = session.into_stream();
    let Some((tls, info)) =
        crate::server::handshake(&ctx, stream, &life, &transcript, "STARTTLS:").await
    else {
        return;
    };
    let mut session = Session::new(ctx, tls, peer, service, Some(info), transcript).with_life(life);
    session.run(false).await;
    close(session.into_stream()).await;
}

async fn close<S: AsyncWrite + Unpin>(mut stream: S) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.shutdown()).await;
}
