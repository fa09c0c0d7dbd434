//! `labctl inspect ADDR [--last | --uid N]`: fetch a message over IMAPS
//! (RFC 8314) and explain its header fields (see [`crate::analysis::headers`]).

use std::process::ExitCode;

use anyhow::Context;

use crate::analysis::headers;
use crate::client::conn::connect;
use crate::client::imap::Imap;
use crate::exit;
use crate::lab::Lab;

/// Options of `inspect`.
#[derive(Debug)]
pub struct Options<'a> {
    /// The mailbox.
    pub address: &'a str,
    /// The UID (default: the newest).
    pub uid: Option<u32>,
    /// The folder.
    pub folder: &'a str,
    /// The lab's variant.
    pub variant: Option<u32>,
    /// The lab directory.
    pub dir: Option<&'a std::path::Path>,
}

/// Runs inspect.
pub async fn run(o: &Options<'_>) -> anyhow::Result<ExitCode> {
    let lab = Lab::find(o.variant, o.dir)
        .await
        .map_err(|e| exit::usage(e.to_string()))?;
    let (server, mailbox) = lab
        .mailbox(o.address)
        .map_err(|e| exit::usage(e.to_string()))?;
    let tls = lab.client_tls().map_err(|e| exit::usage(e.to_string()))?;
    let (uid, raw) = async {
        let mut imap = connect::<Imap>(
            server.addr(server.ports.imaps),
            lab.host_ip(),
            Some((&tls, server.hostname.as_str())),
        )
        .await
        .with_context(|| format!("IMAPS {}:{}", server.ip, server.ports.imaps))?;
        let r: anyhow::Result<(u32, Vec<u8>)> = async {
            let login = imap.login(&mailbox.address, &mailbox.password).await?;
            anyhow::ensure!(
                login.is_ok(),
                "LOGIN as {}: {}",
                mailbox.address,
                login.status
            );
            let sel = imap.select(o.folder).await?;
            anyhow::ensure!(sel.is_ok(), "SELECT {}: {}", o.folder, sel.status);
            let uid = match o.uid {
                Some(u) => u,
                None => imap.uids().await?.into_iter().max().ok_or_else(|| {
                    exit::usage(format!("{} of {} is empty", o.folder, mailbox.address))
                })?,
            };
            let raw = imap.fetch(uid).await?.ok_or_else(|| {
                exit::usage(format!(
                    "no message with UID {uid} in {} of {}",
                    o.folder, mailbox.address
                ))
            })?;
            Ok((uid, raw))
        }
        .await;
        imap.logout().await;
        r
    }
    .await?;
    println!(
        "{} {} UID {uid} ({} octets, fetched over IMAPS from {})\n",
        mailbox.address,
        o.folder,
        raw.len(),
        server.hostname
    );
    print!("{}", headers::explain(&raw));
    Ok(ExitCode::SUCCESS)
}
