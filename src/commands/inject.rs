//! `labctl inject` (hidden): unauthenticated SMTP transactions in one
//! session, one per message, the replies printed as a JSON array of
//! [`Relayed`]. `verify` runs it inside a mail
//! container on Docker, so a message leaves from that server's own address
//! as a relaying MTA would send it (R7: an altered copy from the legitimate
//! server must fail on its DKIM signature alone).

use std::process::ExitCode;

use base64::Engine;

use crate::cli::InjectArgs;
use crate::client::smtp::{Relayed, relay_transactions};
use crate::client::tls::Tls;

/// Runs inject: exit 0 and the JSON array of [`Relayed`] when the dialogue ran
/// (whatever the server answered), exit 3 and `{"error", "transcript"}` when
/// it could not (no connection, TLS failure).
pub async fn run(args: &InjectArgs) -> anyhow::Result<ExitCode> {
    let messages = args
        .message_base64
        .iter()
        .map(|m| base64::engine::general_purpose::STANDARD.decode(m.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::exit::usage(format!("--message-base64: {e}")))?;
    let tls = match &args.ca {
        Some(ca) => Some(Tls::from_ca_file(ca).map_err(|e| crate::exit::usage(e.to_string()))?),
        None => None,
    };
    let r: Result<Vec<Relayed>, _> = relay_transactions(
        args.server,
        args.bind,
        &args.helo,
        tls.as_ref().zip(args.tls_name.as_deref()),
        &args.mail_from,
        &args.rcpt,
        &messages,
    )
    .await;
    match r {
        Ok(relayed) => {
            println!("{}", serde_json::to_string(&relayed)?);
            Ok(ExitCode::SUCCESS)
        }
        Err((e, transcript)) => {
            println!(
                "{}",
                serde_json::json!({ "error": e.to_string(), "transcript": transcript })
            );
            Ok(ExitCode::from(crate::exit::Kind::Environment as u8))
        }
    }
}
