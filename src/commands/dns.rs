//! `labctl dns NAME [TYPE] [--server ADDR:PORT] [--variant N]`: asks the lab's
//! DNS server (only it, never the system resolver) and prints the answer like
//! a short `dig`: the header with status and flags, then the question, answer,
//! authority and additional sections.
//!
//! An IPv4 address as NAME asks for its PTR (the `in-addr.arpa` name of
//! RFC 1035 §3.5), as `dig -x` does.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::net::client::{Client, ClientHandle};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::proto::op::Message;
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::cli::DnsArgs;
use crate::exit;

/// How long to wait for the server.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `labctl dns`.
pub async fn run(args: &DnsArgs) -> anyhow::Result<ExitCode> {
    let server = match args.server {
        Some(server) => server,
        // The lab in this folder, else the running one (Lab::find).
        None => crate::lab::Lab::find(args.variant, None)
            .await
            .map_err(|e| exit::usage(format!("{e} (or ask a server with --server ADDR:PORT)")))?
            .dns_addr(),
    };
    let (name, record_type) = question(&args.name, &args.record_type)?;
    let (message, protocol) = ask(server, name, record_type).await?;
    print!("{}", format_answer(&message, server, protocol));
    Ok(ExitCode::SUCCESS)
}

/// The name and type to ask for. An IPv4 address becomes its reverse name
/// with type PTR (RFC 1035 §3.5), unless another type than A or PTR is asked.
fn question(name: &str, record_type: &str) -> anyhow::Result<(Name, RecordType)> {
    let record_type = RecordType::from_str(&record_type.to_ascii_uppercase()).map_err(|_| {
        exit::usage(format!(
            "unknown record type {record_type:?} (try A, AAAA, MX, TXT, PTR, SRV, SOA, NS, CNAME)"
        ))
    })?;
    if let Ok(ip) = name.parse::<Ipv4Addr>()
        && matches!(record_type, RecordType::A | RecordType::PTR)
    {
        let [a, b, c, d] = ip.octets();
        let reverse = Name::from_ascii(format!("{d}.{c}.{b}.{a}.in-addr.arpa."))?;
        return Ok((reverse, RecordType::PTR));
    }
    let mut parsed = Name::from_utf8(name)
        .map_err(|e| exit::usage(format!("{name:?} is not a domain name: {e}")))?;
    parsed.set_fqdn(true);
    Ok((parsed, record_type))
}

/// Asks over UDP; a truncated answer is asked again over TCP (RFC 7766 §5).
async fn ask(
    server: SocketAddr,
    name: Name,
    record_type: RecordType,
) -> anyhow::Result<(Message, &'static str)> {
    let unreachable = |e: &dyn std::fmt::Display| {
        exit::environment(format!(
            "no answer from the DNS server {server}: {e} (is the lab up? `labctl status`)"
        ))
    };
    let provider = TokioRuntimeProvider::default();
    let udp = UdpClientStream::builder(server, provider.clone())
        .with_timeout(Some(TIMEOUT))
        .build();
    let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(udp);
    tokio::spawn(background);
    let response = client
        .query(name.clone(), DNSClass::IN, record_type)
        .await
        .map_err(|e| unreachable(&e))?;
    if !response.metadata.truncation {
        return Ok((response.into_message(), "udp"));
    }
    let (stream, handle) = TcpClientStream::new(server, None, Some(TIMEOUT), provider);
    let stream = stream.await.map_err(|e| unreachable(&e))?;
    let (mut client, background) = Client::<TokioRuntimeProvider>::new(stream, handle);
    tokio::spawn(background);
    let response = client
        .query(name, DNSClass::IN, record_type)
        .await
        .map_err(|e| unreachable(&e))?;
    Ok((response.into_message(), "tcp"))
}

/// The answer as a short dig would print it.
fn format_answer(message: &Message, server: SocketAddr, protocol: &str) -> String {
    let meta = &message.metadata;
    let mut out = String::new();
    let _ = writeln!(
        out,
        ";; ->>HEADER<<- opcode: {}, status: {}, id: {}",
        format!("{:?}", meta.op_code).to_ascii_uppercase(),
        labdns::rcode_mnemonic(u16::from(meta.response_code)),
        meta.id
    );
    let flags: Vec<&str> = [
        (true, "qr"),
        (meta.authoritative, "aa"),
        (meta.truncation, "tc"),
        (meta.recursion_desired, "rd"),
        (meta.recursion_available, "ra"),
        (meta.authentic_data, "ad"),
        (meta.checking_disabled, "cd"),
    ]
    .into_iter()
    .filter_map(|(on, flag)| on.then_some(flag))
    .collect();
    let _ = writeln!(
        out,
        ";; flags: {}; QUERY: {}, ANSWER: {}, AUTHORITY: {}, ADDITIONAL: {}",
        flags.join(" "),
        message.queries.len(),
        message.answers.len(),
        message.authorities.len(),
        message.additionals.len()
    );
    out.push_str("\n;; QUESTION SECTION:\n");
    for q in &message.queries {
        let _ = writeln!(
            out,
            ";{}\t\t{}\t{}",
            q.name(),
            q.query_class(),
            q.query_type()
        );
    }
    for (title, records) in [
        ("ANSWER", &message.answers),
        ("AUTHORITY", &message.authorities),
        ("ADDITIONAL", &message.additionals),
    ] {
        if records.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n;; {title} SECTION:");
        for record in records {
            let _ = writeln!(out, "{}", format_record(record));
        }
    }
    let _ = writeln!(
        out,
        "\n;; SERVER: {}#{} ({protocol})",
        server.ip(),
        server.port()
    );
    out
}

/// `name ttl class type rdata`, tab-separated like dig; TXT strings quoted.
fn format_record(record: &Record) -> String {
    let rdata = match &record.data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    format!(
        "{}\t{}\t{}\t{}\t{}",
        record.name,
        record.ttl,
        record.dns_class,
        record.record_type(),
        rdata
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_address_asks_for_its_ptr() {
        let (name, t) = question("10.77.7.11", "A").unwrap();
        assert_eq!(name.to_string(), "11.7.77.10.in-addr.arpa.");
        assert_eq!(t, RecordType::PTR);
        let (name, t) = question("metal.com", "mx").unwrap();
        assert_eq!(
            (name.to_string().as_str(), t),
            ("metal.com.", RecordType::MX)
        );
        assert!(question("metal.com", "BOGUS").is_err());
    }
}
