//! Applying changes on a local endpoint: deletes, renames, links, directories, nodes,
//! metadata and dedup copies, each checked against what the plan expected.

use super::*;

impl LocalEndpoint {
    /// What this endpoint's scans record beyond the basics.
    pub(super) fn scan_options(&self) -> crate::disk::scan::ScanOptions {
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
        probed: Option<crate::state::known::Probed>,
        batch: usize,
        sink: crate::disk::scan::Sink<'_>,
    ) -> Result<Scan> {
        self.settle_writers();
        let filter = filter.build()?;
        let opts = crate::disk::scan::ScanOptions {
            skip_file_xattrs,
            ..self.scan_options()
        };
        let probe = self.probe(probed);
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
            names: probe.0,
            holds: probe.1,
        })
    }

    /// How the root treats names and what it keeps: `probed` while it is that root,
    /// else found by probing.
    pub(super) fn probe(
        &self,
        probed: Option<crate::state::known::Probed>,
    ) -> (crate::core::names::NameRules, crate::core::names::Holds) {
        match probed {
            Some(p) if p.root == self.root.id() => (p.names, p.holds),
            _ => self.root.probe_names(),
        }
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
    pub(super) fn check_same_file(
        &self,
        path: &RelPath,
        expect: Option<&Entry>,
    ) -> Result<Option<Entry>> {
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
    pub(super) fn link_into_place(
        &self,
        from: &RelPath,
        path: &RelPath,
        now: Option<&Entry>,
    ) -> Result<()> {
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
