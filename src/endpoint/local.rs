//! `LocalEndpoint`: an [`Endpoint`] on this machine's disk, confined to its root.

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
use crate::disk::scan::{hash_file, scan};
use crate::disk::sys;
use crate::disk::xattrs::{self, metafile, AclMode, Xattrs};
use crate::endpoint::{Change, Chunk, Endpoint, Received, Rescan, Scan, SendRequest};
use crate::error::{Error, Result, WireError};
use crate::state::known::Known;
use crate::state::rules::FilterSpec;

mod writers;
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

/// A file being received: its temp file, the old version for `Copy` ops, and a running hash.
struct Incoming {
    path: RelPath,
    expect: Option<Entry>,
    meta: Entry,
    dir: DirFd,
    tmp: Vec<u8>,
    file: File,
    basis: Option<(File, u64)>,
    // The partial transfer serving as basis, removed once this file is settled.
    part: Option<Vec<u8>>,
    hasher: blake3::Hasher,
    written: u64,
    /// Where the last byte written to the temp file ends (zero blocks are skipped).
    extent: u64,
    failed: Option<Error>,
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

    fn commit(
        &self,
        dir: &DirFd,
        tmp: &[u8],
        path: &RelPath,
        expect: Option<&Entry>,
    ) -> Result<()> {
        let expect = match self.keep_old(dir, path, expect) {
            Ok(e) => e,
            Err(e) => {
                Root::remove_name(dir, tmp);
                return Err(e);
            }
        };
        Root::commit_rename(dir, tmp, path, expect.as_ref()).map_err(|err| {
            Root::remove_name(dir, tmp);
            commit_failed(err, path, &self.place)
        })
    }

    /// Opens a source file and checks, on the open file, that it is still the scanned one;
    /// returns it with whether it is sparse.
    fn open_source(&self, path: &RelPath, expect: &Entry) -> Result<(File, bool)> {
        let opened = self.root.open_read(path).and_then(|file| {
            let checked = still_scanned(&file, expect)?;
            Ok((file, checked))
        });
        match opened {
            Ok((_, (false, _))) => Err(self.source_changed(path)),
            // Holes: it occupies less disk than its size.
            Ok((file, (true, st))) => Ok((
                file,
                (st.st_blocks as u64).saturating_mul(512) < expect.size,
            )),
            // Gone, or no longer a file (a symlink will not open): changed since the scan.
            Err(err) => match self.root.entry(path) {
                Ok(now) if !still_expected(now.as_ref(), Some(expect)) => {
                    Err(self.source_changed(path))
                }
                _ => Err(self.io("read", path, err)),
            },
        }
    }

    /// Streams one file: whole, or as a delta against the receiver's signature.
    fn send_one(&self, req: &SendRequest, sink: &mut dyn FnMut(Chunk) -> Result<()>) -> Result<()> {
        let id = req.id;
        let abort = |e: &Error| Chunk::Abort {
            id,
            error: WireError::from(e),
        };
        let basis = match req
            .signature
            .as_ref()
            .map(|s| Basis::parse(s.to_vec()))
            .transpose()
        {
            Ok(b) => b,
            Err(why) => {
                return sink(abort(&Error::Protocol(format!(
                    "signature for '{}': {why}",
                    req.target
                ))))
            }
        };
        let (mut file, sparse) = match self.open_source(&req.path, &req.expect) {
            Ok(opened) => opened,
            Err(e) => return sink(abort(&e)),
        };
        sink(Chunk::Begin {
            id,
            path: req.target.clone(),
            expect: req.target_expect.clone(),
            meta: req.expect.clone(),
            delta: basis.is_some(),
        })?;
        let index = basis.as_ref().map(Basis::index);
        let mut hasher = blake3::Hasher::new();
        let read = if index.is_none() && sparse {
            send_sparse(&file, req.expect.size, id, &mut hasher, sink)
        } else {
            send_windows(
                &mut file,
                req.expect.size,
                index.as_ref(),
                id,
                &mut hasher,
                sink,
            )
        };
        match read {
            Ok(()) => {}
            Err(SendError::Read(e)) => return sink(abort(&self.io("read", &req.path, e))),
            Err(SendError::Delta(why)) => {
                return sink(abort(&Error::Protocol(format!("'{}': {why}", req.path))))
            }
            Err(SendError::Sink(e)) => return Err(e),
        }
        // Re-stat after reading: a file written to while we read it would arrive torn. The
        // open file, not the name: what was read is that file's content, whatever the name
        // holds by now (a file renamed over it is new, for the next run).
        match still_scanned(&file, &req.expect) {
            Ok((true, _)) => sink(Chunk::End {
                id,
                digest: Digest(*hasher.finalize().as_bytes()),
            }),
            Ok((false, _)) => sink(abort(&self.source_changed(&req.path))),
            Err(e) => sink(abort(&self.io("stat", &req.path, e))),
        }
    }

    fn begin(
        &mut self,
        id: u64,
        path: RelPath,
        expect: Option<Entry>,
        meta: Entry,
        delta: bool,
    ) -> Result<()> {
        if self.incoming.contains_key(&id) || self.gathering.contains_key(&id) {
            return Err(Error::Protocol(format!("transfer id {id} begun twice")));
        }
        if expect.is_none() && !delta && meta.size <= writers::SMALL && self.acls == AclMode::None {
            self.gather(id, path, meta);
            return Ok(());
        }
        // A file replacing another is checked now, before any work; a new one needs no
        // check: its rename refuses a target that appeared in the meantime.
        if expect.is_some() {
            if let Err(e) = self.check(&path, expect.as_ref()) {
                self.done.push((id, Err(e)));
                return Ok(());
            }
        }
        // The basis of a delta: the old version, or for a new file the partial an
        // interrupted transfer left (moved aside, so the new temp file can take its name).
        let mut part = None;
        let basis = match (delta, expect.as_ref()) {
            (false, _) => None,
            (true, Some(old)) if old.is_file() => match self.root.open_read(&path) {
                Ok(f) => Some((f, old.size)),
                Err(e) => {
                    self.done.push((id, Err(self.io("read", &path, e))));
                    return Ok(());
                }
            },
            (true, Some(_)) => {
                self.done.push((
                    id,
                    Err(Error::Protocol(format!(
                        "delta for '{path}' without an old version"
                    ))),
                ));
                return Ok(());
            }
            (true, None) => match self.root.open_partial(&path) {
                Ok((f, size, name)) => {
                    part = Some(name);
                    Some((f, size))
                }
                Err(e) => {
                    self.done
                        .push((id, Err(self.io("resume the partial transfer of", &path, e))));
                    return Ok(());
                }
            },
        };
        let (dir, tmp, file) = match self.root.create_temp(&path, meta.mode) {
            Ok(t) => t,
            Err(e) => {
                self.done
                    .push((id, Err(self.io("create a temporary file for", &path, e))));
                return Ok(());
            }
        };
        let hasher = blake3::Hasher::new();
        self.incoming.insert(
            id,
            Incoming {
                path,
                expect,
                meta,
                dir,
                tmp,
                file,
                basis,
                part,
                hasher,
                written: 0,
                extent: 0,
                failed: None,
            },
        );
        Ok(())
    }

    /// Begins a small new file: gathered in memory, then placed by a writer.
    fn gather(&mut self, id: u64, path: RelPath, meta: Entry) {
        match self.root.parent_fd(&path) {
            Ok(dir) => {
                let data = Vec::with_capacity(meta.size as usize);
                let file = Gathering {
                    path,
                    meta,
                    dir,
                    data,
                    failed: None,
                };
                self.gathering.insert(id, file);
            }
            Err(e) => {
                let e = self.io("create a temporary file for", &path, e);
                self.done.push((id, Err(e)));
            }
        }
    }

    /// Ends a gathered file: a complete one goes to the writers.
    fn end_gathered(
        &mut self,
        id: u64,
        mut file: Gathering,
        digest: Option<Digest>,
        abort: Option<Error>,
    ) {
        self.written_back_later(FILE_BLOCK + file.data.len() as u64);
        let failed = match (abort, file.failed.take(), digest) {
            (Some(e), _, _) | (None, Some(e), _) => e,
            (None, None, Some(sent)) => return self.writers.place(id, file, sent),
            (None, None, None) => Error::Protocol(format!("transfer {id} ended without a digest")),
        };
        self.done.push((id, Err(failed)));
    }

    /// Waits for the writers, so that what comes next sees every file they were given.
    fn settle_writers(&mut self) {
        self.writers.collect(&mut self.done, true);
    }

    fn data(&mut self, id: u64, ops: Vec<DeltaOp>) -> Result<()> {
        if let Some(file) = self.gathering.get_mut(&id) {
            file.add(ops, &self.place);
            return Ok(());
        }
        let place = self.place.clone();
        let Some(inc) = self.incoming.get_mut(&id) else {
            // Already failed at begin: its outcome is recorded, the rest is dropped.
            return if self.done.iter().any(|(d, _)| *d == id) {
                Ok(())
            } else {
                Err(unknown(id))
            };
        };
        if inc.failed.is_some() {
            return Ok(());
        }
        let before = inc.written;
        let applied = inc.apply(ops);
        // What arrives is written back while more arrives (large files and many small
        // ones alike), so the flushes before renames and before the baseline have only
        // the tail left: disk and network work at the same time.
        let grew = inc.written.saturating_sub(before);
        if let Err(e) = applied {
            inc.failed = Some(match e {
                ApplyError::Io(op, e) => Error::io(op, &inc.path, &place, e),
                ApplyError::Peer(why) => {
                    Error::Protocol(format!("'{}' on {place}: {why}; not committed", inc.path))
                }
            });
        }
        self.written_back_later(grew);
        Ok(())
    }

    fn end(&mut self, id: u64, digest: Option<Digest>, abort: Option<Error>) -> Result<()> {
        if let Some(file) = self.gathering.remove(&id) {
            self.end_gathered(id, file, digest, abort);
            return Ok(());
        }
        let Some(mut inc) = self.incoming.remove(&id) else {
            if self.done.iter().any(|(d, _)| *d == id) {
                return Ok(()); // failed at begin; its outcome is recorded
            }
            return match abort {
                Some(e) => {
                    self.done.push((id, Err(e))); // aborted before it began
                    Ok(())
                }
                None => Err(unknown(id)),
            };
        };
        if let Some(part) = inc.part.take() {
            Root::remove_name(&inc.dir, &part);
        }
        // A file costs the disk a block and an inode however small it is: a run of many
        // tiny files has as much to write back as their count says, not their bytes.
        self.written_back_later(FILE_BLOCK);
        let verified = match (abort, inc.failed.take(), digest) {
            (Some(e), _, _) | (None, Some(e), _) => Err(e),
            (None, None, Some(sent)) => self.verify(&inc, sent),
            (None, None, None) => Err(Error::Protocol(format!(
                "transfer {id} ended without a digest"
            ))),
        };
        match verified {
            // A new file replaces nothing: no flush needed before its rename. The sync
            // before the baseline is written makes it durable before anything relies on it.
            Ok(digest) if inc.expect.is_none() => {
                let outcome = self
                    .commit(&inc.dir, &inc.tmp, &inc.path, None)
                    .and_then(|()| self.placed(&inc.path, &inc.meta, digest));
                self.done.push((id, outcome));
            }
            Ok(digest) => {
                self.staged_bytes += inc.written;
                self.staged.push((id, inc, digest));
                if self.staged.len() >= COMMIT_FILES || self.staged_bytes >= COMMIT_BYTES {
                    self.commit_staged();
                }
            }
            Err(e) => {
                Root::remove_name(&inc.dir, &inc.tmp);
                self.done.push((id, Err(e)));
            }
        }
        Ok(())
    }

    /// Counts `bytes` as written and not yet on disk, asking the flusher to write back
    /// once enough has gathered.
    fn written_back_later(&mut self, bytes: u64) {
        self.unflushed += bytes;
        if self.unflushed >= FLUSH_EVERY {
            self.unflushed = 0;
            self.flusher.flush(self.root.fd());
        }
    }

    /// Checks a complete temp file against the sender's digest and gives it its attributes.
    fn verify(&self, inc: &Incoming, sent: Digest) -> Result<Digest> {
        let got = Digest(*inc.hasher.finalize().as_bytes());
        if got != sent || inc.written != inc.meta.size {
            return Err(Error::Verify {
                path: inc.path.to_string(),
                place: self.place.clone(),
            });
        }
        finish_temp(&inc.file, inc.extent, &inc.meta, self.owner)
            .map_err(|(op, e)| self.io(op, &inc.path, e))?;
        if self.acls == AclMode::Native {
            xattrs::write_fd(&inc.file, inc.meta.xattrs())
                .map_err(|e| self.io("set extended attributes of", &inc.path, e))?;
        }
        Ok(got)
    }

    /// After a received file is in place: its attributes go to the side file (metafile mode;
    /// natively they were set on the temp file).
    fn placed(&mut self, path: &RelPath, meta: &Entry, digest: Digest) -> Result<Entry> {
        if self.acls == AclMode::Metafile {
            self.put_xattrs(path, meta)?;
        }
        self.entry_now(path, Some(digest))
    }

    /// Makes the staged temp files (those replacing an existing file) durable, then renames
    /// each into place if its target is still what was scanned. Durable first: a crash must
    /// never leave an empty file where the old version was. One `syncfs` for the batch
    /// costs what one `fsync` does, where a sync per file made small files crawl.
    fn commit_staged(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.staged);
        self.staged_bytes = 0;
        let synced = if staged.len() == 1 {
            staged[0].1.file.sync_data()
        } else {
            crate::disk::sys::syncfs(self.root.fd())
        };
        for (id, inc, digest) in staged {
            let outcome = match &synced {
                Err(e) => Err(self.io("flush", &inc.path, io::Error::new(e.kind(), e.to_string()))),
                Ok(()) => self
                    .commit(&inc.dir, &inc.tmp, &inc.path, inc.expect.as_ref())
                    .and_then(|()| self.placed(&inc.path, &inc.meta, digest)),
            };
            if outcome.is_err() {
                Root::remove_name(&inc.dir, &inc.tmp);
            }
            self.done.push((id, outcome));
        }
    }
}

/// Gives a complete temp file its length (zero blocks at the end were left unwritten, as
/// holes: `extent` is where the last byte written ends) and `meta`'s attributes; on failure,
/// says which step failed.
fn finish_temp(
    file: &File,
    extent: u64,
    meta: &Entry,
    owner: bool,
) -> Result<(), (&'static str, io::Error)> {
    if extent < meta.size {
        file.set_len(meta.size).map_err(|e| ("write", e))?;
    }
    Root::set_meta_fd(file, meta, owner).map_err(|e| ("set attributes of", e))
}

/// What a refused or failed rename into place means for `path`.
fn commit_failed(err: CommitError, path: &RelPath, place: &str) -> Error {
    match err {
        CommitError::Changed => Error::Changed {
            path: path.to_string(),
            place: place.to_string(),
        },
        CommitError::Io(e) => Error::io("rename into place", path, place, e),
    }
}

/// Copies `src` into `dst` (sharing extents where the filesystem can), checking that what
/// was copied has the BLAKE3 `want`.
fn copy_checked(src: &mut File, dst: &mut File, want: Digest) -> io::Result<()> {
    use std::io::{Read, Write};
    let cloned = crate::disk::sys::clone_file(&*dst, &*src);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if !cloned {
            dst.write_all(&buf[..n])?;
        }
    }
    if Digest(*hasher.finalize().as_bytes()) != want {
        return Err(io::Error::other(
            "the local copy does not match the sender's hash",
        ));
    }
    Ok(())
}

impl Drop for LocalEndpoint {
    /// When the session ends early (the client went away), a large partial file is kept so
    /// the next run can resume from it; everything else leaves no temp file behind.
    fn drop(&mut self) {
        for inc in self.incoming.values() {
            if inc.written < RESUME_MIN || inc.failed.is_some() {
                Root::remove_name(&inc.dir, &inc.tmp);
            }
            if let Some(part) = &inc.part {
                Root::remove_name(&inc.dir, part);
            }
        }
        for (_, inc, _) in &self.staged {
            Root::remove_name(&inc.dir, &inc.tmp);
        }
    }
}

/// Bytes received between two background flushes.
const FLUSH_EVERY: u64 = 32 << 20;
/// What a received file counts towards a flush on top of its bytes (a block, an inode).
const FILE_BLOCK: u64 = 4 << 10;

/// A thread that writes received data back to disk while more arrives (started on first
/// use; errors are left for the flushes before renames and the baseline to report).
#[derive(Default)]
struct Flusher(Option<std::sync::mpsc::SyncSender<()>>);

impl Flusher {
    /// Asks for the filesystem of `root` to be written back; a request made while one
    /// runs waits for it, and any more are one and the same.
    fn flush(&mut self, root: &std::os::fd::OwnedFd) {
        if self.0.is_none() {
            let Ok(fd) = root.try_clone() else { return };
            let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
            std::thread::spawn(move || {
                for () in rx {
                    let _ = crate::disk::sys::syncfs(&fd);
                }
            });
            self.0 = Some(tx);
        }
        if let Some(tx) = &self.0 {
            let _ = tx.try_send(());
        }
    }
}

/// A partial transfer at least this large is kept for the next run to resume.
const RESUME_MIN: u64 = 1 << 20;

/// Verified files wait for one shared flush until there are this many...
const COMMIT_FILES: usize = 256;
/// ...or this many bytes.
const COMMIT_BYTES: u64 = 64 << 20;

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

/// Why reading a file for sending stopped.
enum SendError {
    /// The source could not be read.
    Read(io::Error),
    /// The delta could not be computed.
    Delta(String),
    /// The receiving side failed: the run stops.
    Sink(Error),
}

/// Sends chunks of ops, about a megabyte of literal data per chunk.
fn send_ops(
    id: u64,
    ops: Vec<DeltaOp>,
    sink: &mut dyn FnMut(Chunk) -> Result<()>,
) -> Result<(), SendError> {
    let mut batch = Vec::new();
    let mut size = 0;
    for op in ops {
        size += match &op {
            DeltaOp::Literal(b) => b.len(),
            DeltaOp::Copy { .. } | DeltaOp::Hole(_) => 16,
        };
        batch.push(op);
        if size >= 4 * LITERAL_CHUNK {
            let ops = std::mem::take(&mut batch);
            sink(Chunk::Data { id, ops }).map_err(SendError::Sink)?;
            size = 0;
        }
    }
    if !batch.is_empty() {
        sink(Chunk::Data { id, ops: batch }).map_err(SendError::Sink)?;
    }
    Ok(())
}

/// Whether the open `file` is still the scanned `expect` (by its own stat, whatever its
/// name holds by now), with that stat.
fn still_scanned(file: &File, expect: &Entry) -> io::Result<(bool, sys::Stat)> {
    let st = sys::fstat(file)?;
    Ok((
        still_expected(Some(&entry_from_stat(&st, None)), Some(expect)),
        st,
    ))
}

/// Reads a file window by window: whole, or as a delta against `index`.
fn send_windows(
    file: &mut File,
    size: u64,
    index: Option<&fast_rsync::IndexedSignature<'_>>,
    id: u64,
    hasher: &mut blake3::Hasher,
    sink: &mut dyn FnMut(Chunk) -> Result<()>,
) -> Result<(), SendError> {
    let Some(index) = index else {
        return send_whole(file, size, id, hasher, sink);
    };
    // Small files get a small buffer: zeroing a megabyte per file showed in profiles.
    // Reading stops at the scanned size, without the read that would find the end: a file
    // that grew meanwhile is caught by the stat after reading.
    let mut buf = vec![0u8; (size as usize).min(WINDOW)];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = delta::read_full(file, &mut buf[..want]).map_err(SendError::Read)?;
        if n == 0 {
            return Ok(());
        }
        left -= n as u64;
        let window = &buf[..n];
        hasher.update(window);
        let mut ops = Vec::new();
        delta::diff_window(index, window, &mut ops).map_err(SendError::Delta)?;
        send_ops(id, ops, sink)?;
        if n < want {
            return Ok(());
        }
    }
    Ok(())
}

/// Sends a file whole, each piece read straight into the literal that carries it: no
/// buffer to zero, no copy out of one (on a copy of `/usr/share`, both showed).
fn send_whole(
    file: &mut File,
    size: u64,
    id: u64,
    hasher: &mut blake3::Hasher,
    sink: &mut dyn FnMut(Chunk) -> Result<()>,
) -> Result<(), SendError> {
    use std::io::Read;
    let mut left = size;
    while left > 0 {
        let want = left.min(LITERAL_CHUNK as u64);
        let mut piece = Vec::with_capacity(want as usize);
        // Stops at the scanned size, as above.
        file.by_ref()
            .take(want)
            .read_to_end(&mut piece)
            .map_err(SendError::Read)?;
        let n = piece.len() as u64;
        if n == 0 {
            return Ok(());
        }
        left -= n;
        hasher.update(&piece);
        send_ops(id, vec![DeltaOp::Literal(piece)], sink)?;
        if n < want {
            return Ok(());
        }
    }
    Ok(())
}

/// Sends a sparse file whole: its data regions as literals, its holes as holes, found with
/// `SEEK_DATA`/`SEEK_HOLE` and never read.
fn send_sparse(
    file: &File,
    size: u64,
    id: u64,
    hasher: &mut blake3::Hasher,
    sink: &mut dyn FnMut(Chunk) -> Result<()>,
) -> Result<(), SendError> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4 * LITERAL_CHUNK];
    let mut pos = 0;
    while pos < size {
        let (start, end) = crate::disk::fsops::data_region(file, pos)
            .map_err(SendError::Read)?
            .map_or((size, size), |(s, e)| (s.min(size), e.min(size)));
        if start > pos {
            delta::hash_zeros(hasher, start - pos);
            send_ops(id, vec![DeltaOp::Hole(start - pos)], sink)?;
        }
        pos = start;
        while pos < end {
            let n = (end - pos).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], pos)
                .map_err(SendError::Read)?;
            hasher.update(&buf[..n]);
            let mut ops = Vec::new();
            delta::literal_ops(&buf[..n], &mut ops);
            send_ops(id, ops, sink)?;
            pos += n as u64;
        }
    }
    Ok(())
}

impl Incoming {
    /// Writes the ops to the temp file, hashing what is written.
    fn apply(&mut self, ops: Vec<DeltaOp>) -> Result<(), ApplyError> {
        let mut buf = Vec::new();
        for op in ops {
            let len = op.len();
            if self
                .written
                .checked_add(len)
                .is_none_or(|total| total > self.meta.size)
            {
                return Err(ApplyError::Peer(format!(
                    "sender sent more than the announced {} bytes",
                    self.meta.size
                )));
            }
            match op {
                DeltaOp::Literal(data) => {
                    let end = delta::write_sparse(&self.file, self.written, &data)
                        .map_err(|e| ApplyError::Io("write", e))?;
                    self.extent = end.unwrap_or(self.extent);
                    self.hasher.update(&data);
                }
                DeltaOp::Hole(len) => delta::hash_zeros(&mut self.hasher, len),
                DeltaOp::Copy { offset, len } => {
                    let Some((basis, size)) = &self.basis else {
                        return Err(ApplyError::Peer("copy op without an old version".into()));
                    };
                    if offset.checked_add(len).is_none_or(|end| end > *size) {
                        return Err(ApplyError::Peer(format!(
                            "copy of {len} bytes at {offset} is outside the old version"
                        )));
                    }
                    let mut done = 0;
                    while done < len {
                        let n = (len - done).min(LITERAL_CHUNK as u64) as usize;
                        buf.resize(n, 0);
                        basis
                            .read_exact_at(&mut buf, offset + done)
                            .map_err(|e| ApplyError::Io("read the old version of", e))?;
                        let end = delta::write_sparse(&self.file, self.written + done, &buf)
                            .map_err(|e| ApplyError::Io("write", e))?;
                        self.extent = end.unwrap_or(self.extent);
                        self.hasher.update(&buf);
                        done += n as u64;
                    }
                }
            }
            self.written += len;
        }
        Ok(())
    }
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
        let (tree, partials) = scan(&self.root, &filter, opts, known);
        Ok(Scan {
            tree,
            root_id: self.root.id(),
            partials,
            owners: self.owner_names.then(Database::load),
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
                let before = self.root.entry(p).ok().flatten();
                let d = hash_file(&self.root, p).map_err(|e| format!("cannot read: {e}"));
                let after = self.root.entry(p).ok().flatten();
                let d = if before.is_some() && still_expected(after.as_ref(), before.as_ref()) {
                    d
                } else {
                    Err("changed while it was being hashed".to_string())
                };
                (p.clone(), d)
            })
            .collect())
    }

    fn signatures(
        &mut self,
        files: &[(RelPath, Option<Entry>)],
    ) -> Result<Vec<Result<Vec<u8>, String>>> {
        self.settle_writers();
        Ok(files
            .iter()
            .map(|(path, expect)| {
                let (mut f, size) = match expect {
                    Some(e) => (
                        self.open_source(path, e).map_err(|e| e.to_string())?.0,
                        e.size,
                    ),
                    None => {
                        let (f, size, _) = self
                            .root
                            .peek_partial(path)
                            .map_err(|e| format!("no partial transfer of '{path}': {e}"))?;
                        (f, size)
                    }
                };
                delta::signature(&mut f, size).map_err(|e| format!("cannot read '{path}': {e}"))
            })
            .collect())
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

impl LocalEndpoint {
    /// What this endpoint's scans record beyond the basics.
    fn scan_options(&self) -> crate::disk::scan::ScanOptions {
        crate::disk::scan::ScanOptions {
            hard_links: self.hard_links,
            acls: self.acls,
            threads: self.scan_threads,
            skip_file_xattrs: false,
        }
    }

    /// [`Endpoint::scan`], handing the entries to `sink` in tree order, `batch` at a time,
    /// while the scan runs; the returned tree has the problems but no entries.
    pub fn scan_streamed(
        &mut self,
        filter: &FilterSpec,
        skip_file_xattrs: bool,
        batch: usize,
        sink: crate::disk::scan::Sink<'_>,
    ) -> Result<Scan> {
        self.settle_writers();
        let filter = filter.build()?;
        let opts = crate::disk::scan::ScanOptions {
            skip_file_xattrs,
            ..self.scan_options()
        };
        let (problems, partials) =
            crate::disk::scan::scan_streamed(&self.root, &filter, opts, batch, sink);
        Ok(Scan {
            tree: crate::core::tree::Tree {
                entries: Default::default(),
                problems,
            },
            root_id: self.root.id(),
            partials,
            owners: self.owner_names.then(Database::load),
        })
    }

    /// Makes one change.
    pub fn change(&mut self, c: &Change) -> Result<Option<Entry>> {
        self.settle_writers();
        match c {
            Change::MakeNode {
                path,
                expect,
                source,
            } => self.make_node(path, expect.as_ref(), source).map(Some),
            Change::Mkdir { path, source } => self.mkdir(path, source).map(Some),
            Change::Delete { path, expect } => self.delete(path, expect).map(|()| None),
            Change::Rename {
                from,
                to,
                expect,
                meta,
            } => self.rename(from, to, expect, meta.as_ref()).map(Some),
            Change::SetMeta {
                path,
                expect,
                source,
            } => self.set_meta(path, expect, source).map(Some),
            Change::Restamp { path, mtime_ns } => self.restamp(path, *mtime_ns).map(Some),
            Change::RootTime { set, mode } => self.root_time(*set, *mode).map(Some),
            Change::Dedup {
                path,
                expect,
                from,
                from_expect,
                source,
                hardlink,
            } => self
                .dedup(path, expect.as_ref(), from, from_expect, source, *hardlink)
                .map(Some),
            Change::Link {
                path,
                expect,
                first,
                source,
            } => self.link(path, expect.as_ref(), first, source).map(Some),
            Change::Unlink {
                path,
                expect,
                source,
            } => self.unlink(path, expect, source).map(Some),
        }
    }

    /// Fails with `Changed` unless `path` is still the file `expect` (or absent for
    /// `None`). Unlike [`Self::check`] it ignores the ctime: linking or unlinking another
    /// name of the same file changes it.
    fn check_same_file(&self, path: &RelPath, expect: Option<&Entry>) -> Result<Option<Entry>> {
        let now = self
            .root
            .entry(path)
            .map_err(|e| self.io("stat", path, e))?;
        let same = match (&now, expect) {
            (None, None) => true,
            (Some(n), Some(e)) => {
                n.is_file()
                    && e.is_file()
                    && n.size == e.size
                    && n.mtime_ns == e.mtime_ns
                    && n.stamp.ino == e.stamp.ino
            }
            _ => false,
        };
        if same {
            Ok(now)
        } else {
            Err(self.changed(path))
        }
    }

    /// Gives `path` a file of its own: a copy of its content with `source`'s attributes,
    /// renamed over it.
    pub fn unlink(&mut self, path: &RelPath, expect: &Entry, source: &Entry) -> Result<Entry> {
        let now = self.check_same_file(path, Some(expect))?.expect("a file");
        let mut from = self
            .root
            .open_read(path)
            .map_err(|e| self.io("read", path, e))?;
        let (dir, tmp, mut file) = self
            .root
            .create_temp(path, source.mode)
            .map_err(|e| self.io("create a temporary file for", path, e))?;
        let native = self.acls == AclMode::Native;
        let copied = io::copy(&mut from, &mut file)
            .and_then(|_| Root::set_meta_fd(&file, source, self.owner))
            .and_then(|()| {
                if native {
                    xattrs::write_fd(&file, source.xattrs())
                } else {
                    Ok(())
                }
            })
            .map_err(|e| self.io("copy", path, e));
        if let Err(e) = copied {
            Root::remove_name(&dir, &tmp);
            return Err(e);
        }
        self.commit(&dir, &tmp, path, Some(&now))?;
        if self.acls == AclMode::Metafile {
            self.put_xattrs(path, source)?;
        }
        self.entry_now(path, expect.digest)
    }

    /// Makes `path` another name of `first` (replacing `expect`), if `first` is the file
    /// `source` describes: the content is never sent twice.
    pub fn link(
        &mut self,
        path: &RelPath,
        expect: Option<&Entry>,
        first: &RelPath,
        source: &Entry,
    ) -> Result<Entry> {
        let now = self.check_same_file(path, expect)?;
        let held = self
            .root
            .entry(first)
            .map_err(|e| self.io("stat", first, e))?;
        if let (Some(n), Some(h)) = (&now, &held) {
            if n.stamp.ino == h.stamp.ino {
                let mut e = n.clone();
                e.set_link(Some(first.clone()));
                return Ok(e); // already one file
            }
        }
        match held {
            Some(f) if f.is_file() && f.size == source.size && f.mtime_ns == source.mtime_ns => {}
            _ => {
                return Err(Error::io(
                    "link",
                    path,
                    &self.place,
                    io::Error::other(format!(
                        "'{first}', the name it shares its file with, is not in place"
                    )),
                ))
            }
        }
        self.link_into_place(first, path, now.as_ref())?;
        if self.acls == AclMode::Metafile {
            self.put_xattrs(path, source)?;
        }
        let mut e = self.entry_now(path, source.digest)?;
        e.set_link(Some(first.clone()));
        Ok(e)
    }

    /// Makes `path` another name of the file at `from` (a temp link renamed over `now`).
    fn link_into_place(&self, from: &RelPath, path: &RelPath, now: Option<&Entry>) -> Result<()> {
        let src_dir = self
            .root
            .parent_fd(from)
            .map_err(|e| self.io("open parent of", from, e))?;
        let dir = self
            .root
            .parent_fd(path)
            .map_err(|e| self.io("open parent of", path, e))?;
        let tmp = crate::disk::fsops::temp_name(path.name());
        Root::remove_name(&dir, &tmp);
        Root::link_at(&src_dir, from.name(), &dir, &tmp).map_err(|e| self.io("link", path, e))?;
        self.commit(&dir, &tmp, path, now)
    }

    /// Makes `path` (replacing `expect`) from `from`, a file here with the content `source`
    /// describes: hard-linked, or copied (a reflink where the filesystem can) and checked
    /// against the digest before it is renamed into place.
    #[allow(clippy::too_many_arguments)]
    pub fn dedup(
        &mut self,
        path: &RelPath,
        expect: Option<&Entry>,
        from: &RelPath,
        from_expect: &Entry,
        source: &Entry,
        hardlink: bool,
    ) -> Result<Entry> {
        let now = self.check_same_file(path, expect)?;
        self.check_same_file(from, Some(from_expect))?;
        let digest = source
            .digest
            .ok_or_else(|| Error::Protocol(format!("dedup of '{path}' without a digest")))?;
        if hardlink {
            self.link_into_place(from, path, now.as_ref())?;
            return self.entry_now(path, Some(digest));
        }
        let mut src = self
            .root
            .open_read(from)
            .map_err(|e| self.io("read", from, e))?;
        let (dir, tmp, mut file) = self
            .root
            .create_temp(path, source.mode)
            .map_err(|e| self.io("create a temporary file for", path, e))?;
        let copied = copy_checked(&mut src, &mut file, digest)
            .and_then(|()| Root::set_meta_fd(&file, source, self.owner))
            .and_then(|()| match self.acls {
                AclMode::Native => xattrs::write_fd(&file, source.xattrs()),
                _ => Ok(()),
            })
            .map_err(|e| self.io("copy", path, e));
        if let Err(e) = copied {
            Root::remove_name(&dir, &tmp);
            return Err(e);
        }
        self.commit(&dir, &tmp, path, now.as_ref())?;
        if self.acls == AclMode::Metafile {
            self.put_xattrs(path, source)?;
        }
        self.entry_now(path, Some(digest))
    }

    /// Sets a directory's mtime, if it is still a directory.
    pub fn restamp(&mut self, path: &RelPath, mtime_ns: i64) -> Result<Entry> {
        match self
            .root
            .entry(path)
            .map_err(|e| self.io("stat", path, e))?
        {
            Some(e) if e.is_dir() => {}
            _ => return Err(self.changed(path)),
        }
        let dir = self
            .root
            .parent_fd(path)
            .map_err(|e| self.io("open parent of", path, e))?;
        Root::set_mtime_at(&dir, path.name(), mtime_ns)
            .map_err(|e| self.io("set the time of", path, e))?;
        self.entry_now(path, None)
    }

    /// The root's own entry, after setting its mtime to `set` and its mode to `mode` when
    /// given and different.
    pub fn root_time(&mut self, set: Option<i64>, mode: Option<u32>) -> Result<Entry> {
        let top = self.root.fd();
        let stat = || match crate::disk::fsops::entry_at(top, b".") {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(Error::io(
                "stat",
                "the root",
                &self.place,
                std::io::ErrorKind::NotFound.into(),
            )),
            Err(e) => Err(Error::io("stat", "the root", &self.place, e)),
        };
        let mut now = stat()?;
        if let Some(mode) = mode.filter(|m| *m != now.mode) {
            sys::fchmod(top, mode)
                .map_err(|e| Error::io("set the mode of", "the root", &self.place, e))?;
            now = stat()?;
        }
        match set {
            // Setting a time the root already has would still touch its ctime.
            Some(mtime_ns) if mtime_ns != now.mtime_ns => {
                Root::set_mtime_at(top, b".", mtime_ns)
                    .map_err(|e| Error::io("set the time of", "the root", &self.place, e))?;
                stat()
            }
            _ => Ok(now),
        }
    }

    /// Creates a symlink or special file like `source` at `path` (replacing `expect`).
    pub fn make_node(
        &mut self,
        path: &RelPath,
        expect: Option<&Entry>,
        source: &Entry,
    ) -> Result<Entry> {
        self.check(path, expect)?;
        let (dir, tmp) = self
            .root
            .create_node_temp(path, source)
            .map_err(|e| self.io("create", path, e))?;
        // A special file takes a default ACL on create too; it keeps none (a symlink has
        // no ACLs to take).
        let native = self.acls == AclMode::Native && !source.is_symlink();
        let made = Root::set_meta_at(&dir, &tmp, source, self.owner).and_then(|()| {
            if native {
                xattrs::write_at(&dir, &tmp, None)
            } else {
                Ok(())
            }
        });
        if let Err(e) = made {
            Root::remove_name(&dir, &tmp);
            return Err(self.io("set attributes of", path, e));
        }
        self.commit(&dir, &tmp, path, expect)?;
        self.entry_now(path, None)
    }

    /// Creates a directory with `source`'s mode.
    pub fn mkdir(&mut self, path: &RelPath, source: &Entry) -> Result<Entry> {
        self.root
            .mkdir(path, source.mode)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => self.changed(path),
                _ => self.io("create directory", path, e),
            })?;
        if self.owner {
            let dir = self
                .root
                .parent_fd(path)
                .map_err(|e| self.io("open parent of", path, e))?;
            Root::set_meta_at(&dir, path.name(), source, true)
                .map_err(|e| self.io("set owner of", path, e))?;
        }
        self.put_xattrs(path, source)?;
        self.entry_now(path, None)
    }

    /// Deletes `path` if it is still `expect` (a directory must be empty).
    pub fn delete(&mut self, path: &RelPath, expect: &Entry) -> Result<()> {
        self.check(path, Some(expect))?;
        if self.acls == AclMode::Metafile {
            // A directory's side file would keep it from being empty; the entry's record
            // goes with it.
            if expect.is_dir() {
                self.metafiles
                    .drop_dir(&self.root, path)
                    .map_err(|e| self.io("delete", path, e))?;
            }
            self.metafiles
                .set(&self.root, path, None)
                .map_err(|e| self.io("record the attributes of", path, e))?;
        }
        if self.keep.is_some() && !expect.is_dir() {
            let dir = self
                .root
                .parent_fd(path)
                .map_err(|e| self.io("delete", path, e))?;
            self.keep_old(&dir, path, Some(expect))?;
        }
        self.root
            .remove(path, expect.is_dir())
            .map_err(|e| match e.raw_os_error() {
                Some(39) => Error::Changed {
                    path: path.to_string(),
                    place: format!("{} (directory not empty)", self.place),
                },
                _ => self.io("delete", path, e),
            })
    }

    /// Renames `from` to `to` if `from` is still `expect`; then applies `meta` if given.
    pub fn rename(
        &mut self,
        from: &RelPath,
        to: &RelPath,
        expect: &Entry,
        meta: Option<&Entry>,
    ) -> Result<Entry> {
        self.check(from, Some(expect))?;
        if self.acls == AclMode::Metafile && expect.is_dir() {
            // Pending side files inside must be written before their directory moves.
            self.metafiles
                .flush(&self.root)
                .map_err(|e| self.io("write", from, e))?;
        }
        self.root.rename(from, to).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => self.changed(to),
            _ => self.io("rename", from, e),
        })?;
        if self.acls == AclMode::Metafile {
            self.metafiles
                .rename(&self.root, from, to)
                .map_err(|e| self.io("record the attributes of", to, e))?;
        }
        if let Some(meta) = meta.filter(|m| !m.same_meta(expect, self.owner)) {
            let dir = self
                .root
                .parent_fd(to)
                .map_err(|e| self.io("open parent of", to, e))?;
            Root::set_meta_at(&dir, to.name(), meta, self.owner)
                .map_err(|e| self.io("set attributes of", to, e))?;
            self.put_xattrs(to, meta)?;
        }
        self.entry_now(to, expect.digest)
    }

    /// Applies `source`'s attributes if `path` is still `expect`.
    pub fn set_meta(&mut self, path: &RelPath, expect: &Entry, source: &Entry) -> Result<Entry> {
        self.check(path, Some(expect))?;
        let dir = self
            .root
            .parent_fd(path)
            .map_err(|e| self.io("open parent of", path, e))?;
        Root::set_meta_at(&dir, path.name(), source, self.owner)
            .map_err(|e| self.io("set attributes of", path, e))?;
        self.put_xattrs(path, source)?;
        self.entry_now(path, expect.digest)
    }
}
