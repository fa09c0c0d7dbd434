//! A target: a two-domain mail lab described by a person, for grading labs
//! that labctl did not make (`labctl verify --target FILE`, issue 18).
//!
//! One schema for labs that labctl describes and labs that people describe:
//! a target file has the shape of `labctl status --json`
//! (docs/status-json.md), where only `variant`, `ca_cert`, `dns.ip`,
//! `dns.port` and, per server, `domain`, `ip` and `mailboxes` are needed.
//! YAML or JSON (JSON is YAML). What the lab should be (host names, the five
//! mailboxes, the SPF policy, the CA's subject) always comes from the variant
//! table, never from the file: the file only says where things are and how
//! to log in.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plan::{Ports, Service};
use crate::variant::Variant;

/// Errors of reading a target file; each names the file and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The file cannot be read.
    #[error("cannot read the target file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not have the target's shape (serde_yaml names the field and the line).
    #[error(
        "{path}: {message}\n  what to do: compare it with `labctl verify --target-template --variant N`"
    )]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        message: String,
    },
    /// A field has a value the lab cannot have.
    #[error("{path}: field `{field}`: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, as a path (`servers[1].domain`).
        field: String,
        /// What is wrong and what was expected.
        problem: String,
    },
}

/// How to send from a server's own address, for the checks that need it
/// (R7's altered-body copy, port-25 probes from the sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderAccess {
    /// `docker exec` into this container (labctl's own labs, containers).
    Container(String),
    /// A command prefix that runs a command on the server (`ssh root@10.0.0.11`).
    Ssh(String),
}

/// One mailbox and its password.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetMailbox {
    /// `user@domain`, the login name.
    pub address: String,
    /// The password.
    pub password: String,
}

/// One mail server of the target.
#[derive(Debug, Clone)]
pub struct TargetServer {
    /// Its mail domain.
    pub domain: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its ports: the standard ones, with the file's overrides.
    pub ports: Ports,
    /// The mailboxes the file gives passwords for.
    pub mailboxes: Vec<TargetMailbox>,
    /// How to send from its address, when the file grants it.
    pub sender: Option<SenderAccess>,
}

/// A lab to grade.
#[derive(Debug, Clone)]
pub struct Target {
    /// The variant whose table says what the lab must be.
    pub variant: u32,
    /// The CA certificate the student's servers should chain to.
    pub ca_cert: PathBuf,
    /// The lab's DNS server.
    pub dns_ip: Ipv4Addr,
    /// Its port.
    pub dns_port: u16,
    /// The server of domain 1, then of domain 2 (the variant's order).
    pub servers: [TargetServer; 2],
}

/// The file as written (status JSON shape; unknown fields of `labctl status
/// --json` such as `runtime`, `state`, `hostname` are accepted and ignored).
#[derive(Debug, Deserialize)]
struct RawTarget {
    variant: u32,
    ca_cert: PathBuf,
    dns: RawDns,
    servers: Vec<RawServer>,
}

#[derive(Debug, Deserialize)]
struct RawDns {
    ip: Ipv4Addr,
    #[serde(default = "dns_port")]
    port: u16,
}

fn dns_port() -> u16 {
    53
}

#[derive(Debug, Deserialize)]
struct RawServer {
    domain: String,
    ip: Ipv4Addr,
    /// Only the ports that differ from the standard ones (a map keyed by
    /// service name; an unknown name is an error).
    #[serde(default)]
    ports: BTreeMap<Service, u16>,
    #[serde(default)]
    mailboxes: Vec<TargetMailbox>,
    /// A file of `address password` lines, instead of (or besides) `mailboxes`.
    #[serde(default)]
    credentials: Option<PathBuf>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    ssh: Option<String>,
}

impl Target {
    /// Reads and checks a target file against the variant table.
    /// `variant_of` looks a variant up by number.
    pub fn load<'v>(
        path: &Path,
        variant_of: impl Fn(u32) -> Option<&'v Variant>,
    ) -> Result<Target, TargetError> {
        let text = std::fs::read_to_string(path).map_err(|source| TargetError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawTarget = serde_yaml::from_str(&text).map_err(|e| TargetError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let invalid = |field: &str, problem: String| TargetError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        let variant = variant_of(raw.variant).ok_or_else(|| {
            invalid(
                "variant",
                format!(
                    "there is no variant {} (`labctl variants` lists them)",
                    raw.variant
                ),
            )
        })?;
        let ca_cert = base.join(&raw.ca_cert);
        if !ca_cert.is_file() {
            return Err(invalid(
                "ca_cert",
                format!("{} is not a file", ca_cert.display()),
            ));
        }
        if raw.servers.len() != 2 {
            return Err(invalid(
                "servers",
                format!(
                    "a lab has two mail servers, one per domain ({} and {}); the file lists {}",
                    variant.domains[0],
                    variant.domains[1],
                    raw.servers.len()
                ),
            ));
        }
        let mut by_domain: BTreeMap<String, TargetServer> = BTreeMap::new();
        for (i, s) in raw.servers.into_iter().enumerate() {
            let field = |f: &str| format!("servers[{i}].{f}");
            if !variant.domains.contains(&s.domain) || by_domain.contains_key(&s.domain) {
                return Err(invalid(
                    &field("domain"),
                    format!(
                        "{:?}: variant {}'s domains are {} and {}, one server each",
                        s.domain, variant.number, variant.domains[0], variant.domains[1]
                    ),
                ));
            }
            let mut ports = Ports::STANDARD;
            for (service, port) in &s.ports {
                if *port == 0 {
                    return Err(invalid(
                        &field(&format!("ports.{service}")),
                        "0 is not a port".into(),
                    ));
                }
                ports = ports.with(*service, *port);
            }
            let mut mailboxes = s.mailboxes;
            if let Some(file) = &s.credentials {
                let file = base.join(file);
                mailboxes.extend(read_credentials(&file).map_err(|problem| {
                    invalid(
                        &field("credentials"),
                        format!("{}: {problem}", file.display()),
                    )
                })?);
            }
            for (j, m) in mailboxes.iter().enumerate() {
                if !m.address.ends_with(&format!("@{}", s.domain)) {
                    return Err(invalid(
                        &field(&format!("mailboxes[{j}].address")),
                        format!("{} is not an address of {}", m.address, s.domain),
                    ));
                }
            }
            let sender = match (s.container, s.ssh) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        &field("ssh"),
                        "give `container` or `ssh`, not both".into(),
                    ));
                }
                (Some(c), None) => Some(SenderAccess::Container(c)),
                (None, Some(prefix)) if !prefix.trim().is_empty() => {
                    Some(SenderAccess::Ssh(prefix))
                }
                (None, Some(_)) => {
                    return Err(invalid(&field("ssh"), "an empty command prefix".into()));
                }
                (None, None) => None,
            };
            by_domain.insert(
                s.domain.clone(),
                TargetServer {
                    domain: s.domain,
                    ip: s.ip,
                    ports,
                    mailboxes,
                    sender,
                },
            );
        }
        let mut take = |d: &str| by_domain.remove(d).expect("both domains checked above");
        let servers = [take(&variant.domains[0]), take(&variant.domains[1])];
        Ok(Target {
            variant: raw.variant,
            ca_cert,
            dns_ip: raw.dns.ip,
            dns_port: raw.dns.port,
            servers,
        })
    }
}

/// `address password` lines; `#` starts a comment.
fn read_credentials(path: &Path) -> Result<Vec<TargetMailbox>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [address, password] => out.push(TargetMailbox {
                address: address.to_string(),
                password: password.to_string(),
            }),
            _ => return Err(format!("line {}: expected `address password`", n + 1)),
        }
    }
    Ok(out)
}

/// A commented target file for `variant` to fill in
/// (`labctl verify --target-template --variant N`).
pub fn template(variant: &Variant) -> String {
    let mut out = format!(
        "# labctl verify --target FILE: the two-domain mail lab of variant {n} to grade.\n\
         # What the lab must be (host names mail.<domain>, the five mailboxes, the SPF\n\
         # policy, the CA's subject) comes from the variant table; this file says only\n\
         # where the servers are and how to log in. Paths are relative to this file.\n\
         # The shape of `labctl status --json`: a lab that labctl describes works as is.\n\
         variant: {n}\n\
         # The lab's CA certificate (PEM): every server's chain must end in it.\n\
         ca_cert: ca.crt\n\
         # The lab's DNS server (authoritative for both domains and the reverse zone).\n\
         dns:\n  ip: 192.0.2.53\n  port: 53\n\
         servers:\n",
        n = variant.number
    );
    for (i, domain) in variant.domains.iter().enumerate() {
        out.push_str(&format!(
            "  - domain: {domain}\n    ip: 192.0.2.{host}\n\
             \x20   # Only ports that differ from 25, 587, 465, 143, 993, 110, 995:\n\
             \x20   # ports: {{submissions: 10465}}\n\
             \x20   # A password for each mailbox (or `credentials: FILE` of `address password` lines).\n\
             \x20   # A mailbox without one is not logged into: its checks are SKIP.\n\
             \x20   mailboxes:\n",
            host = 11 + i
        ));
        for m in variant.mailboxes_of(domain) {
            out.push_str(&format!("      - {{address: {m}, password: \"...\"}}\n"));
        }
        out.push_str(
            "    # Optional: how to send from this server's own address, for the checks\n\
             \x20   # that need it (port-25 probes from the sender, R7's altered copy).\n\
             \x20   # Without it those checks are SKIP. One of:\n\
             \x20   # ssh: \"ssh root@192.0.2.1x\"\n\
             \x20   # container: student-mail1\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variant::Catalog;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn load(dir: &Path, text: &str) -> Result<Target, TargetError> {
        let catalog = Catalog::load(None).unwrap();
        let path = write(dir, "target.yaml", text);
        Target::load(&path, |n| catalog.get(n).ok())
    }

    const GOOD: &str = "variant: 7
ca_cert: ca.crt
dns: {ip: 10.88.7.53}
servers:
  - domain: zone07.org
    ip: 10.88.7.12
    ports: {submissions: 10465}
    credentials: creds.txt
    ssh: ssh root@10.88.7.12
  - domain: metal.com
    ip: 10.88.7.11
    mailboxes:
      - {address: gold@metal.com, password: p1}
    container: classic07-mail.metal.com
";

    #[test]
    fn a_target_file_is_read_in_the_variants_order_with_port_overrides() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "ca.crt", "PEM");
        write(
            tmp.path(),
            "creds.txt",
            "# mailbox password\ncopper@zone07.org c1\nzinc@zone07.org z1\n",
        );
        let t = load(tmp.path(), GOOD).unwrap();
        assert_eq!(t.dns_port, 53);
        assert_eq!(t.servers[0].domain, "metal.com");
        assert_eq!(
            t.servers[0].sender,
            Some(SenderAccess::Container("classic07-mail.metal.com".into()))
        );
        assert_eq!(t.servers[1].ports.submissions, 10465);
        assert_eq!(t.servers[1].ports.smtp, 25);
        assert_eq!(t.servers[1].mailboxes.len(), 2);
        assert_eq!(
            t.servers[1].sender,
            Some(SenderAccess::Ssh("ssh root@10.88.7.12".into()))
        );
    }

    #[test]
    fn a_bad_target_file_names_the_field() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "ca.crt", "PEM");
        write(tmp.path(), "creds.txt", "copper@zone07.org c1\n");
        for (change, field) in [
            (("zone07.org\n", "zone99.org\n"), "servers[0].domain"),
            (("10.88.7.12\n", "10.88.7.312\n"), "servers[0].ip"),
            (("{submissions: 10465}", "{pop4: 1}"), "pop4"),
            (
                ("{submissions: 10465}", "{smtp: 0}"),
                "servers[0].ports.smtp",
            ),
            (("ca_cert: ca.crt", "ca_cert: nope.crt"), "ca_cert"),
            (("variant: 7", "variant: 99"), "variant"),
            (
                ("gold@metal.com", "gold@zone07.org"),
                "servers[1].mailboxes[0].address",
            ),
            (("ssh: ssh root@10.88.7.12", "ssh: \"\""), "servers[0].ssh"),
        ] {
            let text = GOOD.replace(change.0, change.1);
            let e = load(tmp.path(), &text).unwrap_err().to_string();
            assert!(e.contains(field), "{change:?}: {e}");
        }
        let one = GOOD.split("  - domain: metal.com").next().unwrap();
        let e = load(tmp.path(), one).unwrap_err().to_string();
        assert!(
            e.contains("`servers`") && e.contains("two mail servers"),
            "{e}"
        );
    }

    #[test]
    fn the_template_parses_once_filled_in_and_lists_every_mailbox() {
        let catalog = Catalog::load(None).unwrap();
        let v = catalog.get(7).unwrap();
        let text = template(v);
        for m in &v.mailboxes {
            assert!(text.contains(m.as_str()), "{m} missing");
        }
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "ca.crt", "PEM");
        let t = load(tmp.path(), &text).unwrap();
        assert_eq!(t.servers[0].mailboxes.len(), 3);
        assert_eq!(t.servers[1].mailboxes.len(), 2);
        assert!(t.servers.iter().all(|s| s.sender.is_none()));
        assert_eq!(t.servers[0].ports, Ports::STANDARD);
    }

    #[test]
    fn a_status_json_lab_object_is_a_target() {
        // `labctl status --json` of a labctl lab: extra fields are ignored.
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "ca.crt", "PEM");
        let json = serde_json::json!({
            "variant": 7, "runtime": "docker", "state": "running", "name": "lab07",
            "ca_cert": "ca.crt", "subnet": "10.77.7.0/24",
            "dns": {"ip": "10.77.7.53", "port": 53, "container": "lab07-dns", "state": "running"},
            "servers": [
                {"domain": "metal.com", "hostname": "mail.metal.com", "ip": "10.77.7.11",
                 "container": "lab07-mail.metal.com", "state": "running",
                 "ports": {"smtp": 25, "submission": 587, "submissions": 465, "imap": 143,
                           "imaps": 993, "pop3": 110, "pop3s": 995},
                 "mailboxes": [{"address": "gold@metal.com", "password": "x"}]},
                {"domain": "zone07.org", "hostname": "mail.zone07.org", "ip": "10.77.7.12",
                 "container": "lab07-mail.zone07.org", "state": "running",
                 "mailboxes": []}
            ]
        });
        let t = load(tmp.path(), &json.to_string()).unwrap();
        assert_eq!(
            t.servers[1].sender,
            Some(SenderAccess::Container("lab07-mail.zone07.org".into()))
        );
        assert_eq!(t.servers[0].ports, Ports::STANDARD);
    }
}
