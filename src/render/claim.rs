//! Which folders are lab directories (issue 13, docs/security.md): `render`
//! (and so `up`) writes only into a folder it creates, an empty one, or one
//! it marked before with [`MARKER`]; `up`'s chown and `down --purge`'s
//! delete touch nothing else. A lab directory of an older labctl (no marker,
//! but a `lab.json` that records this very folder) is adopted.

use std::fs;
use std::path::Path;

use super::{RenderError, io_err, layout};

/// The marker file that `render` writes into every lab directory.
pub const MARKER: &str = ".labctl-lab";

/// What a folder is to labctl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// It does not exist.
    Missing,
    /// It exists and is empty.
    Empty,
    /// labctl made it: it holds the marker, or (an older labctl) a
    /// `lab.json` that records this folder.
    Ours,
    /// Anything else: never written, chowned or deleted by labctl.
    Foreign,
}

/// Looks at `dir` (never changes it).
pub fn ownership(dir: &Path) -> Ownership {
    let Ok(meta) = fs::metadata(dir) else {
        return Ownership::Missing;
    };
    if !meta.is_dir() {
        return Ownership::Foreign;
    }
    // A symlink named like the marker could point anywhere: only a regular file counts.
    if fs::symlink_metadata(dir.join(MARKER)).is_ok_and(|m| m.file_type().is_file()) {
        return Ownership::Ours;
    }
    if records_itself(dir) {
        return Ownership::Ours;
    }
    match fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ownership::Empty,
        _ => Ownership::Foreign,
    }
}

/// True when `dir/lab.json` (labctl before the marker) names `dir` itself.
fn records_itself(dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(dir.join(layout::LAB_JSON)) else {
        return false;
    };
    let recorded = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|j| j["dir"].as_str().map(std::path::PathBuf::from))
        .and_then(|r| fs::canonicalize(r).ok());
    recorded.is_some() && recorded == fs::canonicalize(dir).ok()
}

/// The message of a refused folder: what is wrong, what to do.
pub fn refusal(dir: &Path) -> String {
    format!(
        "{dir} is not a lab directory of labctl: it is not empty and has no {MARKER} file, so labctl \
         writes, chowns and deletes nothing in it\n  what to do: give --dir a new or an empty folder \
         (labctl creates it and marks it as a lab directory), or leave out --dir (./lab-NN)",
        dir = dir.display()
    )
}

/// Makes `dir` a lab directory of lab `name`: creates it (or takes an
/// empty one) and writes the marker; refuses any other folder before
/// anything is written.
pub fn claim(dir: &Path, name: &str, variant: u8) -> Result<(), RenderError> {
    match ownership(dir) {
        Ownership::Foreign => {
            return Err(RenderError::NotALabDir {
                message: refusal(dir),
            });
        }
        Ownership::Missing => fs::create_dir_all(dir).map_err(io_err(dir))?,
        Ownership::Empty | Ownership::Ours => {}
    }
    let text = format!(
        "This folder is the lab directory of {name} (variant {variant}), made by labctl.\n\
         `labctl up` may hand it to the containers' user; `labctl down --purge` deletes it.\n"
    );
    super::write_file(&dir.join(MARKER), text.as_bytes(), 0o644)
}
