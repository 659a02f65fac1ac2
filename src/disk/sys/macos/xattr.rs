//! macOS: extended attributes, read and written through a descriptor of the entry opened
//! without following a symlink (macOS has neither `*at` xattr calls nor `/proc`), so
//! nothing outside the root is touched.
//!
//! macOS names have no namespaces: an attribute `NAME` travels as `user.NAME` and a
//! `user.NAME` from the other side is written as `NAME`, so attributes round-trip with
//! Linux's `user.*`. The ones the system manages (`com.apple.system.*`, provenance,
//! SIP) are not kept. **POSIX ACLs are not kept natively on macOS**: its ACLs are another
//! model (`acl_get_fd`'s NFSv4-like entries), not these bytes; writing Linux ACL
//! attributes here fails with a message naming `--preserve-acls metafile`, which keeps
//! them in a side file instead. Files and directories only, as on Linux.

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::disk::sys::xattr_lists::{change, os, read_with};
use crate::disk::xattrs::Xattrs;

pub use crate::disk::sys::xattr_lists::write_fd;

/// What a get or remove of a missing attribute fails with.
pub(in crate::disk::sys) const NO_ATTR: rustix::io::Errno = rustix::io::Errno::NOATTR;

/// Names the system manages: set by the kernel or only with privileges, never copied.
fn system_managed(native: &[u8]) -> bool {
    native.starts_with(b"com.apple.system.")
        || native == b"com.apple.provenance"
        || native == b"com.apple.rootless"
}

/// The wire name of a native attribute name (`user.` before it), `None` for one not kept.
pub(in crate::disk::sys) fn wire_name(native: &[u8]) -> Option<Vec<u8>> {
    (!system_managed(native)).then(|| [&b"user."[..], native].concat())
}

/// The native name of a kept attribute's wire name: `user.NAME` is `NAME`; a POSIX ACL
/// has none.
pub(in crate::disk::sys) fn native_name(wire: &[u8]) -> io::Result<Cow<'_, [u8]>> {
    match wire.strip_prefix(b"user.") {
        Some(native) if !native.is_empty() && !system_managed(native) => Ok(Cow::Borrowed(native)),
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "'{}' cannot be kept natively on macOS (POSIX ACLs are not macOS ACLs); \
                 --preserve-acls metafile keeps it in a side file",
                String::from_utf8_lossy(wire)
            ),
        )),
    }
}

/// Reads the kept attributes of `name` in `dir`, a regular file or a directory (`None`
/// when it has none, or for an entry of another kind).
pub fn read_at(dir: &impl AsFd, name: &[u8]) -> io::Result<Option<Xattrs>> {
    read_by_path(dir, name)
}

/// Reads the kept attributes of `name` in `dir`, of any kind; other kinds than files and
/// directories have none kept.
pub fn read_by_path(dir: &impl AsFd, name: &[u8]) -> io::Result<Option<Xattrs>> {
    match open_entry(dir, name)? {
        Some(fd) => read_fd(&fd),
        None => Ok(None),
    }
}

/// Makes the kept attributes of `name` in `dir` exactly `want`.
pub fn write_at(dir: &impl AsFd, name: &[u8], want: Option<&Xattrs>) -> io::Result<()> {
    let Some(fd) = open_entry(dir, name)? else {
        return match want {
            Some(w) if !w.is_empty() => Err(rustix::io::Errno::NOTSUP.into()),
            _ => Ok(()),
        };
    };
    let have = read_fd(&fd)?.unwrap_or_default();
    let want = want.cloned().unwrap_or_default();
    change(
        &have,
        &want,
        |n| rustix::fs::fremovexattr(&fd, os(n)),
        |n, v| rustix::fs::fsetxattr(&fd, os(n), v, rustix::fs::XattrFlags::empty()),
    )
}

fn read_fd(fd: &OwnedFd) -> io::Result<Option<Xattrs>> {
    read_with(
        |list| rustix::fs::flistxattr(fd, list),
        || rustix::fs::flistxattr_query(fd),
        |attr, value| rustix::fs::fgetxattr(fd, os(attr), value),
    )
}

/// A descriptor of `name` in `dir` if it is a regular file or a directory, opened
/// without following a symlink and without needing read permission (`O_EVTONLY`: the
/// xattr calls check their own permissions). Other kinds are not opened at all: opening
/// a device node can act on the device.
fn open_entry(dir: &impl AsFd, name: &[u8]) -> io::Result<Option<OwnedFd>> {
    let is_kept_kind = |mode| {
        matches!(
            FileType::from_raw_mode(mode),
            FileType::RegularFile | FileType::Directory
        )
    };
    let st = rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
    if !is_kept_kind(st.st_mode) {
        return Ok(None);
    }
    let flags = OFlags::from_bits_retain(libc::O_EVTONLY as _)
        | OFlags::NOFOLLOW
        | OFlags::NONBLOCK
        | OFlags::NOCTTY
        | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, os(name), flags, Mode::empty())?;
    // Swapped for another kind between the stat and the open: not this entry's to read.
    if !is_kept_kind(rustix::fs::fstat(&fd)?.st_mode) {
        return Ok(None);
    }
    Ok(Some(fd))
}
