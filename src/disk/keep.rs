//! `--keep-dir-local` / `--keep-dir-remote`: whatever the sync deletes or replaces on a
//! side is first kept in a second directory the user grants, under a dated subdirectory
//! with its relative path, so nothing a sync removes is lost. A hard link when the keep
//! directory is on the same filesystem (no copy, and no moment without the old file); a
//! copy otherwise.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::core::path::RelPath;

/// An open keep directory.
#[derive(Debug)]
pub struct KeepDir {
    path: PathBuf,
    fd: OwnedFd,
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

impl KeepDir {
    /// Opens `path`, creating it if missing.
    pub fn open(path: &Path) -> io::Result<KeepDir> {
        std::fs::create_dir_all(path)?;
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
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
            match rustix::fs::linkat(dir, os(name), &at, os(&leaf), AtFlags::empty()) {
                Ok(()) => return Ok(()),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(rustix::io::Errno::NOENT) => return Ok(()),
                Err(rustix::io::Errno::XDEV) => match copy_into(dir, name, &at, &leaf) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    r => return r,
                },
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// `name` below `dir`, created if missing, never through a symlink.
fn mkdir_in(dir: &impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, os(name), Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, os(name), flags, Mode::empty())?)
}

/// A copy across filesystems: a file's contents, mode and mtime, or a symlink; other kinds
/// (fifos, devices) hold no data to lose.
fn copy_into(dir: &impl AsFd, name: &[u8], to: &impl AsFd, leaf: &[u8]) -> io::Result<()> {
    let st = rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, os(name), Vec::new())?;
            Ok(rustix::fs::symlinkat(target.as_c_str(), to, os(leaf))?)
        }
        rustix::fs::FileType::RegularFile => {
            let src = rustix::fs::openat(
                dir,
                os(name),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let dst = rustix::fs::openat(
                to,
                os(leaf),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(st.st_mode & 0o7777),
            )?;
            let (mut src, mut dst) = (File::from(src), File::from(dst));
            io::copy(&mut src, &mut dst)?;
            let times = rustix::fs::Timestamps {
                last_access: st.st_atime_timespec(),
                last_modification: st.st_mtime_timespec(),
            };
            rustix::fs::futimens(&dst, &times)?;
            dst.sync_data()
        }
        _ => Ok(()),
    }
}

/// The dated subdirectory's name: UTC, to the second (`2026-11-24T021503Z`).
fn stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "")
}

trait StatTimes {
    fn st_atime_timespec(&self) -> rustix::fs::Timespec;
    fn st_mtime_timespec(&self) -> rustix::fs::Timespec;
}

impl StatTimes for rustix::fs::Stat {
    fn st_atime_timespec(&self) -> rustix::fs::Timespec {
        rustix::fs::Timespec {
            tv_sec: self.st_atime as _,
            tv_nsec: self.st_atime_nsec as _,
        }
    }
    fn st_mtime_timespec(&self) -> rustix::fs::Timespec {
        rustix::fs::Timespec {
            tv_sec: self.st_mtime as _,
            tv_nsec: self.st_mtime_nsec as _,
        }
    }
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
        let dir = rustix::fs::open(
            root.join("d"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
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
