//! The write side of a local endpoint: files received into temp files, checked against
//! their digest, staged, flushed together and renamed into place only if the target
//! is still as scanned; partial transfers kept for the next run to resume.

use super::*;

/// A file being received: its temp file, the old version for `Copy` ops, and a running hash.
pub(super) struct Incoming {
    pub(super) path: RelPath,
    pub(super) expect: Option<Entry>,
    pub(super) meta: Entry,
    pub(super) dir: DirFd,
    pub(super) tmp: Vec<u8>,
    pub(super) file: File,
    pub(super) basis: Option<(File, u64)>,
    // The partial transfer serving as basis, removed once this file is settled.
    pub(super) part: Option<Vec<u8>>,
    pub(super) hasher: blake3::Hasher,
    pub(super) written: u64,
    /// Where the last byte written to the temp file ends (zero blocks are skipped).
    pub(super) extent: u64,
    pub(super) failed: Option<Error>,
}

impl LocalEndpoint {
    pub(super) fn commit(
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

    pub(super) fn begin(
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
    pub(super) fn gather(&mut self, id: u64, path: RelPath, meta: Entry) {
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
    pub(super) fn end_gathered(
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
    pub(super) fn settle_writers(&mut self) {
        self.writers.collect(&mut self.done, true);
    }

    pub(super) fn data(&mut self, id: u64, ops: Vec<DeltaOp>) -> Result<()> {
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
                ApplyError::Io(op, e) => {
                    let e = crate::disk::sys::fsops::explain_full(e, &inc.file);
                    Error::io(op, &inc.path, &place, e)
                }
                ApplyError::Peer(why) => {
                    Error::Protocol(format!("'{}' on {place}: {why}; not committed", inc.path))
                }
            });
        }
        self.written_back_later(grew);
        Ok(())
    }

    pub(super) fn end(
        &mut self,
        id: u64,
        digest: Option<Digest>,
        abort: Option<Error>,
    ) -> Result<()> {
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
    pub(super) fn written_back_later(&mut self, bytes: u64) {
        self.unflushed += bytes;
        if self.unflushed >= FLUSH_EVERY {
            self.unflushed = 0;
            self.flusher.flush(self.root.fd());
        }
    }

    /// Checks a complete temp file against the sender's digest and gives it its attributes.
    pub(super) fn verify(&self, inc: &Incoming, sent: Digest) -> Result<Digest> {
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
    pub(super) fn placed(&mut self, path: &RelPath, meta: &Entry, digest: Digest) -> Result<Entry> {
        if self.acls == AclMode::Metafile {
            self.put_xattrs(path, meta)?;
        }
        self.entry_now(path, Some(digest))
    }

    /// Makes the staged temp files (those replacing an existing file) durable, then renames
    /// each into place if its target is still what was scanned. Durable first: a crash must
    /// never leave an empty file where the old version was. One `syncfs` for the batch
    /// costs what one `fsync` does, where a sync per file made small files crawl.
    pub(super) fn commit_staged(&mut self) {
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
pub(super) fn finish_temp(
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
pub(super) fn commit_failed(err: CommitError, path: &RelPath, place: &str) -> Error {
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
pub(super) fn copy_checked(src: &mut File, dst: &mut File, want: Digest) -> io::Result<()> {
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
pub(super) const FLUSH_EVERY: u64 = 32 << 20;
/// What a received file counts towards a flush on top of its bytes (a block, an inode).
pub(super) const FILE_BLOCK: u64 = 4 << 10;

/// A thread that writes received data back to disk while more arrives (started on first
/// use; errors are left for the flushes before renames and the baseline to report).
#[derive(Default)]
pub(super) struct Flusher(Option<std::sync::mpsc::SyncSender<()>>);

impl Flusher {
    /// Asks for the filesystem of `root` to be written back; a request made while one
    /// runs waits for it, and any more are one and the same.
    pub(super) fn flush(&mut self, root: &std::os::fd::OwnedFd) {
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
pub(super) const RESUME_MIN: u64 = 1 << 20;

/// Verified files wait for one shared flush until there are this many...
pub(super) const COMMIT_FILES: usize = 256;
/// ...or this many bytes.
pub(super) const COMMIT_BYTES: u64 = 64 << 20;

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
