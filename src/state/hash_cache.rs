//! `HashCache`: content digests remembered by (size, mtime, inode, ctime), kept in the
//! session state so an unchanged file is never read twice.
//!
//! Most files are in the baseline's state on both sides, and the baseline already holds
//! their size, mtime and digest: for those a side keeps only its inode and ctime, in a
//! list that follows the baseline's files in tree order (16 bytes a file, no path). Files
//! a side holds in another state (unresolved conflicts, pending changes) are kept whole.
//!
//! Over 600 lines only with its tests (about 250 of them).

use std::collections::{btree_map, BTreeMap, HashMap};
use std::iter::Peekable;

use serde::{Deserialize, Serialize};

use crate::core::merge::merge;
use crate::core::path::RelPath;
use crate::core::tree::{Digest, Entry, EntryKind, Meta, Stamp, Tree};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Cached {
    size: u64,
    mtime_ns: i64,
    stamp: Stamp,
    digest: Digest,
}

/// One side's remembered digests, relative to the baseline tree they are stored with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashCache {
    /// For each file of the baseline tree that has a digest, in tree order: this side's
    /// stamp when its copy was in the baseline's state, else zero (nothing cached).
    stamps: Vec<Stamp>,
    /// Files this side holds in a state the baseline does not.
    #[serde(deserialize_with = "crate::core::tree::bulk_map")]
    others: BTreeMap<RelPath, Cached>,
    /// Set once the cache has filled a run's trees ([`HashCache::fill`]): the two lists
    /// are then dropped, and only their fingerprint is kept, for [`HashCache::is_of`]. A
    /// run that changed nothing would otherwise hold them, 32 bytes a file for both
    /// sides, through its peak of memory.
    #[serde(skip)]
    spent: Option<Fingerprint>,
}

/// A hash of what a cache holds, part by part in tree order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    stamps: [u8; 32],
    others: [u8; 32],
}

/// Builds a [`Fingerprint`]. The stamps and the other files are hashed apart: a cache
/// stores them apart, a tree gives them interleaved.
#[derive(Default)]
struct Printer {
    stamps: blake3::Hasher,
    others: blake3::Hasher,
}

impl Printer {
    fn stamp(&mut self, s: &Stamp) {
        self.stamps.update(&s.ino.to_le_bytes());
        self.stamps.update(&s.ctime_ns.to_le_bytes());
    }

    fn other(&mut self, p: &RelPath, c: &Cached) {
        let h = &mut self.others;
        h.update(&(p.as_bytes().len() as u64).to_le_bytes());
        h.update(p.as_bytes());
        h.update(&c.size.to_le_bytes());
        h.update(&c.mtime_ns.to_le_bytes());
        h.update(&c.stamp.ino.to_le_bytes());
        h.update(&c.stamp.ctime_ns.to_le_bytes());
        h.update(&c.digest.0);
    }

    fn finish(&self) -> Fingerprint {
        Fingerprint {
            stamps: *self.stamps.finalize().as_bytes(),
            others: *self.others.finalize().as_bytes(),
        }
    }
}

/// True for a baseline file whose digest is known: one that has a stamp in a cache (the
/// stamps follow these files in tree order).
fn is_known(e: &Entry) -> bool {
    e.is_file() && e.digest.is_some()
}

fn cached(e: &Entry) -> Option<Cached> {
    let digest = e.digest.filter(|_| e.is_file())?;
    Some(Cached {
        size: e.size,
        mtime_ns: e.mtime_ns,
        stamp: e.stamp,
        digest,
    })
}

/// One item of a side's cache, in tree order: the stamp of the next baseline file with a
/// digest (zero if this side's copy differs), or a file this side holds in another state.
enum Part<'a> {
    Stamp(Stamp),
    Other(&'a RelPath, Cached),
}

/// What `tree` (one side, as it is now) tells about digests, relative to `base`, one
/// part at a time.
fn parts<'a>(base: &'a Tree, tree: &'a Tree) -> impl Iterator<Item = Part<'a>> + 'a {
    merge([&base.entries, &tree.entries]).flat_map(|(p, [be, te])| {
        let b = be.and_then(cached);
        let t = te.and_then(cached);
        // A stamp also vouches for the file's ACLs and xattrs being the baseline's (a
        // scan may leave them unread, see `Known::with_xattrs`).
        let same_xattrs = matches!((be, te), (Some(b), Some(t)) if b.xattrs() == t.xattrs());
        match (b, t) {
            (Some(b), Some(t))
                if (b.size, b.mtime_ns, b.digest) == (t.size, t.mtime_ns, t.digest)
                    && same_xattrs =>
            {
                [Some(Part::Stamp(t.stamp)), None]
            }
            (b, t) => [
                b.map(|_| Part::Stamp(Stamp::default())),
                t.map(|t| Part::Other(p, t)),
            ],
        }
        .into_iter()
        .flatten()
    })
}

impl HashCache {
    /// What `tree` (one side, as it is now) tells about digests, relative to `base`.
    pub fn of(base: &Tree, tree: &Tree) -> HashCache {
        // One stamp for each known baseline file: sized once, as a list that doubles its
        // way up to a million stamps leaves twice their memory touched behind it.
        let mut stamps = Vec::with_capacity(base.entries.values().filter(|e| is_known(e)).count());
        let mut others = Vec::new();
        for part in parts(base, tree) {
            match part {
                Part::Stamp(s) => stamps.push(s),
                Part::Other(p, c) => others.push((p.clone(), c)),
            }
        }
        HashCache {
            stamps,
            others: others.into_iter().collect(),
            spent: None,
        }
    }

    /// A spent cache made again from `tree`, the tree it filled (as it is now): a cached
    /// digest that filled nothing belonged to a file since changed, so nothing is lost.
    pub fn renew(&mut self, base: &Tree, tree: &Tree) {
        if self.is_spent() {
            *self = HashCache::of(base, tree);
        }
    }

    /// True once [`HashCache::fill`] has used it up.
    pub fn is_spent(&self) -> bool {
        self.spent.is_some()
    }

    /// The fingerprint of what this cache holds (or held, once spent).
    fn fingerprint(&self) -> Fingerprint {
        if let Some(f) = self.spent {
            return f;
        }
        let mut printer = Printer::default();
        self.stamps.iter().for_each(|s| printer.stamp(s));
        self.others.iter().for_each(|(p, c)| printer.other(p, c));
        printer.finish()
    }

    /// Whether this cache is [`HashCache::of`]`(base, tree)`, found without building that
    /// (a run that changed nothing finds it out at its peak of memory), by fingerprint: a
    /// spent cache has nothing else.
    pub fn is_of(&self, base: &Tree, tree: &Tree) -> bool {
        let mut printer = Printer::default();
        for part in parts(base, tree) {
            match part {
                Part::Stamp(s) => printer.stamp(&s),
                Part::Other(p, c) => printer.other(p, &c),
            }
        }
        printer.finish() == self.fingerprint()
    }

    /// Fills in the digest of every file of `tree` whose size, mtime, inode and ctime match
    /// what was cached (with `base`, the tree this cache was stored with); returns how many.
    /// The cache is spent: it fills nothing more, and [`HashCache::is_of`] still answers.
    pub fn fill(&mut self, base: &Tree, tree: &mut Tree) -> usize {
        if self.is_spent() {
            return 0;
        }
        let n = self.fill_from(base, tree) + self.fill_moved(base, tree);
        self.spend();
        n
    }

    /// Lets go of the lists once they have filled a run's trees (through [`Known`] as the
    /// trees were built, or [`HashCache::fill`]); [`HashCache::is_of`] still answers.
    ///
    /// [`Known`]: crate::state::known::Known
    pub fn spend(&mut self) {
        if !self.is_spent() {
            self.spent = Some(self.fingerprint());
            self.stamps = Vec::new();
            self.others = BTreeMap::new();
        }
    }

    /// Fills in the digests of files that moved on this side, then lets go of the lists
    /// ([`HashCache::spend`]); returns how many it filled. For a tree already filled
    /// through [`Known`] as it was built, which finds a file only at its old path.
    ///
    /// [`Known`]: crate::state::known::Known
    pub fn spend_on(&mut self, base: &Tree, tree: &mut Tree) -> usize {
        if self.is_spent() {
            return 0;
        }
        let n = self.fill_moved(base, tree);
        self.spend();
        n
    }

    /// Fills in the digest of every file whose inode, ctime, size and mtime are those
    /// cached for a file that is no longer at its path. Renaming a directory changes none
    /// of these for the files below it, so a renamed tree pairs as moves without being
    /// read again; a file renamed on its own has a new ctime, and is hashed.
    fn fill_moved(&self, base: &Tree, tree: &mut Tree) -> usize {
        // Usually every file is filled already (a no-op run): then one look at each entry,
        // without the walk over the paths of both trees, settles it.
        if !tree
            .entries
            .values()
            .any(|t| t.is_file() && t.digest.is_none())
        {
            return 0;
        }
        // By stamp: the size, mtime and digest the file had.
        let mut gone: HashMap<Stamp, (u64, i64, Digest)> = HashMap::new();
        let mut stamps = self.stamps.iter();
        for (_, [b, t]) in merge([&base.entries, &tree.entries]) {
            if let Some(b) = b.filter(|b| is_known(b)) {
                let stamp = stamps.next().copied().unwrap_or_default();
                if stamp != Stamp::default() && t.is_none_or(|t| t.stamp != stamp) {
                    gone.extend(b.digest.map(|d| (stamp, (b.size, b.mtime_ns, d))));
                }
            }
        }
        for (p, c) in &self.others {
            if tree.get(p).is_none_or(|t| t.stamp != c.stamp) {
                gone.insert(c.stamp, (c.size, c.mtime_ns, c.digest));
            }
        }
        if gone.is_empty() {
            return 0;
        }
        let mut n = 0;
        for e in tree.entries.values_mut() {
            if !e.is_file() || e.digest.is_some() || e.stamp == Stamp::default() {
                continue;
            }
            match gone.get(&e.stamp) {
                Some(&(size, mtime_ns, digest)) if (size, mtime_ns) == (e.size, e.mtime_ns) => {
                    e.digest = Some(digest);
                    n += 1;
                }
                _ => {}
            }
        }
        n
    }

    fn fill_from(&self, base: &Tree, tree: &mut Tree) -> usize {
        let mut filler = self.filler(base);
        let mut n = 0;
        for (p, e) in tree.entries.iter_mut() {
            n += usize::from(filler.fill(p, e));
        }
        n
    }

    /// Fills digests one entry at a time, as a tree is built in tree order (`base` is the
    /// tree this cache was stored with). A spent cache fills nothing.
    pub fn filler<'a>(&'a self, base: &'a Tree) -> Filler<'a> {
        Filler {
            base: base.entries.iter().peekable(),
            stamps: self.stamps.iter(),
            others: self.others.iter().peekable(),
        }
    }
}

/// A walk over a cache and its baseline in tree order: see [`HashCache::filler`].
pub struct Filler<'a> {
    base: Peekable<btree_map::Iter<'a, RelPath, Entry>>,
    /// Follows the baseline's files with a digest.
    stamps: std::slice::Iter<'a, Stamp>,
    others: Peekable<btree_map::Iter<'a, RelPath, Cached>>,
}

impl<'a> Filler<'a> {
    /// Fills in `e`'s digest if its size, mtime, inode and ctime match what was cached;
    /// returns whether it did. A file as the baseline has it then shares the baseline
    /// entry's metadata. Paths must come in tree order (one out of order is not filled).
    pub fn fill(&mut self, p: &RelPath, e: &mut Entry) -> bool {
        let from_base = self.base_at(p);
        let from_other = {
            while self.others.next_if(|(q, _)| *q < p).is_some() {}
            self.others.next_if(|(q, _)| *q == p).map(|(_, c)| c)
        };
        if !e.is_file() || e.digest.is_some() || e.stamp == Stamp::default() {
            return false;
        }
        let hit = |size, mtime_ns, stamp| (size, mtime_ns, stamp) == (e.size, e.mtime_ns, e.stamp);
        let from_base = from_base.filter(|(b, s)| hit(b.size, b.mtime_ns, *s));
        let from_other = from_other.filter(|c| hit(c.size, c.mtime_ns, c.stamp));
        if let Some((b, _)) = from_base {
            e.digest = b.digest;
            // Unchanged since it was in the baseline's state, attributes and all.
            if crate::disk::xattrs::is_unread(e.xattrs()) {
                e.set_xattrs(b.xattrs().cloned());
            }
            e.share(b);
        } else if let Some(c) = from_other {
            e.digest = Some(c.digest);
        }
        from_base.is_some() || from_other.is_some()
    }

    /// The baseline's entry at `p` and this side's cached stamp for it, if it has one.
    fn base_at(&mut self, p: &RelPath) -> Option<(&'a Entry, Stamp)> {
        while let Some((q, b)) = self.base.next_if(|(q, _)| *q <= p) {
            // `stamps` has one item per baseline file with a digest: keep it in step.
            let stamp = is_known(b).then(|| self.stamps.next().copied()).flatten();
            if q == p {
                return stamp.map(|s| (b, s));
            }
        }
        None
    }
}

/// A side's cache as format version 1 stored it: every file with its path.
#[derive(Deserialize)]
pub struct CacheV1 {
    #[serde(deserialize_with = "crate::core::tree::bulk_map")]
    files: BTreeMap<RelPath, Cached>,
}

impl CacheV1 {
    /// The same knowledge in today's form, relative to `base`.
    pub fn upgrade(self, base: &Tree) -> HashCache {
        let entries = self.files.into_iter().map(|(p, c)| {
            let e = Entry::of(
                Meta {
                    kind: EntryKind::File,
                    size: c.size,
                    mtime_ns: c.mtime_ns,
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    digest: Some(c.digest),
                    extra: None,
                },
                c.stamp,
            );
            (p, e)
        });
        HashCache::of(base, &Tree::from_entries(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, mtime_ns: i64, ino: u64, digest: u8) -> Entry {
        Entry::of(
            Meta {
                kind: EntryKind::File,
                size,
                mtime_ns,
                mode: 0o644,
                uid: 0,
                gid: 0,
                digest: Some(Digest([digest; 32])),
                extra: None,
            },
            Stamp { ino, ctime_ns: 7 },
        )
    }

    fn tree(entries: &[(&str, Entry)]) -> Tree {
        Tree::from_entries(
            entries
                .iter()
                .map(|(p, e)| (RelPath::new(p.as_bytes().to_vec()).unwrap(), e.clone())),
        )
    }

    fn unhashed(mut t: Tree) -> Tree {
        for e in t.entries.values_mut() {
            e.digest = None;
        }
        t
    }

    #[test]
    fn fills_what_is_unchanged_and_nothing_else() {
        // The baseline: a, b, c agreed; `x` is only on this side (not agreed yet).
        let base = tree(&[
            ("a", file(1, 1, 10, 1)),
            ("b", file(2, 2, 20, 2)),
            ("c", file(3, 3, 30, 3)),
        ]);
        let seen = tree(&[
            ("a", file(1, 1, 10, 1)),
            ("b", file(2, 2, 21, 2)),
            ("c", file(3, 3, 30, 3)),
            ("x", file(4, 4, 40, 4)),
        ]);
        let mut cache = HashCache::of(&base, &seen);
        assert_eq!(cache.stamps.len(), 3);
        assert_eq!(cache.others.len(), 1, "only x is kept with its path");
        // Now: a unchanged; b replaced (other inode); c touched (other mtime); x unchanged.
        let mut now = unhashed(tree(&[
            ("a", file(1, 1, 10, 0)),
            ("b", file(2, 2, 22, 0)),
            ("c", file(3, 9, 30, 0)),
            ("x", file(4, 4, 40, 0)),
        ]));
        assert_eq!(cache.fill(&base, &mut now), 2);
        let digest = |p: &str| {
            now.get(&RelPath::new(p.as_bytes().to_vec()).unwrap())
                .unwrap()
                .digest
        };
        assert_eq!(digest("a"), Some(Digest([1; 32])));
        assert_eq!(digest("b"), None, "another inode is another file");
        assert_eq!(digest("c"), None, "another mtime may be other content");
        assert_eq!(digest("x"), Some(Digest([4; 32])));
    }

    #[test]
    fn a_file_found_at_a_new_path_with_its_old_inode_and_ctime_is_filled() {
        let base = tree(&[
            ("d/a", file(1, 1, 10, 1)),
            ("d/b", file(2, 2, 20, 2)),
            ("d/c", file(3, 3, 30, 3)),
            ("x", file(4, 4, 40, 4)),
        ]);
        let mut seen = base.clone();
        seen.entries.remove(&RelPath::new(b"x".to_vec()).unwrap());
        seen.entries
            .insert(RelPath::new(b"y".to_vec()).unwrap(), file(5, 5, 50, 5));
        let cache = HashCache::of(&base, &seen);
        // `d` renamed to `e`; `e/b` rewritten since (another mtime); `e/c` is another file
        // with c's inode number (another ctime); `x` is gone and `y`, kept with its path,
        // moved to `z`.
        let mut c_again = file(3, 3, 30, 0);
        c_again.stamp.ctime_ns = 8;
        let mut now = unhashed(tree(&[
            ("e/a", file(1, 1, 10, 0)),
            ("e/b", file(2, 9, 20, 0)),
            ("e/c", c_again),
            ("z", file(5, 5, 50, 0)),
        ]));
        assert_eq!(cache.clone().fill(&base, &mut now), 2);
        let digest = |t: &Tree, p: &str| {
            t.get(&RelPath::new(p.as_bytes().to_vec()).unwrap())
                .unwrap()
                .digest
        };
        assert_eq!(digest(&now, "e/a"), Some(Digest([1; 32])));
        assert_eq!(
            digest(&now, "e/b"),
            None,
            "another mtime may be other content"
        );
        assert_eq!(digest(&now, "e/c"), None, "another ctime is another file");
        assert_eq!(digest(&now, "z"), Some(Digest([5; 32])));
        // The same after a fill in tree order, which finds none of them at their paths.
        let mut again = unhashed(now.clone());
        let mut spent = cache.clone();
        assert_eq!(spent.spend_on(&base, &mut again), 2);
        assert_eq!(again, now);
        assert!(spent.is_spent());
        assert_eq!(spent.spend_on(&base, &mut unhashed(now)), 0, "spent");
    }

    #[test]
    fn an_unchanged_file_shares_the_baselines_metadata_and_keeps_its_stamp() {
        let base = tree(&[("a", file(1, 1, 10, 1)), ("b", file(2, 2, 20, 2))]);
        let cache = HashCache::of(&base, &base);
        // Now: a as it was; b's content as it was, but with another mode.
        let mut b_now = file(2, 2, 20, 0);
        b_now.mode = 0o600;
        let mut now = unhashed(tree(&[("a", file(1, 1, 10, 0)), ("b", b_now)]));
        let mut filler = cache.filler(&base);
        for (p, e) in now.entries.iter_mut() {
            assert!(filler.fill(p, e), "{p}");
        }
        let at = |t: &Tree, p: &str| {
            t.get(&RelPath::new(p.as_bytes().to_vec()).unwrap())
                .cloned()
        };
        let (a, b) = (at(&now, "a").unwrap(), at(&now, "b").unwrap());
        assert!(a.shares_meta(&at(&base, "a").unwrap()));
        assert_eq!(
            a.stamp,
            Stamp {
                ino: 10,
                ctime_ns: 7
            }
        );
        assert_eq!(b.digest, Some(Digest([2; 32])));
        assert!(!b.shares_meta(&at(&base, "b").unwrap()) && b.mode == 0o600);
        // Written through, the shared metadata is copied first: the baseline stays.
        let mut a = a;
        a.mtime_ns = 99;
        assert_eq!(at(&base, "a").unwrap().mtime_ns, 1);
    }

    #[test]
    fn is_of_agrees_with_building_the_cache() {
        let base = tree(&[
            ("a", file(1, 1, 10, 1)),
            ("b", file(2, 2, 20, 2)),
            ("c", file(3, 3, 30, 3)),
        ]);
        let sides = [
            tree(&[]),
            tree(&[
                ("a", file(1, 1, 10, 1)),
                ("b", file(2, 2, 20, 2)),
                ("c", file(3, 3, 30, 3)),
            ]),
            tree(&[
                ("a", file(1, 1, 11, 1)),
                ("b", file(2, 2, 20, 2)),
                ("c", file(3, 3, 30, 3)),
            ]),
            tree(&[("a", file(1, 1, 10, 1)), ("c", file(3, 3, 30, 3))]),
            tree(&[
                ("a", file(1, 1, 10, 1)),
                ("b", file(2, 2, 20, 9)),
                ("c", file(3, 3, 30, 3)),
            ]),
            tree(&[
                ("a", file(1, 1, 10, 1)),
                ("b", file(2, 2, 20, 2)),
                ("c", file(3, 3, 30, 3)),
                ("d", file(4, 4, 40, 4)),
            ]),
            tree(&[
                ("a", file(1, 1, 10, 1)),
                ("b", file(2, 2, 20, 2)),
                ("c", file(3, 3, 30, 3)),
                ("d", file(4, 4, 41, 4)),
            ]),
            unhashed(tree(&[("a", file(1, 1, 10, 1))])),
        ];
        for (i, x) in sides.iter().enumerate() {
            let cache = HashCache::of(&base, x);
            // Spent, it answers from its fingerprint alone.
            let mut spent = cache.clone();
            spent.fill(&base, &mut unhashed(x.clone()));
            assert!(spent.is_spent() && spent.stamps.is_empty() && spent.others.is_empty());
            for (j, y) in sides.iter().enumerate() {
                let same = cache == HashCache::of(&base, y);
                for (cache, how) in [(&cache, "whole"), (&spent, "spent")] {
                    assert_eq!(
                        cache.is_of(&base, y),
                        same,
                        "{how} cache of side {i} against side {j}"
                    );
                }
            }
            assert!(cache.is_of(&base, x) && spent.is_of(&base, x));
        }
    }

    #[test]
    fn a_spent_cache_fills_nothing_until_renewed_from_the_trees_it_filled() {
        let base = tree(&[("a", file(1, 1, 10, 1)), ("b", file(2, 2, 20, 2))]);
        let seen = tree(&[
            ("a", file(1, 1, 10, 1)),
            ("b", file(2, 2, 20, 2)),
            ("x", file(4, 4, 40, 4)),
        ]);
        let mut baseline = crate::state::baseline::Baseline {
            tree: base.clone(),
            caches: [HashCache::of(&base, &seen), HashCache::default()],
            ..Default::default()
        };
        let mut filled = unhashed(seen.clone());
        assert_eq!(baseline.caches[0].fill(&base, &mut filled), 3);
        assert_eq!(filled, seen);
        let mut again = unhashed(seen.clone());
        assert_eq!(baseline.caches[0].fill(&base, &mut again), 0, "spent");
        baseline.renew_caches(&[filled.clone(), Tree::default()]);
        assert_eq!(baseline.caches[0], HashCache::of(&base, &seen));
        assert!(!baseline.caches[1].is_spent());
        assert_eq!(baseline.caches[0].fill(&base, &mut again), 3, "renewed");
        assert_eq!(again, seen);
    }

    #[test]
    fn a_version_1_cache_upgrades_to_the_same_knowledge() {
        let base = tree(&[("a", file(1, 1, 10, 1)), ("b", file(2, 2, 20, 2))]);
        let seen = tree(&[("a", file(1, 1, 10, 1)), ("b", file(2, 5, 20, 3))]);
        let files: BTreeMap<RelPath, Cached> = seen
            .entries
            .iter()
            .map(|(p, e)| (p.clone(), cached(e).unwrap()))
            .collect();
        assert_eq!(
            CacheV1 { files }.upgrade(&base),
            HashCache::of(&base, &seen)
        );
    }
}
