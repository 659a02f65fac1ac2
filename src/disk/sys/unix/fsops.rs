//! Disk operations confined to one root directory ([`crate::disk::fsops`] is the
//! contract), for every Unix; the few calls that differ are the OS module's (`super::os`).
//!
//! Every path is resolved component by component with `openat(O_NOFOLLOW | O_DIRECTORY)`
//! (macOS has no `openat2`/`RESOLVE_BENEATH` either, so this walk is the one way for both)
//! from the root's descriptor, and the final name is acted on with `*at` calls that never
//! follow symlinks, so nothing here can reach outside the root — not through `..` (which a
//! [`RelPath`] cannot hold) and not through a symlink swapped in after the scan.

mod probe;

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps, CWD};

use super::mode_bits;
use crate::disk::sys::os as platform;
use platform::{stat_dev, stat_mode, stat_nlink, stat_rdev};

use crate::core::path::RelPath;
use crate::core::tree::{Entry, EntryKind, Meta, Stamp};

/// Prefix of our temporary files; the scanner never reports names that start with it
/// (it notes them as partial transfers to resume instead).
pub const TEMP_PREFIX: &[u8] = b".tandem-tmp.";
/// Prefix of a partial transfer while it serves as the basis for its own resumption.
pub const PART_PREFIX: &[u8] = b".tandem-part.";

/// An open directory, shared: the last one used is cached, and handing it out must not
/// cost a `dup` per file.
pub type DirFd = Arc<OwnedFd>;

/// Device, inode and birth time of a root directory, to notice when it is no longer the
/// same directory. The birth time catches a directory recreated at the same path that
/// reused the old inode number (common right after `rm -rf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Birth time in nanoseconds, where the filesystem records one.
    pub btime_ns: Option<i64>,
}

/// An open root directory; all operations are relative to it.
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
    // The root as the parent of top-level names.
    top: DirFd,
    id: RootId,
    // The last parent directory opened: most operations come in runs within one directory.
    last_parent: Mutex<Option<(RelPath, DirFd)>>,
}

/// The file type bits of a raw mode.
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// Nanoseconds since the epoch (the nanosecond field is 32-bit on 32-bit ARM, 64 elsewhere).
fn ts_ns(sec: i64, nsec: impl TryInto<i64>) -> i64 {
    sec.saturating_mul(1_000_000_000)
        .saturating_add(nsec.try_into().unwrap_or(0))
}

fn to_ts(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

/// Builds an [`Entry`] from `stat` (and the link target for symlinks).
pub fn entry_from_stat(st: &rustix::fs::Stat, target: Option<Vec<u8>>) -> Entry {
    let format = stat_mode(st) & S_IFMT;
    let kind = match format {
        S_IFREG => EntryKind::File,
        S_IFDIR => EntryKind::Dir,
        S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Special,
    };
    let mut e = Entry::of(
        Meta {
            size: if kind == EntryKind::File {
                st.st_size as u64
            } else {
                0
            },
            kind,
            mtime_ns: ts_ns(st.st_mtime, st.st_mtime_nsec),
            mode: stat_mode(st) & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            digest: None,
            extra: None,
        },
        Stamp {
            ino: st.st_ino,
            ctime_ns: ts_ns(st.st_ctime, st.st_ctime_nsec),
        },
    );
    match kind {
        EntryKind::Symlink => e.set_target(target.unwrap_or_default()),
        EntryKind::Special => e.set_special(format, stat_rdev(st)),
        EntryKind::File | EntryKind::Dir => {}
    }
    e
}

/// True if the entry on disk is still the one the plan expected: same kind, and for
/// non-directories the same size, mtime, inode and ctime. Directories only need to
/// still be directories: their own contents change as the plan runs.
pub fn still_expected(now: Option<&Entry>, expect: Option<&Entry>) -> bool {
    match (now, expect) {
        (None, None) => true,
        (Some(n), Some(e)) if n.is_dir() && e.is_dir() => true,
        (Some(n), Some(e)) => {
            n.kind == e.kind && n.size == e.size && n.mtime_ns == e.mtime_ns && n.stamp == e.stamp
        }
        _ => false,
    }
}

/// The next data region of `file` at or after `pos` (start, end), or `None` when only a
/// hole is left. Filesystems without `SEEK_DATA` report all data.
pub fn data_region(file: &File, pos: u64) -> io::Result<Option<(u64, u64)>> {
    use rustix::fs::SeekFrom;
    let start = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
        Ok(s) => s,
        Err(rustix::io::Errno::NXIO) => return Ok(None),
        Err(rustix::io::Errno::INVAL) => return Ok(Some((pos, u64::MAX))),
        Err(e) => return Err(e.into()),
    };
    let end = rustix::fs::seek(file, SeekFrom::Hole(start)).map_err(io::Error::from)?;
    Ok(Some((start, end)))
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// The name of the temporary file used while writing `name` (hashed if too long).
pub fn temp_name(name: &[u8]) -> Vec<u8> {
    prefixed(TEMP_PREFIX, name)
}

/// The name a partial transfer of `name` takes while it is the basis of the next try.
pub fn part_name(name: &[u8]) -> Vec<u8> {
    prefixed(PART_PREFIX, name)
}

fn prefixed(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    if name.len() + v.len() <= crate::core::path::MAX_NAME {
        v.extend_from_slice(name);
    } else {
        v.extend_from_slice(blake3::hash(name).to_hex().as_bytes());
    }
    v
}

/// True when `an` in `ad` and `bn` in `bd` are one file (two spellings of one name).
fn same_file_at(ad: &impl AsFd, an: &[u8], bd: &impl AsFd, bn: &[u8]) -> bool {
    let stat = |d: &dyn AsFd, n: &[u8]| rustix::fs::statat(d, os(n), AtFlags::SYMLINK_NOFOLLOW);
    matches!((stat(ad, an), stat(bd, bn)), (Ok(x), Ok(y)) if (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino))
}

impl Root {
    /// Opens a root directory (following a symlink given as the root itself).
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        let btime_ns = platform::birth_time_ns(&fd, &st).map(|(sec, nsec)| ts_ns(sec, nsec));
        let top = Arc::new(rustix::fs::openat(
            &fd,
            ".",
            platform::LOOKUP | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
        Ok(Root {
            path: path.to_path_buf(),
            fd,
            top,
            id: RootId {
                dev: stat_dev(&st),
                ino: st.st_ino,
                btime_ns,
            },
            last_parent: Mutex::new(None),
        })
    }

    /// The root as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Device and inode of the root.
    pub fn id(&self) -> RootId {
        self.id
    }

    /// The root's descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Opens the directory holding `path`, without following any symlink on the way.
    pub fn parent_fd(&self, path: &RelPath) -> io::Result<DirFd> {
        let Some(bytes) = path.parent_bytes() else {
            return Ok(self.top.clone());
        };
        let mut cache = self.last_parent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, fd)) = cache.as_ref() {
            // Compared as bytes: most calls hit, and a hit then allocates nothing.
            if p.as_bytes() == bytes {
                return Ok(fd.clone());
            }
        }
        let parent = path.parent().expect("a path with a parent");
        let mut fd: Option<OwnedFd> = None;
        for c in parent.components() {
            let flags = platform::LOOKUP | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let next = match &fd {
                Some(d) => rustix::fs::openat(d, os(c), flags, Mode::empty()),
                None => rustix::fs::openat(&self.fd, os(c), flags, Mode::empty()),
            };
            // A symlink where a directory should be: refuse, whatever it points to.
            fd = Some(next.map_err(|e| {
                if e == rustix::io::Errno::LOOP {
                    rustix::io::Errno::NOTDIR
                } else {
                    e
                }
            })?);
        }
        let fd = fd.expect("parent has at least one component");
        let fd = Arc::new(fd);
        *cache = Some((parent, fd.clone()));
        Ok(fd)
    }

    /// Forgets the cached parent directory (after directories were removed or renamed).
    pub fn forget_cached_parent(&self) {
        *self.last_parent.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The entry at `path` as it is now (`None` if absent), never following a final symlink.
    pub fn entry(&self, path: &RelPath) -> io::Result<Option<Entry>> {
        let dir = match self.parent_fd(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        entry_at(&dir, path.name())
    }

    /// Opens a regular file for reading, refusing symlinks. Without blocking: a FIFO put
    /// where a file was would otherwise hang the open until some writer came.
    pub fn open_read(&self, path: &RelPath) -> io::Result<File> {
        let dir = self.parent_fd(path)?;
        let fd = rustix::fs::openat(
            &dir,
            os(path.name()),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Opens the partial transfer of `path` (its leftover temp file) for reading.
    pub fn peek_partial(&self, path: &RelPath) -> io::Result<(File, u64, Vec<u8>)> {
        let dir = self.parent_fd(path)?;
        let tmp = temp_name(path.name());
        let (f, size) = open_regular(&dir, &tmp)?;
        Ok((f, size, tmp))
    }

    /// Moves the partial transfer of `path` aside (so a new temp file can be written) and
    /// opens it as a delta basis; returns the file, its size and its new name.
    pub fn open_partial(&self, path: &RelPath) -> io::Result<(File, u64, Vec<u8>)> {
        let dir = self.parent_fd(path)?;
        let part = part_name(path.name());
        rustix::fs::renameat(&dir, os(&temp_name(path.name())), &dir, os(&part))?;
        let (f, size) = open_regular(&dir, &part)?;
        Ok((f, size, part))
    }

    /// Creates (or truncates) the temporary file for `path` in its target directory, with
    /// the permission bits of `mode` (less the umask) and always read and write for its
    /// owner (a leftover temp file must stay writable): most files then need no change of
    /// mode afterwards, which would cost one more inode write each.
    pub fn create_temp(&self, path: &RelPath, mode: u32) -> io::Result<(DirFd, Vec<u8>, File)> {
        let dir = self.parent_fd(path)?;
        let (tmp, file) = Root::create_temp_in(&dir, path.name(), mode)?;
        Ok((dir, tmp, file))
    }

    /// [`Root::create_temp`] for the name `name` in the open directory `dir`.
    pub fn create_temp_in(dir: &DirFd, name: &[u8], mode: u32) -> io::Result<(Vec<u8>, File)> {
        let tmp = temp_name(name);
        let fd = rustix::fs::openat(
            dir,
            os(&tmp),
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode_bits(mode & 0o777 | 0o600),
        )?;
        Ok((tmp, File::from(fd)))
    }

    /// Renames `from` (a name in `dir`) over `path`'s name in the same directory, but only
    /// if `path` still holds what `expect` says; with `expect = None` the rename refuses to
    /// replace anything.
    pub fn commit_rename(
        dir: &DirFd,
        from: &[u8],
        path: &RelPath,
        expect: Option<&Entry>,
    ) -> Result<(), CommitError> {
        let check = || match entry_at(dir, path.name()) {
            Ok(now) if still_expected(now.as_ref(), expect) => Ok(()),
            Ok(_) => Err(CommitError::Changed),
            Err(e) => Err(CommitError::Io(e)),
        };
        let name = os(path.name());
        let r = if expect.is_none() {
            // A new file: RENAME_NOREPLACE itself refuses a target that appeared meanwhile.
            match rustix::fs::renameat_with(dir, os(from), dir, name, RenameFlags::NOREPLACE) {
                // Filesystems without it: check absence, then rename.
                Err(e) if platform::noreplace_unsupported(e) => {
                    check()?;
                    rustix::fs::renameat(dir, os(from), dir, name)
                }
                r => r,
            }
        } else {
            check()?;
            rustix::fs::renameat(dir, os(from), dir, name)
        };
        match r {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(CommitError::Changed),
            Err(e) => Err(CommitError::Io(e.into())),
        }
    }

    /// Removes a leftover name in `dir`, ignoring absence.
    pub fn remove_name(dir: &DirFd, name: &[u8]) {
        let _ = rustix::fs::unlinkat(dir, os(name), AtFlags::empty());
    }

    /// Creates a directory (mode applied separately, unaffected by the umask).
    pub fn mkdir(&self, path: &RelPath, mode: u32) -> io::Result<()> {
        let dir = self.parent_fd(path)?;
        rustix::fs::mkdirat(&dir, os(path.name()), mode_bits(0o700))?;
        let fd = rustix::fs::openat(
            &dir,
            os(path.name()),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::fs::fchmod(&fd, mode_bits(mode))?;
        Ok(())
    }

    /// Removes a file, symlink, special file or empty directory.
    pub fn remove(&self, path: &RelPath, is_dir: bool) -> io::Result<()> {
        let dir = self.parent_fd(path)?;
        let flags = if is_dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rustix::fs::unlinkat(&dir, os(path.name()), flags)?;
        if is_dir {
            self.forget_cached_parent();
        }
        Ok(())
    }

    /// Renames within the root, refusing to replace an existing target. A target that
    /// is the source under another spelling (a case-only rename on a root that ignores
    /// case) is renamed through a temporary name: renaming a file onto itself does nothing.
    pub fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        let a = self.parent_fd(from)?;
        let b = self.parent_fd(to)?;
        let (fa, fb) = (os(from.name()), os(to.name()));
        if from != to && same_file_at(&a, from.name(), &b, to.name()) {
            let tmp = temp_name(to.name());
            rustix::fs::renameat_with(&a, fa, &b, os(&tmp), RenameFlags::NOREPLACE)?;
            if let Err(e) = rustix::fs::renameat_with(&b, os(&tmp), &b, fb, RenameFlags::NOREPLACE)
            {
                // Put back as found: a temp name must not hold a user's file.
                let _ = rustix::fs::renameat(&b, os(&tmp), &a, fa);
                return Err(e.into());
            }
            self.forget_cached_parent();
            return Ok(());
        }
        match rustix::fs::renameat_with(&a, fa, &b, fb, RenameFlags::NOREPLACE) {
            Err(e) if platform::noreplace_unsupported(e) => {
                if entry_at(&b, to.name())?.is_some() {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
                rustix::fs::renameat(&a, fa, &b, fb)?
            }
            r => r?,
        }
        self.forget_cached_parent();
        Ok(())
    }

    /// Creates a symlink or special file at a temporary name in `path`'s directory and
    /// returns the directory and that name, ready for [`Root::commit_rename`].
    pub fn create_node_temp(&self, path: &RelPath, source: &Entry) -> io::Result<(DirFd, Vec<u8>)> {
        let dir = self.parent_fd(path)?;
        let tmp = temp_name(path.name());
        Root::remove_name(&dir, &tmp);
        match source.kind {
            EntryKind::Symlink => rustix::fs::symlinkat(os(source.target()), &dir, os(&tmp))?,
            EntryKind::Special => {
                let (format, rdev) = source.special();
                platform::make_node(&*dir, os(&tmp), format, source.mode, rdev)?;
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a symlink or special file",
                ))
            }
        }
        Ok((dir, tmp))
    }

    /// Applies mode, mtime and (with `owner`) ownership to the name `name` in `dir`.
    pub fn set_meta_at(dir: &DirFd, name: &[u8], src: &Entry, owner: bool) -> io::Result<()> {
        let n = os(name);
        let is_link = src.is_symlink();
        if owner {
            let uid = rustix::fs::Uid::from_raw(src.uid);
            let gid = rustix::fs::Gid::from_raw(src.gid);
            rustix::fs::chownat(dir, n, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        if !is_link {
            // chown may clear setuid bits, so the mode comes after it.
            rustix::fs::chmodat(dir, n, mode_bits(src.mode), AtFlags::empty())?;
        }
        Root::set_mtime_at(dir, name, src.mtime_ns)
    }

    /// Renames `from` to `to`, both names in `dir`.
    pub fn rename_in(dir: &DirFd, from: &[u8], to: &[u8]) -> io::Result<()> {
        rustix::fs::renameat(dir, os(from), dir, os(to))?;
        Ok(())
    }

    /// Makes `to` in `to_dir` another name of `from` in `from_dir` (never following a symlink).
    pub fn link_at(from_dir: &DirFd, from: &[u8], to_dir: &DirFd, to: &[u8]) -> io::Result<()> {
        rustix::fs::linkat(from_dir, os(from), to_dir, os(to), AtFlags::empty())?;
        Ok(())
    }

    /// Sets the mtime (and atime) of `name` in `dir`, never following a symlink.
    pub fn set_mtime_at(dir: &impl AsFd, name: &[u8], mtime_ns: i64) -> io::Result<()> {
        let t = to_ts(mtime_ns);
        let times = Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(dir, os(name), &times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// Applies `src`'s metadata to an open file before it is renamed into place, changing
    /// owner and mode only where they differ: each change rewrites the inode, and a new
    /// file made by the right user with the right mode needs only its times.
    pub fn set_meta_fd(fd: impl AsFd, src: &Entry, owner: bool) -> io::Result<()> {
        let st = rustix::fs::fstat(&fd)?;
        let chown = owner && (st.st_uid != src.uid || st.st_gid != src.gid);
        if chown {
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(src.uid)),
                Some(rustix::fs::Gid::from_raw(src.gid)),
            )?;
        }
        // A change of owner clears the set-id bits: the mode goes on after it.
        if chown || stat_mode(&st) & 0o7777 != src.mode {
            rustix::fs::fchmod(&fd, mode_bits(src.mode))?;
        }
        let t = to_ts(src.mtime_ns);
        rustix::fs::futimens(
            &fd,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
        )?;
        Ok(())
    }
}

/// Opens a regular file `name` in `dir` for reading (never through a symlink), with its size.
fn open_regular(dir: &DirFd, name: &[u8]) -> io::Result<(File, u64)> {
    let fd = rustix::fs::openat(
        dir,
        os(name),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if stat_mode(&st) & S_IFMT != S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    Ok((File::from(fd), st.st_size as u64))
}

/// The entry named `name` in `dir`, or `None`.
pub fn entry_at(dir: &impl AsFd, name: &[u8]) -> io::Result<Option<Entry>> {
    Ok(scan_entry_at(dir, name)?.map(|(e, _)| e))
}

/// `e` as it is, or, for a full disk, with what to do and the room left on the
/// filesystem that holds `on` (where the write went).
pub fn explain_full(e: io::Error, on: &impl AsFd) -> io::Error {
    if e.kind() != io::ErrorKind::StorageFull {
        return e;
    }
    let free = rustix::fs::fstatvfs(on)
        .map(|v| format!("{} bytes", v.f_bavail.saturating_mul(v.f_frsize)))
        .unwrap_or_else(|_| "no room".into());
    io::Error::new(
        io::ErrorKind::StorageFull,
        format!("{e}: {free} free there; the old version is kept — make room (or exclude what does not fit) and run again"),
    )
}

/// The entry of an open file, read from its descriptor (no path lookup).
pub fn entry_of_file(file: &impl AsFd) -> io::Result<Entry> {
    Ok(entry_from_stat(&rustix::fs::fstat(file)?, None))
}

/// Device and inode of a file with several names (hard links).
pub type LinkKey = (u64, u64);

/// [`entry_at`], plus the [`LinkKey`] of a regular file that has more than one name.
pub fn scan_entry_at(dir: &impl AsFd, name: &[u8]) -> io::Result<Option<(Entry, Option<LinkKey>)>> {
    let st = match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let target = if stat_mode(&st) & S_IFMT == S_IFLNK {
        Some(rustix::fs::readlinkat(dir, os(name), Vec::new())?.into_bytes())
    } else {
        None
    };
    let linked = (stat_mode(&st) & S_IFMT == S_IFREG && stat_nlink(&st) > 1)
        .then_some((stat_dev(&st), st.st_ino));
    Ok(Some((entry_from_stat(&st, target), linked)))
}

/// Why a rename into place did not happen.
#[derive(Debug)]
pub enum CommitError {
    /// The target is no longer what the plan expected.
    Changed,
    /// The rename failed.
    Io(io::Error),
}

/// Says why `path` cannot be opened as a root: missing, or not a directory.
pub fn describe_missing(path: &Path) -> String {
    match rustix::fs::statat(CWD, path, AtFlags::empty()) {
        Ok(_) => format!("'{}' is not a directory", path.display()),
        Err(_) => format!("'{}' does not exist", path.display()),
    }
}
