//! `labctl send`: an authenticated submission from the host (RFC 6409 on
//! 587 with STARTTLS, or 465 with implicit TLS, RFC 8314), printing the SMTP
//! dialogue as it happens, swaks style (`->` client, `<-` server, `~>`/`<~`
//! under TLS). The password comes from the lab's lab.json.

use std::process::ExitCode;

use anyhow::Context;
use mail_builder::MessageBuilder;

use crate::cli::SendArgs;
use crate::client::smtp::Smtp;
use crate::exit;
use crate::lab::Lab;

/// The EICAR test file (eicar.org).
const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// GTUBE (SpamAssassin's spam test string).
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// Builds the message of `args`; returns it and its Message-ID (without brackets).
pub fn build(args: &SendArgs, files: Vec<(String, Vec<u8>)>) -> anyhow::Result<(Vec<u8>, String)> {
    let domain = args.from.rsplit('@').next().unwrap_or("labctl.invalid");
    let id = format!(
        "labctl-send-{:x}{:04x}@{domain}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
        rand::random::<u16>()
    );
    let mut body = args.body.clone();
    if args.gtube {
        body.push_str(&format!("\n\n{GTUBE}\n"));
    }
    let mut b = MessageBuilder::new()
        .from(args.from.as_str())
        .to(args.to.as_str())
        .subject(args.subject.as_str())
        .message_id(id.clone())
        .text_body(body);
    if args.eicar {
        b = b.attachment(
            "application/octet-stream",
            "eicar.com",
            EICAR.as_bytes().to_vec(),
        );
    }
    for (name, data) in files {
        b = b.attachment("application/octet-stream", name, data);
    }
    Ok((b.write_to_vec().context("cannot build the message")?, id))
}

/// Runs send.
pub async fn run(args: &SendArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::find(args.variant, args.dir.as_deref())
        .await
        .map_err(|e| exit::usage(e.to_string()))?;
    let (server, mailbox) = lab
        .mailbox(&args.from)
        .map_err(|e| exit::usage(format!("--from: {e}")))?;
    let mut files = Vec::new();
    for path in &args.attach {
        let data = std::fs::read(path)
            .map_err(|e| exit::usage(format!("--attach {}: {e}", path.display())))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        files.push((name, data));
    }
    let (message, id) = build(args, files)?;
    let tls = lab.client_tls().map_err(|e| exit::usage(e.to_string()))?;
    let accepted = async {
        let port = if args.implicit_tls {
            server.ports.submissions
        } else {
            server.ports.submission
        };
        let implicit = args
            .implicit_tls
            .then_some((&tls, server.hostname.as_str()));
        let mut smtp = Smtp::connect(server.addr(port), lab.host_ip(), implicit, true).await?;
        let ehlo_name = "labctl.send.invalid";
        let steps: anyhow::Result<bool> = async {
            smtp.ehlo(ehlo_name).await?;
            if !args.implicit_tls {
                let st = smtp.starttls(&tls, &server.hostname).await?;
                if st.code != 220 {
                    return Ok(false);
                }
                smtp.ehlo(ehlo_name).await?;
            }
            for reply in [smtp.auth_plain(&mailbox.address, &mailbox.password).await?] {
                if !reply.is_positive() {
                    return Ok(false);
                }
            }
            if !smtp
                .command(&format!("MAIL FROM:<{}>", args.from))
                .await?
                .is_positive()
            {
                return Ok(false);
            }
            if !smtp
                .command(&format!("RCPT TO:<{}>", args.to))
                .await?
                .is_positive()
            {
                return Ok(false);
            }
            let (_, done) = smtp.data(&message).await?;
            Ok(done.is_some_and(|d| d.is_positive()))
        }
        .await;
        smtp.quit().await;
        steps
    }
    .await?;
    println!("\nMessage-ID: <{id}>");
    if accepted {
        println!(
            "accepted: see it with `labctl inspect {} --last` and `labctl trace --message-id '<{id}>'`",
            args.to
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("refused (see the server's reply above)");
        Ok(ExitCode::from(exit::Kind::CheckFailed as u8))
    }
}
