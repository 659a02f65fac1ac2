//! POSIX ACLs and extended attributes (`--preserve-acls`).
//!
//! ACLs are the xattrs `system.posix_acl_access` and `system.posix_acl_default`; with
//! `user.*` they are what is kept, as raw bytes (ACL entries hold numeric ids). `native`
//! reads and writes them on the filesystem; `metafile` keeps them in a side file per
//! directory ([`metafile`]) on a side that cannot or should not hold them. Files and
//! directories only: Linux allows neither on symlinks.
//!
//! Reading and writing them is the OS's ([`crate::disk::sys`]): never through a symlink,
//! never outside the root.

pub mod metafile;

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

pub use crate::disk::sys::xattr::{read_at, read_by_path, write_at, write_fd};

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
