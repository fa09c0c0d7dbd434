//! The lab network `labNN`: a bridge with the plan's /24, gateway `.1`.
//! Reused when it is ours with the same subnet; refused, naming the other
//! network, when the subnet overlaps one that exists (README, "Network plan").

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};

use super::Docker;
use crate::naming::labels::{self, Object};
use crate::plan::Plan;
use crate::runtime::api::RuntimeError;

/// An IPv4 network `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/len` (IPv6 and garbage give `None`).
    pub fn parse(s: &str) -> Option<Self> {
        let (a, l) = s.split_once('/')?;
        let len: u8 = l.parse().ok().filter(|l| *l <= 32)?;
        Some(Self {
            addr: a.parse().ok()?,
            len,
        })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 { 0 } else { u32::MAX << (32 - len) }
    }

    /// True when the two networks share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let m = Self::mask(self.len.min(other.len));
        (u32::from(self.addr) & m) == (u32::from(other.addr) & m)
    }
}

/// Subnets of a network (IPv4 only).
fn subnets(n: &bollard::models::Network) -> Vec<String> {
    n.ipam
        .as_ref()
        .and_then(|i| i.config.as_ref())
        .map(|c| c.iter().filter_map(|c| c.subnet.clone()).collect())
        .unwrap_or_default()
}

impl Docker {
    /// Finds or creates the lab network; returns true when it was created now.
    pub async fn ensure_network(&self, plan: &Plan) -> Result<bool, RuntimeError> {
        let ours = Cidr::parse(&plan.subnet_cidr()).expect("the plan's subnet is a /24");
        let networks = self.networks().await?;
        if let Some(n) = networks
            .iter()
            .find(|n| n.name.as_deref() == Some(&plan.name))
        {
            let owner = n.labels.as_ref().and_then(labels::variant_of);
            let same_subnet = subnets(n).iter().any(|s| Cidr::parse(s) == Some(ours));
            return match (owner == Some(u32::from(plan.variant.number)), same_subnet) {
                (true, true) => Ok(false),
                (false, _) => Err(RuntimeError::NameTaken {
                    name: plan.name.clone(),
                    why: "it was not created by labctl for this lab".into(),
                }),
                (true, false) => Err(RuntimeError::NameTaken {
                    name: plan.name.clone(),
                    why: format!(
                        "its subnet {} is not {}; run `labctl down --variant {}` first",
                        subnets(n).join(", "),
                        plan.subnet_cidr(),
                        plan.variant.number
                    ),
                }),
            };
        }
        for n in &networks {
            for s in subnets(n) {
                if Cidr::parse(&s).is_some_and(|c| c.overlaps(&ours)) {
                    return Err(RuntimeError::SubnetTaken {
                        subnet: plan.subnet_cidr(),
                        network: n.name.clone().unwrap_or_default(),
                        its: s,
                    });
                }
            }
        }
        let request = NetworkCreateRequest {
            name: plan.name.clone(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(plan.subnet_cidr()),
                    gateway: Some(plan.gateway.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(labels::labels(
                plan.variant.number.into(),
                &plan.dir,
                Object::Network,
                None,
            )),
            options: Some(HashMap::from([(
                // the host side of the bridge, visible in `ip link`
                "com.docker.network.bridge.name".to_string(),
                bridge_name(&plan.name),
            )])),
            ..Default::default()
        };
        self.api.create_network(request).await.map_err(|e| {
            // Another network may have taken the subnet between list and create.
            self.err(
                format!("create network {} {}", plan.name, plan.subnet_cidr()),
                e,
            )
        })?;
        Ok(true)
    }
}

/// The host-side name of a lab's bridge: `br-<lab name>` when it fits in a
/// Linux interface name (15 bytes, IFNAMSIZ - 1); else the name's start and a
/// checksum of the whole name (instance names make lab names up to 26 bytes,
/// and the engine refuses a longer bridge name with "numerical result out of
/// range").
pub fn bridge_name(lab: &str) -> String {
    const MAX: usize = 15;
    let full = format!("br-{lab}");
    if full.len() <= MAX {
        return full;
    }
    let sum = crc32fast::hash(lab.as_bytes()) & 0xffff;
    let head: String = lab.chars().take(MAX - "br-".len() - 5).collect();
    format!("br-{head}-{sum:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_an_interface_name() {
        assert_eq!(bridge_name("lab07"), "br-lab07");
        assert_eq!(bridge_name("test-lab07"), "br-test-lab07");
        let long = bridge_name("hostile-lab03");
        assert!(long.len() <= 15, "{long}");
        assert!(long.starts_with("br-hostile"), "{long}");
        assert_ne!(
            bridge_name("abcdefghijkl-lab01"),
            bridge_name("abcdefghijkl-lab02")
        );
        assert!(bridge_name(&"x".repeat(26)).len() <= 15);
    }

    #[test]
    fn overlap() {
        let a = Cidr::parse("10.77.7.0/24").unwrap();
        assert!(a.overlaps(&Cidr::parse("10.77.0.0/16").unwrap()));
        assert!(a.overlaps(&Cidr::parse("10.77.7.128/25").unwrap()));
        assert!(!a.overlaps(&Cidr::parse("10.77.8.0/24").unwrap()));
        assert!(!a.overlaps(&Cidr::parse("172.17.0.0/16").unwrap()));
        assert!(Cidr::parse("fd00::/64").is_none());
    }
}
