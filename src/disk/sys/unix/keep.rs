//! The links and copies that keep an entry in a keep directory, never through a
//! symlink.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Mode, OFlags};

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// What linking an entry into a keep directory did.
#[derive(Debug, PartialEq, Eq)]
pub enum Linked {
    /// Linked.
    Done,
    /// The name is taken there: try another.
    Taken,
    /// The entry is gone: nothing to keep.
    Gone,
    /// Another filesystem: copy instead.
    OtherFilesystem,
}

/// Hard-links `name` in `dir` as `leaf` in `to`.
pub fn link_into(dir: &impl AsFd, name: &[u8], to: &impl AsFd, leaf: &[u8]) -> io::Result<Linked> {
    match rustix::fs::linkat(dir, os(name), to, os(leaf), AtFlags::empty()) {
        Ok(()) => Ok(Linked::Done),
        Err(rustix::io::Errno::EXIST) => Ok(Linked::Taken),
        Err(rustix::io::Errno::NOENT) => Ok(Linked::Gone),
        Err(rustix::io::Errno::XDEV) => Ok(Linked::OtherFilesystem),
        Err(e) => Err(e.into()),
    }
}

/// `name` below `dir`, created (mode 700) if missing, never through a symlink.
pub fn mkdir_in(dir: &impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, os(name), Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    super::open_dir_at(dir, name)
}

/// A copy across filesystems: a file's contents, mode and mtime, or a symlink; other kinds
/// (fifos, devices) hold no data to lose. An existing `leaf` is `AlreadyExists`.
pub fn copy_into(dir: &impl AsFd, name: &[u8], to: &impl AsFd, leaf: &[u8]) -> io::Result<()> {
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
                last_access: rustix::fs::Timespec {
                    tv_sec: st.st_atime as _,
                    tv_nsec: st.st_atime_nsec as _,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: st.st_mtime as _,
                    tv_nsec: st.st_mtime_nsec as _,
                },
            };
            rustix::fs::futimens(&dst, &times)?;
            dst.sync_data()
        }
        _ => Ok(()),
    }
}
