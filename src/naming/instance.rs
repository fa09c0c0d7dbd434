//! Instances: `LABCTL_INSTANCE=<name>` keeps a set of labs apart from the
//! other labs on the same Docker engine and machine, as Compose's project
//! name does. Its labs are named `<name>-labNN` (network, containers,
//! volumes, lock and state files) and carry the label
//! [`crate::naming::labels::INSTANCE`]; `status`, `verify`, `down --all`
//! see only the labs of their own instance. Unset, labs are `labNN` and
//! carry no instance label (what every lab before instances had).
//!
//! The test suite runs as instance `test`, so `make test` neither sees nor
//! removes the lab a user brought up with `make up`.

use std::sync::OnceLock;

/// The environment variable that names the instance.
pub const ENV: &str = "LABCTL_INSTANCE";

/// The longest instance name (Docker names stay short and readable).
const MAX_LEN: usize = 20;

/// Whether `name` can name an instance: 1 to 20 of `a-z`, `0-9` and `-`,
/// starting with a letter (valid in Docker object names and file names).
pub fn is_valid(name: &str) -> bool {
    name.len() <= MAX_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The instance of this process: `LABCTL_INSTANCE` when set and not empty.
/// An invalid name is reported once by [`check`] at start; here it counts as
/// unset, so no object is ever named after it.
pub fn current() -> Option<&'static str> {
    static CURRENT: OnceLock<Option<String>> = OnceLock::new();
    CURRENT
        .get_or_init(|| {
            std::env::var(ENV)
                .ok()
                .filter(|n| !n.is_empty() && is_valid(n))
        })
        .as_deref()
}

/// `LABCTL_INSTANCE` holds no instance name; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{env}={0:?} is not an instance name: use 1 to {max} of a-z, 0-9 and '-', starting with a letter (e.g. {env}=course2)",
    env = ENV,
    max = MAX_LEN
)]
pub struct InstanceError(pub String);

/// Checks `LABCTL_INSTANCE` (unset or empty: no instance).
pub fn check() -> Result<(), InstanceError> {
    match std::env::var(ENV) {
        Ok(n) if !n.is_empty() && !is_valid(&n) => Err(InstanceError(n)),
        _ => Ok(()),
    }
}

/// The name of lab `variant` in `instance`: `lab07`, `test-lab07`.
pub fn lab_name_in(instance: Option<&str>, variant: u32) -> String {
    match instance {
        Some(i) => format!("{i}-lab{variant:02}"),
        None => format!("lab{variant:02}"),
    }
}

/// The name of lab `variant` in this process's instance.
pub fn lab_name(variant: u32) -> String {
    lab_name_in(current(), variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(lab_name_in(None, 7), "lab07");
        assert_eq!(lab_name_in(Some("test"), 15), "test-lab15");
        for ok in ["test", "course-2", "a"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "Test",
            "2nd",
            "a_b",
            "a.b",
            "a/b",
            "abcdefghijklmnopqrstu",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
