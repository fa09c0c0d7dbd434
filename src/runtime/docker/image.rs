//! The lab image `labctl:<version>`: the running executable alone, made on
//! the user's engine when absent (docs/architecture.md), so no registry is ever needed.
//!
//! The image is a `docker import` of a root file system tar holding
//! `/labctl` (the static binary), an empty `/lab` mount point, `/data`
//! owned by the container user (a new named volume mounted there takes its
//! ownership from the image) and `/tmp`.

use std::path::Path;

use bollard::query_parameters::CreateImageOptionsBuilder;
use bytes::Bytes;
use futures_util::TryStreamExt;

use super::{CONTAINER_GID, CONTAINER_UID, Docker, is_not_found};
use sha2::{Digest, Sha256};

use crate::runtime::api::{RuntimeError, hex};

/// labctl's version (the image tag).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the binary lives in the image.
pub const BINARY: &str = "/labctl";

/// The image reference, `labctl:<version>`.
pub fn reference() -> String {
    format!("labctl:{VERSION}")
}

/// What [`ensure`] did.
#[derive(Debug, Clone)]
pub struct Image {
    /// Image id.
    pub id: String,
    /// True when it was created now.
    pub created: bool,
    /// The previous image of the tag (an older build), now untagged.
    pub replaced: Option<String>,
}

impl Docker {
    /// Removes an image no container uses any more; failure is fine (still in use).
    pub async fn remove_unused_image(&self, id: &str) {
        let _ = self
            .api
            .remove_image(
                id,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    }
}

impl Docker {
    /// The image `labctl:<version>`, created from the running executable if absent.
    pub async fn ensure_image(&self) -> Result<Image, RuntimeError> {
        let reference = reference();
        let exe = std::env::current_exe()
            .map_err(RuntimeError::io("cannot find the running executable"))?;
        let binary = std::fs::read(&exe)
            .map_err(RuntimeError::io(format!("cannot read {}", exe.display())))?;
        // The image records which binary it holds (its comment), so a rebuilt
        // labctl of the same version replaces it: the containers always run
        // the code of the CLI.
        let comment = format!("labctl {VERSION} sha256:{}", hex(&Sha256::digest(&binary)));
        let present = match self.api.inspect_image(&reference).await {
            Ok(i) => Some(i),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(self.err(format!("inspect image {reference}"), e)),
        };
        if let Some(i) = &present {
            let same = i.comment.as_deref() == Some(comment.as_str());
            // A dynamically linked labctl keeps using an image made by `make image`.
            if same || elf_problem(&binary).is_some() {
                return Ok(Image {
                    id: i.id.clone().unwrap_or_default(),
                    created: false,
                    replaced: None,
                });
            }
        }
        check_static(&exe, &binary)?;
        let rootfs = rootfs_tar(&binary)
            .map_err(RuntimeError::io("cannot build the image's file system"))?;
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo("labctl")
            .tag(VERSION)
            .message(&comment)
            .changes(vec![
                format!(r#"ENTRYPOINT ["{BINARY}"]"#),
                format!("USER {CONTAINER_UID}:{CONTAINER_GID}"),
                "WORKDIR /".to_string(),
            ])
            .build();
        self.api
            .create_image(
                Some(options),
                Some(bollard::body_full(Bytes::from(rootfs))),
                None,
            )
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.err(format!("import image {reference}"), e))?;
        let i = self
            .api
            .inspect_image(&reference)
            .await
            .map_err(|e| self.err(format!("inspect image {reference}"), e))?;
        Ok(Image {
            id: i.id.unwrap_or_default(),
            created: true,
            replaced: present.and_then(|p| p.id),
        })
    }
}

/// The image's root file system as a tar.
fn rootfs_tar(binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::with_capacity(binary.len() + 8192));
    let dir = |name: &str, mode: u32, uid: u64, gid: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path(name).expect("short path");
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(0);
        h.set_mtime(0);
        h.set_cksum();
        h
    };
    for (name, mode, uid, gid) in [
        ("lab/", 0o755, 0, 0),
        ("data/", 0o700, CONTAINER_UID.into(), CONTAINER_GID.into()),
        ("tmp/", 0o1777, 0, 0),
    ] {
        tar.append(&dir(name, mode, uid, gid), std::io::empty())?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_path(BINARY.trim_start_matches('/'))?;
    h.set_mode(0o755);
    h.set_size(binary.len() as u64);
    h.set_mtime(0);
    h.set_cksum();
    tar.append(&h, binary)?;
    tar.into_inner()
}

/// Refuses an executable that cannot run alone in a `FROM scratch` image:
/// not an x86-64 Linux ELF, or dynamically linked (a `PT_INTERP` program
/// header names the dynamic loader).
pub fn check_static(exe: &Path, binary: &[u8]) -> Result<(), RuntimeError> {
    let fail = |why: &str| RuntimeError::NotStatic {
        exe: exe.display().to_string(),
        why: why.to_string(),
        version: VERSION,
    };
    elf_problem(binary).map_or(Ok(()), |why| Err(fail(why)))
}

/// Why an ELF image is not a static x86-64 Linux executable, if it is not.
pub fn elf_problem(b: &[u8]) -> Option<&'static str> {
    const PT_INTERP: u32 = 3;
    if b.len() < 64 || &b[..4] != b"\x7fELF" {
        return Some("it is not an ELF executable");
    }
    // ELF64 (EI_CLASS 2), little-endian (EI_DATA 1), e_machine 62 = x86-64.
    if b[4] != 2 || b[5] != 1 || u16::from_le_bytes([b[18], b[19]]) != 62 {
        return Some("it is not an x86-64 Linux executable");
    }
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36) as usize, u16_at(0x38));
    for i in 0..phnum as usize {
        let o = phoff + i * phentsize;
        let Some(t) = b.get(o..o + 4) else {
            return Some("its program headers are truncated");
        };
        if u32::from_le_bytes(t.try_into().expect("4 bytes")) == PT_INTERP {
            return Some("it is dynamically linked (it has an ELF interpreter)");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_judged_like_the_build_flags_say() {
        let exe = std::env::current_exe().unwrap();
        let b = std::fs::read(&exe).unwrap();
        // The project builds with +crt-static for x86_64 (.cargo/config.toml).
        assert_eq!(elf_problem(&b), None);
        assert!(elf_problem(b"#!/bin/sh\n").is_some());
        let sh = std::fs::read("/bin/sh").unwrap();
        assert_eq!(
            elf_problem(&sh),
            Some("it is dynamically linked (it has an ELF interpreter)")
        );
    }

    #[test]
    fn rootfs_holds_the_binary_and_mount_points() {
        let t = rootfs_tar(b"binary").unwrap();
        let mut a = tar::Archive::new(&t[..]);
        let names: Vec<_> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["lab/", "data/", "tmp/", "labctl"]);
    }
}
