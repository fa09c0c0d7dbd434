//! `labctl spam train --spam|--ham FILE...`: trains the Bayesian model of
//! every mail server of a lab (or, with `--config`, of one server).
//!
//! The model lives in the server's data folder (`spam/bayes.json`); it is
//! replaced atomically and a running server reloads it before its next
//! message. Local runtime: the data folders are on this host. Docker: they
//! are the containers' volumes, so the messages are copied into the volume
//! and `labctl spam train --config` runs inside the container (the image is
//! this binary), which removes them once trained.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use mailserver::filter::spam::SpamFilter;
use mailserver::filter::spam::bayes::Classifier;

use crate::cli::SpamCommand;
use crate::exit;
use crate::lab::Lab;
use crate::render::layout::server_config;
use crate::runtime::{Arg, NodePath};

/// Runs a `spam` subcommand.
pub async fn run(command: &SpamCommand) -> anyhow::Result<ExitCode> {
    match command {
        SpamCommand::Train {
            spam,
            ham,
            files,
            variant,
            config,
            consume,
        } => {
            debug_assert!(*spam != *ham);
            let messages = read_messages(files)?;
            if let Some(config) = config {
                train_server(config, &messages, *spam)?;
                if *consume {
                    for f in files {
                        std::fs::remove_file(f)
                            .with_context(|| format!("cannot remove {}", f.display()))?;
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let lab = Lab::find(*variant, None)
                .await
                .map_err(|e| exit::usage(e.to_string()))?;
            train_in_nodes(&lab, &messages, *spam).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads the messages, refusing files that are not e-mail.
fn read_messages(files: &[PathBuf]) -> anyhow::Result<Vec<Vec<u8>>> {
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
    Ok(messages)
}

/// Trains the model of the server configured by `config_path`.
fn train_server(config_path: &Path, messages: &[Vec<u8>], spam: bool) -> anyhow::Result<()> {
    let config =
        mailserver::config::Config::load(config_path).map_err(|e| exit::usage(e.to_string()))?;
    let path = SpamFilter::model_path(&config.data_dir);
    let classifier = Classifier::open(Some(path.clone()))?;
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    classifier.train_many(&refs, spam)?;
    let (nspam, nham) = classifier.counts();
    println!(
        "{}: trained {} {} message(s); model now knows {nspam} spam and {nham} ham ({})",
        config.hostname,
        refs.len(),
        if spam { "spam" } else { "ham" },
        path.display()
    );
    Ok(())
}

/// Copies the messages into each mail server's data and runs `labctl spam
/// train --config ... --consume` there (in the container on Docker).
async fn train_in_nodes(lab: &Lab, messages: &[Vec<u8>], spam: bool) -> anyhow::Result<()> {
    let runtime = lab
        .runtime()
        .await
        .map_err(|e| exit::environment(e.to_string()))?;
    let batch = format!("spam/train-{:08x}", rand::random::<u32>());
    let named: Vec<(String, Vec<u8>)> = messages
        .iter()
        .enumerate()
        .map(|(i, body)| (format!("{batch}/{i}.eml"), body.clone()))
        .collect();
    for s in &lab.servers {
        let node = lab.mail_node(s);
        runtime
            .write_files(&node, NodePath::Data(""), &named)
            .await
            .map_err(|e| exit::environment(e.to_string()))?;
        let config = server_config(&s.domain);
        let mut args: Vec<Arg<'_>> = vec![
            "spam".into(),
            "train".into(),
            if spam { "--spam" } else { "--ham" }.into(),
            "--consume".into(),
            "--config".into(),
            Arg::Path(NodePath::Lab(&config)),
        ];
        args.extend(named.iter().map(|(p, _)| Arg::Path(NodePath::Data(p))));
        let out = runtime
            .exec_labctl(&node, &args)
            .await
            .map_err(|e| exit::environment(e.to_string()))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if out.code != 0 {
            anyhow::bail!(
                "training in {} failed (exit {}): {}",
                node.container,
                out.code,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
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
