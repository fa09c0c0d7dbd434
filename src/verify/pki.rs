//! R1: the CA's subject and issuer are exactly the variant's, and every TLS
//! port of both servers presents a chain that verifies against the lab CA
//! alone for `mail.<domain>`.

use futures_util::future::{BoxFuture, join_all};

use super::ctx::EHLO_NAME;
use super::{Check, Ctx, Group, per_server};
use crate::client::conn::connect;
use crate::client::imap::Imap;
use crate::client::pop3::Pop3;
use crate::client::smtp::Smtp;
use crate::client::tls::TlsInfo;
use crate::lab::Server;
use crate::plan::Service;

catalog! {
    CA: lab "R1" "CA certificate: subject and issuer exactly the variant's, self-signed, a CA";
    PORTS: server "R1" "TLS on all 7 ports: the chain verifies against the lab CA alone for mail.<d>";
}

pub static GROUP: Group = Group {
    checks: &[&CA, &PORTS],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(async move {
        let mut checks = vec![ca_check(ctx)];
        checks.extend(per_server(ctx, |_, s| async move { vec![server_tls(ctx, s).await] }).await);
        checks
    })
}

/// The distinguished name the variant asks for, in x509-parser's notation.
fn expected_dn(ctx: &Ctx) -> String {
    let n = &ctx.variant.ca;
    format!(
        "C={}, ST={}, L={}, O={}, OU={}, CN={}",
        n.country, n.state, n.locality, n.organization, n.organizational_unit, n.common_name
    )
}

fn ca_check(ctx: &Ctx) -> Check {
    let pem = match std::fs::read(&ctx.lab.ca_cert) {
        Ok(p) => p,
        Err(e) => return CA.fail(None, format!("{}: {e}", ctx.lab.ca_cert.display())),
    };
    let parsed = x509_parser::pem::parse_x509_pem(&pem);
    let Ok((_, pem)) = parsed else {
        return CA.fail(None, "ca.crt is not a PEM certificate");
    };
    let cert = match pem.parse_x509() {
        Ok(c) => c,
        Err(e) => return CA.fail(None, format!("ca.crt: {e}")),
    };
    let expected = expected_dn(ctx);
    let subject = cert.subject().to_string();
    let issuer = cert.issuer().to_string();
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca);
    let self_signed = cert.verify_signature(None).is_ok();
    let ok = subject == expected && issuer == expected && is_ca && self_signed;
    CA.check(
        None,
        ok,
        format!(
            "subject: {subject}\nissuer:  {issuer}\nexpected: {expected}\nbasicConstraints CA: {is_ca}; signature verifies with its own key: {self_signed}"
        ),
    )
}

/// TLS on one port: plain connection + upgrade command, or implicit TLS.
pub async fn tls_on(ctx: &Ctx, server: &Server, service: Service) -> Result<TlsInfo, String> {
    let bind = ctx.lab.host_ip();
    let host = server.hostname.as_str();
    let tls = Some((&ctx.tls, host));
    let p = server.ports;
    let info = match service {
        Service::Smtp | Service::Submission => {
            let mut s = Smtp::connect(server.addr(p.get(service)), bind, None, false)
                .await
                .map_err(|e| e.to_string())?;
            let ehlo = s.ehlo(EHLO_NAME).await.map_err(|e| e.to_string())?;
            if !ehlo.advertises("STARTTLS") {
                return Err(format!("STARTTLS not offered: {}", ehlo.text()));
            }
            let r = s
                .starttls(&ctx.tls, host)
                .await
                .map_err(|e| e.to_string())?;
            let info = s
                .conn
                .tls
                .clone()
                .ok_or(format!("STARTTLS: {}", r.text()))?;
            s.quit().await;
            info
        }
        Service::Submissions => {
            let mut s = Smtp::connect(server.addr(p.submissions), bind, tls, false)
                .await
                .map_err(|e| e.to_string())?;
            let info = s.conn.tls.clone();
            s.quit().await;
            info.ok_or("no TLS")?
        }
        Service::Imap => {
            let mut i = connect::<Imap>(server.addr(p.imap), bind, None)
                .await
                .map_err(|e| e.to_string())?;
            let a = i
                .starttls(&ctx.tls, host)
                .await
                .map_err(|e| e.to_string())?;
            let info = i
                .conn
                .tls
                .clone()
                .ok_or(format!("STARTTLS: {}", a.status))?;
            i.logout().await;
            info
        }
        Service::Imaps => {
            let mut i = connect::<Imap>(server.addr(p.imaps), bind, tls)
                .await
                .map_err(|e| e.to_string())?;
            let info = i.conn.tls.clone();
            i.logout().await;
            info.ok_or("no TLS")?
        }
        Service::Pop3 => {
            let mut c = connect::<Pop3>(server.addr(p.pop3), bind, None)
                .await
                .map_err(|e| e.to_string())?;
            let st = c.stls(&ctx.tls, host).await.map_err(|e| e.to_string())?;
            let info = c.conn.tls.clone().ok_or(format!("STLS: {st}"))?;
            c.quit().await;
            info
        }
        Service::Pop3s => {
            let mut c = connect::<Pop3>(server.addr(p.pop3s), bind, tls)
                .await
                .map_err(|e| e.to_string())?;
            let info = c.conn.tls.clone();
            c.quit().await;
            info.ok_or("no TLS")?
        }
    };
    Ok(info)
}

/// How TLS starts on a service.
fn tls_start(service: Service) -> &'static str {
    match service {
        Service::Smtp | Service::Submission | Service::Imap => "STARTTLS",
        Service::Pop3 => "STLS",
        Service::Submissions | Service::Imaps | Service::Pop3s => "implicit",
    }
}

async fn server_tls(ctx: &Ctx, server: &Server) -> Check {
    let results = join_all(Service::ALL.map(|svc| async move {
        let port = server.ports.get(svc);
        (svc, tls_start(svc), port, tls_on(ctx, server, svc).await)
    }))
    .await;
    let mut ok = true;
    let mut evidence = Vec::new();
    for (svc, how, port, r) in results {
        match r {
            Ok(info) => evidence.push(format!("{port} {svc} ({how}): {}", info.summary())),
            Err(e) => {
                ok = false;
                evidence.push(format!("{port} {svc} ({how}): FAILED {e}"));
            }
        }
    }
    PORTS.on(server, ok, evidence.join("\n"))
}
