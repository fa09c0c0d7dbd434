//! Keywords of a folder (RFC 3501 §2.3.2), stored as Dovecot stores them:
//! the file `dovecot-keywords` in the folder maps the letters `a`..`z` of the
//! Maildir info suffix to names, one `<index> <name>` line each (index 0 is
//! `a`). A folder holds at most 26 keywords; a 27th is not stored.
//! See docs/imap-pop3.md.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::folder::Flags;
use super::{StoreError, io};

/// The keywords file of a folder (Dovecot's name and format).
pub const KEYWORDS_FILE: &str = "dovecot-keywords";

/// The names by letter index (an empty name is a free letter).
pub(crate) fn load(dir: &Path) -> Vec<String> {
    let Ok(text) = fs::read_to_string(dir.join(KEYWORDS_FILE)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((i, name)) = line.split_once(' ') else {
            continue;
        };
        let (Ok(i), name) = (i.parse::<usize>(), name.trim()) else {
            continue;
        };
        if i >= Flags::KEYWORDS as usize || name.is_empty() {
            continue;
        }
        if names.len() <= i {
            names.resize(i + 1, String::new());
        }
        names[i] = name.to_string();
    }
    names
}

/// Writes the keywords file atomically (tmp, fsync, rename).
fn save(dir: &Path, names: &[String]) -> Result<(), StoreError> {
    let text: String = names
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty())
        .map(|(i, n)| format!("{i} {n}\n"))
        .collect();
    let tmp = dir.join(format!("{KEYWORDS_FILE}.tmp"));
    let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    drop(f);
    let path = dir.join(KEYWORDS_FILE);
    fs::rename(&tmp, &path).map_err(io("rename", &path))
}

/// The flag bits of the keywords `wanted` (case-insensitive, RFC 3501
/// §2.3.2); with `create`, names not known yet get a free letter and the
/// file is written. Names beyond the 26 letters are left out.
pub(crate) fn bits(
    dir: &Path,
    names: &mut Vec<String>,
    wanted: &[String],
    create: bool,
) -> Result<u32, StoreError> {
    let mut bits = 0;
    let mut added = false;
    for w in wanted {
        let known = names.iter().position(|n| n.eq_ignore_ascii_case(w));
        let i = match known {
            Some(i) => i,
            None if create => {
                if let Some(free) = names.iter().position(String::is_empty) {
                    names[free] = w.clone();
                    free
                } else if names.len() < Flags::KEYWORDS as usize {
                    names.push(w.clone());
                    names.len() - 1
                } else {
                    continue;
                }
            }
            None => continue,
        };
        added |= known.is_none();
        bits |= Flags::KEYWORD0 << i;
    }
    if added {
        save(dir, names)?;
    }
    Ok(bits)
}

/// The keyword names of `flags`.
pub fn names_of(names: &[String], flags: Flags) -> impl Iterator<Item = &str> {
    names
        .iter()
        .enumerate()
        .filter(move |(i, n)| !n.is_empty() && flags.has(Flags::KEYWORD0 << i))
        .map(|(_, n)| n.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_given_and_kept() {
        let dir = std::env::temp_dir().join(format!("kw-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut names = load(&dir);
        let want = ["$Junk".to_string(), "$Forwarded".to_string()];
        let b = bits(&dir, &mut names, &want, true).unwrap();
        assert_eq!(b, Flags::KEYWORD0 | Flags::KEYWORD0 << 1);
        let text = fs::read_to_string(dir.join(KEYWORDS_FILE)).unwrap();
        assert_eq!(text, "0 $Junk\n1 $Forwarded\n");
        let mut again = load(&dir);
        let b2 = bits(&dir, &mut again, &["$junk".to_string()], false).unwrap();
        assert_eq!(b2, Flags::KEYWORD0);
        assert_eq!(
            names_of(&again, Flags(b)).collect::<Vec<_>>(),
            ["$Junk", "$Forwarded"]
        );
        assert_eq!(bits(&dir, &mut again, &["x".into()], false).unwrap(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
