//! The subset of SPF (RFC 7208) records the variants use: `v=spf1`, the
//! mechanisms `a`, `mx`, `ptr`, `ip4`, `include` without arguments beyond a
//! domain or CIDR, and a final `all` with a qualifier.

use std::fmt;

/// One mechanism of an SPF record (RFC 7208 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpfMechanism {
    /// `a` (§5.3)
    A,
    /// `mx` (§5.4)
    Mx,
    /// `ptr` (§5.5)
    Ptr,
    /// `ip4:<net>` (§5.6)
    Ip4(String),
}

/// The qualifier of a term (RFC 7208 §4.6.2): the result when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfQualifier {
    /// `+`: pass (the default when none is written).
    Pass,
    /// `-`: fail.
    Fail,
    /// `~`: softfail.
    SoftFail,
    /// `?`: neutral.
    Neutral,
}

impl SpfQualifier {
    /// The qualifier written as `c`, if `c` is one.
    pub fn from_char(c: char) -> Option<Self> {
        match c {
            '+' => Some(Self::Pass),
            '-' => Some(Self::Fail),
            '~' => Some(Self::SoftFail),
            '?' => Some(Self::Neutral),
            _ => None,
        }
    }
}

/// A parsed variant SPF policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfPolicy {
    /// Mechanisms with the `+` qualifier, in order.
    pub mechanisms: Vec<SpfMechanism>,
    /// The qualifier of the final `all` (RFC 7208 §5.1).
    pub all: SpfQualifier,
}

/// Why a record is no lab SPF policy; each says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpfError {
    /// RFC 7208 §4.5: the record starts with exactly `v=spf1`.
    #[error("{record:?} does not start with \"v=spf1\" (expected e.g. \"v=spf1 mx -all\")")]
    NoVersion {
        /// The record.
        record: String,
    },
    /// A term after `all`.
    #[error("{record:?}: {term:?} comes after \"all\", which must be the last term")]
    AfterAll {
        /// The record.
        record: String,
        /// The term.
        term: String,
    },
    /// Two spaces in a row, or a trailing space.
    #[error("{record:?}: terms must be separated by exactly one space")]
    EmptyTerm {
        /// The record.
        record: String,
    },
    /// A qualifier on a mechanism other than `all`.
    #[error("{record:?}: only \"all\" may carry a qualifier in a lab policy, not {term:?}")]
    Qualifier {
        /// The record.
        record: String,
        /// The term.
        term: String,
    },
    /// A mechanism the lab does not use.
    #[error(
        "{record:?}: unknown term {term:?} (expected a, mx, ptr, ip4:<addr> or a final -all, ~all, ?all)"
    )]
    UnknownTerm {
        /// The record.
        record: String,
        /// The term.
        term: String,
    },
    /// No final `all`.
    #[error("{record:?} has no final \"all\" term (expected -all or ~all)")]
    NoAll {
        /// The record.
        record: String,
    },
}

impl SpfPolicy {
    /// Parses a record such as `v=spf1 a mx -all`; the error says what was expected.
    pub fn parse(record: &str) -> Result<Self, SpfError> {
        let rec = || record.to_string();
        let mut terms = record.split(' ');
        // RFC 7208 §4.5: the record starts with exactly "v=spf1" followed by a space or the end.
        if terms.next() != Some("v=spf1") {
            return Err(SpfError::NoVersion { record: rec() });
        }
        let mut mechanisms = Vec::new();
        let mut all = None;
        for term in terms {
            if all.is_some() {
                return Err(SpfError::AfterAll {
                    record: rec(),
                    term: term.to_string(),
                });
            }
            let first = term.chars().next();
            let (qualifier, name) = match first.map(|c| (c, SpfQualifier::from_char(c))) {
                Some((_, Some(q))) => (q, &term[1..]),
                Some((_, None)) => (SpfQualifier::Pass, term),
                None => return Err(SpfError::EmptyTerm { record: rec() }),
            };
            match name {
                "all" => all = Some(qualifier),
                _ if qualifier != SpfQualifier::Pass => {
                    return Err(SpfError::Qualifier {
                        record: rec(),
                        term: term.to_string(),
                    });
                }
                "a" => mechanisms.push(SpfMechanism::A),
                "mx" => mechanisms.push(SpfMechanism::Mx),
                "ptr" => mechanisms.push(SpfMechanism::Ptr),
                _ if name.starts_with("ip4:")
                    && name[4..]
                        .split('/')
                        .next()
                        .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()) =>
                {
                    mechanisms.push(SpfMechanism::Ip4(name[4..].to_string()));
                }
                _ => {
                    return Err(SpfError::UnknownTerm {
                        record: rec(),
                        term: term.to_string(),
                    });
                }
            }
        }
        let all = all.ok_or_else(|| SpfError::NoAll { record: rec() })?;
        Ok(Self { mechanisms, all })
    }

    /// True when a failing sender is refused (`-all`).
    pub fn is_hard_fail(&self) -> bool {
        self.all == SpfQualifier::Fail
    }
}

impl fmt::Display for SpfMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::A => f.write_str("a"),
            Self::Mx => f.write_str("mx"),
            Self::Ptr => f.write_str("ptr"),
            Self::Ip4(n) => write!(f, "ip4:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_variant_policies() {
        let p = SpfPolicy::parse("v=spf1 ptr mx ~all").unwrap();
        assert_eq!(p.mechanisms, [SpfMechanism::Ptr, SpfMechanism::Mx]);
        assert_eq!(p.all, SpfQualifier::SoftFail);
        assert!(SpfPolicy::parse("v=spf1 a mx -all").unwrap().is_hard_fail());
    }

    #[test]
    fn rejects_bad_policies() {
        for bad in [
            "spf1 mx -all",
            "v=spf1 mx",
            "v=spf1 mx -all a",
            "v=spf1 foo -all",
            "v=spf1  mx -all",
            "v=spf1 -mx -all",
        ] {
            assert!(SpfPolicy::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            SpfPolicy::parse("v=spf1 mx"),
            Err(SpfError::NoAll { .. })
        ));
        assert!(matches!(
            SpfPolicy::parse("v=spf1 -mx -all"),
            Err(SpfError::Qualifier { term, .. }) if term == "-mx"
        ));
    }
}
