//! `HashCache`: content digests remembered by (size, mtime, inode, ctime), kept in the
//! session state so an unchanged file is never read twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::path::RelPath;
use crate::tree::{Digest, Stamp, Tree};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Cached {
    size: u64,
    mtime_ns: i64,
    stamp: Stamp,
    digest: Digest,
}

/// One side's remembered digests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashCache {
    #[serde(deserialize_with = "crate::tree::bulk_map")]
    files: BTreeMap<RelPath, Cached>,
}

impl HashCache {
    /// Fills in the digest of every file whose size, mtime, inode and ctime match what was
    /// cached; returns how many were filled.
    pub fn fill(&self, tree: &mut Tree) -> usize {
        // Both maps are in tree order: walk them side by side (a merge join, no lookups).
        let mut n = 0;
        let mut cached = self.files.iter().peekable();
        for (p, e) in tree.entries.iter_mut() {
            while cached.next_if(|(q, _)| *q < p).is_some() {}
            let Some((_, c)) = cached.next_if(|(q, _)| *q == p) else {
                continue;
            };
            if e.is_file()
                && e.digest.is_none()
                && c.size == e.size
                && c.mtime_ns == e.mtime_ns
                && c.stamp == e.stamp
            {
                e.digest = Some(c.digest);
                n += 1;
            }
        }
        n
    }

    /// A cache of every file in `tree` whose digest is known.
    pub fn from_tree(tree: &Tree) -> HashCache {
        let files = known(tree).map(|(p, c)| (p.clone(), c)).collect();
        HashCache { files }
    }

    /// True if [`HashCache::from_tree`] would give this same cache (without building it).
    pub fn matches(&self, tree: &Tree) -> bool {
        self.files.iter().map(|(p, c)| (p, *c)).eq(known(tree))
    }
}

/// The files of `tree` whose digest is known, as cached, in tree order.
fn known(tree: &Tree) -> impl Iterator<Item = (&RelPath, Cached)> {
    tree.entries
        .iter()
        .filter(|(_, e)| e.is_file())
        .filter_map(|(p, e)| {
            let digest = e.digest?;
            Some((
                p,
                Cached {
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    stamp: e.stamp,
                    digest,
                },
            ))
        })
}
