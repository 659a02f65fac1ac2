//! POSIX ACLs and extended attributes (`--preserve-acls`).
//!
//! ACLs are the xattrs `system.posix_acl_access` and `system.posix_acl_default`; with
//! `user.*` they are what is kept, as raw bytes (ACL entries hold numeric ids). `native`
//! reads and writes them on the filesystem; `metafile` keeps them in a side file per
//! directory ([`metafile`]) on a side that cannot or should not hold them. Files and
//! directories only: Linux allows neither on symlinks.
//!
//! There are no `*at` xattr calls, so names are reached through `/proc/self/fd/N/name`
//! with the `l*` calls, which never follow a symlink: nothing outside the root is touched.

pub mod metafile;

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use rustix::fs::XattrFlags;
use serde::{Deserialize, Serialize};

pub use crate::core::tree::Xattrs;

/// Longest attribute value accepted (Linux allows 64 KiB).
pub const MAX_VALUE: usize = 64 << 10;
/// Most attributes kept per entry.
pub const MAX_COUNT: usize = 256;

/// `--preserve-acls` for one side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclMode {
    /// Neither read nor written.
    #[default]
    None,
    /// On the filesystem.
    Native,
    /// In a side file per directory.
    Metafile,
}

impl AclMode {
    /// Parses `none`, `native` or `metafile`.
    pub fn parse(s: &str) -> Result<AclMode, String> {
        match s {
            "none" => Ok(AclMode::None),
            "native" => Ok(AclMode::Native),
            "metafile" => Ok(AclMode::Metafile),
            _ => Err(format!(
                "bad --preserve-acls '{s}': use none, native or metafile"
            )),
        }
    }

    /// The word for the agent's command line.
    pub fn word(self) -> &'static str {
        match self {
            AclMode::None => "none",
            AclMode::Native => "native",
            AclMode::Metafile => "metafile",
        }
    }
}

/// What a scan that was told the attributes of unchanged files are known records for a
/// file it did not read them of: an empty list, which a read never returns (it gives
/// `None` for a file without attributes). Filled in from the baseline, or read, before
/// anything compares it ([`is_unread`]).
pub fn unread() -> Xattrs {
    Vec::new()
}

/// True for attributes a scan left unread ([`unread`]).
pub fn is_unread(x: Option<&Xattrs>) -> bool {
    x.is_some_and(|x| x.is_empty())
}

/// True for the attributes that are kept: ACLs and `user.*`.
pub fn kept(name: &[u8]) -> bool {
    name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
        || name.starts_with(b"user.")
}

/// Checks attributes from the other side: names, sizes, order.
pub fn valid(x: &Xattrs) -> Result<(), String> {
    if x.len() > MAX_COUNT {
        return Err("too many extended attributes".into());
    }
    for (i, (n, v)) in x.iter().enumerate() {
        if !kept(n) || n.len() > 255 || n.contains(&0) || v.len() > MAX_VALUE {
            return Err("invalid extended attribute".into());
        }
        if i > 0 && x[i - 1].0 >= *n {
            return Err("extended attributes out of order".into());
        }
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_acls_and_user_attributes_in_order_and_in_bounds_are_accepted() {
        let ok: Xattrs = vec![
            (b"system.posix_acl_access".to_vec(), vec![2, 0, 0, 0]),
            (b"user.a".to_vec(), b"1".to_vec()),
        ];
        assert!(valid(&ok).is_ok());
        let bad = |x: Xattrs| valid(&x).is_err();
        assert!(bad(vec![(b"security.selinux".to_vec(), vec![])]));
        assert!(bad(vec![(b"trusted.x".to_vec(), vec![])]));
        assert!(bad(vec![
            (b"user.b".to_vec(), vec![]),
            (b"user.a".to_vec(), vec![])
        ]));
        assert!(bad(vec![(b"user.big".to_vec(), vec![0; MAX_VALUE + 1])]));
        assert!(bad(vec![(b"user.\0".to_vec(), vec![])]));
        assert_eq!(AclMode::parse("metafile"), Ok(AclMode::Metafile));
        assert!(AclMode::parse("posix").is_err());
    }

    #[test]
    fn a_damaged_side_file_reads_as_empty() {
        assert!(metafile::decode(b"\xff\x00garbage").is_empty());
        let mut r = metafile::Records::new();
        r.insert(b"ok".to_vec(), vec![(b"user.a".to_vec(), b"1".to_vec())]);
        r.insert(b"../evil".to_vec(), vec![]);
        let bytes = rmp_serde::to_vec(&r).unwrap();
        let back = metafile::decode(&bytes);
        assert_eq!(back.keys().collect::<Vec<_>>(), vec![&b"ok".to_vec()]);
    }
}
