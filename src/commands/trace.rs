//! `labctl trace [--message-id ID]`: the SMTP conversations that carried one
//! message, hop by hop, client and server lines, TLS upgrade marked, read
//! from the servers' transcripts (see [`crate::analysis::trace`]).

use std::process::ExitCode;

use crate::analysis::trace;
use crate::exit;
use crate::lab::Lab;

/// Runs trace.
pub fn run(
    variant: Option<u32>,
    dir: Option<&std::path::Path>,
    message_id: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let lab = Lab::discover(variant, dir).map_err(|e| exit::usage(e.to_string()))?;
    let mut lines = Vec::new();
    for s in &lab.servers {
        lines.extend(
            lab.transcript_lines(&s.domain)
                .map_err(|e| exit::environment(e.to_string()))?,
        );
    }
    let (entries, bad) = trace::parse(&lines);
    let sessions = trace::sessions(entries);
    let id = match message_id {
        Some(id) => id.to_string(),
        None => trace::last_message_id(&sessions).ok_or_else(|| {
            exit::usage("no message found in the transcripts; send one with `labctl send` or name it with --message-id")
        })?,
    };
    let id = if id.starts_with('<') {
        id
    } else {
        format!("<{id}>")
    };
    let hops = trace::hops(&sessions, &id, &[]);
    if hops.is_empty() {
        return Err(exit::usage(format!(
            "no SMTP session in the transcripts mentions {id} ({} sessions read)",
            sessions.len()
        )));
    }
    println!("Message {id}: {} SMTP session(s)\n", hops.len());
    print!("{}", trace::render(&hops));
    if bad > 0 {
        eprintln!("note: {bad} transcript line(s) were not valid JSON and were skipped");
    }
    Ok(ExitCode::SUCCESS)
}
