//! Variants: the assignment's table, one YAML file per variant.
//!
//! The 15 built-in files (`variants/NN.yaml`) are compiled into the binary; a
//! user folder (`--variants-dir` or `LABCTL_VARIANTS`) adds variants or
//! overrides built-in ones. Every file is validated on load, and a bad file
//! gets an error naming the file, the field and what was expected.

mod spf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use spf::{SpfError, SpfMechanism, SpfPolicy, SpfQualifier};

/// The built-in variant files, registered in one explicit list.
const BUILTIN: &[(&str, &str)] = &[
    ("01.yaml", include_str!("../../variants/01.yaml")),
    ("02.yaml", include_str!("../../variants/02.yaml")),
    ("03.yaml", include_str!("../../variants/03.yaml")),
    ("04.yaml", include_str!("../../variants/04.yaml")),
    ("05.yaml", include_str!("../../variants/05.yaml")),
    ("06.yaml", include_str!("../../variants/06.yaml")),
    ("07.yaml", include_str!("../../variants/07.yaml")),
    ("08.yaml", include_str!("../../variants/08.yaml")),
    ("09.yaml", include_str!("../../variants/09.yaml")),
    ("10.yaml", include_str!("../../variants/10.yaml")),
    ("11.yaml", include_str!("../../variants/11.yaml")),
    ("12.yaml", include_str!("../../variants/12.yaml")),
    ("13.yaml", include_str!("../../variants/13.yaml")),
    ("14.yaml", include_str!("../../variants/14.yaml")),
    ("15.yaml", include_str!("../../variants/15.yaml")),
];

/// Largest variant number: the lab subnet `10.77.N.0/24` needs N to fit an octet.
pub const MAX_VARIANT: u8 = 254;

/// Errors of loading variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VariantError {
    /// A variant file is malformed.
    #[error("{file}: field `{field}`: {problem}")]
    Invalid {
        /// The file (`builtin:07.yaml` for built-in ones).
        file: String,
        /// The field at fault.
        field: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// The YAML does not parse or does not have the expected shape.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// serde_yaml's message (names the field and the line).
        message: String,
    },
    /// Two files define the same variant number in one folder.
    #[error("variant {number} is defined twice: {first} and {second}")]
    Duplicate {
        /// The number.
        number: u8,
        /// One file.
        first: String,
        /// The other file.
        second: String,
    },
    /// No variant with this number.
    #[error("there is no variant {number}; known variants: {known}")]
    Unknown {
        /// The number asked for.
        number: u32,
        /// The known numbers, sorted.
        known: String,
    },
    /// The user's variants folder could not be read.
    #[error("cannot read variants folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The CA's distinguished name parts (RFC 5280 §4.1.2.4), in the order they appear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaName {
    /// C
    pub country: String,
    /// ST
    pub state: String,
    /// L
    pub locality: String,
    /// O
    pub organization: String,
    /// OU
    pub organizational_unit: String,
    /// CN
    pub common_name: String,
}

/// A variant as written in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantFile {
    variant: u32,
    ca: CaName,
    domains: Vec<String>,
    mailboxes: Vec<String>,
    spf_policy: String,
}

/// A validated variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    /// The variant number (1..=254).
    pub number: u8,
    /// The CA's name.
    pub ca: CaName,
    /// Exactly two mail domains, lower case.
    pub domains: [String; 2],
    /// Every mailbox, `user@domain`, lower case, in the file's order.
    pub mailboxes: Vec<String>,
    /// The SPF record of both domains, as written.
    pub spf_policy: String,
    /// Where the variant came from (`builtin:07.yaml` or a path).
    pub source: String,
}

impl Variant {
    /// The mailboxes of one domain.
    pub fn mailboxes_of<'a>(&'a self, domain: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.mailboxes
            .iter()
            .map(String::as_str)
            .filter(move |m| m.rsplit_once('@').is_some_and(|(_, d)| d == domain))
    }

    /// The parsed SPF policy (validated on load, so this cannot fail).
    pub fn spf(&self) -> SpfPolicy {
        SpfPolicy::parse(&self.spf_policy).expect("validated on load")
    }

    /// Parses and validates one variant file.
    pub fn from_yaml(text: &str, file: &str) -> Result<Self, VariantError> {
        let raw: VariantFile = serde_yaml::from_str(text).map_err(|e| VariantError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |field: &str, problem: String| VariantError::Invalid {
            file: file.to_string(),
            field: field.to_string(),
            problem,
        };
        let number = u8::try_from(raw.variant)
            .ok()
            .filter(|n| (1..=MAX_VARIANT).contains(n))
            .ok_or_else(|| {
                invalid(
                    "variant",
                    format!(
                        "expected a number from 1 to {MAX_VARIANT}, got {}",
                        raw.variant
                    ),
                )
            })?;
        for (field, value) in [
            ("ca.country", &raw.ca.country),
            ("ca.state", &raw.ca.state),
            ("ca.locality", &raw.ca.locality),
            ("ca.organization", &raw.ca.organization),
            ("ca.organizational_unit", &raw.ca.organizational_unit),
            ("ca.common_name", &raw.ca.common_name),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(field, "expected a non-empty name".into()));
            }
        }
        if raw.ca.country.len() != 2 || !raw.ca.country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid(
                "ca.country",
                format!(
                    "expected a two-letter country code such as UA, got {:?}",
                    raw.ca.country
                ),
            ));
        }
        let domains: Vec<String> = raw.domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        let [d1, d2]: [String; 2] = domains.clone().try_into().map_err(|_| {
            invalid(
                "domains",
                format!("expected exactly two domains, got {}", raw.domains.len()),
            )
        })?;
        for d in [&d1, &d2] {
            if !is_domain_name(d) {
                return Err(invalid(
                    "domains",
                    format!(
                        "{d:?} is not a valid domain name (expected labels of letters, digits and hyphens, at least two labels, such as metal.com)"
                    ),
                ));
            }
        }
        if d1 == d2 {
            return Err(invalid(
                "domains",
                format!("the two domains must differ, both are {d1:?}"),
            ));
        }
        let mut mailboxes: Vec<String> = Vec::with_capacity(raw.mailboxes.len());
        for m in &raw.mailboxes {
            let m = m.to_ascii_lowercase();
            let Some((local, domain)) = m.rsplit_once('@') else {
                return Err(invalid(
                    "mailboxes",
                    format!("{m:?} is not an address (expected user@domain)"),
                ));
            };
            if !is_valid_local_part(local) {
                return Err(invalid(
                    "mailboxes",
                    format!("{m:?}: the user part must be letters, digits, '.', '-' or '_'"),
                ));
            }
            if domain != d1 && domain != d2 {
                return Err(invalid(
                    "mailboxes",
                    format!(
                        "{m:?} belongs to {domain:?}, which is not one of the variant's domains ({d1}, {d2})"
                    ),
                ));
            }
            if mailboxes.contains(&m) {
                return Err(invalid("mailboxes", format!("{m:?} is listed twice")));
            }
            mailboxes.push(m);
        }
        for d in [&d1, &d2] {
            if !mailboxes.iter().any(|m| m.ends_with(&format!("@{d}"))) {
                return Err(invalid(
                    "mailboxes",
                    format!("domain {d} has no mailbox; expected at least one user@{d}"),
                ));
            }
        }
        SpfPolicy::parse(&raw.spf_policy).map_err(|e| invalid("spf_policy", e.to_string()))?;
        Ok(Self {
            number,
            ca: raw.ca,
            domains: [d1, d2],
            mailboxes,
            spf_policy: raw.spf_policy,
            source: file.to_string(),
        })
    }
}

/// RFC 1035 §2.3.1 preferred name syntax (letters, digits, hyphen; labels of
/// 1-63 octets, 253 in all), with at least two labels.
pub fn is_domain_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The lab's local parts: a conservative subset of RFC 5321 §4.1.2 dot-string.
fn is_valid_local_part(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
}

/// The set of known variants, by number.
#[derive(Debug, Clone)]
pub struct Catalog {
    variants: BTreeMap<u8, Variant>,
}

impl Catalog {
    /// The built-in variants plus those of `user_dir` (which override built-in ones).
    pub fn load(user_dir: Option<&Path>) -> Result<Self, VariantError> {
        let mut variants = BTreeMap::new();
        for (name, text) in BUILTIN {
            let v = Variant::from_yaml(text, &format!("builtin:{name}"))?;
            variants.insert(v.number, v);
        }
        if let Some(dir) = user_dir {
            let mut seen: BTreeMap<u8, String> = BTreeMap::new();
            let entries = std::fs::read_dir(dir).map_err(|source| VariantError::Folder {
                path: dir.to_path_buf(),
                source,
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            for path in files {
                let file = path.display().to_string();
                let text =
                    std::fs::read_to_string(&path).map_err(|source| VariantError::Folder {
                        path: path.clone(),
                        source,
                    })?;
                let v = Variant::from_yaml(&text, &file)?;
                if let Some(first) = seen.insert(v.number, file.clone()) {
                    return Err(VariantError::Duplicate {
                        number: v.number,
                        first,
                        second: file,
                    });
                }
                variants.insert(v.number, v);
            }
        }
        Ok(Self { variants })
    }

    /// The variant with this number, or an error listing the known numbers.
    pub fn get(&self, number: u32) -> Result<&Variant, VariantError> {
        u8::try_from(number)
            .ok()
            .and_then(|n| self.variants.get(&n))
            .ok_or_else(|| VariantError::Unknown {
                number,
                known: self
                    .variants
                    .keys()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// All variants, by number.
    pub fn iter(&self) -> impl Iterator<Item = &Variant> {
        self.variants.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_builtin_variants_load() {
        let c = Catalog::load(None).unwrap();
        assert_eq!(c.iter().count(), 15);
        let v7 = c.get(7).unwrap();
        assert_eq!(
            v7.domains,
            ["metal.com".to_string(), "zone07.org".to_string()]
        );
        assert_eq!(
            v7.mailboxes_of("zone07.org").collect::<Vec<_>>(),
            ["copper@zone07.org", "zinc@zone07.org"]
        );
        assert_eq!(v7.ca.common_name, "metal CA");
        let e = c.get(16).unwrap_err().to_string();
        assert!(e.contains("1, 2, 3"), "{e}");
    }

    #[test]
    fn domain_names() {
        assert!(is_domain_name("zone07.org"));
        assert!(!is_domain_name("metal"));
        assert!(!is_domain_name("bad_name.com"));
        assert!(!is_domain_name("-x.com"));
    }
}
