//! The part of extended attributes every Unix shares: walking the NUL-separated name
//! list, reading each kept value, and making an open file's set exactly what is wanted.
//! Which names are kept, and how they are spelled on the wire, is the OS's
//! (`wire_name`, `native_name` in its `xattr` module): Linux's names are the wire's,
//! macOS's have no namespaces and travel as `user.NAME`.

use std::io;
use std::os::fd::AsFd;

use rustix::fs::XattrFlags;

use crate::disk::sys::os::xattr::{native_name, wire_name, NO_ATTR};
use crate::disk::xattrs::{Xattrs, MAX_VALUE};

/// Reads the kept attributes with the given list and get calls (native names), as wire
/// names and values, sorted; `None` when there are none.
pub(in crate::disk::sys) fn read_with(
    list_into: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    list_size: impl Fn() -> rustix::io::Result<usize>,
    get: impl Fn(&[u8], &mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Option<Xattrs>> {
    let Some(names) = list_with(list_into, list_size)? else {
        return Ok(None);
    };
    let mut out: Xattrs = Vec::new();
    for attr in names.split(|&b| b == 0).filter(|a| !a.is_empty()) {
        let Some(wire) = wire_name(attr) else {
            continue;
        };
        let mut value = vec![0u8; 256];
        let len = loop {
            match get(attr, &mut value[..]) {
                Ok(len) => break Some(len),
                Err(rustix::io::Errno::RANGE) if value.len() < MAX_VALUE => {
                    value.resize(MAX_VALUE, 0)
                }
                Err(NO_ATTR) => break None, // removed meanwhile
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(len) = len {
            value.truncate(len);
            out.push((wire, value));
        }
    }
    out.sort();
    Ok((!out.is_empty()).then_some(out))
}

/// The NUL-separated list of attribute names, or `None` where the filesystem has none.
fn list_with(
    list_into: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    list_size: impl Fn() -> rustix::io::Result<usize>,
) -> io::Result<Option<Vec<u8>>> {
    let mut list = vec![0u8; 4096];
    loop {
        match list_into(&mut list[..]) {
            Ok(n) => {
                list.truncate(n);
                return Ok(Some(list));
            }
            Err(rustix::io::Errno::RANGE) => {
                let need = list_size()?;
                list.resize(need.max(list.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Makes `have` (what is there, wire names) into `want` with the given remove and set
/// calls (native names), touching only what differs.
pub(in crate::disk::sys) fn change(
    have: &Xattrs,
    want: &Xattrs,
    remove: impl Fn(&[u8]) -> rustix::io::Result<()>,
    set: impl Fn(&[u8], &[u8]) -> rustix::io::Result<()>,
) -> io::Result<()> {
    for (n, _) in have
        .iter()
        .filter(|(n, _)| !want.iter().any(|(w, _)| w == n))
    {
        match remove(&native_name(n)?) {
            Ok(()) | Err(NO_ATTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (n, v) in want {
        if !have.iter().any(|(h, hv)| h == n && hv == v) {
            set(&native_name(n)?, v)?;
        }
    }
    Ok(())
}

/// Makes the kept attributes of an open file (a temp file about to be renamed into place)
/// exactly `want`: what the system gave it on create (a default ACL) is removed, so an
/// entry without ACLs arrives without them, as rsync `-A` leaves it.
pub fn write_fd(fd: &impl AsFd, want: Option<&Xattrs>) -> io::Result<()> {
    let list = list_with(
        |list| rustix::fs::flistxattr(fd, list),
        || rustix::fs::flistxattr_query(fd),
    )?;
    let Some(list) = list else {
        return match want {
            None => Ok(()),
            Some(_) => Err(rustix::io::Errno::NOTSUP.into()),
        };
    };
    let want = want.map_or(&[][..], |w| &w[..]);
    for name in list.split(|&b| b == 0).filter(|a| !a.is_empty()) {
        let Some(wire) = wire_name(name) else {
            continue;
        };
        if !want.iter().any(|(w, _)| *w == wire) {
            match rustix::fs::fremovexattr(fd, os(name)) {
                Ok(()) | Err(NO_ATTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    for (n, v) in want {
        rustix::fs::fsetxattr(fd, os(&native_name(n)?), v, XattrFlags::empty())?;
    }
    Ok(())
}

/// A name as the calls take it.
pub(in crate::disk::sys) fn os(b: &[u8]) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(b)
}
