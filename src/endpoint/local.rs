//! `LocalEndpoint`: an [`Endpoint`] on this machine's disk, confined to its root.

use crate::disk::delta::refine::Ranges;
use crate::disk::fsops::DirFd;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::core::path::RelPath;
use crate::core::tree::{Digest, Entry};
use crate::disk::delta::{self, Basis, DeltaOp, LITERAL_CHUNK, WINDOW};
use crate::disk::fsops::{entry_at, entry_from_stat, still_expected, CommitError, Root};
use crate::disk::owners::Database;
use crate::disk::scan::{hash_unchanged, scan};
use crate::disk::sys;
use crate::disk::xattrs::{self, metafile, AclMode, Xattrs};
use crate::endpoint::{
    Change, Chunk, Endpoint, GapRequest, Received, Rescan, Scan, SendRequest, SignRequest,
};
use crate::error::{Error, Result, WireError};
use crate::state::known::Known;
use crate::state::rules::FilterSpec;

mod apply;
mod receive;
mod send;
mod sign;
mod writers;
use receive::{commit_failed, copy_checked, finish_temp, Flusher, Incoming};
use writers::{Gathering, Writers};

/// A root directory on this machine.
pub struct LocalEndpoint {
    root: Root,
    place: String,
    owner: bool,
    /// Owners are kept by name: scans carry this side's user and group names.
    owner_names: bool,
    hard_links: bool,
    /// `--scan-threads`.
    scan_threads: usize,
    acls: AclMode,
    metafiles: metafile::Store,
    incoming: HashMap<u64, Incoming>,
    /// Small new files being received, to be placed by the writers.
    gathering: HashMap<u64, Gathering>,
    writers: Writers,
    staged: Vec<(u64, Incoming, Digest)>,
    staged_bytes: u64,
    done: Vec<Received>,
    watcher: Option<crate::disk::watch::TreeWatcher>,
    keep: Option<crate::disk::keep::KeepDir>,
    flusher: Flusher,
    /// Bytes received since the flusher was last asked to write back.
    unflushed: u64,
}

impl LocalEndpoint {
    /// Opens `dir`; `place` names it in messages; `owner` preserves owner and group where
    /// this process may give files away (root); elsewhere files belong to this side's user,
    /// silently, as with rsync.
    pub fn open(dir: &Path, place: String, owner: bool) -> Result<LocalEndpoint> {
        // Owners are asked for by name even where this side cannot give files away.
        let owner_names = owner;
        let owner = owner && crate::disk::sys::is_root();
        let root = Root::open(dir).map_err(|e| {
            let what = crate::disk::fsops::describe_missing(dir);
            Error::Unreachable(format!(
                "{place}: {what} ({e}); create it or check the path"
            ))
        })?;
        let writers = Writers::new(&place, owner);
        Ok(LocalEndpoint {
            root,
            place,
            owner,
            owner_names,
            hard_links: true,
            scan_threads: 1,
            acls: AclMode::None,
            metafiles: metafile::Store::default(),
            incoming: HashMap::new(),
            gathering: HashMap::new(),
            writers,
            staged: Vec::new(),
            staged_bytes: 0,
            done: Vec::new(),
            watcher: None,
            keep: None,
            flusher: Flusher::default(),
            unflushed: 0,
        })
    }

    /// `--keep-dir-*`: what is deleted or replaced here is kept in `dir` first (relative to
    /// the root, or absolute).
    pub fn with_keep_dir(mut self, dir: Option<&Path>) -> Result<LocalEndpoint> {
        if let Some(d) = dir {
            let path = self.root.path().join(d);
            let keep = crate::disk::keep::KeepDir::open(&path).map_err(|e| {
                Error::Unreachable(format!(
                    "{}: cannot use '{}' as the keep directory ({e}); check the path",
                    self.place,
                    path.display()
                ))
            })?;
            self.keep = Some(keep);
        }
        Ok(self)
    }

    /// Keeps the entry at `path` (named `name` in `dir`) in the keep directory, if any,
    /// before it is deleted or replaced (directories hold nothing of their own). Returns
    /// what the entry must still be afterwards: keeping it by a hard link changes its ctime.
    fn keep_old(&self, dir: &DirFd, path: &RelPath, old: Option<&Entry>) -> Result<Option<Entry>> {
        let (Some(k), Some(e)) = (&self.keep, old) else {
            return Ok(old.cloned());
        };
        if e.is_dir() {
            return Ok(old.cloned());
        }
        let stat = || entry_at(dir, path.name()).map_err(|err| self.io("stat", path, err));
        // Only what is still the scanned entry is kept, and then replaced.
        if !still_expected(stat()?.as_ref(), Some(e)) {
            return Err(self.changed(path));
        }
        k.save(dir, path.name(), path)
            .map_err(|err| self.io("keep the old version of", path, err))?;
        match stat()? {
            Some(now) if now.stamp.ino == e.stamp.ino && now.mtime_ns == e.mtime_ns => {
                Ok(Some(now))
            }
            _ => Err(self.changed(path)),
        }
    }

    /// `--no-hard-links`: every name is scanned as a file of its own.
    pub fn with_hard_links(mut self, keep: bool) -> LocalEndpoint {
        self.hard_links = keep;
        self
    }

    /// `--scan-threads`: how many threads look entries up while scanning.
    pub fn with_scan_threads(mut self, threads: usize) -> LocalEndpoint {
        self.scan_threads = threads;
        self
    }

    /// `--preserve-acls` for this side: where ACLs and xattrs are read and written.
    pub fn with_acls(mut self, mode: AclMode) -> LocalEndpoint {
        self.acls = mode;
        self
    }

    /// The ACLs and xattrs `path` has now (where they are kept).
    fn xattrs_now(&mut self, path: &RelPath) -> Result<Option<Xattrs>> {
        match self.acls {
            AclMode::None => Ok(None),
            AclMode::Native => {
                let dir = self
                    .root
                    .parent_fd(path)
                    .map_err(|e| self.io("open parent of", path, e))?;
                xattrs::read_at(&dir, path.name())
                    .map_err(|e| self.io("read extended attributes of", path, e))
            }
            AclMode::Metafile => {
                let records = metafile::load(&self.root, path.parent().as_ref())
                    .map_err(|e| self.io("read the attribute file of", path, e))?;
                let pending = self.metafiles.get(path);
                Ok(pending.unwrap_or_else(|| records.get(path.name()).cloned()))
            }
        }
    }

    /// Gives `path` the ACLs and xattrs of `source`, where they are kept.
    fn put_xattrs(&mut self, path: &RelPath, source: &Entry) -> Result<()> {
        if !(source.is_file() || source.is_dir()) {
            return Ok(());
        }
        let want = source.xattrs();
        match self.acls {
            AclMode::None => Ok(()),
            AclMode::Native => {
                let dir = self
                    .root
                    .parent_fd(path)
                    .map_err(|e| self.io("open parent of", path, e))?;
                xattrs::write_at(&dir, path.name(), want)
                    .map_err(|e| self.io("set extended attributes of", path, e))
            }
            AclMode::Metafile => self
                .metafiles
                .set(&self.root, path, want)
                .map_err(|e| self.io("record the attributes of", path, e)),
        }
    }

    fn io(&self, op: &'static str, path: &RelPath, e: io::Error) -> Error {
        let e = crate::disk::sys::fsops::explain_full(e, self.root.fd());
        Error::io(op, path, &self.place, e)
    }

    fn changed(&self, path: &RelPath) -> Error {
        Error::Changed {
            path: path.to_string(),
            place: self.place.clone(),
        }
    }

    /// A source no longer what the scan saw.
    fn source_changed(&self, path: &RelPath) -> Error {
        Error::SourceChanged {
            path: path.to_string(),
            place: self.place.clone(),
        }
    }

    /// Fails with `Changed` unless `path` still holds `expect`.
    fn check(&self, path: &RelPath, expect: Option<&Entry>) -> Result<()> {
        let now = self
            .root
            .entry(path)
            .map_err(|e| self.io("stat", path, e))?;
        if still_expected(now.as_ref(), expect) {
            Ok(())
        } else {
            Err(self.changed(path))
        }
    }

    fn entry_now(&mut self, path: &RelPath, digest: Option<Digest>) -> Result<Entry> {
        match self.root.entry(path) {
            Ok(Some(mut e)) => {
                e.digest = digest;
                if e.is_file() || e.is_dir() {
                    let xattrs = self.xattrs_now(path)?;
                    e.set_xattrs(xattrs);
                }
                Ok(e)
            }
            Ok(None) => Err(self.io("stat", path, io::ErrorKind::NotFound.into())),
            Err(e) => Err(self.io("stat", path, e)),
        }
    }
}

fn unknown(id: u64) -> Error {
    Error::Protocol(format!("chunk for unknown transfer id {id}"))
}

enum ApplyError {
    Io(&'static str, io::Error),
    Peer(String),
}

fn metafile_word() -> String {
    String::from_utf8_lossy(metafile::NAME).into_owned()
}

impl Endpoint for LocalEndpoint {
    fn place(&self) -> &str {
        &self.place
    }

    fn scan(&mut self, filter: &FilterSpec, known: Known<'_>) -> Result<Scan> {
        self.settle_writers();
        let filter = filter.build()?;
        let opts = crate::disk::scan::ScanOptions {
            skip_file_xattrs: known.knows_xattrs(),
            ..self.scan_options()
        };
        let probe = self.probe(known.probed());
        let (tree, partials) = scan(&self.root, &filter, opts, known);
        Ok(Scan {
            tree,
            root_id: self.root.id(),
            partials,
            owners: self.owner_names.then(Database::load),
            names: probe.0,
            holds: probe.1,
        })
    }

    fn rescan(&mut self, filter: &FilterSpec, paths: &[(RelPath, bool)]) -> Result<Rescan> {
        self.settle_writers();
        // Side files hold a whole directory's attributes: rescanning names one by one
        // would lose them.
        if self.acls == AclMode::Metafile {
            return Ok(Rescan {
                tree: self.scan(filter, Known::none())?.tree,
                whole: true,
            });
        }
        let built = filter.build()?;
        let opts = self.scan_options();
        let (tree, linked) = crate::disk::scan::rescan(&self.root, &built, opts, paths);
        // A file with several names: its first name may lie outside what was rescanned.
        if linked {
            return Ok(Rescan {
                tree: self.scan(filter, Known::none())?.tree,
                whole: true,
            });
        }
        Ok(Rescan { tree, whole: false })
    }

    fn watch(&mut self, sink: crate::disk::watch::Sink) -> Result<()> {
        let root = crate::disk::watch::watch_root(self.root.path());
        let w = crate::disk::watch::start(&root, sink)
            .map_err(|why| Error::Unreachable(format!("{}: {why}", self.place)))?;
        self.watcher = Some(w);
        Ok(())
    }

    fn digests(&mut self, paths: &[RelPath]) -> Result<Vec<(RelPath, Result<Digest, String>)>> {
        self.settle_writers();
        Ok(paths
            .iter()
            .map(|p| {
                let d = match hash_unchanged(&self.root, p) {
                    Ok(Some(d)) => Ok(d),
                    Ok(None) => Err("changed while it was being hashed".to_string()),
                    // Gone since it was scanned: changed, not unreadable.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err("changed while it was being hashed: gone".to_string())
                    }
                    Err(e) => Err(format!("cannot read: {e}")),
                };
                (p.clone(), d)
            })
            .collect())
    }

    fn signatures(&mut self, files: &[SignRequest]) -> Result<Vec<Result<Vec<u8>, String>>> {
        self.settle_writers();
        Ok(files.iter().map(|req| self.sign_one(req)).collect())
    }

    fn gaps(&mut self, files: &[GapRequest]) -> Result<Vec<Result<Ranges, String>>> {
        Ok(files.iter().map(|req| self.gaps_of(req)).collect())
    }

    fn send(
        &mut self,
        files: &[SendRequest],
        sink: &mut dyn FnMut(Chunk) -> Result<()>,
    ) -> Result<()> {
        self.settle_writers();
        files.iter().try_for_each(|req| self.send_one(req, sink))
    }

    fn receive(&mut self, chunk: Chunk) -> Result<()> {
        match chunk {
            Chunk::Begin {
                id,
                path,
                expect,
                meta,
                delta,
            } => self.begin(id, path, expect, meta, delta),
            Chunk::Data { id, ops } => self.data(id, ops),
            Chunk::End { id, digest } => self.end(id, Some(digest), None),
            Chunk::Abort { id, error } => self.end(id, None, Some(error.into())),
        }
    }

    fn received(&mut self, wait: bool) -> Result<Vec<Received>> {
        self.writers.collect(&mut self.done, wait);
        if wait {
            self.commit_staged();
        }
        Ok(std::mem::take(&mut self.done))
    }

    fn sync(&mut self) -> Result<()> {
        self.settle_writers();
        self.commit_staged();
        self.metafiles
            .flush(&self.root)
            .map_err(|e| Error::io("write", metafile_word(), &self.place, e))?;
        sys::syncfs(self.root.fd()).map_err(|e| Error::io("flush", ".", &self.place, e))
    }

    fn apply(&mut self, changes: &[Change]) -> Result<Vec<Result<Option<Entry>>>> {
        Ok(changes.iter().map(|c| self.change(c)).collect())
    }
}
