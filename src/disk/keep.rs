//! `--keep-dir-local` / `--keep-dir-remote`: whatever the sync deletes or replaces on a
//! side is first kept in a second directory the user grants, under a dated subdirectory
//! with its relative path, so nothing a sync removes is lost. A hard link when the keep
//! directory is on the same filesystem (no copy, and no moment without the old file); a
//! copy otherwise.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::core::path::RelPath;
use crate::disk::sys;
use crate::disk::sys::keep::{copy_into, link_into, mkdir_in, Linked};

/// An open keep directory.
#[derive(Debug)]
pub struct KeepDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl KeepDir {
    /// Opens `path`, creating it if missing.
    pub fn open(path: &Path) -> io::Result<KeepDir> {
        std::fs::create_dir_all(path)?;
        let fd = sys::open_dir(path)?;
        Ok(KeepDir {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the entry `name` in `dir` (the tree's `path`) as `STAMP/path`; a second one
    /// kept in the same second gets a `.1`, `.2`... suffix. Nothing there: nothing to keep.
    pub fn save(&self, dir: &impl AsFd, name: &[u8], path: &RelPath) -> io::Result<()> {
        let mut at = mkdir_in(&self.fd, stamp().as_bytes())?;
        if let Some(parent) = path.parent() {
            for c in parent.components() {
                at = mkdir_in(&at, c)?;
            }
        }
        for n in 0u32.. {
            let mut leaf = name.to_vec();
            if n > 0 {
                leaf.extend_from_slice(format!(".{n}").as_bytes());
            }
            match link_into(dir, name, &at, &leaf)? {
                Linked::Done | Linked::Gone => return Ok(()),
                Linked::Taken => continue,
                Linked::OtherFilesystem => match copy_into(dir, name, &at, &leaf) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    r => return r,
                },
            }
        }
        Ok(())
    }
}

/// The dated subdirectory's name: UTC, to the second (`2026-11-24T021503Z`).
fn stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_entries_keep_their_path_and_never_overwrite_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        let keep = KeepDir::open(&tmp.path().join("keep")).unwrap();
        let dir = sys::open_dir(&root.join("d")).unwrap();
        let path = RelPath::new(b"d/f".to_vec()).unwrap();
        for version in ["one", "two"] {
            std::fs::write(root.join("d/f"), version).unwrap();
            keep.save(&dir, b"f", &path).unwrap();
            std::fs::remove_file(root.join("d/f")).unwrap();
        }
        keep.save(&dir, b"f", &path).unwrap(); // gone: nothing to keep
        let stamps: Vec<_> = std::fs::read_dir(keep.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let mut kept: Vec<String> = stamps
            .iter()
            .flat_map(|s| std::fs::read_dir(s.join("d")).unwrap())
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        kept.sort();
        assert_eq!(kept, ["one", "two"]);
    }
}
