//! Linux: extended attributes (ACLs included) read and written by descriptor, or by
//! `/proc/self/fd/N/name` with the `l*` calls, which never follow a symlink (there are no
//! `*at` xattr calls): nothing outside the root is touched.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use rustix::fs::XattrFlags;

use crate::disk::xattrs::{kept, Xattrs, MAX_VALUE};

fn proc_path(dir: &impl AsFd, name: &[u8]) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    p
}

fn os(b: &[u8]) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(b)
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

/// Reads the kept attributes with the given list and get calls.
fn read_with(
    list_into: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    list_size: impl Fn() -> rustix::io::Result<usize>,
    get: impl Fn(&[u8], &mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Option<Xattrs>> {
    let mut list = vec![0u8; 4096];
    let n = loop {
        match list_into(&mut list[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => {
                let need = list_size()?;
                list.resize(need.max(list.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out: Xattrs = Vec::new();
    for attr in list[..n].split(|&b| b == 0).filter(|a| kept(a)) {
        let mut value = vec![0u8; 256];
        let len = loop {
            match get(attr, &mut value[..]) {
                Ok(len) => break Some(len),
                Err(rustix::io::Errno::RANGE) if value.len() < MAX_VALUE => {
                    value.resize(MAX_VALUE, 0)
                }
                Err(rustix::io::Errno::NODATA) => break None, // removed meanwhile
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(len) = len {
            value.truncate(len);
            out.push((attr.to_vec(), value));
        }
    }
    out.sort();
    Ok((!out.is_empty()).then_some(out))
}

/// Makes the kept attributes of `name` in `dir` exactly `want`.
pub fn write_at(dir: &impl AsFd, name: &[u8], want: Option<&Xattrs>) -> io::Result<()> {
    let path = proc_path(dir, name);
    let have = read_by_path(dir, name)?.unwrap_or_default();
    let want = want.cloned().unwrap_or_default();
    for (n, _) in have
        .iter()
        .filter(|(n, _)| !want.iter().any(|(w, _)| w == n))
    {
        match rustix::fs::lremovexattr(os(&path), os(n)) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (n, v) in &want {
        if !have.iter().any(|(h, hv)| h == n && hv == v) {
            rustix::fs::lsetxattr(os(&path), os(n), v, XattrFlags::empty())?;
        }
    }
    Ok(())
}

/// Makes the kept attributes of an open file (a temp file about to be renamed into place)
/// exactly `want`: what the kernel gave it on create from a default ACL is removed, so an
/// entry without ACLs arrives without them, as rsync `-A` leaves it.
pub fn write_fd(fd: &impl AsFd, want: Option<&Xattrs>) -> io::Result<()> {
    let mut list = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::flistxattr(fd, &mut list[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => {
                let need = rustix::fs::flistxattr_query(fd)?;
                list.resize(need.max(list.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) if want.is_none() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    };
    let want = want.map_or(&[][..], |w| &w[..]);
    for name in list[..n].split(|&b| b == 0).filter(|a| kept(a)) {
        if !want.iter().any(|(w, _)| w == name) {
            match rustix::fs::fremovexattr(fd, os(name)) {
                Ok(()) | Err(rustix::io::Errno::NODATA) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    for (n, v) in want {
        rustix::fs::fsetxattr(fd, os(n), v, XattrFlags::empty())?;
    }
    Ok(())
}
