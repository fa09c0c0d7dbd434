//! Filter-stage benchmark (`make bench`, or `cargo bench -p mailserver --bench filters`).
//!
//! Prints: RSS growth from loading the scanner (yara-x rules) and the spam
//! filter (rules + initial Bayes model); scan+score throughput in messages/s
//! and MB/s on a mixed corpus (1 KiB text to 5 MiB attachments); the time the
//! filter stage adds per 100 KiB message (target <= 1 ms); the time to refuse
//! a zip bomb (10 MB expanding to 11 GB). A plain harness (no criterion) so it
//! adds no dependency; each figure is the median of repeated runs.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine as _;
use mailserver::filter::malware::MalwareFilter;
use mailserver::filter::spam::SpamFilter;
use mailserver::filter::{Filter, FilterInput, Verdict, run_stage};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Deterministic bytes that do not compress (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn text(len: usize) -> String {
    let words = [
        "the",
        "server",
        "message",
        "lab",
        "network",
        "delivery",
        "mailbox",
        "record",
        "лист",
        "сервер",
        "письмо",
        "notes",
        "report",
        "seminar",
        "queue",
    ];
    let mut s = String::new();
    let mut i = 0usize;
    while s.len() < len {
        s.push_str(words[i * 7 % words.len()]);
        s.push(if i % 12 == 11 { '\n' } else { ' ' });
        i += 1;
    }
    s
}

fn plain(body: &str) -> Vec<u8> {
    format!(
        "From: Olena <olena@wood.org>\r\nTo: ivan@metal.com\r\nSubject: lab notes\r\n\
         Date: Sun, 22 Nov 2026 03:00:00 +0000\r\nMessage-ID: <b1@wood.org>\r\n\r\n{}\r\n",
        body.replace('\n', "\r\n")
    )
    .into_bytes()
}

fn with_attachment(name: &str, ctype: &str, data: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut lines = String::with_capacity(b64.len() + b64.len() / 38);
    for chunk in b64.as_bytes().chunks(76) {
        lines.push_str(std::str::from_utf8(chunk).unwrap());
        lines.push_str("\r\n");
    }
    format!(
        "From: olena@wood.org\r\nTo: ivan@metal.com\r\nSubject: files\r\nDate: Sun, 22 Nov 2026 03:00:00 +0000\r\n\
         Message-ID: <b2@wood.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nattached\r\n--b\r\nContent-Type: {ctype}; name=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\r\n{lines}--b--\r\n"
    )
    .into_bytes()
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        out.start_file(
            *name,
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// 10 entries of 1100 MiB zeros each, about 11 MB (see the unit tests).
fn zip_bomb() -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(8192);
    c.compress_vec(&vec![0u8; 1 << 20], &mut block, FlushCompress::Sync)
        .unwrap();
    let mut stream = block.repeat(1100);
    stream.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for i in 0..10u32 {
        let name = format!("zeros{i}.bin");
        let offset = out.len() as u32;
        for (sig, cd) in [(&b"PK\x03\x04"[..], false), (&b"PK\x01\x02"[..], true)] {
            let mut h = sig.to_vec();
            if cd {
                h.extend_from_slice(&20u16.to_le_bytes());
            }
            h.extend_from_slice(&[20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0, 0, 0, 0, 0]);
            h.extend_from_slice(&(stream.len() as u32).to_le_bytes());
            h.extend_from_slice(&(1100u32 << 20).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&[0, 0]);
            if cd {
                h.extend_from_slice(&[0; 10]);
                h.extend_from_slice(&offset.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            if cd {
                central.extend_from_slice(&h);
            } else {
                out.extend_from_slice(&h);
                out.extend_from_slice(&stream);
            }
        }
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0\x0a\0\x0a\0");
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_stage(filters: &[Box<dyn Filter>], message: &[u8], runs: usize) -> Duration {
    let input = FilterInput {
        message,
        ..Default::default()
    };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let _ = black_box(run_stage(filters, black_box(&input)).expect("stage runs"));
        times.push(t.elapsed());
    }
    median(times)
}

/// Median time of `f` over `runs` calls.
fn time_of(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    median(times)
}

/// Where the time of the stage goes for one message.
fn breakdown(name: &str, message: &[u8]) {
    use mailserver::filter::spam::analyze::Analysis;
    use mailserver::filter::spam::bayes::Classifier;
    use mailserver::filter::spam::rules::{Context, RuleSet};
    use mailserver::filter::spam::tokenize::tokens;
    let scanner = MalwareFilter::builtin(None).expect("rules compile");
    let rules = RuleSet::load(None).expect("rules");
    let classifier = Classifier::open(None).expect("model");
    let analysis = Analysis::of(message);
    let ctx = Context {
        raw: message,
        bayes: Some(0.5),
        ..Default::default()
    };
    let runs = 50;
    let parse = time_of(runs, || {
        black_box(mail_parser::MessageParser::default().parse(black_box(message)));
    });
    let scan = time_of(runs, || {
        black_box(scanner.scan(black_box(message)).expect("scan"));
    });
    let analyse = time_of(runs, || {
        black_box(Analysis::of(black_box(message)));
    });
    let tokenize = time_of(runs, || {
        black_box(tokens(black_box(&analysis)));
    });
    let classify = time_of(runs, || {
        black_box(classifier.classify(black_box(&analysis)).expect("model"));
    });
    let evaluate = time_of(runs, || {
        black_box(rules.evaluate(black_box(&analysis), &ctx));
    });
    let phrase_text = time_of(runs, || {
        black_box(black_box(&analysis).phrase_text());
    });
    println!(
        "  {name}: MIME parse {parse:.1?}, malware scan {scan:.1?}, spam analysis {analyse:.1?}, \
         tokens {tokenize:.1?}, classify (tokens included) {classify:.1?}, rules {evaluate:.1?} \
         (phrase text {phrase_text:.1?})"
    );
}

fn main() {
    let before = rss_kib();
    let t = Instant::now();
    let scanner = MalwareFilter::builtin(None).expect("rules compile");
    let spam = SpamFilter::new(None, None, 5.0, 10.0).expect("spam filter");
    let load = t.elapsed();
    let filters: Vec<Box<dyn Filter>> = vec![Box::new(scanner), Box::new(spam)];
    // Warm up (lazy regexes, first scanner instance).
    let warm = plain("hello");
    let _ = time_stage(&filters, &warm, 3);
    let after = rss_kib();
    println!("load: scanner + spam filter in {load:.1?}");
    println!(
        "rss: {before} KiB before, {after} KiB after loading: +{} KiB ({:.1} MiB)",
        after - before,
        (after - before) as f64 / 1024.0
    );

    let pdf_like = {
        let mut d = b"%PDF-1.7\n".to_vec();
        d.extend(noise(1 << 20, 7));
        d
    };
    let zip5 = zip_of(&[("data.bin", &noise(5 << 20, 11)), ("readme.txt", b"hello")]);
    let mix: Vec<(&str, Vec<u8>)> = vec![
        ("1 KiB text", plain(&text(1024))),
        ("10 KiB text", plain(&text(10 * 1024))),
        ("100 KiB text", plain(&text(100 * 1024))),
        (
            "100 KiB attachment",
            with_attachment("a.bin", "application/octet-stream", &noise(100 * 1024, 3)),
        ),
        (
            "1 MiB pdf",
            with_attachment("doc.pdf", "application/pdf", &pdf_like),
        ),
        (
            "5 MiB zip",
            with_attachment("data.zip", "application/zip", &zip5),
        ),
    ];
    let mut total_bytes = 0usize;
    let mut total_time = Duration::ZERO;
    for (name, m) in &mix {
        let runs = if m.len() > 1 << 20 { 10 } else { 100 };
        let d = time_stage(&filters, m, runs);
        total_bytes += m.len();
        total_time += d;
        println!(
            "{name:20} {:>9} bytes  {:>10.3?}/msg  {:>8.1} MB/s",
            m.len(),
            d,
            m.len() as f64 / d.as_secs_f64() / 1e6
        );
    }
    println!(
        "mixed corpus: {:.0} msgs/s, {:.1} MB/s (one message of each kind in turn)",
        mix.len() as f64 / total_time.as_secs_f64(),
        total_bytes as f64 / total_time.as_secs_f64() / 1e6
    );
    let per100 = time_stage(&filters, &mix[2].1, 200);
    println!("time added per 100 KiB text message: {per100:.3?} (target <= 1 ms)");
    for (name, m) in &mix[..3] {
        breakdown(name, m);
    }

    let bomb = with_attachment("bomb.zip", "application/zip", &zip_bomb());
    let rss0 = rss_kib();
    let t = Instant::now();
    let verdict = filters[0]
        .check(&FilterInput {
            message: &bomb,
            ..Default::default()
        })
        .expect("scan");
    let d = t.elapsed();
    assert!(
        matches!(verdict, Verdict::Refuse(_)),
        "bomb not refused: {verdict:?}"
    );
    println!(
        "zip bomb ({} bytes zip, 11 GiB expanded) refused in {d:.1?}, rss {} KiB -> {} KiB",
        bomb.len() * 3 / 4,
        rss0,
        rss_kib()
    );
}
