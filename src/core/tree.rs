//! `Tree`: one side's scanned state, a sorted map from [`RelPath`] to [`Entry`].
//!
//! Flat and sorted in tree order (parents first, children right after them), so a
//! subtree is a contiguous range and literal fixtures in tests stay small.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use triomphe::Arc;

use serde::{Deserialize, Serialize};

use crate::core::path::RelPath;

mod builder;
mod entry;
pub use builder::*;
pub use entry::*;

/// One side's view of the synchronized tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Every entry below the root, in tree order.
    #[serde(deserialize_with = "bulk_map")]
    pub entries: BTreeMap<RelPath, Entry>,
    /// Paths that could not be read; nothing at or below them is decided this run.
    pub problems: BTreeMap<RelPath, String>,
}

impl Tree {
    /// A tree of these entries (any order; a later duplicate wins), with full nodes.
    pub fn from_entries(entries: impl IntoIterator<Item = (RelPath, Entry)>) -> Tree {
        let mut b = MapBuilder::default();
        b.extend(entries);
        Tree {
            entries: b.finish(),
            problems: BTreeMap::new(),
        }
    }

    /// Rebuilds the map with full nodes (entries inserted one by one leave them half
    /// empty).
    pub fn compact(&mut self) {
        self.entries = Tree::from_entries(std::mem::take(&mut self.entries)).entries;
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &RelPath) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Adds or replaces the entries of `more`: in one merge that keeps the nodes full when
    /// they are many, one by one when they are few next to the tree.
    pub fn absorb(&mut self, mut more: BTreeMap<RelPath, Entry>) {
        if worth_merging(more.len(), self.entries.len()) {
            self.entries.append(&mut more);
        } else {
            self.entries.extend(more);
        }
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, path: RelPath, entry: Entry) {
        self.entries.insert(path, entry);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the tree has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries strictly below `path`, in tree order.
    pub fn descendants<'a>(
        &'a self,
        path: &'a RelPath,
    ) -> impl Iterator<Item = (&'a RelPath, &'a Entry)> + 'a {
        self.entries
            .range((Bound::Excluded(path), Bound::Unbounded))
            .take_while(move |(p, _)| p.starts_with(path))
    }

    /// Removes `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &RelPath) {
        let doomed: Vec<RelPath> = std::iter::once(path.clone())
            .chain(self.descendants(path).map(|(p, _)| p.clone()))
            .collect();
        for p in doomed {
            self.entries.remove(&p);
        }
    }

    /// True if `path` or one of its ancestors could not be read.
    pub fn has_problem_at_or_above(&self, path: &RelPath) -> bool {
        self.problems.keys().any(|p| path.starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `pairs` through a builder and through plain inserts; both must agree.
    fn check(pairs: &[(u32, u32)]) {
        let mut b = MapBuilder::default();
        let mut want = BTreeMap::new();
        for &(k, v) in pairs {
            b.push(k, v);
            want.insert(k, v);
        }
        assert_eq!(b.finish(), want);
    }

    #[test]
    fn a_map_builder_keeps_every_pair_and_the_later_duplicate() {
        check(&[]);
        check(&[(3, 1), (1, 2), (3, 3)]);
        // Enough pairs for several merges, in order, in reverse and scattered, with
        // duplicates landing on both sides of a merge.
        let n = 5 * MapBuilder::<u32, u32>::MIN_PART as u32;
        let ascending: Vec<_> = (0..n).map(|k| (k, k)).collect();
        check(&ascending);
        let descending: Vec<_> = (0..n).rev().map(|k| (k, k)).collect();
        check(&descending);
        let mut x = 1u32;
        let scattered: Vec<_> = (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x % (n / 3), i)
            })
            .collect();
        check(&scattered);
        // A few stragglers after a merge take the insert path at the end.
        let mut tail = ascending.clone();
        tail.extend([(n + 5, 0), (7, 99)]);
        check(&tail);
    }

    /// `Entry` as it was derived before its rare parts moved into a box: messages and
    /// baselines written by either must read the same.
    #[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
    enum OldKind {
        File,
        Dir,
        Symlink(#[serde(with = "serde_bytes")] Vec<u8>),
        Special { format: u32, rdev: u64 },
    }

    #[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
    struct OldEntry {
        kind: OldKind,
        size: u64,
        mtime_ns: i64,
        mode: u32,
        uid: u32,
        gid: u32,
        stamp: Stamp,
        digest: Option<Digest>,
        #[serde(default)]
        link: Option<Box<RelPath>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        xattrs: Option<Box<Xattrs>>,
    }

    #[test]
    fn a_source_learns_its_copys_digest_and_shares_its_metadata_when_nothing_else_differs() {
        let stamp = |ino| Stamp { ino, ctime_ns: 1 };
        let scanned = Entry::of(
            Entry::new(EntryKind::File, 5, 9, 0o644)
                .meta
                .as_ref()
                .clone(),
            stamp(1),
        );
        let mut copy = Entry::of(scanned.meta.as_ref().clone(), stamp(2));
        copy.digest = Some(Digest([7; 32]));
        let mut src = scanned.clone();
        src.learn_digest(&copy);
        assert!(src.shares_meta(&copy) && src.digest == Some(Digest([7; 32])));
        assert_eq!(src.stamp, stamp(1), "the source keeps its own stamp");
        assert_eq!(
            scanned.digest, None,
            "what still held the scanned metadata keeps it"
        );
        // A copy that came out otherwise (an owner the far side could not set) still
        // teaches the digest, but the source keeps its own attributes.
        let mut other = copy.clone();
        other.uid = 4;
        let mut src = scanned.clone();
        src.learn_digest(&other);
        assert!(!src.shares_meta(&other));
        assert_eq!((src.digest, src.uid), (Some(Digest([7; 32])), 0));
    }

    #[test]
    fn entries_are_small_and_keep_their_encoding() {
        // A tree's own part of an entry is its stamp and one pointer; the shared part
        // holds the digest inline (a shared pointer to it would cost more).
        assert_eq!(std::mem::size_of::<Entry>(), 24);
        assert!(
            std::mem::size_of::<Meta>() <= 72,
            "{}",
            std::mem::size_of::<Meta>()
        );
        // A path is one thin pointer in every key of every tree.
        assert_eq!(std::mem::size_of::<RelPath>(), 8);
        let path = |s: &str| RelPath::new(s.as_bytes().to_vec()).unwrap();
        let base = OldEntry {
            kind: OldKind::File,
            size: 5,
            mtime_ns: -7,
            mode: 0o4755,
            uid: 1,
            gid: 2,
            stamp: Stamp {
                ino: 3,
                ctime_ns: 4,
            },
            digest: Some(Digest::of(b"hello")),
            link: None,
            xattrs: None,
        };
        let cases = [
            base.clone(),
            OldEntry {
                kind: OldKind::Dir,
                size: 0,
                digest: None,
                ..base.clone()
            },
            OldEntry {
                kind: OldKind::Symlink(b"../t".to_vec()),
                size: 0,
                digest: None,
                ..base.clone()
            },
            OldEntry {
                kind: OldKind::Special {
                    format: 0o020000,
                    rdev: 259,
                },
                size: 0,
                digest: None,
                ..base.clone()
            },
            OldEntry {
                kind: OldKind::Special {
                    format: 0o010000,
                    rdev: 0,
                },
                size: 0,
                digest: None,
                ..base.clone()
            },
            OldEntry {
                link: Some(Box::new(path("a/first"))),
                ..base.clone()
            },
            OldEntry {
                xattrs: Some(Box::new(vec![(b"user.k".to_vec(), b"v".to_vec())])),
                ..base.clone()
            },
            OldEntry {
                link: Some(Box::new(path("f"))),
                xattrs: Some(Box::new(vec![(b"user.k".to_vec(), vec![])])),
                ..base.clone()
            },
        ];
        for old in cases {
            let bytes = rmp_serde::to_vec(&old).unwrap();
            let new: Entry = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(rmp_serde::to_vec(&new).unwrap(), bytes, "{old:?}");
            let back: OldEntry = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(back, old);
            // Read back, the rare parts are where the accessors find them.
            assert_eq!(new.link(), old.link.as_deref(), "{old:?}");
            assert_eq!(new.xattrs(), old.xattrs.as_deref(), "{old:?}");
            match &old.kind {
                OldKind::Symlink(t) => {
                    assert_eq!((new.kind, new.target()), (EntryKind::Symlink, &t[..]))
                }
                OldKind::Special { format, rdev } => {
                    assert_eq!(
                        (new.kind, new.special()),
                        (EntryKind::Special, (*format, *rdev))
                    )
                }
                OldKind::File => assert_eq!(
                    (new.kind, new.extra.is_some()),
                    (EntryKind::File, old.link.is_some() || old.xattrs.is_some())
                ),
                OldKind::Dir => assert_eq!((new.kind, new.extra.is_none()), (EntryKind::Dir, true)),
            }
        }
    }

    #[test]
    fn clearing_the_rare_parts_leaves_an_equal_entry() {
        let plain = Entry::new(EntryKind::File, 1, 2, 0o644);
        let mut e = plain.clone();
        e.set_link(Some(RelPath::new(b"x".to_vec()).unwrap()));
        e.set_xattrs(Some(vec![(b"user.a".to_vec(), b"1".to_vec())]));
        assert_ne!(e, plain);
        e.set_link(None);
        assert_ne!(e, plain);
        e.set_xattrs(None);
        assert_eq!(e, plain);
        assert!(e.extra.is_none());
        // Different targets, devices: different content.
        let mut a = Entry::new(EntryKind::Symlink, 0, 2, 0o777);
        a.set_target(b"a".to_vec());
        let mut b = a.clone();
        assert!(a.same_content(&b));
        b.set_target(b"b".to_vec());
        assert!(!a.same_content(&b));
        let mut c = Entry::new(EntryKind::Special, 0, 2, 0o600);
        c.set_special(0o020000, 1);
        let mut d = c.clone();
        d.set_special(0o020000, 2);
        assert!(!c.same_content(&d) && c.same_content(&c.clone()));
    }
}
