//! The scanner: walks a [`Root`] by directory descriptors (never following symlinks),
//! applies the filter, and records unreadable paths as problems instead of absences.

mod pool;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use std::collections::{BTreeMap, HashMap};

use crate::core::path::RelPath;
use crate::core::tree::{Digest, Entry, MapBuilder, Tree};
use crate::disk::fsops::{entry_at, scan_entry_at, LinkKey, Root, PART_PREFIX, TEMP_PREFIX};
use crate::disk::sys;
use crate::disk::xattrs::{self, metafile, AclMode, Xattrs};
use crate::state::known::Known;
use crate::state::rules::Filter;
use pool::{Stat, StatPool};

/// Partial transfers left by an interrupted run: target path → bytes already there.
pub type Partials = BTreeMap<RelPath, u64>;

/// What a scan records beyond the basics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// The later names of a file with several names in the tree point at the first
    /// ([`Entry::link`](crate::core::tree::Entry)).
    pub hard_links: bool,
    /// Where ACLs and xattrs are read from, if anywhere.
    pub acls: AclMode,
    /// Threads that look entries up (`--scan-threads`; 0 or 1: the walking thread alone).
    pub threads: usize,
    /// Files' attributes are left unread ([`xattrs::unread`]): the caller knows those
    /// of the unchanged ones, and reads the rest.
    pub skip_file_xattrs: bool,
}

/// Scans everything below the root; also lists partial transfers to resume.
pub fn scan<'a>(
    root: &'a Root,
    filter: &'a Filter,
    opts: ScanOptions,
    known: Known<'_>,
) -> (Tree, Partials) {
    let mut walk = Walk::new(root, filter, opts);
    walk.known = known;
    walk.top();
    let partials = std::mem::take(&mut walk.partials);
    (walk.finish(), partials)
}

/// Where a streamed scan hands its entries, a batch at a time, in tree order.
pub type Sink<'a> = &'a mut dyn FnMut(Vec<(RelPath, Entry)>);

/// [`scan`], handing the entries to `sink` in tree order, `batch` at a time, as they are
/// found, and keeping none of them (the agent streams its scan to the client while it is
/// still running); returns the unreadable paths and the partial transfers.
pub fn scan_streamed(
    root: &Root,
    filter: &Filter,
    opts: ScanOptions,
    batch: usize,
    sink: Sink<'_>,
) -> (BTreeMap<RelPath, String>, Partials) {
    let mut walk = Walk::new(root, filter, opts);
    walk.stream = Some((batch.max(1), sink));
    walk.top();
    walk.flush();
    (walk.problems, walk.partials)
}

impl Walk<'_, '_> {
    /// Walks the whole tree from the root.
    fn top(&mut self) {
        match sys::open_dir_at(self.root.fd(), b".") {
            Ok(fd) => self.dir(fd, None),
            Err(e) => {
                let top = RelPath::new(b"*".to_vec()).expect("valid");
                self.problems
                    .insert(top, format!("cannot read the root directory: {e}"));
            }
        }
    }

    /// Hands what was gathered to the sink, when streaming.
    fn flush(&mut self) {
        if let Some((batch, sink)) = self.stream.as_mut() {
            if !self.entries.is_empty() {
                sink(std::mem::replace(
                    &mut self.entries,
                    Vec::with_capacity(*batch),
                ));
            }
        }
    }
}

/// Scans `paths` again (each with everything below it when its flag is set, else the entry
/// alone): the tree holds what is there now, nothing for what is gone. Also says whether a
/// file with several names turned up, whose other names may lie outside what was scanned.
pub fn rescan(
    root: &Root,
    filter: &Filter,
    opts: ScanOptions,
    paths: &[(RelPath, bool)],
) -> (Tree, bool) {
    let mut walk = Walk::new(root, filter, opts);
    for (path, deep) in paths {
        if ancestor_excluded(filter, path) {
            continue;
        }
        let dir = match root.parent_fd(path) {
            Ok(d) => d,
            // The directory holding it is gone (or became something else): so is it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                continue
            }
            Err(e) => {
                walk.problem(Some(path), format!("cannot open its directory: {e}"));
                continue;
            }
        };
        walk.recurse = *deep;
        let stat = scan_entry_at(&dir, path.name());
        walk.name(&dir, path.parent().as_ref(), path.name(), None, stat);
    }
    let linked = walk.linked;
    (walk.finish(), linked)
}

/// True if a directory above `path` is filtered out (a full scan never goes below it).
fn ancestor_excluded(filter: &Filter, path: &RelPath) -> bool {
    let mut at = path.parent();
    while let Some(p) = at {
        if filter.excludes(&p, true) {
            return true;
        }
        at = p.parent();
    }
    false
}

/// A walk over the tree below `root` (`'a`), sharing what is known (`'k`).
struct Walk<'a, 'k> {
    filter: &'a Filter,
    /// When streaming: the batch size and where batches go.
    stream: Option<(usize, Sink<'a>)>,
    /// Paths that could not be read.
    problems: BTreeMap<RelPath, String>,
    /// When streaming: entries found since the last batch.
    entries: Vec<(RelPath, Entry)>,
    /// Otherwise: the tree being built...
    tree: MapBuilder<RelPath, Entry>,
    /// ...sharing what is known.
    known: Known<'k>,
    partials: Partials,
    /// First name seen of each (device, inode) with several names.
    links: Option<HashMap<LinkKey, RelPath>>,
    acls: AclMode,
    skip_file_xattrs: bool,
    root: &'a Root,
    /// Descend into directories (a rescan of a directory's own entry does not).
    recurse: bool,
    /// A file with several names was seen.
    linked: bool,
    /// Helpers that look a directory's entries up.
    pool: StatPool,
}

impl<'a, 'k> Walk<'a, 'k> {
    fn new(root: &'a Root, filter: &'a Filter, opts: ScanOptions) -> Walk<'a, 'k> {
        Walk {
            filter,
            stream: None,
            problems: BTreeMap::new(),
            entries: Vec::new(),
            tree: MapBuilder::default(),
            known: Known::none(),
            partials: Partials::new(),
            links: opts.hard_links.then(HashMap::new),
            acls: opts.acls,
            skip_file_xattrs: opts.skip_file_xattrs,
            root,
            recurse: true,
            linked: false,
            pool: StatPool::new(opts.threads),
        }
    }

    /// The tree of what was found.
    fn finish(self) -> Tree {
        Tree {
            entries: self.tree.finish(),
            problems: self.problems,
        }
    }

    fn problem(&mut self, at: Option<&RelPath>, msg: String) {
        let p = at
            .cloned()
            .unwrap_or_else(|| RelPath::new(b"*".to_vec()).expect("valid"));
        self.problems.insert(p, msg);
    }

    fn dir(&mut self, dir: OwnedFd, at: Option<&RelPath>) {
        let mut entries = match sys::read_dir(&dir) {
            Ok(d) => d,
            Err(e) => return self.problem(at, format!("cannot list directory: {e}")),
        };
        let mut names = Vec::new();
        while let Some(item) = entries.read() {
            match item {
                Ok(item) => {
                    let name = item.file_name().to_bytes();
                    if let Some(target) = name.strip_prefix(TEMP_PREFIX) {
                        note_partial(&dir, at, name, target, &mut self.partials);
                    } else if name != b"."
                        && name != b".."
                        && !name.starts_with(PART_PREFIX)
                        && name != metafile::NAME
                    {
                        names.push(name.to_vec());
                    }
                }
                Err(e) => return self.problem(at, format!("cannot list directory: {e}")),
            }
        }
        names.sort();
        // In metafile mode, this directory's side file has its entries' attributes.
        let mut records = match self.acls {
            AclMode::Metafile => metafile::load(self.root, at).unwrap_or_default(),
            _ => Default::default(),
        };
        let (dir, names) = (Arc::new(dir), Arc::new(names));
        // Looked up a block at a time: a directory of a million names does not hold a
        // million answers at once.
        for start in (0..names.len()).step_by(STAT_BLOCK) {
            let block = start..(start + STAT_BLOCK).min(names.len());
            let stats = self.pool.stat_all(&dir, &names, block.clone());
            for (name, stat) in names[block].iter().zip(stats) {
                let record = records.remove(name);
                self.name(&dir, at, name, record, stat);
            }
        }
    }

    fn name(
        &mut self,
        dir: &OwnedFd,
        at: Option<&RelPath>,
        name: &[u8],
        record: Option<Xattrs>,
        stat: Stat,
    ) {
        let path = match at {
            Some(p) => p.join(name),
            None => RelPath::from_name(name),
        };
        let Ok(path) = path else { return };
        let (mut entry, linked) = match stat {
            Ok(Some(e)) => e,
            Ok(None) => return, // vanished since listing
            Err(e) => {
                self.problems.insert(path, format!("cannot stat: {e}"));
                return;
            }
        };
        if self.filter.excludes(&path, entry.is_dir()) {
            return;
        }
        if entry.is_file() || entry.is_dir() {
            let xattrs = match self.acls {
                AclMode::None => None,
                AclMode::Metafile => record,
                AclMode::Native if self.skip_file_xattrs && entry.is_file() => {
                    Some(xattrs::unread())
                }
                AclMode::Native => match xattrs::read_at(dir, name) {
                    Ok(x) => x,
                    Err(e) => {
                        let why = format!("cannot read extended attributes: {e}");
                        self.problems.insert(path, why);
                        return;
                    }
                },
            };
            entry.set_xattrs(xattrs);
        }
        self.linked |= linked.is_some() && self.links.is_some();
        if let (Some(key), Some(links)) = (linked, self.links.as_mut()) {
            match links.get(&key) {
                Some(first) => entry.set_link(Some(first.clone())),
                None => {
                    links.insert(key, path.clone());
                }
            }
        }
        let is_dir = entry.is_dir();
        let (path, entry) = self.known.share(path, entry);
        match &self.stream {
            Some((batch, _)) => {
                self.entries.push((path.clone(), entry));
                if self.entries.len() >= *batch {
                    self.flush();
                }
            }
            None => self.tree.push(path.clone(), entry),
        }
        if is_dir && self.recurse {
            match sys::open_dir_at(dir, name) {
                Ok(sub) => self.dir(sub, Some(&path)),
                Err(e) => {
                    self.problems
                        .insert(path, format!("cannot open directory: {e}"));
                }
            }
        }
    }
}

/// Names of one directory looked up before the walk takes them in.
const STAT_BLOCK: usize = 4096;

/// Records a leftover temp file as a partial transfer of `target`.
fn note_partial(
    dir: &OwnedFd,
    at: Option<&RelPath>,
    name: &[u8],
    target: &[u8],
    partials: &mut Partials,
) {
    let path = match at {
        Some(p) => p.join(target),
        None => RelPath::from_name(target),
    };
    if let (Ok(path), Ok(Some(e))) = (path, entry_at(dir, name)) {
        if e.is_file() {
            partials.insert(path, e.size);
        }
    }
}

/// Hashes a file's contents with BLAKE3 as one unchanging file: its size, mtime, ctime
/// and inode, read from the open descriptor, must be the same after the read as before
/// (`Ok(None)` if not). Four calls on the descriptor, one path lookup.
pub fn hash_unchanged(root: &Root, path: &RelPath) -> std::io::Result<Option<Digest>> {
    let mut f = root.open_read(path)?;
    let before = sys::fsops::entry_of_file(&f)?;
    if !before.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut hasher = blake3::Hasher::new();
    let size = before.size;
    let mut buf = vec![0u8; usize::try_from(size).map_or(256 << 10, |s| s.clamp(4096, 256 << 10))];
    let mut read = 0u64;
    // Up to the size it had: a file that grew meanwhile shows in the second stat.
    while read < size {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    let after = sys::fsops::entry_of_file(&f)?;
    let same = read == size && sys::fsops::still_expected(Some(&after), Some(&before));
    Ok(same.then(|| Digest(*hasher.finalize().as_bytes())))
}

/// Hashes a file's contents with BLAKE3, streaming.
pub fn hash_file(root: &Root, path: &RelPath) -> std::io::Result<Digest> {
    let mut f = root.open_read(path)?;
    let mut hasher = blake3::Hasher::new();
    // Sized for the file: zeroing 256 KiB for each small file costs more than hashing it.
    let size = f.metadata().map_or(0, |m| m.len());
    let mut buf =
        vec![0u8; usize::try_from(size).map_or(256 << 10, |s| (s + 1).clamp(4096, 256 << 10))];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Digest(*hasher.finalize().as_bytes()))
}
