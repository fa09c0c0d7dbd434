//! R4 and R5, the TLS and AUTH matrix of message transfer: AUTH only on the
//! submission ports and only under TLS (RFC 4954 §4, RFC 3207 §4, RFC 8314),
//! no relay without authentication (RFC 5321 §3.6.2), STARTTLS on 25 and
//! 587, implicit TLS on 465. R11's half of the matrix: IMAP LOGIN refused
//! before STARTTLS (RFC 3501 §6.2.3 LOGINDISABLED), POP3 USER/PASS refused
//! before STLS (RFC 2595 §4).

use futures_util::future::{BoxFuture, join_all};

use super::ctx::EHLO_NAME;
use super::pki::tls_on;
use super::{Check, Ctx, Group, Spec, per_server};
use crate::client::ClientError;
use crate::client::conn::connect;
use crate::client::imap::Imap;
use crate::client::pop3::Pop3;
use crate::client::smtp::Smtp;
use crate::lab::Server;
use crate::plan::Service;

catalog! {
    TLS: server "R5" "STARTTLS on 25 and 587, implicit TLS on 465, chain verified against the lab CA";
    PLAIN_587: server "R5" "587 before STARTTLS: AUTH not offered and refused";
    AUTH_OK: server "R4" "587 after STARTTLS and 465: AUTH PLAIN succeeds";
    AUTH_25: server "R4" "25 (before and after STARTTLS): AUTH not offered and refused";
    RELAY_25: server "R4" "25 without AUTH: relay to a foreign domain and to the other lab domain refused";
    RELAY_587: server "R4" "587 after STARTTLS without AUTH: sending to another domain refused";
    IMAP_PLAIN: server "R11" "143: LOGINDISABLED advertised and LOGIN refused before STARTTLS, LOGINDISABLED absent after";
    POP_PLAIN: server "R11" "110 before STLS: POP3 USER/PASS refused";
}

pub static GROUP: Group = Group {
    checks: &[&TLS, &PLAIN_587, &AUTH_OK, &AUTH_25, &RELAY_25, &RELAY_587],
    run,
};

pub static MAILBOX_ACCESS: Group = Group {
    checks: &[&IMAP_PLAIN, &POP_PLAIN],
    run: run_mailbox_access,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(per_server(ctx, move |i, s| server(ctx, i, s)))
}

fn run_mailbox_access(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(per_server(ctx, move |_, s| mailbox_access(ctx, s)))
}

async fn server(ctx: &Ctx, i: usize, s: &Server) -> Vec<Check> {
    let (tls, plain587, auth_ok, auth25, relay25, relay587) = tokio::join!(
        tls_transfer(ctx, s),
        auth_before_tls(ctx, s),
        auth_succeeds(ctx, s),
        auth_on_25(ctx, s),
        relay_on_25(ctx, i, s),
        relay_on_587(ctx, i, s),
    );
    vec![
        tls,
        verdict(&PLAIN_587, s, plain587),
        verdict(&AUTH_OK, s, auth_ok),
        verdict(&AUTH_25, s, auth25),
        verdict(&RELAY_25, s, relay25),
        verdict(&RELAY_587, s, relay587),
    ]
}

/// A check from `(ok, evidence)`; a client error fails it with the dialogue.
fn verdict(spec: &'static Spec, s: &Server, r: Probe) -> Check {
    match r {
        Ok((ok, ev)) => spec.on(s, ok, ev),
        Err((e, t)) => spec.fail_on(s, format!("{e}\n{t}")),
    }
}

async fn tls_transfer(ctx: &Ctx, s: &Server) -> Check {
    let r = join_all(
        [
            (Service::Smtp, s.ports.smtp),
            (Service::Submission, s.ports.submission),
            (Service::Submissions, s.ports.submissions),
        ]
        .map(|(svc, port)| async move { (svc, port, tls_on(ctx, s, svc).await) }),
    )
    .await;
    let ok = r.iter().all(|(_, _, x)| x.is_ok());
    let ev = r
        .into_iter()
        .map(|(svc, port, x)| match x {
            Ok(info) => format!("{port} {svc}: {} {}", info.version, info.cipher),
            Err(e) => format!("{port} {svc}: FAILED {e}"),
        })
        .collect::<Vec<_>>()
        .join("\n");
    TLS.on(s, ok, ev)
}

type Probe = Result<(bool, String), (ClientError, String)>;

async fn session(
    ctx: &Ctx,
    s: &Server,
    port: u16,
    implicit: bool,
) -> Result<Smtp, (ClientError, String)> {
    let tls = implicit.then_some((&ctx.tls, s.hostname.as_str()));
    Smtp::connect(s.addr(port), ctx.lab.host_ip(), tls, false)
        .await
        .map_err(|e| (e, String::new()))
}

/// Runs `f` on a session and closes it; errors carry the dialogue so far.
macro_rules! with_session {
    ($smtp:ident, $body:block) => {{
        let r: Result<(bool, String), ClientError> = async { $body }.await;
        $smtp.quit().await;
        r.map_err(|e| (e, $smtp.conn.transcript()))
    }};
}

async fn auth_before_tls(ctx: &Ctx, s: &Server) -> Probe {
    let m = &s.mailboxes[0];
    let mut smtp = session(ctx, s, s.ports.submission, false).await?;
    with_session!(smtp, {
        let ehlo = smtp.ehlo(EHLO_NAME).await?;
        let auth = smtp.auth_plain(&m.address, &m.password).await?;
        Ok((
            !ehlo.advertises("AUTH") && auth.is_permanent_failure(),
            format!(
                "EHLO before TLS advertises AUTH: {}\nAUTH PLAIN -> {} (expected 5xx, e.g. 530 5.7.0 or 538 5.7.11)",
                ehlo.advertises("AUTH"),
                auth.text()
            ),
        ))
    })
}

async fn auth_succeeds(ctx: &Ctx, s: &Server) -> Probe {
    let m = &s.mailboxes[0];
    let mut ev = Vec::new();
    let mut ok = true;
    let mut smtp = session(ctx, s, s.ports.submission, false).await?;
    let r587 = with_session!(smtp, {
        smtp.ehlo(EHLO_NAME).await?;
        let st = smtp.starttls(&ctx.tls, &s.hostname).await?;
        let ehlo = smtp.ehlo(EHLO_NAME).await?;
        let auth = smtp.auth_plain(&m.address, &m.password).await?;
        Ok((
            st.code == 220 && ehlo.advertises("AUTH") && auth.code == 235,
            format!(
                "{} STARTTLS, AUTH PLAIN as {} -> {}",
                s.ports.submission,
                m.address,
                auth.text()
            ),
        ))
    })?;
    ok &= r587.0;
    ev.push(r587.1);
    let mut smtp = session(ctx, s, s.ports.submissions, true).await?;
    let r465 = with_session!(smtp, {
        let ehlo = smtp.ehlo(EHLO_NAME).await?;
        let auth = smtp.auth_plain(&m.address, &m.password).await?;
        Ok((
            ehlo.advertises("AUTH") && auth.code == 235,
            format!(
                "{} implicit TLS, AUTH PLAIN as {} -> {}",
                s.ports.submissions,
                m.address,
                auth.text()
            ),
        ))
    })?;
    ok &= r465.0;
    ev.push(r465.1);
    Ok((ok, ev.join("\n")))
}

async fn auth_on_25(ctx: &Ctx, s: &Server) -> Probe {
    let m = &s.mailboxes[0];
    let mut smtp = session(ctx, s, s.ports.smtp, false).await?;
    with_session!(smtp, {
        let ehlo = smtp.ehlo(EHLO_NAME).await?;
        let plain = smtp.auth_plain(&m.address, &m.password).await?;
        let st = smtp.starttls(&ctx.tls, &s.hostname).await?;
        let ehlo2 = smtp.ehlo(EHLO_NAME).await?;
        let tls = smtp.auth_plain(&m.address, &m.password).await?;
        Ok((
            !ehlo.advertises("AUTH")
                && !ehlo2.advertises("AUTH")
                && plain.is_permanent_failure()
                && st.code == 220
                && tls.is_permanent_failure(),
            format!(
                "before TLS: AUTH offered {}, AUTH PLAIN -> {}\nafter STARTTLS: AUTH offered {}, AUTH PLAIN -> {}",
                ehlo.advertises("AUTH"),
                plain.text(),
                ehlo2.advertises("AUTH"),
                tls.text()
            ),
        ))
    })
}

/// RCPTs to a foreign domain and to the other lab domain, from the null sender.
async fn relay_on_25(ctx: &Ctx, i: usize, s: &Server) -> Probe {
    let other = &ctx.lab.servers[1 - i].mailboxes[0].address;
    let foreign = "relay-test@example.com";
    let mut smtp = session(ctx, s, s.ports.smtp, false).await?;
    with_session!(smtp, {
        smtp.ehlo(EHLO_NAME).await?;
        let mail = smtp.command("MAIL FROM:<>").await?;
        if !mail.is_positive() {
            return Ok((false, format!("MAIL FROM:<> -> {}", mail.text())));
        }
        let a = smtp.command(&format!("RCPT TO:<{foreign}>")).await?;
        let b = smtp.command(&format!("RCPT TO:<{other}>")).await?;
        Ok((
            a.is_permanent_failure() && b.is_permanent_failure(),
            format!(
                "RCPT TO:<{foreign}> -> {}\nRCPT TO:<{other}> -> {} (expected 5xx, e.g. 554 5.7.1 relay denied)",
                a.text(),
                b.text()
            ),
        ))
    })
}

async fn relay_on_587(ctx: &Ctx, i: usize, s: &Server) -> Probe {
    let other = &ctx.lab.servers[1 - i].mailboxes[0].address;
    let from = &s.mailboxes[0].address;
    let mut smtp = session(ctx, s, s.ports.submission, false).await?;
    with_session!(smtp, {
        smtp.ehlo(EHLO_NAME).await?;
        smtp.starttls(&ctx.tls, &s.hostname).await?;
        smtp.ehlo(EHLO_NAME).await?;
        let mail = smtp.command(&format!("MAIL FROM:<{from}>")).await?;
        let (refused, ev) = if mail.is_positive() {
            let rcpt = smtp.command(&format!("RCPT TO:<{other}>")).await?;
            (
                rcpt.is_permanent_failure(),
                format!(
                    "MAIL FROM:<{from}> -> {}\nRCPT TO:<{other}> -> {}",
                    mail.text(),
                    rcpt.text()
                ),
            )
        } else {
            (
                mail.is_permanent_failure(),
                format!("MAIL FROM:<{from}> -> {}", mail.text()),
            )
        };
        Ok((
            refused,
            format!("{ev}\n(no AUTH given: expected 530 5.7.0 or a relay refusal)"),
        ))
    })
}

async fn mailbox_access(ctx: &Ctx, s: &Server) -> Vec<Check> {
    let m = &s.mailboxes[0];
    let imap = async {
        let mut c = connect::<Imap>(s.addr(s.ports.imap), ctx.lab.host_ip(), None)
            .await
            .map_err(|e| (e, String::new()))?;
        // RFC 3501 §6.2.3 and RFC 2595 §3.2: LOGINDISABLED before the TLS
        // layer, and a fresh CAPABILITY after it without it.
        let r: Result<(bool, String), ClientError> = async {
            let caps = c.capabilities().await?;
            let login = c.login(&m.address, &m.password).await?;
            let st = c.starttls(&ctx.tls, &s.hostname).await?;
            let after = c.capabilities().await?;
            let disabled = |caps: &[String]| caps.iter().any(|c| c.eq_ignore_ascii_case("LOGINDISABLED"));
            Ok((
                disabled(caps.as_slice()) && !login.is_ok() && st.is_ok() && !disabled(after.as_slice()),
                format!(
                    "before STARTTLS: CAPABILITY {}\nLOGIN -> {}\nSTARTTLS -> {}\nafter: CAPABILITY {}",
                    caps.join(" "),
                    login.status,
                    st.status,
                    after.join(" ")
                ),
            ))
        }
        .await;
        c.logout().await;
        r.map_err(|e| (e, c.conn.transcript()))
    };
    let pop = async {
        let mut c = connect::<Pop3>(s.addr(s.ports.pop3), ctx.lab.host_ip(), None)
            .await
            .map_err(|e| (e, String::new()))?;
        let r: Result<(bool, String), ClientError> = async {
            let last = c.login(&m.address, &m.password).await?;
            Ok((
                !last.starts_with("+OK"),
                format!("USER/PASS before STLS -> {last}"),
            ))
        }
        .await;
        c.quit().await;
        r.map_err(|e| (e, c.conn.transcript()))
    };
    let (imap, pop) = tokio::join!(imap, pop);
    vec![verdict(&IMAP_PLAIN, s, imap), verdict(&POP_PLAIN, s, pop)]
}
