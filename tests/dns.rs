//! Issue 3: the lab DNS (`labctl serve-dns`) answers exactly what the mail
//! servers need, checked with dig (bind9-dnsutils) over UDP and TCP and with
//! hickory-resolver pointed only at it; `labctl dns` prints its answers.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    Guard, LocalLab, have_tool, labctl, run, stderr, stdout, without_running_labs,
};

/// One dig answer, parsed from its default output.
#[derive(Debug)]
struct Dig {
    status: String,
    flags: Vec<String>,
    /// `(owner, type, rdata)`; TXT rdata is the concatenation of its strings.
    answer: Vec<(String, String, String)>,
    authority: Vec<(String, String, String)>,
    /// TXT answers as dig shows them: each `"string"` separately.
    txt_strings: Vec<Vec<String>>,
    over_tcp: bool,
}

impl Dig {
    fn answer_rdata(&self, record_type: &str) -> Vec<String> {
        self.answer
            .iter()
            .filter(|(_, t, _)| t == record_type)
            .map(|(_, _, r)| r.clone())
            .collect()
    }

    fn assert_authoritative(&self, what: &str) {
        assert!(
            self.flags.iter().any(|f| f == "aa"),
            "{what}: no aa flag: {self:?}"
        );
        assert!(
            !self.flags.iter().any(|f| f == "ra"),
            "{what}: ra set: {self:?}"
        );
    }
}

/// `dig @server -p port [+tcp] name type` (or `-x ip` when `record_type` is `-x`).
fn dig(server: SocketAddr, tcp: bool, name: &str, record_type: &str) -> Dig {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+norec", "+tries=1", "+time=3"]);
    if tcp {
        cmd.arg("+tcp");
    }
    if record_type == "-x" {
        cmd.args(["-x", name]);
    } else {
        cmd.args([name, record_type]);
    }
    let out = run(&mut cmd);
    let text = stdout(&out);
    assert!(out.status.success(), "dig {name} {record_type}: {text}");
    parse_dig(&text)
}

fn parse_dig(text: &str) -> Dig {
    let mut dig = Dig {
        status: String::new(),
        flags: Vec::new(),
        answer: Vec::new(),
        authority: Vec::new(),
        txt_strings: Vec::new(),
        over_tcp: false,
    };
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            dig.status = rest.split(',').next().unwrap().to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap();
            dig.flags = flags.split_whitespace().map(String::from).collect();
        } else if line.starts_with(";; SERVER:") {
            dig.over_tcp = line.contains("(TCP)");
        } else if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
        } else if line.starts_with(";;") || line.trim().is_empty() {
            section = "";
        } else if !section.is_empty() && !line.starts_with(';') {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (owner, record_type) = (fields[0].to_string(), fields[3].to_string());
            let rdata_text = fields[4..].join(" ");
            let rdata = if record_type == "TXT" {
                let strings: Vec<String> = line
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .map(String::from)
                    .collect();
                let joined = strings.concat();
                dig.txt_strings.push(strings);
                joined
            } else {
                rdata_text
            };
            let entry = (owner, record_type, rdata);
            if section == "answer" {
                dig.answer.push(entry);
            } else {
                dig.authority.push(entry);
            }
        }
    }
    dig
}

/// The SPF policy of the variants tested here (README, "Variants").
fn spf_of(variant: u32) -> &'static str {
    match variant {
        3 => "v=spf1 a mx -all",
        4 => "v=spf1 ptr mx -all",
        7 => "v=spf1 mx -all",
        other => panic!("no SPF policy listed for variant {other}"),
    }
}

/// base64 of the DER public half of the rendered DKIM key (what `p=` must be).
fn dkim_public_base64(key: &Path) -> String {
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "openssl pkey -pubout -outform DER -in '{}' | base64 -w0",
        key.display()
    )));
    assert!(out.status.success(), "openssl: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// Every item of the "Done when", over UDP and over TCP.
fn check_lab_dns(variant: u32) {
    if !have_tool("dig") || !have_tool("openssl") {
        return;
    }
    let lab = LocalLab::render(variant);
    let _dns = lab.spawn_dns();
    let server = lab.dns_addr();
    let dns_ip = server.ip().to_string();

    for tcp in [false, true] {
        let how = if tcp { "TCP" } else { "UDP" };
        for i in 0..2 {
            let d = lab.domain(i);
            let ip = lab.server(i)["ip"].as_str().unwrap().to_string();
            let mail = format!("mail.{d}.");
            let ctx = format!("variant {variant} {d} over {how}");

            let mx = dig(server, tcp, &d, "MX");
            assert_eq!(mx.over_tcp, tcp, "{ctx}: dig used the wrong transport");
            assert_eq!(mx.status, "NOERROR", "{ctx}: {mx:?}");
            mx.assert_authoritative(&ctx);
            assert_eq!(mx.answer_rdata("MX"), [format!("10 {mail}")], "{ctx}");

            for host in [format!("mail.{d}"), d.clone()] {
                let a = dig(server, tcp, &host, "A");
                a.assert_authoritative(&ctx);
                assert_eq!(a.answer_rdata("A"), [ip.as_str()], "{ctx}: A of {host}");
            }
            let ns_a = dig(server, tcp, &format!("ns.{d}"), "A");
            assert_eq!(ns_a.answer_rdata("A"), [dns_ip.as_str()], "{ctx}: A of ns");

            let txt = dig(server, tcp, &d, "TXT");
            txt.assert_authoritative(&ctx);
            let spf: Vec<String> = txt
                .answer_rdata("TXT")
                .into_iter()
                .filter(|t| t.starts_with("v=spf1"))
                .collect();
            assert_eq!(spf, [spf_of(variant)], "{ctx}: SPF");

            let dkim = dig(server, tcp, &format!("lab._domainkey.{d}"), "TXT");
            dkim.assert_authoritative(&ctx);
            let dkim_txt = dkim.answer_rdata("TXT");
            assert_eq!(dkim_txt.len(), 1, "{ctx}: {dkim:?}");
            // RFC 1035 §3.3.14: no string over 255 octets; the 2048-bit key needs two.
            assert!(dkim.txt_strings[0].len() >= 2, "{ctx}: {dkim:?}");
            assert!(dkim.txt_strings[0].iter().all(|s| s.len() <= 255));
            assert!(dkim_txt[0].starts_with("v=DKIM1; k=rsa; p="), "{ctx}");
            let p = dkim_txt[0].split("p=").nth(1).unwrap();
            let key = lab.path().join(format!("dkim/{d}.key"));
            assert_eq!(
                p,
                dkim_public_base64(&key),
                "{ctx}: DKIM p= is not the key's public half"
            );

            let dmarc = dig(server, tcp, &format!("_dmarc.{d}"), "TXT");
            dmarc.assert_authoritative(&ctx);
            let dmarc_txt = dmarc.answer_rdata("TXT");
            assert_eq!(dmarc_txt.len(), 1, "{ctx}: {dmarc:?}");
            assert!(
                dmarc_txt[0].starts_with("v=DMARC1; p="),
                "{ctx}: {dmarc_txt:?}"
            );

            for (service, port) in [
                ("_submission._tcp", "submission"),
                ("_imaps._tcp", "imaps"),
                ("_pop3s._tcp", "pop3s"),
            ] {
                let srv = dig(server, tcp, &format!("{service}.{d}"), "SRV");
                srv.assert_authoritative(&ctx);
                let port = lab.server(i)["ports"][port].as_u64().unwrap();
                assert_eq!(
                    srv.answer_rdata("SRV"),
                    [format!("0 1 {port} {mail}")],
                    "{ctx}: {service}"
                );
            }

            let ptr = dig(server, tcp, &ip, "-x");
            ptr.assert_authoritative(&ctx);
            assert_eq!(
                ptr.answer_rdata("PTR"),
                [mail.as_str()],
                "{ctx}: PTR of {ip}"
            );

            let soa = dig(server, tcp, &d, "SOA");
            soa.assert_authoritative(&ctx);
            let soa_rdata = soa.answer_rdata("SOA");
            assert_eq!(soa_rdata.len(), 1, "{ctx}");
            assert!(
                soa_rdata[0].starts_with(&format!("ns.{d}. hostmaster.{d}. ")),
                "{ctx}: {soa_rdata:?}"
            );
            let ns = dig(server, tcp, &d, "NS");
            assert_eq!(ns.answer_rdata("NS"), [format!("ns.{d}.")], "{ctx}");

            // RFC 2308 §2.1: NXDOMAIN, with the zone's SOA in the authority section.
            let missing = dig(server, tcp, &format!("no-such-host.{d}"), "A");
            assert_eq!(missing.status, "NXDOMAIN", "{ctx}: {missing:?}");
            missing.assert_authoritative(&ctx);
            assert!(missing.answer.is_empty());
            assert_eq!(
                missing.authority[0].0,
                format!("{d}."),
                "{ctx}: {missing:?}"
            );
            assert_eq!(missing.authority[0].1, "SOA", "{ctx}: {missing:?}");

            // RFC 2308 §2.2: NODATA is NOERROR with no answer and the SOA.
            let nodata = dig(server, tcp, &format!("mail.{d}"), "TXT");
            assert_eq!(nodata.status, "NOERROR", "{ctx}: {nodata:?}");
            nodata.assert_authoritative(&ctx);
            assert!(nodata.answer.is_empty(), "{ctx}: {nodata:?}");
            assert_eq!(nodata.authority[0].1, "SOA", "{ctx}: {nodata:?}");

            // RFC 8020 §2: a name with names below it exists (empty non-terminal).
            let ent = dig(server, tcp, &format!("_tcp.{d}"), "A");
            assert_eq!(ent.status, "NOERROR", "{ctx}: {ent:?}");
            assert!(ent.answer.is_empty(), "{ctx}: {ent:?}");
        }

        // Outside the lab: NXDOMAIN from the empty root zone, never REFUSED.
        // (Not a TLD of the lab: `com.` is an empty non-terminal of the root
        // zone when ns.<d>.com has glue there, so NOERROR is right for it.)
        for outside in ["example.org", "www.example.org", "invalid"] {
            let nx = dig(server, tcp, outside, "A");
            assert_eq!(nx.status, "NXDOMAIN", "{outside} over {how}: {nx:?}");
            nx.assert_authoritative(outside);
            assert_eq!(nx.authority[0].0, ".", "{outside}: {nx:?}");
            assert_eq!(nx.authority[0].1, "SOA", "{outside}: {nx:?}");
        }
    }
}

#[test]
fn dns_serves_variant_7_spf_mx_over_udp_and_tcp() {
    check_lab_dns(7);
}

#[test]
fn dns_serves_variant_3_spf_a_over_udp_and_tcp() {
    check_lab_dns(3);
}

#[test]
fn dns_serves_variant_4_spf_ptr_over_udp_and_tcp() {
    check_lab_dns(4);
}

/// Runs `labctl serve-dns` in the foreground and returns its exit code and stderr.
fn serve_dns_fails(zones: &Path, listen: SocketAddr) -> (Option<i32>, String) {
    let mut child = labctl()
        .args(["serve-dns", "--zones"])
        .arg(zones)
        .args(["--listen", &listen.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (status.code(), stderr(&out));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve-dns kept running although it should have failed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dns_broken_zone_file_exits_2_naming_file_and_line() {
    let lab = LocalLab::render(7);
    let d = lab.domain(0);
    let zone = lab.path().join(format!("dns/{d}.zone"));
    let mut text = std::fs::read_to_string(&zone).unwrap();
    let bad_line = text.lines().count() + 1;
    text.push_str("broken IN A 10.0.0.300\n");
    std::fs::write(&zone, text).unwrap();

    let (code, err) = serve_dns_fails(&lab.path().join("dns"), lab.dns_addr());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&zone.display().to_string()), "{err}");
    assert!(err.contains(&format!("line {bad_line}")), "{err}");
    assert!(err.contains("IPv4"), "{err}");
}

#[test]
fn dns_taken_port_exits_3_naming_the_address() {
    let lab = LocalLab::render(7);
    let _first = lab.spawn_dns();
    let (code, err) = serve_dns_fails(&lab.path().join("dns"), lab.dns_addr());
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains(&lab.dns_addr().to_string()), "{err}");
}

/// The path the mail servers take: hickory-resolver with only the lab DNS
/// (no /etc/resolv.conf, no hosts file) resolves the other domain's MX, then
/// the exchange's A record.
#[test]
fn dns_hickory_resolver_follows_mx_to_a_of_the_other_domain() {
    use hickory_resolver::TokioResolver;
    use hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
    };
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

    let lab = LocalLab::render(7);
    let _dns = lab.spawn_dns();
    let server = lab.dns_addr();

    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let config = ResolverConfig::from_parts(
        None,
        vec![],
        vec![NameServerConfig::new(server.ip(), true, vec![udp, tcp])],
    );
    let mut options = ResolverOpts::default();
    options.use_hosts_file = ResolveHosts::Never;
    let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for (from, to) in [(0, 1), (1, 0)] {
            let domain = lab.domain(to);
            let mx = resolver.mx_lookup(format!("{domain}.")).await.unwrap();
            let exchanges: Vec<String> = mx
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    hickory_resolver::proto::rr::RData::MX(mx) => Some(mx.exchange.to_string()),
                    _ => None,
                })
                .collect();
            assert_eq!(
                exchanges,
                [format!("mail.{domain}.")],
                "MX of {domain} (from server {from})"
            );
            let a = resolver.ipv4_lookup(exchanges[0].as_str()).await.unwrap();
            let ips: Vec<IpAddr> = a
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    hickory_resolver::proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect();
            let expected: IpAddr = lab.server(to)["ip"].as_str().unwrap().parse().unwrap();
            assert_eq!(ips, [expected], "A of mail.{domain}");
        }
        // The closed world: a name outside the lab is a clean NXDOMAIN.
        let err = resolver.mx_lookup("example.org.").await.unwrap_err();
        assert!(err.is_nx_domain(), "{err:?}");
    });
}

#[test]
fn dns_command_prints_a_short_dig() {
    let lab = LocalLab::render(7);
    let _dns = lab.spawn_dns();
    let server = lab.dns_addr().to_string();
    let d = lab.domain(1);

    let out = run(labctl().args(["dns", &d, "MX", "--server", &server]));
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("status: NOERROR"), "{text}");
    assert!(text.contains(";; flags: qr aa"), "{text}");
    assert!(text.contains(";; ANSWER SECTION:"), "{text}");
    assert!(
        text.contains(&format!("{d}.\t300\tIN\tMX\t10 mail.{d}.")),
        "{text}"
    );

    let ip = lab.server(0)["ip"].as_str().unwrap().to_string();
    let out = run(labctl().args(["dns", &ip, "PTR", "--server", &server]));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("PTR\tmail.{}.", lab.domain(0))),
        "{text}"
    );

    let out = run(labctl().args([
        "dns",
        &format!("lab._domainkey.{d}"),
        "TXT",
        "--server",
        &server,
    ]));
    let text = stdout(&out);
    assert!(text.contains("TXT\t\"v=DKIM1; k=rsa; p="), "{text}");

    let out = run(labctl().args(["dns", "example.org", "--server", &server]));
    let text = stdout(&out);
    assert!(text.contains("status: NXDOMAIN"), "{text}");
    assert!(text.contains(";; AUTHORITY SECTION:"), "{text}");

    // Without --server: the lab of ./lab-NN (here a link to the rendered lab).
    let cwd = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(lab.path(), cwd.path().join("lab-07")).unwrap();
    let name = format!("mail.{d}");
    for args in [
        vec!["dns", name.as_str()],
        vec!["dns", name.as_str(), "--variant", "7"],
    ] {
        let out = run(labctl().args(&args).current_dir(cwd.path()));
        let text = stdout(&out);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let expected = lab.server(1)["ip"].as_str().unwrap();
        assert!(text.contains(&format!("IN\tA\t{expected}")), "{text}");
    }
    let out = run(without_running_labs(&mut labctl())
        .args(["dns", "x", "--variant", "9"])
        .current_dir(cwd.path()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("lab-09"), "{}", stderr(&out));

    // A server that does not answer: environment error (exit 3).
    let out = run(labctl().args(["dns", "x", "--server", "127.0.0.1:9"]));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

/// SIGHUP reloads the zone files; queries during reloads are all answered,
/// and a broken file on reload keeps the previous zones.
#[test]
fn dns_sighup_reloads_zones_without_dropping_queries() {
    if !have_tool("dig") {
        return;
    }
    let lab = LocalLab::render(7);
    let dns = lab.spawn_dns();
    let server = lab.dns_addr();
    let d = lab.domain(0);
    let zone = lab.path().join(format!("dns/{d}.zone"));
    let host = format!("added.{d}");

    assert_eq!(dig(server, false, &host, "A").status, "NXDOMAIN");
    let mut text = std::fs::read_to_string(&zone).unwrap();
    text.push_str("added IN A 10.99.99.99\n");
    std::fs::write(&zone, &text).unwrap();
    hangup(&dns);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = dig(server, false, &host, "A");
        if a.answer_rdata("A") == ["10.99.99.99"] {
            a.assert_authoritative(&host);
            break;
        }
        assert!(Instant::now() < deadline, "reload not seen: {a:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Reloads interleaved with queries: every query gets its answer (dig tries once).
    for round in 0..20 {
        hangup(&dns);
        let tcp = round % 2 == 1;
        let mx = dig(server, tcp, &d, "MX");
        assert_eq!(
            mx.answer_rdata("MX"),
            [format!("10 mail.{d}.")],
            "round {round}: {mx:?}"
        );
    }

    // A broken file on reload: the server keeps running on the previous zones.
    text.push_str("broken IN A not-an-address\n");
    std::fs::write(&zone, &text).unwrap();
    hangup(&dns);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        dig(server, true, &host, "A").answer_rdata("A"),
        ["10.99.99.99"]
    );
}

fn hangup(guard: &Guard) {
    let status = Command::new("kill")
        .args(["-HUP", &guard.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn dns_query_log_has_one_json_line_per_query() {
    if !have_tool("dig") {
        return;
    }
    let lab = LocalLab::render(7);
    let server = lab.dns_addr();
    let log = lab.path().join("queries.jsonl");
    let child = labctl()
        .args(["serve-dns", "--zones"])
        .arg(lab.path().join("dns"))
        .args(["--listen", &server.to_string(), "--query-log"])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = Guard {
        child,
        name: "dns".into(),
    };
    assert!(crate::common::wait_for_tcp(server, Duration::from_secs(10)));
    let d = lab.domain(1);
    dig(server, false, &d, "MX");
    dig(server, true, &format!("nothing.{d}"), "TXT");

    let deadline = Instant::now() + Duration::from_secs(5);
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // The TCP readiness probe opened a connection but sent no query.
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["name"], format!("{d}."));
    assert_eq!(lines[0]["type"], "MX");
    assert_eq!(lines[0]["rcode"], "NOERROR");
    assert_eq!(lines[0]["proto"], "udp");
    assert_eq!(lines[1]["name"], format!("nothing.{d}."));
    assert_eq!(lines[1]["type"], "TXT");
    assert_eq!(lines[1]["rcode"], "NXDOMAIN");
    assert_eq!(lines[1]["proto"], "tcp");
    let client: SocketAddr = lines[1]["client"].as_str().unwrap().parse().unwrap();
    assert!(client.ip().is_loopback());
    assert!(lines[1]["time"].as_str().unwrap().ends_with('Z'));

    // SIGTERM (docker stop) ends it cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &guard.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = guard.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "serve-dns ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "serve-dns exited with {exit} on SIGTERM");
}

/// RFC 1035 §4.2.1 / RFC 7766 §5: a UDP answer too big for 512 octets is
/// truncated (TC), and the same question over TCP gets all of it.
#[test]
fn dns_large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    if !have_tool("dig") {
        return;
    }
    let lab = LocalLab::render(7);
    let server = lab.dns_addr();
    let zones = lab.path().join("big-zones");
    std::fs::create_dir(&zones).unwrap();
    let mut zone = String::from(
        "$ORIGIN big.test.\n$TTL 300\n@ IN SOA ns.big.test. hostmaster.big.test. ( 1 3600 600 86400 60 )\n@ IN NS ns.big.test.\n",
    );
    for i in 0..8 {
        zone.push_str(&format!("many IN TXT \"{i}{}\"\n", "x".repeat(199)));
    }
    std::fs::write(zones.join("big.test.zone"), zone).unwrap();
    let child = labctl()
        .args(["serve-dns", "--zones"])
        .arg(&zones)
        .args(["--listen", &server.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _guard = Guard {
        child,
        name: "dns".into(),
    };
    assert!(crate::common::wait_for_tcp(server, Duration::from_secs(10)));

    let out = run(Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+norec", "+noedns", "+ignore", "many.big.test", "TXT"]));
    let udp = parse_dig(&stdout(&out));
    assert!(udp.flags.iter().any(|f| f == "tc"), "{udp:?}");
    assert!(udp.answer.len() < 8, "{udp:?}");

    let tcp = dig(server, true, "many.big.test", "TXT");
    assert!(!tcp.flags.iter().any(|f| f == "tc"), "{tcp:?}");
    assert_eq!(tcp.answer.len(), 8, "{tcp:?}");
}
