//! `labctl capture --replay`: the story of a message, told while the lab
//! records it. Domain 1 submits to domain 2 on 587 after STARTTLS (RFC
//! 6409, RFC 3207), domain 2 answers on 465 with implicit TLS (RFC 8314);
//! each server relays to the other's MX after looking it up (RFC 5321 §5),
//! the receiver checks SPF and DKIM (DNS TXT); the first message is read
//! over IMAPS 993 (RFC 9051) and the second over POP3S 995 (RFC 1939,
//! RFC 8314). The sends and reads are those of `labctl verify`.

use std::time::{Duration, Instant};

use crate::client::conn::connect;
use crate::client::pop3::Pop3;
use crate::client::smtp::Smtp;
use crate::verify::Ctx;
use crate::verify::messages;

/// How long the replay waits for both messages to be delivered.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);
/// The EHLO name of the 465 submission: in no lab zone.
const EHLO_NAME: &str = "capture.labctl.invalid";

/// Runs the replay; returns one line per step, or what failed.
pub async fn run(ctx: &Ctx) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let (a, b) = (ctx.mailbox(0), ctx.mailbox(1));
    // 1. a -> b on 587 with STARTTLS.
    let id_ab = messages::message_id(&ctx.token, "capture-587", &a.address);
    let message = messages::plain(
        &a.address,
        &b.address,
        &format!("labctl capture replay {} (587)", ctx.token),
        &id_ab,
        "Sent by labctl capture --replay on 587 with STARTTLS.\r\n",
    );
    let sub = ctx
        .submit(a, &b.address, &message)
        .await
        .map_err(|e| format!("submission as {} on 587: {e}", a.address))?;
    if !sub.accepted {
        return Err(format!("587 refused: {}", sub.reply.text()));
    }
    done.push(format!(
        "{} -> {}: submitted on 587 after STARTTLS",
        a.address, b.address
    ));
    // 2. b -> a on 465 with implicit TLS.
    let id_ba = messages::message_id(&ctx.token, "capture-465", &b.address);
    let message = messages::plain(
        &b.address,
        &a.address,
        &format!("labctl capture replay {} (465)", ctx.token),
        &id_ba,
        "Sent by labctl capture --replay on 465 with implicit TLS.\r\n",
    );
    let server = ctx.server_of(&b.address);
    let mut smtp = Smtp::connect(
        server.addr(server.ports.submissions),
        ctx.lab.host_ip(),
        Some((&ctx.tls, &server.hostname)),
        false,
    )
    .await
    .map_err(|e| format!("465: {e}"))?;
    let steps = async {
        smtp.ehlo(EHLO_NAME).await?;
        for reply in [
            smtp.auth_plain(&b.address, &b.password).await?,
            smtp.command(&format!("MAIL FROM:<{}>", b.address)).await?,
            smtp.command(&format!("RCPT TO:<{}>", a.address)).await?,
        ] {
            if !reply.is_positive() {
                return Ok(Err(reply.text()));
            }
        }
        let (go, end) = smtp.data(&message).await?;
        Ok::<_, crate::client::ClientError>(match end {
            Some(end) if end.is_positive() => Ok(()),
            Some(end) => Err(end.text()),
            None => Err(go.text()),
        })
    }
    .await;
    smtp.quit().await;
    steps
        .map_err(|e| format!("465: {e}"))?
        .map_err(|refused| format!("465 refused: {refused}"))?;
    done.push(format!(
        "{} -> {}: submitted on 465 (implicit TLS)",
        b.address, a.address
    ));
    // 3. Both relayed and delivered: read the first over IMAPS.
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    for (who, id) in [(b, &id_ab), (a, &id_ba)] {
        match ctx.wait_for(who, "INBOX", id, deadline).await {
            Ok(Some(_)) => done.push(format!("{id} read over IMAPS 993 by {}", who.address)),
            Ok(None) => {
                return Err(format!(
                    "{id} not in the INBOX of {} after {DELIVERY_DEADLINE:?}",
                    who.address
                ));
            }
            Err(e) => return Err(format!("IMAPS 993 as {}: {e}", who.address)),
        }
    }
    // 4. The second over POP3S: the newest message of a's maildrop.
    let server = ctx.server_of(&a.address);
    let mut pop = connect::<Pop3>(
        server.addr(server.ports.pop3s),
        ctx.lab.host_ip(),
        Some((&ctx.tls, &server.hostname)),
    )
    .await
    .map_err(|e| format!("POP3S 995: {e}"))?;
    let read = async {
        let status = pop.login(&a.address, &a.password).await?;
        if !status.starts_with("+OK") {
            return Ok(Err(status));
        }
        let n = pop.count().await?;
        let header = if n > 0 { pop.top(n).await? } else { Vec::new() };
        Ok::<_, crate::client::ClientError>(Ok(header
            .iter()
            .any(|l| l.contains(id_ba.trim_matches(['<', '>'])))))
    }
    .await;
    pop.quit().await;
    match read.map_err(|e| format!("POP3S 995: {e}"))? {
        Ok(true) => done.push(format!("{id_ba} read over POP3S 995 by {}", a.address)),
        Ok(false) => return Err(format!("{id_ba} is not the newest message over POP3S")),
        Err(status) => return Err(format!("POP3S 995 login: {status}")),
    }
    Ok(done)
}
