//! Issue 2: `labctl render` writes every file a lab needs, checked by
//! independent tools (openssl, named-checkzone).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{have_tool, labctl, run, stderr, stdout};

fn render(n: u32, dir: &Path, extra: &[&str]) {
    let out = run(labctl()
        .args(["render", "--variant", &n.to_string(), "--dir"])
        .arg(dir)
        .args(extra));
    assert!(out.status.success(), "render {n}: {}", stderr(&out));
}

fn openssl(args: &[&str]) -> String {
    let out = run(Command::new("openssl").args(args));
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The variant table, straight from the assignment (README, "Variants").
fn expected(n: u32) -> (&'static str, [&'static str; 2], &'static str) {
    const T: [(&str, [&str; 2], &str); 15] = [
        ("letter CA", ["letter.net", "zone01.com"], "v=spf1 mx -all"),
        ("planet CA", ["planet.edu", "zone02.org"], "v=spf1 mx ~all"),
        ("cat CA", ["cat.com", "zone03.net"], "v=spf1 a mx -all"),
        (
            "flower CA",
            ["flower.org", "zone04.edu"],
            "v=spf1 ptr mx -all",
        ),
        ("linux CA", ["linux.net", "zone05.com"], "v=spf1 a mx ~all"),
        (
            "color CA",
            ["color.edu", "zone06.net"],
            "v=spf1 ptr mx ~all",
        ),
        ("metal CA", ["metal.com", "zone07.org"], "v=spf1 mx -all"),
        (
            "capital CA",
            ["capital.org", "zone08.edu"],
            "v=spf1 mx ~all",
        ),
        (
            "currency CA",
            ["currency.net", "zone09.com"],
            "v=spf1 a mx -all",
        ),
        (
            "river CA",
            ["river.edu", "zone10.net"],
            "v=spf1 ptr mx -all",
        ),
        ("fruit CA", ["fruit.com", "zone11.org"], "v=spf1 a mx ~all"),
        (
            "digit CA",
            ["digit.org", "zone12.edu"],
            "v=spf1 ptr mx ~all",
        ),
        ("month CA", ["month.net", "zone13.com"], "v=spf1 mx -all"),
        ("name CA", ["name.edu", "zone14.org"], "v=spf1 mx ~all"),
        (
            "country CA",
            ["country.com", "zone15.net"],
            "v=spf1 a mx -all",
        ),
    ];
    T[n as usize - 1]
}

/// The TXT records of `name` in a zone file, as named-checkzone's canonical dump
/// shows them (strings joined).
fn zone_txt(zone_file: &Path, origin: &str, name: &str) -> Vec<String> {
    let out = run(Command::new("named-checkzone")
        .args(["-q", "-D", "-o", "-", origin])
        .arg(zone_file));
    assert!(
        out.status.success(),
        "named-checkzone -D {}: {}",
        zone_file.display(),
        stdout(&out)
    );
    stdout(&out)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (owner, _ttl, _class, ty) = (f.next()?, f.next()?, f.next()?, f.next()?);
            (owner == name && ty == "TXT").then(|| {
                let rest = l.split_once("TXT").unwrap().1.trim();
                rest.split('"').skip(1).step_by(2).collect::<String>()
            })
        })
        .collect()
}

#[test]
fn all_15_variants_render_and_pass_openssl_and_named_checkzone() {
    if !have_tool("openssl") || !have_tool("named-checkzone") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    for n in 1..=15u32 {
        let (cn, domains, spf) = expected(n);
        let dir = root.path().join(format!("lab-{n:02}"));
        render(n, &dir, &[]);
        let ca = dir.join("ca/ca.crt");
        let ca_s = ca.to_str().unwrap();
        let dn = format!("CN={cn},OU=OT,O=KPI,L=Kyiv,ST=Ukraine,C=UA");
        // RFC 2253 prints the DN in reverse order: CN first means C was first in the certificate.
        let subject = openssl(&[
            "x509", "-in", ca_s, "-noout", "-subject", "-nameopt", "RFC2253",
        ]);
        let issuer = openssl(&[
            "x509", "-in", ca_s, "-noout", "-issuer", "-nameopt", "RFC2253",
        ]);
        assert_eq!(subject.trim(), format!("subject={dn}"), "variant {n}");
        assert_eq!(issuer.trim(), format!("issuer={dn}"), "variant {n}");
        let text = openssl(&["x509", "-in", ca_s, "-noout", "-text"]);
        assert!(text.contains("CA:TRUE"), "variant {n}: {text}");
        assert!(
            text.contains("Certificate Sign, CRL Sign"),
            "variant {n}: {text}"
        );
        assert!(
            text.contains("X509v3 Basic Constraints: critical"),
            "variant {n}"
        );
        for d in domains {
            let host = format!("mail.{d}");
            let cert = dir.join(format!("certs/{host}.crt"));
            let out = run(Command::new("openssl")
                .args(["verify", "-CAfile", ca_s, "-verify_hostname", &host])
                .arg(&cert));
            assert!(
                out.status.success() && stdout(&out).contains(": OK"),
                "variant {n} {host}: {}{}",
                stdout(&out),
                stderr(&out)
            );
            let out = run(Command::new("openssl")
                .args(["verify", "-CAfile", ca_s, "-verify_hostname", d])
                .arg(&cert));
            assert!(out.status.success(), "variant {n}: SAN {d} missing");
            let text = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"]);
            assert!(
                text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
                "{text}"
            );
            // The zone: named-checkzone accepts it; SPF and DKIM exactly right.
            let zone = dir.join(format!("dns/{d}.zone"));
            let out = run(Command::new("named-checkzone").arg(d).arg(&zone));
            assert!(
                out.status.success(),
                "named-checkzone {d}: {}",
                stdout(&out)
            );
            let spf_txt: Vec<_> = zone_txt(&zone, d, &format!("{d}."))
                .into_iter()
                .filter(|t| t.starts_with("v=spf1"))
                .collect();
            assert_eq!(spf_txt, [spf.to_string()], "variant {n} {d}");
            let dkim = zone_txt(&zone, d, &format!("lab._domainkey.{d}."));
            assert_eq!(dkim.len(), 1, "variant {n} {d}: {dkim:?}");
            let p = dkim[0].split("p=").nth(1).unwrap();
            let der = run(Command::new("openssl")
                .args(["pkey", "-pubout", "-outform", "DER", "-in"])
                .arg(dir.join(format!("dkim/{d}.key"))));
            assert!(der.status.success());
            assert_eq!(
                base64_std(&der.stdout),
                p,
                "variant {n} {d}: DKIM TXT is not the key's public half"
            );
        }
        let reverse = format!("{n}.77.10.in-addr.arpa");
        let out = run(Command::new("named-checkzone")
            .arg(&reverse)
            .arg(dir.join(format!("dns/{reverse}.zone"))));
        assert!(
            out.status.success(),
            "named-checkzone {reverse}: {}",
            stdout(&out)
        );
        let out = run(Command::new("named-checkzone")
            .arg(".")
            .arg(dir.join("dns/root.zone")));
        assert!(
            out.status.success(),
            "named-checkzone root: {}",
            stdout(&out)
        );
        // Secrets are private.
        for key in [
            "ca/ca.key",
            "credentials.txt",
            &format!("dkim/{}.key", domains[0]),
            &format!("certs/mail.{}.key", domains[1]),
        ] {
            let mode = fs::metadata(dir.join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "variant {n}: {key} has mode {mode:o}");
        }
        // The server config names every mailbox of its domain.
        let config =
            fs::read_to_string(dir.join(format!("servers/mail.{}/config.yaml", domains[1])))
                .unwrap();
        assert!(config.contains("$argon2id$"), "{config}");
    }
}

fn base64_std(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn rendering_twice_keeps_everything_and_fresh_regenerates_secrets() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("lab");
    render(3, &dir, &[]);
    let first = snapshot(&dir);
    render(3, &dir, &[]);
    assert_eq!(first, snapshot(&dir), "a second render changed files");
    render(3, &dir, &["--fresh"]);
    let fresh = snapshot(&dir);
    for secret in [
        "ca/ca.key",
        "ca/ca.crt",
        "certs/mail.cat.com.key",
        "dkim/cat.com.key",
        "dkim/zone03.net.key",
        "credentials.txt",
    ] {
        assert_ne!(
            first[Path::new(secret)],
            fresh[Path::new(secret)],
            "--fresh kept {secret}"
        );
    }
}

/// A valid variant file with one line replaced.
fn variant_with(replace: &str, with: &str) -> String {
    let base = "variant: 16\nca:\n  country: UA\n  state: Ukraine\n  locality: Kyiv\n  organization: KPI\n  organizational_unit: OT\n  common_name: test CA\ndomains:\n  - one.test\n  - two.test\nmailboxes:\n  - a@one.test\n  - b@two.test\nspf_policy: \"v=spf1 mx -all\"\n";
    assert!(base.contains(replace), "{replace}");
    base.replace(replace, with)
}

#[test]
fn malformed_variant_files_exit_2_naming_file_and_field() {
    let cases = [
        (
            "  - b@two.test\n",
            "  - b@other.test\n",
            "mailboxes",
            "not one of the variant's domains",
        ),
        (
            "  - two.test\n",
            "  - two_bad.test\n",
            "domains",
            "not a valid domain name",
        ),
        (
            "spf_policy: \"v=spf1 mx -all\"",
            "spf_policy: \"v=spf1 mx\"",
            "spf_policy",
            "no final \"all\"",
        ),
        (
            "  common_name: test CA\n",
            "",
            "common_name",
            "missing field",
        ),
        (
            "  - b@two.test\n",
            "  - b@two.test\n  - a@one.test\n",
            "mailboxes",
            "listed twice",
        ),
    ];
    for (replace, with, field, problem) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("16.yaml");
        fs::write(&file, variant_with(replace, with)).unwrap();
        let out = run(labctl()
            .arg("--variants-dir")
            .arg(dir.path())
            .arg("variants"));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert!(
            err.contains(&file.display().to_string()),
            "does not name the file: {err}"
        );
        assert!(
            err.contains(field),
            "does not name the field {field}: {err}"
        );
        assert!(err.contains(problem), "does not say {problem:?}: {err}");
    }
    // A good user file adds variant 16.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("16.yaml"),
        variant_with("test CA", "test CA"),
    )
    .unwrap();
    let out = run(labctl()
        .arg("variants")
        .arg("--json")
        .env("LABCTL_VARIANTS", dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 16);
    assert_eq!(list[15]["domains"][1], "two.test");
}

#[test]
fn unknown_variant_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(labctl()
        .args(["render", "--variant", "99", "--dir"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("known variants: 1, 2, 3"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_binary_is_static() {
    // A static-pie binary has no PT_INTERP program header (ELF spec, "Program Header").
    let bin = fs::read(env!("CARGO_BIN_EXE_labctl")).unwrap();
    assert_eq!(&bin[..4], b"\x7fELF");
    assert_eq!(bin[4], 2, "not a 64-bit ELF");
    let u16_at = |o: usize| u16::from_le_bytes([bin[o], bin[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(bin[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let p_type = u32::from_le_bytes(bin[phoff + i * phentsize..][..4].try_into().unwrap());
        assert_ne!(
            p_type, PT_INTERP,
            "labctl has an ELF interpreter: it is dynamically linked"
        );
    }
}

/// The rendered compose.yml is a valid Compose file (checked by Debian's
/// docker-compose without starting anything): the same three containers,
/// network and volumes as `labctl up`, with the project's labels.
#[test]
fn compose_file_is_valid_for_docker_compose() {
    if !have_tool("docker-compose") {
        assert!(!crate::common::in_ci(), "docker-compose is required in CI");
        eprintln!("SKIPPED: no docker-compose");
        return;
    }
    // Without an instance (what a user gets) and in the tests' instance.
    for instance in [None, Some(crate::common::INSTANCE)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut cmd = labctl();
        match instance {
            Some(i) => cmd.env("LABCTL_INSTANCE", i),
            None => cmd.env_remove("LABCTL_INSTANCE"),
        };
        let o = run(cmd
            .args(["render", "--variant", "4", "--dir"])
            .arg(tmp.path()));
        assert!(o.status.success(), "{}", stderr(&o));
        let name = labctl::naming::instance::lab_name_in(instance, 4);
        let o = run(Command::new("docker-compose")
            .args(["-p", &name, "-f", "compose.yml", "config"])
            .current_dir(tmp.path()));
        assert!(o.status.success(), "{}", stderr(&o));
        let config: serde_yaml::Value = serde_yaml::from_str(&stdout(&o)).unwrap();
        let services = config["services"].as_mapping().expect("services");
        assert_eq!(services.len(), 3, "{config:?}");
        for (service, s) in services {
            // Issue 13: each container mounts only its own files (docs/security.md).
            let volumes = serde_yaml::to_string(&s["volumes"]).unwrap();
            let service = service.as_str().unwrap();
            assert!(
                !volumes.contains("ca.key"),
                "{service} mounts the CA key: {volumes}"
            );
            let mine = service.strip_prefix("mail.");
            for domain in ["flower.org", "zone04.edu"] {
                for key in [format!("mail.{domain}.key"), format!("dkim/{domain}.key")] {
                    assert_eq!(
                        volumes.contains(&key),
                        mine == Some(domain),
                        "{service}: {key} in {volumes}"
                    );
                }
            }
            if mine.is_none() {
                assert_eq!(
                    s["volumes"].as_sequence().map(Vec::len),
                    Some(1),
                    "{volumes}"
                );
                assert!(volumes.contains("/dns:/lab/dns:ro"), "{volumes}");
            }
            assert_eq!(
                s["image"].as_str(),
                Some(&*format!("labctl:{}", env!("CARGO_PKG_VERSION")))
            );
            assert_eq!(s["labels"]["io.labctl.lab"].as_str(), Some("04"), "{s:?}");
            assert_eq!(s["labels"]["io.labctl.instance"].as_str(), instance);
            assert!(
                s["container_name"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&format!("{name}-"))),
                "{s:?}"
            );
            assert_eq!(s["read_only"].as_bool(), Some(true));
            assert_eq!(s["user"].as_str(), Some("1000:1000"));
        }
        let network = &config["networks"]["lab"];
        assert_eq!(network["name"].as_str(), Some(&*name));
        assert_eq!(network["labels"]["io.labctl.instance"].as_str(), instance);
    }
}

/// Issue 13: files with secrets are 0600 (the servers run as their owner),
/// the rest 0644, and the folder carries labctl's marker.
#[test]
fn secrets_are_0600_and_the_lab_directory_is_marked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab-07");
    // An older config of mode 0644 is narrowed when rendered again.
    render(7, &dir, &[]);
    let config = dir.join("servers/mail.metal.com/config.yaml");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    render(7, &dir, &[]);
    let mode = |rel: &str| fs::metadata(dir.join(rel)).unwrap().permissions().mode() & 0o777;
    for secret in [
        "ca/ca.key",
        "certs/mail.metal.com.key",
        "certs/mail.zone07.org.key",
        "dkim/metal.com.key",
        "dkim/zone07.org.key",
        "servers/mail.metal.com/config.yaml",
        "servers/mail.zone07.org/config.yaml",
        "credentials.txt",
        "lab.json",
    ] {
        assert_eq!(mode(secret), 0o600, "{secret} has mode {:o}", mode(secret));
    }
    for public in [
        "ca/ca.crt",
        "certs/mail.metal.com.crt",
        "dns/metal.com.zone",
        "compose.yml",
    ] {
        assert_eq!(mode(public), 0o644, "{public} has mode {:o}", mode(public));
    }
    assert!(
        fs::read_to_string(dir.join(".labctl-lab"))
            .unwrap()
            .contains("variant 7")
    );
}

/// Issue 13: `render` and `up` (both runtimes) refuse a folder that labctl did
/// not make, exit 2 with what to do, and change nothing in it; an empty
/// folder and an older lab directory (no marker, its lab.json records it) are fine.
#[test]
fn render_and_up_refuse_a_folder_labctl_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    let foreign = tmp.path().join("home");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), "mine").unwrap();
    fs::set_permissions(&foreign, fs::Permissions::from_mode(0o750)).unwrap();
    let listing = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    for args in [
        &["render", "--variant", "3"][..],
        &["up", "--variant", "3", "--runtime", "local"][..],
        &["up", "--variant", "3", "--runtime", "docker"][..],
    ] {
        let o = run(labctl()
            .args(args)
            .arg("--dir")
            .arg(&foreign)
            .env("XDG_RUNTIME_DIR", tmp.path().join("state")));
        let e = stderr(&o);
        if args.contains(&"docker") && o.status.code() == Some(3) {
            // No Docker engine here: the environment error comes first, nothing written either.
            assert!(e.contains("Docker"), "{e}");
        } else {
            assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
            assert!(
                e.contains("is not a lab directory of labctl"),
                "{args:?}: {e}"
            );
            assert!(
                e.contains("what to do: give --dir a new or an empty folder"),
                "{e}"
            );
        }
        assert_eq!(
            listing(&foreign),
            ["notes.txt"],
            "{args:?} wrote into the folder"
        );
        assert_eq!(
            fs::read_to_string(foreign.join("notes.txt")).unwrap(),
            "mine"
        );
        let mode = fs::metadata(&foreign).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o750, "{args:?} changed the folder's mode");
    }
    // An empty folder becomes a lab directory.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    render(3, &empty, &[]);
    assert!(empty.join(".labctl-lab").is_file());
    // A lab directory of an older labctl (no marker) is adopted and marked.
    fs::remove_file(empty.join(".labctl-lab")).unwrap();
    render(3, &empty, &[]);
    assert!(empty.join(".labctl-lab").is_file());
    // A copy elsewhere records another folder in its lab.json: refused.
    let copy = tmp.path().join("copy");
    fs::create_dir(&copy).unwrap();
    fs::copy(empty.join("lab.json"), copy.join("lab.json")).unwrap();
    let o = run(labctl()
        .args(["render", "--variant", "3", "--dir"])
        .arg(&copy));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(listing(&copy), ["lab.json"]);
}
