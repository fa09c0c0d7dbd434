//! Lab directories as the runtimes see them: `up` chowns and `down --purge`
//! deletes only a folder that labctl made (its marker, see
//! [`crate::render::claim`] and docs/security.md).

use std::path::Path;

use super::api::RuntimeError;
use crate::render::layout;

/// Fails unless `dir` is a lab directory made by labctl (its marker, see
/// [`crate::render::claim`]): nothing is chowned or deleted elsewhere.
pub fn ensure_lab_dir(dir: &Path) -> Result<(), RuntimeError> {
    use crate::render::claim::{Ownership, ownership, refusal};
    match ownership(dir) {
        Ownership::Ours => Ok(()),
        _ => Err(RuntimeError::NotALabDir(refusal(dir))),
    }
}

/// Whether `down --purge` may delete `dir` for lab `variant`: `Ok(false)`
/// when there is nothing to delete (it is gone or empty, or it is the lab
/// directory of another variant), an error when it is not a lab directory
/// that labctl made (issue 13): then nothing may be removed at all.
pub fn purgeable(dir: &Path, variant: u32) -> Result<bool, RuntimeError> {
    use crate::render::claim::{MARKER, Ownership, ownership};
    match ownership(dir) {
        Ownership::Missing | Ownership::Empty => return Ok(false),
        Ownership::Foreign => {
            return Err(RuntimeError::NotALabDir(format!(
                "{dir} is recorded as the lab directory of lab{variant:02}, but it is not a lab directory \
                 of labctl (no {MARKER} file): `down --purge` removed nothing\n  what to do: look at the \
                 folder and delete it yourself if it should go, then run `labctl down --variant {variant} \
                 --purge` again; or run `labctl down --variant {variant}` without --purge",
                dir = dir.display()
            )));
        }
        Ownership::Ours => {}
    }
    // A lab.json of another variant: that lab's directory, not this one's.
    let variant_of = std::fs::read_to_string(dir.join(layout::LAB_JSON))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|j| j["variant"].as_u64());
    Ok(variant_of.is_none_or(|v| v == u64::from(variant)))
}

/// Removes a lab directory if it really is one of lab `variant`
/// ([`purgeable`]); returns whether it was removed. Never removes a folder
/// that labctl did not make.
pub fn remove_lab_dir(dir: &Path, variant: u32) -> Result<bool, RuntimeError> {
    if !purgeable(dir, variant)? {
        return Ok(false);
    }
    std::fs::remove_dir_all(dir)
        .map_err(RuntimeError::io(format!("cannot remove {}", dir.display())))?;
    Ok(true)
}
