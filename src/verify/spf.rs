//! R8: mail claiming a lab domain, sent from the host (whose address no
//! lab SPF policy allows), is handled per the variant's policy: under
//! `-all` refused `550 5.7.23` (RFC 7372 §3.2); under `~all` delivered and
//! marked `spf=softfail` (RFC 7208 §8.5, RFC 8601).

use std::time::Instant;

use futures_util::future::{BoxFuture, join_all};

use super::ctx::{DELIVERY_DEADLINE, EHLO_NAME};
use super::{Check, Ctx, Group, messages};
use crate::analysis::headers;
use crate::client::smtp::{Reply, Smtp};
use crate::lab::Server;

pub static GROUP: Group = Group {
    ids: &["R8"],
    checks: &[
        (
            "R8",
            "from the host as each domain: -all policy -> 550 5.7.23",
        ),
        (
            "R8",
            "from the host as each domain: ~all policy -> delivered, marked spf=softfail",
        ),
    ],
    run,
};

fn run(ctx: &Ctx) -> BoxFuture<'_, Vec<Check>> {
    Box::pin(async move {
        join_all([(0usize, 1usize), (1, 0)].map(|(claimed, target)| {
            forged(ctx, &ctx.lab.servers[claimed], &ctx.lab.servers[target])
        }))
        .await
    })
}

/// Sends as a mailbox of `claimed` to `target`'s port 25 from the host.
async fn forged(ctx: &Ctx, claimed: &Server, target: &Server) -> Check {
    let hard = ctx.variant.spf().is_hard_fail();
    let from = &claimed.mailboxes[0].address;
    let to = &target.mailboxes[0];
    let host = ctx
        .lab
        .host_ip()
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "the host's bridge address".into());
    let name = format!(
        "{}: mail as {from} from {host} ({}) -> {}",
        target.hostname,
        ctx.variant.spf_policy,
        if hard {
            "550 5.7.23"
        } else {
            "delivered, spf=softfail"
        }
    );
    let message_id = messages::message_id(&ctx.token, &format!("spf-{}", claimed.domain), from);
    let message = messages::plain(
        from,
        &to.address,
        "labctl verify SPF test",
        &message_id,
        "SPF test.\r\n",
    );
    let mut smtp = match Smtp::connect(
        target.addr(target.ports.smtp),
        ctx.lab.host_ip(),
        None,
        false,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return Check::fail("R8", name, e.to_string()),
    };
    // The first refusal, wherever it comes (MAIL, RCPT or end of DATA).
    let r: Result<(Reply, &str), crate::client::ClientError> = async {
        smtp.ehlo(EHLO_NAME).await?;
        let mail = smtp.command(&format!("MAIL FROM:<{from}>")).await?;
        if !mail.is_positive() {
            return Ok((mail, "MAIL FROM"));
        }
        let rcpt = smtp.command(&format!("RCPT TO:<{}>", to.address)).await?;
        if !rcpt.is_positive() {
            return Ok((rcpt, "RCPT TO"));
        }
        let (go, done) = smtp.data(&message).await?;
        Ok((done.unwrap_or(go), "end of DATA"))
    }
    .await;
    smtp.quit().await;
    let (reply, stage) = match r {
        Ok(x) => x,
        Err(e) => return Check::fail("R8", name, format!("{e}\n{}", smtp.conn.transcript())),
    };
    let seen = format!("MAIL FROM:<{from}> ... {stage} -> {}", reply.text());
    if hard {
        return Check::new(
            "R8",
            name,
            reply.code == 550 && reply.has_enhanced("5.7.23"),
            seen,
        );
    }
    if !reply.is_positive() {
        return Check::fail("R8", name, format!("{seen}\n(a softfail must be accepted)"));
    }
    // Delivered: to the INBOX, or to Junk (a softfail raises the spam score).
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    let (folder, raw) = match ctx
        .wait_in_any(to, &["INBOX", "Junk"], &message_id, deadline)
        .await
    {
        Ok(Some(found)) => found,
        Err(e) => return Check::fail("R8", name, format!("{seen}\nIMAP: {e}")),
        Ok(None) => {
            return Check::fail(
                "R8",
                name,
                format!(
                    "{seen}\nbut not found in INBOX or Junk of {} within {DELIVERY_DEADLINE:?}",
                    to.address
                ),
            );
        }
    };
    let fields = headers::header_fields(&raw);
    let ar = headers::auth_result(&fields, Some(&target.hostname), "spf");
    let received_spf = headers::value(&fields, "Received-SPF").unwrap_or("");
    let marked = ar.as_ref().is_some_and(|r| r.result == "softfail")
        || received_spf.to_ascii_lowercase().starts_with("softfail");
    Check::new(
        "R8",
        name,
        marked,
        format!(
            "{seen}\ndelivered to {folder} of {}\nAuthentication-Results spf={}\nReceived-SPF: {}",
            to.address,
            ar.map(|r| format!("{} {}", r.result, r.details))
                .unwrap_or_else(|| "(none)".into()),
            if received_spf.is_empty() {
                "(none)"
            } else {
                received_spf
            }
        ),
    )
}
