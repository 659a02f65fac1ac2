//! `LocalEndpoint`: an [`Endpoint`] on this machine's disk, confined to its root.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::endpoint::{Endpoint, Scan, Source};
use crate::error::{Error, Result};
use crate::fsops::{still_expected, CommitError, Root};
use crate::path::RelPath;
use crate::rules::FilterSpec;
use crate::scan::{hash_file, scan};
use crate::tree::{Digest, Entry};

/// Chunk size for copying file contents.
const CHUNK: usize = 256 * 1024;

/// A root directory on this machine.
pub struct LocalEndpoint {
    root: Root,
    place: String,
    owner: bool,
}

impl LocalEndpoint {
    /// Opens `dir`; `place` names it in messages; `owner` preserves owner and group.
    pub fn open(dir: &Path, place: String, owner: bool) -> Result<LocalEndpoint> {
        let root = Root::open(dir).map_err(|e| {
            let what = crate::fsops::describe_missing(dir);
            Error::Unreachable(format!(
                "{place}: {what} ({e}); create it or check the path"
            ))
        })?;
        Ok(LocalEndpoint { root, place, owner })
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

    fn entry_now(&self, path: &RelPath, digest: Option<Digest>) -> Result<Entry> {
        match self.root.entry(path) {
            Ok(Some(mut e)) => {
                e.digest = digest;
                Ok(e)
            }
            Ok(None) => Err(self.io("stat", path, io::ErrorKind::NotFound.into())),
            Err(e) => Err(self.io("stat", path, e)),
        }
    }

    fn commit(
        &self,
        dir: &std::os::fd::OwnedFd,
        tmp: &[u8],
        path: &RelPath,
        expect: Option<&Entry>,
    ) -> Result<()> {
        match self.root.commit_rename(dir, tmp, path, expect) {
            Ok(()) => Ok(()),
            Err(err) => {
                Root::remove_name(dir, tmp);
                Err(match err {
                    CommitError::Changed => self.changed(path),
                    CommitError::Io(e) => self.io("rename into place", path, e),
                })
            }
        }
    }
}

struct LocalSource<'a> {
    file: File,
    hasher: blake3::Hasher,
    ep: &'a LocalEndpoint,
    path: RelPath,
    expect: Entry,
}

impl Read for LocalSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl Source for LocalSource<'_> {
    fn finish(&mut self) -> Result<Digest> {
        // Re-stat after reading: a file written to while we read it would arrive torn.
        let now = self
            .ep
            .root
            .entry(&self.path)
            .map_err(|e| self.ep.io("stat", &self.path, e))?;
        if !still_expected(now.as_ref(), Some(&self.expect)) {
            return Err(Error::SourceChanged {
                path: self.path.to_string(),
                place: self.ep.place.clone(),
            });
        }
        Ok(Digest(*self.hasher.finalize().as_bytes()))
    }
}

impl Endpoint for LocalEndpoint {
    fn place(&self) -> &str {
        &self.place
    }

    fn scan(&mut self, filter: &FilterSpec) -> Result<Scan> {
        let filter = filter.build()?;
        Ok(Scan {
            tree: scan(&self.root, &filter),
            root_id: self.root.id(),
        })
    }

    fn digests(&mut self, paths: &[RelPath]) -> Result<Vec<(RelPath, Result<Digest, String>)>> {
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

    fn open_source<'a>(
        &'a mut self,
        path: &RelPath,
        expect: &Entry,
    ) -> Result<Box<dyn Source + 'a>> {
        let now = self
            .root
            .entry(path)
            .map_err(|e| self.io("stat", path, e))?;
        if !still_expected(now.as_ref(), Some(expect)) {
            return Err(Error::SourceChanged {
                path: path.to_string(),
                place: self.place.clone(),
            });
        }
        let file = self
            .root
            .open_read(path)
            .map_err(|e| self.io("open", path, e))?;
        Ok(Box::new(LocalSource {
            file,
            hasher: blake3::Hasher::new(),
            ep: self,
            path: path.clone(),
            expect: expect.clone(),
        }))
    }

    fn write_file(
        &mut self,
        path: &RelPath,
        expect: Option<&Entry>,
        meta: &Entry,
        src: &mut dyn Source,
    ) -> Result<Entry> {
        // Fail early (before moving any data) if the target already changed.
        self.check(path, expect)?;
        let (dir, tmp, mut file) = self
            .root
            .create_temp(path)
            .map_err(|e| self.io("create a temporary file for", path, e))?;
        let written = (|| -> Result<Digest> {
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(Error::io("read the source of", path, "the sending side", e))
                    }
                };
                file.write_all(&buf[..n])
                    .map_err(|e| self.io("write", path, e))?;
                hasher.update(&buf[..n]);
            }
            let sent = src.finish()?;
            let got = Digest(*hasher.finalize().as_bytes());
            if got != sent {
                return Err(Error::Protocol(format!(
                    "'{path}' on {}: received data does not match the sender's hash ({} != {}); not committed",
                    self.place,
                    got.short(),
                    sent.short()
                )));
            }
            Root::set_meta_fd(&file, meta, self.owner)
                .map_err(|e| self.io("set attributes of", path, e))?;
            file.sync_data().map_err(|e| self.io("flush", path, e))?;
            Ok(got)
        })();
        let digest = match written {
            Ok(d) => d,
            Err(e) => {
                Root::remove_name(&dir, &tmp);
                return Err(e);
            }
        };
        drop(file);
        self.commit(&dir, &tmp, path, expect)?;
        self.entry_now(path, Some(digest))
    }

    fn make_node(
        &mut self,
        path: &RelPath,
        expect: Option<&Entry>,
        source: &Entry,
    ) -> Result<Entry> {
        self.check(path, expect)?;
        let (dir, tmp) = self
            .root
            .create_node_temp(path, &source.kind, source.mode)
            .map_err(|e| self.io("create", path, e))?;
        if let Err(e) = Root::set_meta_at(&dir, &tmp, source, self.owner) {
            Root::remove_name(&dir, &tmp);
            return Err(self.io("set attributes of", path, e));
        }
        self.commit(&dir, &tmp, path, expect)?;
        self.entry_now(path, None)
    }

    fn mkdir(&mut self, path: &RelPath, source: &Entry) -> Result<Entry> {
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
        self.entry_now(path, None)
    }

    fn delete(&mut self, path: &RelPath, expect: &Entry) -> Result<()> {
        self.check(path, Some(expect))?;
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

    fn rename(
        &mut self,
        from: &RelPath,
        to: &RelPath,
        expect: &Entry,
        meta: Option<&Entry>,
    ) -> Result<Entry> {
        self.check(from, Some(expect))?;
        self.root.rename(from, to).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => self.changed(to),
            _ => self.io("rename", from, e),
        })?;
        if let Some(meta) = meta.filter(|m| !m.same_meta(expect, self.owner)) {
            let dir = self
                .root
                .parent_fd(to)
                .map_err(|e| self.io("open parent of", to, e))?;
            Root::set_meta_at(&dir, to.name(), meta, self.owner)
                .map_err(|e| self.io("set attributes of", to, e))?;
        }
        self.entry_now(to, expect.digest)
    }

    fn set_meta(&mut self, path: &RelPath, expect: &Entry, source: &Entry) -> Result<Entry> {
        self.check(path, Some(expect))?;
        let dir = self
            .root
            .parent_fd(path)
            .map_err(|e| self.io("open parent of", path, e))?;
        Root::set_meta_at(&dir, path.name(), source, self.owner)
            .map_err(|e| self.io("set attributes of", path, e))?;
        self.entry_now(path, expect.digest)
    }
}
