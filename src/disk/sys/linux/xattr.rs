//! Linux: extended attributes (ACLs included) read and written by descriptor, or by
//! `/proc/self/fd/N/name` with the `l*` calls, which never follow a symlink (there are no
//! `*at` xattr calls): nothing outside the root is touched. The names are the wire's.

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use rustix::fs::XattrFlags;

use crate::disk::sys::xattr_lists::{change, os, read_with};
use crate::disk::xattrs::{kept, Xattrs};

pub use crate::disk::sys::xattr_lists::write_fd;

/// What a get or remove of a missing attribute fails with.
pub(in crate::disk::sys) const NO_ATTR: rustix::io::Errno = rustix::io::Errno::NODATA;

/// The wire name of a native attribute name, `None` for one not kept: ACLs and `user.*`,
/// spelled as they are.
pub(in crate::disk::sys) fn wire_name(native: &[u8]) -> Option<Vec<u8>> {
    kept(native).then(|| native.to_vec())
}

/// The native name of a kept attribute's wire name: the same.
pub(in crate::disk::sys) fn native_name(wire: &[u8]) -> io::Result<Cow<'_, [u8]>> {
    Ok(Cow::Borrowed(wire))
}

fn proc_path(dir: &impl AsFd, name: &[u8]) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    p
}

/// Reads the kept attributes of `name` in `dir`, a regular file or a directory (`None`
/// when it has none).
///
/// Through a descriptor of the entry where one can be opened without following a
/// symlink (resolving `/proc/self/fd/N/name` cost a scan with ACLs more than its stats);
/// by that path otherwise (a file this user may not read). Never for a device node:
/// opening one can act on the device ([`read_by_path`]).
pub fn read_at(dir: &impl AsFd, name: &[u8]) -> io::Result<Option<Xattrs>> {
    use rustix::fs::{Mode, OFlags};
    // NONBLOCK and NOCTTY: a name swapped for a fifo or a terminal since it was listed
    // neither blocks nor becomes the controlling terminal.
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, os(name), flags, Mode::empty()) {
        Ok(fd) => read_with(
            |list| rustix::fs::flistxattr(&fd, list),
            || rustix::fs::flistxattr_query(&fd),
            |attr, value| rustix::fs::fgetxattr(&fd, os(attr), value),
        ),
        // Gone, unreadable, or a symlink now: the path says which.
        Err(_) => read_by_path(dir, name),
    }
}

/// Reads the kept attributes of `name` in `dir`, of any kind, by its `/proc` path.
pub fn read_by_path(dir: &impl AsFd, name: &[u8]) -> io::Result<Option<Xattrs>> {
    let path = proc_path(dir, name);
    read_with(
        |list| rustix::fs::llistxattr(os(&path), list),
        || rustix::fs::llistxattr_query(os(&path)),
        |attr, value| rustix::fs::lgetxattr(os(&path), os(attr), value),
    )
}

/// Makes the kept attributes of `name` in `dir` exactly `want`.
pub fn write_at(dir: &impl AsFd, name: &[u8], want: Option<&Xattrs>) -> io::Result<()> {
    let path = proc_path(dir, name);
    let have = read_by_path(dir, name)?.unwrap_or_default();
    let want = want.cloned().unwrap_or_default();
    change(
        &have,
        &want,
        |n| rustix::fs::lremovexattr(os(&path), os(n)),
        |n, v| rustix::fs::lsetxattr(os(&path), os(n), v, XattrFlags::empty()),
    )
}
