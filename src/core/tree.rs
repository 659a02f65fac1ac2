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

/// Extended attributes (ACLs included) of one entry: (name, value), sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// A BLAKE3 content hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl Digest {
    /// Hashes a byte slice.
    pub fn of(data: &[u8]) -> Digest {
        Digest(*blake3::hash(data).as_bytes())
    }

    /// Short hex form for messages.
    pub fn short(&self) -> String {
        self.0[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

/// What kind of thing lives at a path (what else a symlink or special file has is in
/// its entry's [`Extra`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (its target is [`Meta::target`]; never followed).
    Symlink,
    /// A fifo, socket or device node (its type and device are [`Meta::special`]).
    Special,
}

impl EntryKind {
    /// True for directories.
    pub fn is_dir(&self) -> bool {
        matches!(self, EntryKind::Dir)
    }

    /// A word for messages: file, directory, symlink, special file.
    pub fn word(&self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "directory",
            EntryKind::Symlink => "symlink",
            EntryKind::Special => "special file",
        }
    }
}

/// The scan-side identity of an entry: what tells us, without reading it, that a file is
/// the one we saw before. Not comparable across sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Stamp {
    /// Inode number.
    pub ino: u64,
    /// Status-change time in nanoseconds.
    pub ctime_ns: i64,
}

/// The owner a baseline records where the two sides agreed on all but their owners:
/// `(uid_t)-1`, which no file has.
pub const UNKNOWN_OWNER: u32 = u32::MAX;

/// One file, directory, symlink or special file as scanned: this side's [`Stamp`], and
/// the rest ([`Meta`], read through `Deref`) behind one shared pointer.
///
/// A run holds up to three trees (the baseline and both sides), and in most of them most
/// entries are as the baseline has them: an entry found so points at the baseline's
/// `Meta` ([`Entry::share`]), and holds 24 bytes of its own. Writing a field through
/// `DerefMut` first makes the entry's own copy, so sharing never shows.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Inode and ctime, for the hash cache and the precondition check.
    pub stamp: Stamp,
    meta: Arc<Meta>,
}

/// What an entry is and holds, apart from its side's stamp.
///
/// Kept small: what only few entries have lives in one optional box, [`Extra`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (files only; 0 otherwise).
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// BLAKE3 of the contents, when known (computed lazily, files only). Inline: shared
    /// with the rest of the metadata, it costs less than a pointer to a shared copy.
    pub digest: Option<Digest>,
    /// Symlink target, device number, hard link, xattrs: `None` when it would be empty,
    /// so that equal entries compare equal (set through [`Meta::set_target`] and the like).
    pub extra: Option<Box<Extra>>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.stamp == other.stamp && self.same_meta_as(other)
    }
}

impl Eq for Entry {}

impl std::ops::Deref for Entry {
    type Target = Meta;

    fn deref(&self) -> &Meta {
        &self.meta
    }
}

impl std::ops::DerefMut for Entry {
    fn deref_mut(&mut self) -> &mut Meta {
        Arc::make_mut(&mut self.meta)
    }
}

/// What few entries have beyond the basics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    target: Vec<u8>,
    format: u32,
    rdev: u64,
    link: Option<RelPath>,
    xattrs: Option<Xattrs>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        *self == Extra::default()
    }
}

impl Entry {
    /// An entry of `kind` with these attributes and nothing else known (test fixtures).
    #[cfg(test)]
    pub fn new(kind: EntryKind, size: u64, mtime_ns: i64, mode: u32) -> Entry {
        Entry::of(
            Meta {
                kind,
                size,
                mtime_ns,
                mode,
                uid: 0,
                gid: 0,
                digest: None,
                extra: None,
            },
            Stamp::default(),
        )
    }

    /// The entry of `meta` with this side's `stamp`.
    pub fn of(meta: Meta, stamp: Stamp) -> Entry {
        Entry {
            stamp,
            meta: Arc::new(meta),
        }
    }

    /// Takes `other`'s metadata, shared, when it is equal to this entry's.
    pub fn share(&mut self, other: &Entry) {
        if !self.shares_meta(other) && *self.meta == *other.meta {
            self.meta = other.meta.clone();
        }
    }

    /// Takes the digest a copy of this file computed, and the copy's metadata, shared,
    /// when the digest is all they differ in (the usual case: the copy was made from it).
    pub fn learn_digest(&mut self, copy: &Entry) {
        if self.shares_meta(copy) {
            return;
        }
        if self.meta.same_but_digest(&copy.meta) {
            self.meta = copy.meta.clone();
        } else {
            self.digest = copy.digest;
        }
    }

    /// True when both entries point at one [`Meta`].
    pub fn shares_meta(&self, other: &Entry) -> bool {
        Arc::ptr_eq(&self.meta, &other.meta)
    }

    /// Equal metadata, stamps aside (one pointer comparison when shared).
    fn same_meta_as(&self, other: &Entry) -> bool {
        self.shares_meta(other) || *self.meta == *other.meta
    }
}

impl Meta {
    /// Equal in everything but the digest.
    fn same_but_digest(&self, other: &Meta) -> bool {
        // Taken apart, so that a field added later cannot be forgotten here.
        let Meta {
            kind,
            size,
            mtime_ns,
            mode,
            uid,
            gid,
            digest: _,
            extra,
        } = self;
        (kind, size, mtime_ns, mode, uid, gid, extra)
            == (
                &other.kind,
                &other.size,
                &other.mtime_ns,
                &other.mode,
                &other.uid,
                &other.gid,
                &other.extra,
            )
    }

    /// True if this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }

    /// True if this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind.is_dir()
    }

    /// True if this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.kind == EntryKind::Symlink
    }

    fn edit(&mut self, f: impl FnOnce(&mut Extra)) {
        let extra = self.extra.get_or_insert_default();
        f(extra);
        if extra.is_empty() {
            self.extra = None;
        }
    }

    /// A symlink's target as raw bytes (empty for anything else).
    pub fn target(&self) -> &[u8] {
        self.extra.as_ref().map_or(&[], |x| &x.target)
    }

    /// Sets a symlink's target.
    pub fn set_target(&mut self, target: Vec<u8>) {
        self.edit(|x| x.target = target);
    }

    /// A special file's type bits (`st_mode & S_IFMT`) and device number (zeros for
    /// anything else).
    pub fn special(&self) -> (u32, u64) {
        self.extra.as_ref().map_or((0, 0), |x| (x.format, x.rdev))
    }

    /// Sets a special file's type bits and device number.
    pub fn set_special(&mut self, format: u32, rdev: u64) {
        self.edit(|x| (x.format, x.rdev) = (format, rdev));
    }

    /// For a file that shares its inode with an earlier name in the tree (a hard link):
    /// that first name. Compared apart from content (see `reconcile::links`).
    pub fn link(&self) -> Option<&RelPath> {
        self.extra.as_ref()?.link.as_ref()
    }

    /// Sets or clears the first name of a hard link.
    pub fn set_link(&mut self, link: Option<RelPath>) {
        if link.is_some() || self.extra.is_some() {
            self.edit(|x| x.link = link);
        }
    }

    /// POSIX ACLs and `user.*` xattrs, when they are kept (`--preserve-acls`).
    pub fn xattrs(&self) -> Option<&Xattrs> {
        self.extra.as_ref()?.xattrs.as_ref()
    }

    /// Sets or clears the ACLs and xattrs.
    pub fn set_xattrs(&mut self, xattrs: Option<Xattrs>) {
        if xattrs.is_some() || self.extra.is_some() {
            self.edit(|x| x.xattrs = xattrs);
        }
    }

    /// Same thing with the same contents: kind, and for files size and digest (an unknown
    /// digest never counts as equal), for symlinks the target, for special files the type
    /// and device.
    pub fn same_content(&self, other: &Meta) -> bool {
        match (self.kind, other.kind) {
            (EntryKind::File, EntryKind::File) => {
                self.size == other.size
                    && matches!((&self.digest, &other.digest), (Some(a), Some(b)) if a == b)
            }
            (a, b) => {
                a == b && self.target() == other.target() && self.special() == other.special()
            }
        }
    }

    /// Same metadata that we propagate: the mtime (every kind), and [`Meta::same_attrs`].
    pub fn same_meta(&self, other: &Meta, everything: bool) -> bool {
        self.mtime_ns == other.mtime_ns && self.same_attrs(other, everything)
    }

    /// Same metadata but the mtime: mode (not for symlinks, whose mode means nothing on
    /// Linux), ACLs and xattrs (where kept), and with `everything` the owner and group.
    pub fn same_attrs(&self, other: &Meta, everything: bool) -> bool {
        let mode_ok = self.is_symlink() || self.mode == other.mode;
        let owner_ok = !everything || (self.uid == other.uid && self.gid == other.gid);
        mode_ok && owner_ok && self.xattrs() == other.xattrs()
    }

    /// Same content and metadata.
    pub fn same_state(&self, other: &Meta, everything: bool) -> bool {
        std::ptr::eq(self, other) || self.same_content(other) && self.same_meta(other, everything)
    }
}

/// An entry as messages and the baseline have always stored it (the kind carries a
/// symlink's target or a device; hard link and xattrs last). Borrowed when written,
/// owned when read.
#[derive(Serialize, Deserialize)]
#[serde(rename = "EntryKind")]
enum WireKind<'a> {
    File,
    Dir,
    Symlink(#[serde(with = "serde_bytes", borrow)] Cow<'a, [u8]>),
    Special { format: u32, rdev: u64 },
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "Entry")]
struct Wire<'a> {
    #[serde(borrow)]
    kind: WireKind<'a>,
    size: u64,
    mtime_ns: i64,
    mode: u32,
    uid: u32,
    gid: u32,
    stamp: Stamp,
    digest: Option<Digest>,
    // Messages are positional: only the last field may be left out when empty.
    #[serde(default)]
    link: Option<RelPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xattrs: Option<Cow<'a, Xattrs>>,
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (format, rdev) = self.special();
        Wire {
            kind: match self.kind {
                EntryKind::File => WireKind::File,
                EntryKind::Dir => WireKind::Dir,
                EntryKind::Symlink => WireKind::Symlink(Cow::Borrowed(self.target())),
                EntryKind::Special => WireKind::Special { format, rdev },
            },
            size: self.size,
            mtime_ns: self.mtime_ns,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            stamp: self.stamp,
            digest: self.digest,
            link: self.link().cloned(),
            xattrs: self.xattrs().map(Cow::Borrowed),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        let w = Wire::deserialize(d)?;
        let mut e = Meta {
            kind: EntryKind::File,
            size: w.size,
            mtime_ns: w.mtime_ns,
            mode: w.mode,
            uid: w.uid,
            gid: w.gid,
            digest: w.digest,
            extra: None,
        };
        match w.kind {
            WireKind::File => {}
            WireKind::Dir => e.kind = EntryKind::Dir,
            WireKind::Symlink(target) => {
                e.kind = EntryKind::Symlink;
                e.set_target(target.into_owned());
            }
            WireKind::Special { format, rdev } => {
                e.kind = EntryKind::Special;
                e.set_special(format, rdev);
            }
        }
        e.set_link(w.link);
        e.set_xattrs(w.xattrs.map(Cow::into_owned));
        Ok(Entry::of(e, w.stamp))
    }
}

/// Compares two optional entries: both absent, or both present in the same state.
pub fn same_state(a: Option<&Entry>, b: Option<&Entry>, everything: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_state(b, everything),
        _ => false,
    }
}

/// One side's view of the synchronized tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// Every entry below the root, in tree order.
    #[serde(deserialize_with = "bulk_map")]
    pub entries: BTreeMap<RelPath, Entry>,
    /// Paths that could not be read; nothing at or below them is decided this run.
    pub problems: BTreeMap<RelPath, String>,
}

/// Deserializes a map through a [`MapBuilder`]: its nodes come out full, where inserting
/// keys one by one in order leaves every node about half empty (nearly twice the memory
/// for a large tree).
pub fn bulk_map<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    K: Ord + Deserialize<'de>,
    V: Deserialize<'de>,
{
    struct Pairs<K, V>(std::marker::PhantomData<(K, V)>);
    impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> serde::de::Visitor<'de> for Pairs<K, V> {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut b = MapBuilder::default();
            while let Some((k, v)) = m.next_entry()? {
                b.push(k, v);
            }
            Ok(b.finish())
        }
    }
    d.deserialize_map(Pairs(std::marker::PhantomData))
}

/// Builds a `BTreeMap` with full nodes from pairs that arrive one at a time, in any order
/// (a later duplicate wins), without ever holding all of them twice.
///
/// `BTreeMap::from_iter` fills its nodes but first collects every pair into a list, so a
/// large tree needs the list and the map at once; inserting one by one leaves nodes half
/// empty for good. Here pairs wait in a list until they number a quarter of the map,
/// which then absorbs them with `append` (a merge that rebuilds the map with full nodes):
/// the peak is ~1.2 maps instead of ~2, and as the map grows geometrically each pair is
/// moved about five times.
pub struct MapBuilder<K, V> {
    map: BTreeMap<K, V>,
    pending: Vec<(K, V)>,
}

impl<K, V> Default for MapBuilder<K, V> {
    fn default() -> Self {
        MapBuilder {
            map: BTreeMap::new(),
            pending: Vec::new(),
        }
    }
}

impl<K: Ord, V> MapBuilder<K, V> {
    /// Below this many waiting pairs a merge is not worth its pass over the map.
    const MIN_PART: usize = 1 << 15;

    /// Adds a pair.
    pub fn push(&mut self, key: K, value: V) {
        if self.pending.capacity() == 0 && !self.map.is_empty() {
            // Sized once: a list that doubles its way up touches fresh memory at every
            // step. Not before it is needed: after the last merge it would be wasted.
            self.pending.reserve_exact(self.threshold());
        }
        self.pending.push((key, value));
        if self.pending.len() >= self.threshold() {
            self.merge();
        }
    }

    /// How many pairs wait before a merge.
    fn threshold(&self) -> usize {
        Self::MIN_PART.max(self.map.len() / 4)
    }

    /// Moves the waiting pairs into the map.
    fn merge(&mut self) {
        // Collecting a list's own iterator reuses its buffer: no copy besides the map's.
        let mut part: BTreeMap<K, V> = std::mem::take(&mut self.pending).into_iter().collect();
        if self.map.is_empty() {
            self.map = part;
        } else {
            self.map.append(&mut part);
        }
    }

    /// The map of every pair pushed.
    pub fn finish(mut self) -> BTreeMap<K, V> {
        if worth_merging(self.pending.len(), self.map.len()) {
            self.merge();
        } else {
            self.map.extend(self.pending);
        }
        self.map
    }
}

/// Whether `part` new pairs should join a map of `map` pairs by a merge (which rebuilds the
/// map with full nodes) rather than one insert each: not for a few, where the merge would
/// move the whole map and inserting leaves only a few nodes half empty.
fn worth_merging(part: usize, map: usize) -> bool {
    part > map / 16
}

impl<K: Ord, V> Extend<(K, V)> for MapBuilder<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.push(k, v);
        }
    }
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
