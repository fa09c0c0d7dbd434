//! The result of an SPF, DKIM or DMARC check by its keyword in the trace
//! header fields (RFC 8601 §2.7.1 DKIM, §2.7.2 SPF; RFC 7489 §11.2 DMARC):
//! what the filters are handed and the spam rules match.

use std::fmt;
use std::str::FromStr;

use mail_auth::{DkimResult, DmarcResult, SpfResult};

/// One result keyword. SPF, DKIM and DMARC use subsets of one list:
/// `softfail` is SPF's only, DMARC has no `neutral` and no `policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum AuthResult {
    /// No policy or signature to check (RFC 8601 §2.7.1, §2.7.2); also
    /// what the filters see on an authenticated submission, where no
    /// check runs.
    #[default]
    None,
    /// The check passed.
    Pass,
    /// The check failed.
    Fail,
    /// SPF: the domain believes the host is not authorized, weakly (RFC 7208 §2.6.5).
    SoftFail,
    /// Nothing asserted (SPF `?all`, a DKIM signature not checked).
    Neutral,
    /// Passed but not accepted by local policy (RFC 8601 §2.7.1, §2.7.2).
    Policy,
    /// A transient error (DNS), the check may pass later.
    TempError,
    /// A permanent error (a malformed record or signature).
    PermError,
}

impl AuthResult {
    /// Every keyword, in the order of RFC 8601 §2.7.2.
    pub const ALL: [AuthResult; 8] = [
        AuthResult::None,
        AuthResult::Pass,
        AuthResult::Fail,
        AuthResult::SoftFail,
        AuthResult::Neutral,
        AuthResult::Policy,
        AuthResult::TempError,
        AuthResult::PermError,
    ];

    /// The keyword as written in `Authentication-Results`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::None => "none",
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::Policy => "policy",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is no result keyword of RFC 8601 §2.7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is no authentication result; expected one of none, pass, fail, softfail, neutral, policy, temperror, permerror (RFC 8601 §2.7)"
)]
pub struct UnknownResult(pub String);

impl FromStr for AuthResult {
    type Err = UnknownResult;

    /// Keywords are case-insensitive (RFC 8601 §2.2, ABNF strings).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthResult::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownResult(s.to_string()))
    }
}

impl TryFrom<String> for AuthResult {
    type Error = UnknownResult;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SpfResult> for AuthResult {
    fn from(r: SpfResult) -> Self {
        match r {
            SpfResult::Pass => AuthResult::Pass,
            SpfResult::Fail => AuthResult::Fail,
            SpfResult::SoftFail => AuthResult::SoftFail,
            SpfResult::Neutral => AuthResult::Neutral,
            SpfResult::TempError => AuthResult::TempError,
            SpfResult::PermError => AuthResult::PermError,
            SpfResult::None => AuthResult::None,
        }
    }
}

impl From<&DkimResult> for AuthResult {
    fn from(r: &DkimResult) -> Self {
        match r {
            DkimResult::Pass => AuthResult::Pass,
            DkimResult::Neutral(_) => AuthResult::Neutral,
            DkimResult::Fail(_) => AuthResult::Fail,
            DkimResult::PermError(_) => AuthResult::PermError,
            DkimResult::TempError(_) => AuthResult::TempError,
            DkimResult::None => AuthResult::None,
        }
    }
}

impl From<&DmarcResult> for AuthResult {
    fn from(r: &DmarcResult) -> Self {
        match r {
            DmarcResult::Pass => AuthResult::Pass,
            DmarcResult::Fail(_) => AuthResult::Fail,
            DmarcResult::TempError(_) => AuthResult::TempError,
            DmarcResult::PermError(_) => AuthResult::PermError,
            DmarcResult::None => AuthResult::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_round_trip_without_case() {
        for r in AuthResult::ALL {
            assert_eq!(r.as_str().parse::<AuthResult>(), Ok(r));
            assert_eq!(r.as_str().to_uppercase().parse::<AuthResult>(), Ok(r));
            assert_eq!(r.to_string(), r.as_str());
        }
        assert!("passed".parse::<AuthResult>().is_err());
        assert!("".parse::<AuthResult>().is_err());
    }

    #[test]
    fn read_from_yaml() {
        let list: Vec<AuthResult> = serde_yaml::from_str("[fail, PermError]").unwrap();
        assert_eq!(list, [AuthResult::Fail, AuthResult::PermError]);
        let err = serde_yaml::from_str::<Vec<AuthResult>>("[failed]").unwrap_err();
        assert!(
            err.to_string()
                .contains("\"failed\" is no authentication result"),
            "{err}"
        );
    }
}
