//! `Tree`: one side's scanned state, a sorted map from [`RelPath`] to [`Entry`].
//!
//! Flat and sorted in tree order (parents first, children right after them), so a
//! subtree is a contiguous range and literal fixtures in tests stay small.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::path::RelPath;

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

/// What kind of thing lives at a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, with its target as raw bytes (never followed).
    Symlink(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A fifo, socket or device node: the `S_IFMT` bits and the device number.
    Special {
        /// File-type bits (`st_mode & S_IFMT`).
        format: u32,
        /// Device number for block and character devices.
        rdev: u64,
    },
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
            EntryKind::Symlink(_) => "symlink",
            EntryKind::Special { .. } => "special file",
        }
    }
}

/// The scan-side identity of an entry: what tells us, without reading it, that a file is
/// the one we saw before. Not comparable across sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Stamp {
    /// Inode number.
    pub ino: u64,
    /// Status-change time in nanoseconds.
    pub ctime_ns: i64,
}

/// One file, directory, symlink or special file as scanned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
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
    /// Inode and ctime, for the hash cache and the precondition check.
    pub stamp: Stamp,
    /// BLAKE3 of the contents, when known (computed lazily, files only).
    pub digest: Option<Digest>,
    /// For a file that shares its inode with an earlier name in the tree (a hard link):
    /// that first name. Compared apart from content (see `reconcile::links`).
    // Messages are positional: only the last field may be left out when empty.
    #[serde(default)]
    pub link: Option<Box<RelPath>>,
    /// POSIX ACLs and `user.*` xattrs, when they are kept (`--preserve-acls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xattrs: Option<Box<crate::xattrs::Xattrs>>,
}

impl Entry {
    /// True if this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }

    /// True if this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind.is_dir()
    }

    /// Same thing with the same contents: kind, and for files size and digest (an unknown
    /// digest never counts as equal), for symlinks the target.
    pub fn same_content(&self, other: &Entry) -> bool {
        match (&self.kind, &other.kind) {
            (EntryKind::File, EntryKind::File) => {
                self.size == other.size
                    && matches!((self.digest, other.digest), (Some(a), Some(b)) if a == b)
            }
            (a, b) => a == b,
        }
    }

    /// Same metadata that we propagate: the mtime (every kind), and [`Entry::same_attrs`].
    pub fn same_meta(&self, other: &Entry, everything: bool) -> bool {
        self.mtime_ns == other.mtime_ns && self.same_attrs(other, everything)
    }

    /// Same metadata but the mtime: mode (not for symlinks, whose mode means nothing on
    /// Linux), ACLs and xattrs (where kept), and with `everything` the owner and group.
    pub fn same_attrs(&self, other: &Entry, everything: bool) -> bool {
        let mode_ok = matches!(self.kind, EntryKind::Symlink(_)) || self.mode == other.mode;
        let owner_ok = !everything || (self.uid == other.uid && self.gid == other.gid);
        mode_ok && owner_ok && self.xattrs == other.xattrs
    }

    /// Same content and metadata.
    pub fn same_state(&self, other: &Entry, everything: bool) -> bool {
        self.same_content(other) && self.same_meta(other, everything)
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

/// Deserializes a map by collecting it first and building the `BTreeMap` in one go: its
/// nodes come out full, where inserting keys one by one in order leaves every node about
/// half empty (nearly twice the memory for a large tree).
pub fn bulk_map<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    K: Ord + Deserialize<'de>,
    V: Deserialize<'de>,
{
    struct Pairs<K, V>(std::marker::PhantomData<(K, V)>);
    impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> serde::de::Visitor<'de> for Pairs<K, V> {
        type Value = Vec<(K, V)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            // The hint comes from the input: cap it, a hostile length must not allocate.
            let mut v = Vec::with_capacity(m.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(kv) = m.next_entry()? {
                v.push(kv);
            }
            Ok(v)
        }
    }
    let pairs = d.deserialize_map(Pairs(std::marker::PhantomData))?;
    Ok(pairs.into_iter().collect())
}

impl Tree {
    /// A tree of these entries (any order; a later duplicate wins), built in one go.
    pub fn from_entries(entries: Vec<(RelPath, Entry)>) -> Tree {
        Tree {
            entries: entries.into_iter().collect(),
            problems: BTreeMap::new(),
        }
    }

    /// Rebuilds the map with full nodes (entries inserted one by one leave them half
    /// empty).
    pub fn compact(&mut self) {
        self.entries = std::mem::take(&mut self.entries).into_iter().collect();
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &RelPath) -> Option<&Entry> {
        self.entries.get(path)
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
