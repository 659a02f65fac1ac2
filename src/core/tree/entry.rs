//! `Entry`: one path's state — its kind, size, mtime, mode, owner, digest, link target,
//! hard-link group and attributes — and how it goes over the wire and into the baseline.

use super::*;

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
    pub(super) meta: Arc<Meta>,
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
    pub(super) target: Vec<u8>,
    pub(super) format: u32,
    pub(super) rdev: u64,
    pub(super) link: Option<RelPath>,
    pub(super) xattrs: Option<Xattrs>,
}

impl Extra {
    pub(super) fn is_empty(&self) -> bool {
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

    /// This entry without its digest, as the wire carries it where the peer does not need
    /// it or knows it already (32 bytes no compressor can shrink, per file).
    pub fn without_digest(&self) -> Entry {
        let mut e = self.clone();
        if e.digest.is_some() {
            e.digest = None;
        }
        e
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
    pub(super) fn same_meta_as(&self, other: &Entry) -> bool {
        self.shares_meta(other) || *self.meta == *other.meta
    }
}

impl Meta {
    /// Equal in everything but the digest.
    pub(super) fn same_but_digest(&self, other: &Meta) -> bool {
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

    pub(super) fn edit(&mut self, f: impl FnOnce(&mut Extra)) {
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
pub(super) enum WireKind<'a> {
    File,
    Dir,
    Symlink(#[serde(with = "serde_bytes", borrow)] Cow<'a, [u8]>),
    Special { format: u32, rdev: u64 },
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "Entry")]
pub(super) struct Wire<'a> {
    #[serde(borrow)]
    pub(super) kind: WireKind<'a>,
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) stamp: Stamp,
    pub(super) digest: Option<Digest>,
    // Messages are positional: only the last field may be left out when empty.
    #[serde(default)]
    pub(super) link: Option<RelPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) xattrs: Option<Cow<'a, Xattrs>>,
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
