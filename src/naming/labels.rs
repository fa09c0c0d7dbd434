//! Every label key the project puts on Docker objects, and the one function
//! that builds the full set (house rule 4). Status and teardown select by
//! these labels only; no label literal appears anywhere else.

use std::collections::HashMap;

use super::instance;

/// The lab number, two digits (`07`): present on every object we create.
pub const LAB: &str = "io.labctl.lab";
/// `dns` or `mail` (containers), `network`, `volume`.
pub const ROLE: &str = "io.labctl.role";
/// The mail domain of a mail container or data volume.
pub const DOMAIN: &str = "io.labctl.domain";
/// The lab directory's absolute path, so `status`/`down` work from any folder.
pub const DIR: &str = "io.labctl.dir";
/// Hash of the rendered files and the container spec (convergence).
pub const HASH: &str = "io.labctl.hash";
/// The variant number (no leading zero).
pub const VARIANT: &str = "io.labctl.variant";
/// The labctl version that created the object.
pub const VERSION: &str = "io.labctl.version";
/// The instance (`LABCTL_INSTANCE`, see [`super::instance`]); absent when unset.
pub const INSTANCE: &str = "io.labctl.instance";

/// Role of the DNS container.
pub const ROLE_DNS: &str = "dns";
/// Role of a mail container.
pub const ROLE_MAIL: &str = "mail";
/// Role of the lab network.
pub const ROLE_NETWORK: &str = "network";
/// Role of a data volume.
pub const ROLE_VOLUME: &str = "volume";
/// Role of a short-lived capture container (`labctl capture`).
pub const ROLE_CAPTURE: &str = "capture";

/// What a label set is for.
#[derive(Debug, Clone, Copy)]
pub enum Object<'a> {
    /// The lab network.
    Network,
    /// The DNS container.
    Dns,
    /// The mail container of a domain.
    Mail(&'a str),
    /// The data volume of a domain.
    Volume(&'a str),
    /// A capture container (`labctl capture`).
    Capture,
}

/// The two-digit lab number used in [`LAB`].
pub fn lab_value(variant: u32) -> String {
    format!("{variant:02}")
}

/// The full label set of `object` in the lab of `variant` rendered into
/// `dir`; `hash` only for containers.
pub fn labels(
    variant: u32,
    dir: &std::path::Path,
    object: Object<'_>,
    hash: Option<&str>,
) -> HashMap<String, String> {
    let (role, domain) = match object {
        Object::Network => (ROLE_NETWORK, None),
        Object::Dns => (ROLE_DNS, None),
        Object::Mail(d) => (ROLE_MAIL, Some(d)),
        Object::Volume(d) => (ROLE_VOLUME, Some(d)),
        Object::Capture => (ROLE_CAPTURE, None),
    };
    let mut l = HashMap::from([
        (LAB.to_string(), lab_value(variant)),
        (VARIANT.to_string(), variant.to_string()),
        (ROLE.to_string(), role.to_string()),
        (DIR.to_string(), dir.display().to_string()),
        (VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ]);
    if let Some(i) = instance::current() {
        l.insert(INSTANCE.to_string(), i.to_string());
    }
    if let Some(d) = domain {
        l.insert(DOMAIN.to_string(), d.to_string());
    }
    if let Some(h) = hash {
        l.insert(HASH.to_string(), h.to_string());
    }
    l
}

/// Docker `label` filters (all must match): every object of lab `variant`,
/// or of every lab, of this instance. Docker cannot select "no instance
/// label", so without an instance [`variant_of`] drops the other instances'.
pub fn filters(variant: Option<u32>) -> Vec<String> {
    filters_in(instance::current(), variant)
}

fn filters_in(instance: Option<&str>, variant: Option<u32>) -> Vec<String> {
    let mut f = vec![match variant {
        Some(n) => format!("{LAB}={}", lab_value(n)),
        None => LAB.to_string(),
    }];
    if let Some(i) = instance {
        f.push(format!("{INSTANCE}={i}"));
    }
    f
}

/// The lab number in a label set, if it is a lab of this instance.
pub fn variant_of(labels: &HashMap<String, String>) -> Option<u32> {
    variant_in(instance::current(), labels)
}

fn variant_in(instance: Option<&str>, labels: &HashMap<String, String>) -> Option<u32> {
    if labels.get(INSTANCE).map(String::as_str) != instance {
        return None;
    }
    labels.get(LAB)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_instance_sees_only_its_labs() {
        let plain = set(&[(LAB, "07")]);
        let test = set(&[(LAB, "07"), (INSTANCE, "test")]);
        assert_eq!(variant_in(None, &plain), Some(7));
        assert_eq!(variant_in(None, &test), None);
        assert_eq!(variant_in(Some("test"), &test), Some(7));
        assert_eq!(variant_in(Some("test"), &plain), None);
        assert_eq!(variant_in(Some("other"), &test), None);
        assert_eq!(filters_in(None, Some(7)), ["io.labctl.lab=07"]);
        assert_eq!(
            filters_in(Some("test"), None),
            ["io.labctl.lab", "io.labctl.instance=test"]
        );
    }
}
