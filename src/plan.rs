//! The lab plan: everything `labctl` decides about a lab before touching the
//! disk or Docker (names, addresses, ports, folders). Built from a variant and
//! the command-line options with no I/O; rendering, the runtimes and verify
//! all read it. Like ripgrep's `HiArgs`, nothing acts before it exists.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::variant::Variant;

/// DKIM selector the lab publishes and signs with.
pub const DKIM_SELECTOR: &str = "lab";

/// Which runtime a lab is planned for: it decides addresses and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Containers on a Docker bridge network `10.77.N.0/24`, standard ports.
    Docker,
    /// One process on loopback addresses `127.77.N.x`, ports >= 1024.
    Local,
}

impl RuntimeKind {
    /// The name used in `lab.json` and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Local => "local",
        }
    }
}

/// The ports of one mail server: the mail server's own type, shared by its
/// config, the plan, `lab.json` and the runtimes.
pub use mailserver::service::{Ports, Service};

/// The local runtime's ports: the standard port plus 10000 (no root needed).
pub const LOCAL_PORTS: Ports = Ports::STANDARD.offset(10000);

/// The lab DNS server.
#[derive(Debug, Clone, Serialize)]
pub struct DnsNode {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its port (53, or 10053 in the local runtime).
    pub port: u16,
    /// Container name (docker runtime).
    pub container: String,
}

impl DnsNode {
    /// Address and port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), self.port)
    }
}

/// One mail server.
#[derive(Debug, Clone, Serialize)]
pub struct MailNode {
    /// Its mail domain.
    pub domain: String,
    /// `mail.<domain>`.
    pub hostname: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its ports.
    pub ports: Ports,
    /// Container name (docker runtime).
    pub container: String,
    /// Docker volume holding its data.
    pub volume: String,
    /// Its mailboxes.
    pub mailboxes: Vec<String>,
}

/// The whole lab.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The variant.
    pub variant: Variant,
    /// `labNN`: network name and container prefix.
    pub name: String,
    /// The runtime the addresses are planned for.
    pub runtime: RuntimeKind,
    /// The lab directory, absolute.
    pub dir: PathBuf,
    /// The lab subnet's first three octets (a /24).
    pub subnet: [u8; 3],
    /// The gateway (docker: the host side of the bridge).
    pub gateway: Ipv4Addr,
    /// The DNS server.
    pub dns: DnsNode,
    /// Mail server of domain 1, then of domain 2.
    pub servers: [MailNode; 2],
}

/// Options that shape a plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Runtime.
    pub runtime: RuntimeKind,
    /// Lab directory (absolute).
    pub dir: PathBuf,
    /// The /24 subnet (docker), e.g. `10.77.7.0/24`; `None` for the default.
    pub subnet: Option<String>,
}

/// Errors of planning (all are usage errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The subnet is not a /24 IPv4 network.
    #[error("--subnet {0:?}: expected an IPv4 /24 network such as 10.77.7.0/24")]
    Subnet(String),
}

impl Plan {
    /// Plans the lab of `variant`.
    pub fn build(variant: &Variant, options: &PlanOptions) -> Result<Self, PlanError> {
        let n = variant.number;
        let subnet = match (&options.subnet, options.runtime) {
            (Some(s), _) => parse_subnet24(s).ok_or_else(|| PlanError::Subnet(s.clone()))?,
            (None, RuntimeKind::Docker) => [10, 77, n],
            (None, RuntimeKind::Local) => [127, 77, n],
        };
        let ip = |host: u8| Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host);
        let (ports, dns_port) = match options.runtime {
            RuntimeKind::Docker => (Ports::STANDARD, 53),
            RuntimeKind::Local => (LOCAL_PORTS, 10053),
        };
        let name = crate::naming::instance::lab_name(n.into());
        let server = |i: usize, host: u8| {
            let domain = variant.domains[i].clone();
            MailNode {
                hostname: format!("mail.{domain}"),
                ip: ip(host),
                ports,
                container: format!("{name}-mail.{domain}"),
                volume: format!("{name}-data-{domain}"),
                mailboxes: variant.mailboxes_of(&domain).map(str::to_string).collect(),
                domain,
            }
        };
        Ok(Self {
            variant: variant.clone(),
            runtime: options.runtime,
            dir: options.dir.clone(),
            subnet,
            gateway: ip(1),
            dns: DnsNode {
                ip: ip(53),
                port: dns_port,
                container: format!("{name}-dns"),
            },
            servers: [server(0, 11), server(1, 12)],
            name,
        })
    }

    /// The subnet in CIDR notation.
    pub fn subnet_cidr(&self) -> String {
        format!(
            "{}.{}.{}.0/24",
            self.subnet[0], self.subnet[1], self.subnet[2]
        )
    }

    /// The reverse zone of the subnet (RFC 1035 §3.5), e.g. `7.77.10.in-addr.arpa`.
    pub fn reverse_zone(&self) -> String {
        format!(
            "{}.{}.{}.in-addr.arpa",
            self.subnet[2], self.subnet[1], self.subnet[0]
        )
    }

    /// The mail server of `domain`.
    pub fn server(&self, domain: &str) -> Option<&MailNode> {
        self.servers.iter().find(|s| s.domain == domain)
    }
}

fn parse_subnet24(s: &str) -> Option<[u8; 3]> {
    let (addr, len) = s.split_once('/')?;
    if len != "24" {
        return None;
    }
    let a: Ipv4Addr = addr.parse().ok()?;
    let o = a.octets();
    (o[3] == 0).then_some([o[0], o[1], o[2]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variant::Catalog;

    #[test]
    fn docker_and_local_plans() {
        let c = Catalog::load(None).unwrap();
        let v = c.get(7).unwrap();
        let opts = |runtime| PlanOptions {
            runtime,
            dir: "/tmp/lab-07".into(),
            subnet: None,
        };
        let p = Plan::build(v, &opts(RuntimeKind::Docker)).unwrap();
        assert_eq!(p.dns.addr().to_string(), "10.77.7.53:53");
        assert_eq!(p.servers[0].hostname, "mail.metal.com");
        assert_eq!(p.servers[1].ip, Ipv4Addr::new(10, 77, 7, 12));
        assert_eq!(p.servers[1].container, "lab07-mail.zone07.org");
        assert_eq!(p.reverse_zone(), "7.77.10.in-addr.arpa");
        let l = Plan::build(v, &opts(RuntimeKind::Local)).unwrap();
        assert_eq!(l.servers[0].ip, Ipv4Addr::new(127, 77, 7, 11));
        assert_eq!(l.servers[0].ports.smtp, 10025);
        let mut o = opts(RuntimeKind::Docker);
        o.subnet = Some("10.0.0.0/16".into());
        assert!(Plan::build(v, &o).is_err());
    }
}
