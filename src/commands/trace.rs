//! `labctl trace [--message-id ID]`: the SMTP conversations that carried one
//! message, hop by hop, client and server lines, TLS upgrade marked, read
//! from the servers' transcripts (see [`crate::analysis::trace`]), and the
//! DNS lookups the lab's servers made on the way, from the lab DNS's query
//! log (a file in the local runtime, the DNS container's output on Docker).
//!
//! The transcripts hold the queue ids the servers gave the message, not its
//! Message-ID, so the message itself is fetched over IMAPS (every mailbox of
//! the lab, INBOX and Junk) and its Received chain names the ids.

use std::process::ExitCode;

use anyhow::Context;

use crate::analysis::{headers, trace};
use crate::client::conn::connect;
use crate::client::imap::Imap;
use crate::client::tls::Tls;
use crate::exit;
use crate::lab::{Lab, Mailbox, Server};
use crate::verify::messages::has_message_id;

/// Finds a message in the lab's mailboxes over IMAPS: in `only` (mailbox,
/// folder) when given, else everywhere; `want` decides.
async fn find_message(
    lab: &Lab,
    tls: &Tls,
    only: Option<(&str, &str)>,
    want: &dyn Fn(&[u8]) -> bool,
) -> anyhow::Result<Option<Vec<u8>>> {
    let boxes: Vec<(&Server, &Mailbox)> = lab
        .servers
        .iter()
        .flat_map(|s| s.mailboxes.iter().map(move |m| (s, m)))
        .filter(|(_, m)| only.is_none_or(|(a, _)| m.address.eq_ignore_ascii_case(a)))
        .collect();
    for (server, mailbox) in boxes {
        let mut imap = connect::<Imap>(
            server.addr(server.ports.imaps),
            lab.host_ip(),
            Some((tls, server.hostname.as_str())),
        )
        .await
        .with_context(|| format!("IMAPS {}:{}", server.ip, server.ports.imaps))?;
        if !imap
            .login(&mailbox.address, &mailbox.password)
            .await?
            .is_ok()
        {
            imap.logout().await;
            continue;
        }
        let folders: Vec<&str> = match only {
            Some((_, f)) => vec![f],
            None => vec!["INBOX", "Junk"],
        };
        for folder in folders {
            if !imap.select(folder).await?.is_ok() {
                continue;
            }
            for uid in imap.uids().await?.into_iter().rev() {
                if let Some(raw) = imap.fetch(uid).await?
                    && want(&raw)
                {
                    imap.logout().await;
                    return Ok(Some(raw));
                }
            }
        }
        imap.logout().await;
    }
    Ok(None)
}

/// The queue ids the Received fields of `raw` name.
fn received_ids(raw: &[u8]) -> Vec<String> {
    let fields = headers::header_fields(raw);
    headers::values(&fields, "Received")
        .into_iter()
        .map(|v| headers::parse_received(v).id)
        .filter(|i| !i.is_empty())
        .collect()
}

/// Runs trace.
pub async fn run(
    variant: Option<u32>,
    dir: Option<&std::path::Path>,
    message_id: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::find(variant, dir)
        .await
        .map_err(|e| exit::usage(e.to_string()))?;
    let (sessions, bad) = read_sessions(&lab).await?;
    let wanted = message_id.map(|id| {
        if id.starts_with('<') {
            id.to_string()
        } else {
            format!("<{id}>")
        }
    });
    let found = find_traced_message(&lab, &sessions, wanted.as_deref()).await?;
    let (id, ids) = match (&found, &wanted) {
        (Some(raw), _) => {
            let fields = headers::header_fields(raw);
            (
                headers::value(&fields, "Message-ID")
                    .unwrap_or("")
                    .to_string(),
                received_ids(raw),
            )
        }
        // Not delivered (refused, or still queued): the transcripts alone.
        (None, Some(id)) => (id.clone(), Vec::new()),
        (None, None) => {
            return Err(exit::usage(
                "no delivered message found; send one with `labctl send` or name one with --message-id",
            ));
        }
    };
    let hops = trace::hops(&sessions, &id, &ids);
    if hops.is_empty() {
        return Err(exit::usage(format!(
            "no SMTP session in the transcripts carried {id} ({} sessions read)",
            sessions.len()
        )));
    }
    print_summary(&id, hops.len(), found.as_deref(), &ids);
    print!("{}", trace::render(&hops));
    if let (Some(first), Some(last)) = (hops.first(), hops.last()) {
        let end = last.entries.last().map(|e| e.time.as_str()).unwrap_or("");
        print_dns_lookups(&lab, first.start(), end).await;
    }
    if bad > 0 {
        eprintln!("note: {bad} transcript line(s) were not valid JSON and were skipped");
    }
    Ok(ExitCode::SUCCESS)
}

/// Every SMTP session in the transcripts of both servers, and how many
/// lines were not valid JSON.
async fn read_sessions(lab: &Lab) -> anyhow::Result<(Vec<trace::Session>, usize)> {
    let mut lines = Vec::new();
    for s in &lab.servers {
        lines.extend(
            lab.transcript_lines(&s.domain)
                .await
                .map_err(|e| exit::environment(e.to_string()))?,
        );
    }
    let (entries, bad) = trace::parse(&lines);
    Ok((trace::sessions(entries), bad))
}

/// The message to trace, fetched over IMAPS: the one with Message-ID
/// `wanted`, else the last one the transcripts show delivered.
async fn find_traced_message(
    lab: &Lab,
    sessions: &[trace::Session],
    wanted: Option<&str>,
) -> anyhow::Result<Option<Vec<u8>>> {
    let tls = lab.client_tls().map_err(|e| exit::usage(e.to_string()))?;
    match wanted {
        Some(id) => find_message(lab, &tls, None, &|raw| has_message_id(raw, id)).await,
        None => {
            let Some((qid, mailbox, folder)) = trace::last_delivery(sessions) else {
                return Ok(None);
            };
            let want = |raw: &[u8]| received_ids(raw).contains(&qid);
            find_message(lab, &tls, Some((&mailbox, &folder)), &want).await
        }
    }
}

/// The heading: the message, its header fields, the queue ids.
fn print_summary(id: &str, sessions: usize, found: Option<&[u8]>, ids: &[String]) {
    println!("Message {id}: {sessions} SMTP session(s)");
    if let Some(raw) = found {
        let fields = headers::header_fields(raw);
        for n in ["From", "To", "Subject"] {
            println!("  {n}: {}", headers::value(&fields, n).unwrap_or(""));
        }
        println!("  queue ids (Received): {}", ids.join(", "));
    } else {
        println!("  (not found in any mailbox: the transcripts alone)");
    }
    println!();
}

/// The DNS lookups the lab's servers made between `start` and `end` (the
/// sender: MX and A of the next hop; the receiver: SPF, DKIM, DMARC).
async fn print_dns_lookups(lab: &Lab, start: &str, end: &str) {
    let log = match lab.dns_query_lines().await {
        Ok(log) => log,
        Err(e) => {
            println!("DNS lookups: the lab DNS's query log could not be read: {e}");
            Vec::new()
        }
    };
    let mut any = false;
    for server in &lab.servers {
        let queries = trace::dns_between(&log, &server.ip.to_string(), start, end);
        if queries.is_empty() {
            continue;
        }
        any = true;
        println!("DNS lookups by {} on the way:", server.hostname);
        for q in queries {
            println!(
                "  {} {} {} -> {}",
                q.time.get(11..23).unwrap_or(&q.time),
                q.name,
                q.rtype,
                q.rcode
            );
        }
    }
    if !any && !log.is_empty() {
        println!(
            "DNS lookups: none reached the lab DNS while this message travelled; the servers'\n  \
             resolvers answered from their caches (records seen within their TTL)"
        );
    }
}
