//! `labctl spam train --spam|--ham FILE...`: trains the Bayesian model of
//! every mail server of a lab.
//!
//! Local runtime: the model lives in the server's data folder on this host
//! (`<lab>/data/mail.<domain>/spam/bayes.json`); the file is replaced
//! atomically and a running server reloads it before its next message.
//! Docker runtime: the data folder is inside the container's volume; training
//! there is not implemented yet (it needs an exec into the container).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use mailserver::filter::spam::SpamFilter;
use mailserver::filter::spam::bayes::Classifier;

use crate::cli::SpamCommand;
use crate::exit;

/// Runs a `spam` subcommand.
pub fn run(command: &SpamCommand) -> anyhow::Result<ExitCode> {
    match command {
        SpamCommand::Train {
            spam,
            ham,
            files,
            variant,
        } => {
            debug_assert!(*spam != *ham);
            let lab = find_lab_dir(Path::new("."), *variant)?;
            train(&lab, files, *spam)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The lab directory: `./lab-NN` for `--variant NN`, otherwise the only
/// `./lab-*` folder holding a `lab.json`.
// The orchestrator adds finding running labs here.
pub fn find_lab_dir(base: &Path, variant: Option<u32>) -> anyhow::Result<PathBuf> {
    if let Some(n) = variant {
        let dir = base.join(format!("lab-{n:02}"));
        if !dir.join("lab.json").is_file() {
            return Err(exit::usage(format!(
                "no lab for variant {n}: {} has no lab.json; run `labctl up --variant {n}` (or `labctl render`) first",
                dir.display()
            )));
        }
        return Ok(dir);
    }
    let mut labs: Vec<PathBuf> = std::fs::read_dir(base)
        .with_context(|| format!("cannot read {}", base.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("lab-"))
                && p.join("lab.json").is_file()
        })
        .collect();
    labs.sort();
    match labs.len() {
        1 => Ok(labs.remove(0)),
        0 => Err(exit::usage(
            "no lab here (no ./lab-NN/lab.json); run `labctl up` first or pass --variant N",
        )),
        _ => Err(exit::usage(format!(
            "several labs here ({}); choose one with --variant N",
            labs.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Trains every server of the lab in `lab` with `files`.
pub fn train(lab: &Path, files: &[PathBuf], spam: bool) -> anyhow::Result<()> {
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.join("lab.json"))
            .with_context(|| format!("cannot read {}", lab.join("lab.json").display()))?,
    )
    .with_context(|| format!("{} is not valid JSON", lab.join("lab.json").display()))?;
    if info["runtime"].as_str() == Some("docker") {
        return Err(exit::usage(
            "this lab runs in Docker: training the model inside the containers is not implemented yet; \
             use a local-runtime lab (labctl up --runtime local) for now",
        ));
    }
    let mut messages = Vec::new();
    for file in files {
        let bytes = std::fs::read(file)
            .map_err(|e| exit::usage(format!("cannot read {}: {e}", file.display())))?;
        if !looks_like_message(&bytes) {
            return Err(exit::usage(format!(
                "{} is not an e-mail message (it does not start with a header field); give RFC 5322 files such as .eml",
                file.display()
            )));
        }
        messages.push(bytes);
    }
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let domains: Vec<&str> = info["servers"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["domain"].as_str()).collect())
        .unwrap_or_default();
    if domains.is_empty() {
        anyhow::bail!("{} lists no servers", lab.join("lab.json").display());
    }
    let kind = if spam { "spam" } else { "ham" };
    for domain in domains {
        let config_path = lab.join(format!("servers/mail.{domain}/config.yaml"));
        let config = mailserver::config::Config::load(&config_path)
            .map_err(|e| exit::usage(e.to_string()))?;
        let path = SpamFilter::model_path(&config.data_dir);
        let classifier = Classifier::open(Some(path.clone()))?;
        classifier.train_many(&refs, spam)?;
        let (nspam, nham) = classifier.counts();
        println!(
            "mail.{domain}: trained {} {kind} message(s); model now knows {nspam} spam and {nham} ham ({})",
            refs.len(),
            path.display()
        );
    }
    Ok(())
}

/// Starts with a header field: `name:` where the name is printable US-ASCII
/// without colon (RFC 5322 §2.2), or with an mbox `From ` line.
fn looks_like_message(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"From ") {
        return true;
    }
    let Some(colon) = bytes.iter().take(1000).position(|&b| b == b':') else {
        return false;
    };
    colon > 0 && bytes[..colon].iter().all(|&b| (33..=126).contains(&b))
}
