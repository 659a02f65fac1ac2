//! What every Unix tandem runs on offers alike (POSIX `*at` calls over rustix): listing
//! directories, stat, ids, modes. Confined disk operations and keep-directory links are
//! files of their own below; what differs between Linux and macOS is in `super::os`.

pub mod fsops;
pub mod keep;
pub(super) mod xattr_lists;

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{Mode, OFlags};

/// A directory being listed.
pub type Dir = rustix::fs::Dir;

/// Opens the directory `name` in `dir` for listing, never through a symlink.
pub fn open_dir_at(dir: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        flags,
        Mode::empty(),
    )?)
}

/// Opens a directory by path (a root, a keep directory: the user named it, so a symlink
/// in its path is followed).
pub fn open_dir(path: &std::path::Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

/// Lists an open directory.
pub fn read_dir(dir: &OwnedFd) -> io::Result<Dir> {
    Ok(Dir::read_from(dir)?)
}

/// A file's status as the kernel reports it (`fstat`, `statat`).
pub type Stat = rustix::fs::Stat;

/// Whether this process runs as root (and so may set owners).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The real user id (`%i` in ssh_config, the passwd lookup of the login name).
pub fn user_id() -> u32 {
    rustix::process::getuid().as_raw()
}

/// This machine's name, as `uname -n` prints it.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The status of an open file.
pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    rustix::fs::fstat(fd).map_err(io::Error::from)
}

/// Sets the mode bits of an open file.
pub fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    rustix::fs::fchmod(fd, mode_bits(mode)).map_err(io::Error::from)
}

/// `mode` as the OS's mode type (32 bits on Linux, 16 on macOS: the permission and file
/// type bits fit either).
#[allow(clippy::unnecessary_cast)]
pub(super) fn mode_bits(mode: u32) -> Mode {
    Mode::from_raw_mode(mode as rustix::fs::RawMode)
}
