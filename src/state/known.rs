//! `Known`: what the client already holds (the baseline tree, a side's hash cache), handed
//! to a tree being built, so that the two hold each path, and the metadata of each entry
//! found as the baseline has it, once.
//!
//! Entries are offered in tree order, as scans find them: one walk over the held tree, no
//! lookups (an entry out of order is simply not shared, nor filled).

use std::collections::btree_map;
use std::iter::Peekable;

use crate::core::path::RelPath;
use crate::core::tree::{Entry, Tree};
use crate::state::hash_cache::{Filler, HashCache};

/// What an earlier run's probe found about a root (see `Root::probe_names`): reused while
/// the root is the same directory, as probing makes and removes a name inside the root,
/// which changes the root's ctime on every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probed {
    /// The root the probe was made in.
    pub root: crate::disk::fsops::RootId,
    /// How it treats names.
    pub names: crate::core::names::NameRules,
    /// What attributes it keeps.
    pub holds: crate::core::names::Holds,
}

/// The held tree, and maybe a side's cache, walked alongside a tree being built.
pub struct Known<'a> {
    held: Option<Peekable<btree_map::Iter<'a, RelPath, Entry>>>,
    cache: Option<Filler<'a>>,
    /// The cache's files unchanged since the baseline have its ACLs and xattrs.
    xattrs: bool,
    /// The root's traits as last probed.
    probed: Option<Probed>,
}

impl<'a> Known<'a> {
    /// Shares the paths and entries of `held`.
    pub fn of(held: &'a Tree) -> Known<'a> {
        Known {
            held: Some(held.entries.iter().peekable()),
            cache: None,
            xattrs: false,
            probed: None,
        }
    }

    /// Shares what `held` has, and first fills digests from `cache` (stored with `held`):
    /// an unchanged file then shares its baseline entry's metadata, digest and all.
    pub fn with_cache(held: &'a Tree, cache: &'a HashCache) -> Known<'a> {
        Known {
            cache: Some(cache.filler(held)),
            ..Known::of(held)
        }
    }

    /// [`Known::with_cache`], where the baseline's ACLs and xattrs were read as this run
    /// reads them: a scan may leave a file's unread ([`crate::disk::xattrs::unread`]), and an
    /// unchanged file takes the baseline's; the caller reads the rest.
    pub fn with_xattrs(mut self, known: bool) -> Known<'a> {
        self.xattrs = known && self.cache.is_some();
        self
    }

    /// With what an earlier probe of the root found (used if it is still that root).
    pub fn with_probed(mut self, probed: Option<Probed>) -> Known<'a> {
        self.probed = probed;
        self
    }

    /// What an earlier probe of the root found, if known.
    pub fn probed(&self) -> Option<Probed> {
        self.probed
    }

    /// True when a scan may leave files' ACLs and xattrs unread.
    pub fn knows_xattrs(&self) -> bool {
        self.xattrs
    }

    /// Shares nothing.
    pub fn none() -> Known<'a> {
        Known {
            held: None,
            cache: None,
            xattrs: false,
            probed: None,
        }
    }

    /// `path` and `entry`, holding the held tree's copies of what they have in common.
    pub fn share(&mut self, path: RelPath, mut entry: Entry) -> (RelPath, Entry) {
        if let Some(cache) = &mut self.cache {
            cache.fill(&path, &mut entry);
        }
        let Some(held) = &mut self.held else {
            return (path, entry);
        };
        while held.next_if(|(q, _)| **q < path).is_some() {}
        match held.peek() {
            Some((q, e)) if **q == path => {
                entry.share(e);
                ((*q).clone(), entry)
            }
            _ => (path, entry),
        }
    }
}

impl Default for Known<'_> {
    fn default() -> Self {
        Known::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tree::{EntryKind, Stamp};

    fn path(s: &str) -> RelPath {
        RelPath::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn the_held_copies_are_handed_out_in_tree_order() {
        let held = Tree::from_entries(
            ["a", "a/x", "a/y", "b", "c/d"]
                .map(|p| (path(p), Entry::new(EntryKind::File, 0, 0, 0o644))),
        );
        let copy = |p: &str| held.entries.get_key_value(&path(p)).unwrap();
        let mut known = Known::of(&held);
        // In tree order, with paths the held tree lacks in between.
        for (p, held_there) in [
            ("a", true),
            ("a/x", true),
            ("a/xx", false),
            ("a/y", true),
            ("c", false),
            ("c/d", true),
            ("z", false),
        ] {
            let (got, e) = known.share(path(p), Entry::new(EntryKind::File, 0, 0, 0o644));
            assert_eq!(got, path(p));
            assert_eq!(held_there && got.same_bytes(copy(p).0), held_there, "{p}");
            assert_eq!(held_there && e.shares_meta(copy(p).1), held_there, "{p}");
        }
        // Out of order: the same path and entry, just not shared.
        let entry = Entry::new(EntryKind::File, 0, 0, 0o644);
        let (late, e) = known.share(path("b"), entry.clone());
        assert!(late == path("b") && !late.same_bytes(copy("b").0));
        assert!(e == entry && !e.shares_meta(copy("b").1));
        let (nothing, _) = Known::none().share(path("a"), entry);
        assert!(!nothing.same_bytes(copy("a").0));
    }

    #[test]
    fn only_an_equal_entry_shares_and_a_stamp_stays_its_own() {
        let mut held_entry = Entry::new(EntryKind::Dir, 0, 5, 0o755);
        held_entry.stamp = Stamp {
            ino: 1,
            ctime_ns: 1,
        };
        let held = Tree::from_entries([(path("d"), held_entry.clone())]);
        let mut mine = held_entry.clone();
        mine.stamp = Stamp {
            ino: 9,
            ctime_ns: 9,
        };
        let fresh = |e: &Entry| {
            let mut f = Entry::new(e.kind, e.size, e.mtime_ns, e.mode);
            f.stamp = e.stamp;
            f
        };
        let (_, e) = Known::of(&held).share(path("d"), fresh(&mine));
        assert!(e.shares_meta(&held.entries[&path("d")]));
        assert_eq!(e.stamp, mine.stamp);
        let mut other = fresh(&mine);
        other.mode = 0o700;
        let (_, e) = Known::of(&held).share(path("d"), other.clone());
        assert!(!e.shares_meta(&held.entries[&path("d")]) && e == other);
        // Written through, a shared entry takes its own copy: the held one stays.
        let (_, mut e) = Known::of(&held).share(path("d"), fresh(&mine));
        e.mode = 0o711;
        assert_eq!(held.entries[&path("d")].mode, 0o755);
        assert!(!e.shares_meta(&held.entries[&path("d")]));
    }
}
