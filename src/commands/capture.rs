//! `labctl capture`: the lab's traffic as one pcapng file that Wireshark
//! and tshark decrypt with no setup (docs/capture.md).
//!
//! On Docker, one capture container per node records the node's packets
//! ([`crate::capture::node`]); labctl merges their streams into one file
//! with one interface per node, sorted by time, after a Decryption Secrets
//! Block holding the TLS secrets the mail servers and labctl's clients
//! logged while the capture ran. Whatever happens (the end, Ctrl-C, an
//! error), the capture containers and the key logs are removed; a capture
//! that was killed leaves them to the next capture (or `down`).

use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::container::LogOutput;
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::capture::node::{self, Decoder, Frame, Stats};
use crate::capture::{keylog, pcapng, replay};
use crate::cli::CaptureArgs;
use crate::exit;
use crate::lab::Lab;
use crate::runtime::docker::{CaptureOutput, Docker, capture_container};
use crate::runtime::{Arg, LabRuntime, NodePath, NodeRef, NodeRole};
use crate::variant::Catalog;

/// How long the capture containers have to open their sockets.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long their streams have to end once they were told to stop.
const END_TIMEOUT: Duration = Duration::from_secs(20);
/// After the replay, how long trailing packets (QUIT, FIN) are recorded.
const SETTLE: Duration = Duration::from_millis(1500);
/// Between progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A node to record.
struct Target<'a> {
    /// `dns` or `mail.<domain>`: the interface's name in the file.
    name: String,
    node: NodeRef<'a>,
}

/// What one node's stream said.
enum Event {
    Frame(Frame),
    Stderr(String),
    Failed(String),
    Closed,
}

/// One packet in the spool file.
struct Spooled {
    ts_nanos: u64,
    interface: u32,
    offset: u64,
    len: u32,
}

/// What the recording gathered.
#[derive(Default)]
struct Recording {
    packets: Vec<Spooled>,
    per_node: Vec<u64>,
    stats: Vec<Option<Stats>>,
    notes: Vec<String>,
    replay: Option<Result<Vec<String>, String>>,
    interrupted: bool,
    failed: Option<String>,
}

/// Runs `labctl capture`.
pub async fn run(catalog: &Catalog, args: &CaptureArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::find(args.variant, args.dir.as_deref())
        .await
        .map_err(|e| exit::usage(e.to_string()))?;
    let targets = select(&lab, &args.node)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("capture-lab{:02}.pcapng", lab.variant)));
    let runtime = lab.runtime().await?;
    let LabRuntime::Docker(docker) = &runtime else {
        // The same on loopback needs CAP_NET_RAW first of all.
        node::open().map_err(|e| exit::environment(format!("capturing a local lab: {e}")))?;
        return Err(exit::environment(
            "capture records Docker labs only in this version (a local lab's servers share the host's loopback); \
             run the lab on Docker: `labctl up --variant N`",
        ));
    };
    // Ctrl-C and SIGTERM end the capture, which then cleans up.
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let ctx = if args.replay {
        let variant = catalog
            .get(lab.variant)
            .map_err(|e| exit::usage(e.to_string()))?
            .clone();
        let mut ctx = crate::verify::Ctx::new(lab.clone(), variant)
            .map_err(|e| exit::usage(format!("cannot replay: {e}")))?;
        ctx.tls = lab.client_tls().map_err(|e| exit::usage(e.to_string()))?;
        Some(ctx)
    } else {
        None
    };
    let leftovers = docker.remove_captures(lab.variant).await?;
    if !leftovers.is_empty() {
        eprintln!(
            "removed the capture containers of a capture that was killed: {}",
            leftovers.join(", ")
        );
    }
    let spool = output.with_extension("pcapng.part");
    key_logs(&runtime, &lab, &targets, true).await?;
    let started = Instant::now();
    let recorded = record(
        docker,
        &lab,
        &targets,
        args,
        ctx.as_ref(),
        &spool,
        &mut sigint,
        &mut sigterm,
    )
    .await;
    // Cleanup, whatever happened.
    for t in &targets {
        if let Err(e) = docker
            .remove_capture(&capture_container(t.node.container))
            .await
        {
            eprintln!("warning: {e}");
        }
    }
    let secrets = gather_secrets(&runtime, &lab, &targets).await;
    let off = key_logs(&runtime, &lab, &targets, false).await;
    let elapsed = started.elapsed();
    let recording = recorded?;
    off?;
    let secrets = secrets?;
    let written = write_file(
        &output,
        &lab,
        &targets,
        &spool,
        &recording.packets,
        &secrets,
    );
    let _ = std::fs::remove_file(&spool);
    written.with_context(|| format!("cannot write {}", output.display()))?;
    report(&output, &targets, &recording, &secrets, elapsed);
    if let Some(why) = &recording.failed {
        return Err(exit::environment(format!(
            "the capture stopped early: {why}\n  (what was recorded is in {})",
            output.display()
        )));
    }
    match &recording.replay {
        Some(Err(why)) => Err(exit::check_failed(format!(
            "the replay failed: {why}\n  (the packets up to there are in {})",
            output.display()
        ))),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The nodes `wanted` names (`all`, `dns`, `mail.<domain>`, a domain or a container).
fn select<'a>(lab: &'a Lab, wanted: &[String]) -> anyhow::Result<Vec<Target<'a>>> {
    let mut all = vec![Target {
        name: "dns".into(),
        node: lab.dns_node(),
    }];
    for s in &lab.servers {
        all.push(Target {
            name: format!("mail.{}", s.domain),
            node: lab.mail_node(s),
        });
    }
    if wanted.is_empty() || wanted.iter().any(|w| w == "all") {
        return Ok(all);
    }
    let matches = |t: &Target<'_>, w: &str| {
        t.name == w || t.node.container == w || matches!(t.node.role, NodeRole::Mail(d) if d == w)
    };
    for w in wanted {
        if !all.iter().any(|t| matches(t, w)) {
            return Err(exit::usage(format!(
                "--node {w}: lab{:02} has no such node; its nodes: all, {}",
                lab.variant,
                all.iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    all.retain(|t| wanted.iter().any(|w| matches(t, w)));
    Ok(all)
}

/// Starts (`on`) or stops the TLS key logs of the selected mail servers
/// and of labctl's clients.
async fn key_logs(
    runtime: &LabRuntime,
    lab: &Lab,
    targets: &[Target<'_>],
    on: bool,
) -> anyhow::Result<()> {
    let client = lab.client_key_log();
    if on {
        if let Some(parent) = client.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&client)
            .with_context(|| format!("cannot create {}", client.display()))?;
    } else {
        mailserver::tls::CaptureKeyLog::at(client.clone())
            .remove()
            .with_context(|| format!("cannot remove {}", client.display()))?;
    }
    let path = keylog::server_key_log_path();
    let switch = if on { "--key-log-on" } else { "--key-log-off" };
    for t in targets
        .iter()
        .filter(|t| matches!(t.node.role, NodeRole::Mail(_)))
    {
        let args = [
            Arg::from("capture-node"),
            Arg::from(switch),
            Arg::Path(NodePath::Data(&path)),
        ];
        let out = runtime.exec_labctl(&t.node, &args).await?;
        if out.code != 0 {
            return Err(exit::environment(format!(
                "cannot {} the TLS key log of {}: {}",
                if on { "start" } else { "stop" },
                t.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// The TLS secrets logged during the capture, each line once.
async fn gather_secrets(
    runtime: &LabRuntime,
    lab: &Lab,
    targets: &[Target<'_>],
) -> anyhow::Result<String> {
    let mut seen = Default::default();
    let mut all = String::new();
    for t in targets
        .iter()
        .filter(|t| matches!(t.node.role, NodeRole::Mail(_)))
    {
        let files = runtime
            .read_files(&t.node, NodePath::Data(mailserver::tls::CaptureKeyLog::DIR))
            .await?;
        for (path, body) in files {
            if path == Path::new(mailserver::tls::CaptureKeyLog::FILE) {
                all.push_str(&keylog::clean_lines(
                    &String::from_utf8_lossy(&body),
                    &mut seen,
                ));
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(lab.client_key_log()) {
        all.push_str(&keylog::clean_lines(&text, &mut seen));
    }
    Ok(all)
}

/// Starts the capture containers, records until the end (replay done,
/// duration, Ctrl-C, or a failure), stops them and drains their streams.
#[allow(clippy::too_many_arguments)]
async fn record(
    docker: &Docker,
    lab: &Lab,
    targets: &[Target<'_>],
    args: &CaptureArgs,
    ctx: Option<&crate::verify::Ctx>,
    spool: &Path,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<Recording> {
    let mut file = BufWriter::new(
        std::fs::File::create(spool)
            .with_context(|| format!("cannot create {}", spool.display()))?,
    );
    let (tx, mut rx) = mpsc::channel::<(usize, Event)>(1024);
    for (i, t) in targets.iter().enumerate() {
        let output = docker
            .start_capture(lab.variant, &lab.dir, t.node.container)
            .await?;
        tokio::spawn(read_stream(i, output, tx.clone()));
    }
    drop(tx);
    let n = targets.len();
    let mut rec = Recording {
        per_node: vec![0; n],
        stats: vec![None; n],
        ..Default::default()
    };
    let mut ready = vec![false; n];
    let mut offset = 0u64;
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let work = async {
        match (ctx, args.duration) {
            (Some(ctx), _) => {
                let r = replay::run(ctx).await;
                tokio::time::sleep(SETTLE).await;
                Some(r)
            }
            (None, Some(s)) => {
                tokio::time::sleep(Duration::from_secs(s)).await;
                None
            }
            (None, None) => std::future::pending().await,
        }
    };
    tokio::pin!(work);
    let ready_deadline = tokio::time::sleep(READY_TIMEOUT);
    tokio::pin!(ready_deadline);
    let mut end_deadline = Box::pin(tokio::time::sleep(Duration::MAX / 4));
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.tick().await;
    let start = Instant::now();
    let mut stopping = false;
    let mut recording_said = false;
    loop {
        let all_ready = ready.iter().all(|r| *r);
        if all_ready && !recording_said {
            recording_said = true;
            eprintln!(
                "recording lab{:02} (variant {}): {}; {}",
                lab.variant,
                lab.variant,
                names.join(", "),
                if ctx.is_some() {
                    "replaying a message each way".to_string()
                } else if let Some(s) = args.duration {
                    format!("for {s} s (Ctrl-C stops earlier)")
                } else {
                    "Ctrl-C stops".to_string()
                }
            );
        }
        let mut stop_now = false;
        tokio::select! {
            ev = rx.recv() => match ev {
                None => break,
                Some((i, Event::Frame(Frame::Ready))) => ready[i] = true,
                Some((i, Event::Frame(Frame::Packet { ts_nanos, data }))) => {
                    file.write_all(&data).context("spool")?;
                    rec.packets.push(Spooled { ts_nanos, interface: i as u32, offset, len: data.len() as u32 });
                    offset += data.len() as u64;
                    rec.per_node[i] += 1;
                }
                Some((i, Event::Frame(Frame::End(stats)))) => rec.stats[i] = Some(stats),
                Some((i, Event::Stderr(text))) => rec.notes.push(format!("{}: {}", names[i], text.trim())),
                Some((i, Event::Failed(why))) => {
                    rec.failed.get_or_insert(format!("{}: {why}", names[i]));
                    stop_now = true;
                }
                Some((i, Event::Closed)) => {
                    if !stopping {
                        rec.failed.get_or_insert(format!("the capture of {} ended by itself", names[i]));
                        stop_now = true;
                    }
                }
            },
            _ = ticker.tick() => {
                if all_ready && !stopping {
                    let per: Vec<String> = names.iter().zip(&rec.per_node).map(|(n, c)| format!("{n} {c}")).collect();
                    eprintln!("[{:6.1}s] {} packets ({})", start.elapsed().as_secs_f64(), rec.packets.len(), per.join(", "));
                }
            }
            _ = sigint.recv(), if !stopping => { rec.interrupted = true; stop_now = true; }
            _ = sigterm.recv(), if !stopping => { rec.interrupted = true; stop_now = true; }
            r = &mut work, if all_ready && !stopping => {
                if let Some(r) = &r {
                    match r {
                        Ok(lines) => for l in lines { eprintln!("  {l}"); },
                        Err(e) => eprintln!("  replay failed: {e}"),
                    }
                }
                rec.replay = r;
                stop_now = true;
            }
            _ = &mut ready_deadline, if !all_ready && !stopping => {
                rec.failed.get_or_insert(format!("the capture containers did not start within {READY_TIMEOUT:?}"));
                stop_now = true;
            }
            _ = &mut end_deadline, if stopping => {
                rec.notes.push(format!("the capture containers did not end within {END_TIMEOUT:?}"));
                break;
            }
        }
        if stop_now && !stopping {
            stopping = true;
            if rec.interrupted {
                eprintln!("interrupted: stopping the capture");
            }
            end_deadline = Box::pin(tokio::time::sleep(END_TIMEOUT));
            // SIGTERM to every capture container at once; their streams then end.
            for t in targets {
                let docker = docker.clone();
                let name = capture_container(t.node.container);
                tokio::spawn(async move {
                    if let Err(e) = docker.stop_capture(&name).await {
                        eprintln!("warning: {e}");
                    }
                });
            }
        }
    }
    file.flush().context("spool")?;
    Ok(rec)
}

/// Forwards the records of one capture container's output.
async fn read_stream(i: usize, mut output: CaptureOutput, tx: mpsc::Sender<(usize, Event)>) {
    let mut decoder = Decoder::default();
    while let Some(item) = output.next().await {
        let events = match item {
            Ok(LogOutput::StdOut { message }) => match decoder.push(&message) {
                Ok(frames) => frames.into_iter().map(Event::Frame).collect(),
                Err(e) => vec![Event::Failed(e.to_string())],
            },
            Ok(LogOutput::StdErr { message }) => {
                vec![Event::Stderr(
                    String::from_utf8_lossy(&message).into_owned(),
                )]
            }
            Ok(_) => Vec::new(),
            Err(e) => vec![Event::Failed(e.to_string())],
        };
        let failed = events.iter().any(|e| matches!(e, Event::Failed(_)));
        for e in events {
            if tx.send((i, e)).await.is_err() {
                return;
            }
        }
        if failed {
            break;
        }
    }
    let _ = tx.send((i, Event::Closed)).await;
}

/// Writes the pcapng file: section header, one interface per node, the
/// secrets, then the packets in time order.
fn write_file(
    output: &Path,
    lab: &Lab,
    targets: &[Target<'_>],
    spool: &Path,
    packets: &[Spooled],
    secrets: &str,
) -> std::io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(output)?);
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let comment = format!(
        "labctl capture of lab {} (variant {}): {}",
        lab.name,
        lab.variant,
        names.join(", ")
    );
    let appl = format!("labctl {}", env!("CARGO_PKG_VERSION"));
    out.write_all(&pcapng::section_header(&[
        (pcapng::OPT_COMMENT, comment.as_bytes()),
        (pcapng::SHB_OS, b"Linux"),
        (pcapng::SHB_USERAPPL, appl.as_bytes()),
    ]))?;
    for t in targets {
        let description = format!(
            "lab {}, variant {}, node {} (container {})",
            lab.name, lab.variant, t.name, t.node.container
        );
        out.write_all(&pcapng::interface(
            pcapng::LINKTYPE_ETHERNET,
            node::SNAPLEN as u32,
            &[
                (pcapng::IF_NAME, t.name.as_bytes()),
                (pcapng::IF_DESCRIPTION, description.as_bytes()),
            ],
        ))?;
    }
    if !secrets.is_empty() {
        out.write_all(&pcapng::decryption_secrets(
            pcapng::SECRETS_TLS_KEY_LOG,
            secrets.as_bytes(),
        ))?;
    }
    let mut order: Vec<&Spooled> = packets.iter().collect();
    order.sort_by_key(|p| (p.ts_nanos, p.interface));
    let spool = std::fs::File::open(spool)?;
    let mut buf = Vec::new();
    for p in order {
        buf.resize(p.len as usize, 0);
        spool.read_exact_at(&mut buf, p.offset)?;
        out.write_all(&pcapng::packet(p.interface, p.ts_nanos, &buf, p.len))?;
    }
    out.flush()
}

/// The summary: counts per node against the kernel's, secrets, and how to open the file.
fn report(
    output: &Path,
    targets: &[Target<'_>],
    rec: &Recording,
    secrets: &str,
    elapsed: Duration,
) {
    for note in &rec.notes {
        eprintln!("note: {note}");
    }
    println!(
        "recorded {} packets in {:.1} s{}",
        rec.packets.len(),
        elapsed.as_secs_f64(),
        if rec.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    for (i, t) in targets.iter().enumerate() {
        let kernel = match rec.stats[i] {
            Some(s) => format!(
                "the kernel counted {} packets on its interfaces meanwhile, {} dropped",
                s.kernel_packets, s.kernel_drops
            ),
            None => "no end record (the capture was cut)".into(),
        };
        println!("  {:<24} {:>8} packets; {kernel}", t.name, rec.per_node[i]);
    }
    println!(
        "TLS secrets: {} lines, embedded in the file (Decryption Secrets Block): lab use only",
        secrets.lines().count()
    );
    let file = output.display();
    println!("wrote {file}\nopen it:  wireshark {file}\n          tshark -r {file} -Y smtp");
}
