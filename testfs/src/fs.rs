//! The FUSE side: each request is one call into the [`Tree`] and its reply. Entries and
//! attributes are given with no time to live, so the kernel asks again for every lookup:
//! a name it cached in one spelling must not outlive a rename or unlink made under
//! another.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

use crate::tree::{Content, Dir, NewNode, Tree, R};

/// No caching in the kernel (see the module's description).
const TTL: Duration = Duration::ZERO;

/// The filesystem: one tree behind a lock (fuser calls with `&self`).
pub struct FoldFs {
    tree: Mutex<Tree>,
}

impl FoldFs {
    /// An empty filesystem whose root belongs to `uid`/`gid`.
    pub fn new(uid: u32, gid: u32) -> FoldFs {
        FoldFs {
            tree: Mutex::new(Tree::new(uid, gid)),
        }
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        // A panic in one request must not wedge the mount: the tree is still whole.
        self.tree.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a node and replies with its entry.
    fn make(&self, req: &Request, parent: INodeNo, name: &OsStr, new: NewNode, reply: ReplyEntry) {
        let new = NewNode {
            uid: req.uid(),
            gid: req.gid(),
            ..new
        };
        let mut t = self.tree();
        let r = t
            .create(parent.0, name.as_bytes(), new)
            .and_then(|ino| t.attr(ino));
        entry(reply, r);
    }
}

fn entry(reply: ReplyEntry, r: R<FileAttr>) {
    match r {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, r: R<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// Only `user.*` attributes are kept: `system.*` (POSIX ACLs) and the rest are not
/// supported, so a copy of an ACL fails as it does on a filesystem without them.
fn xattr_kept(name: &OsStr) -> R<()> {
    match name.as_bytes().starts_with(b"user.") {
        true => Ok(()),
        false => Err(Errno::EOPNOTSUPP),
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// Replies with `value` for a getxattr or listxattr of buffer size `size`.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

fn file_of(kind: FileType) -> NewNode {
    let content = match kind {
        FileType::RegularFile => Content::File(Vec::new()),
        _ => Content::Special,
    };
    NewNode {
        kind,
        perm: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        content,
    }
}

impl Filesystem for FoldFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let t = self.tree();
        entry(
            reply,
            t.lookup(parent.0, name.as_bytes()).and_then(|i| t.attr(i)),
        );
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut t = self.tree();
        let r = t.node_mut(ino.0).and_then(|n| {
            let now = SystemTime::now();
            if let Some(size) = size {
                let Content::File(data) = &mut n.content else {
                    return Err(Errno::EISDIR);
                };
                data.resize(size as usize, 0);
                n.mtime = now;
            }
            if let Some(mode) = mode {
                n.perm = (mode & 0o7777) as u16;
            }
            n.uid = uid.unwrap_or(n.uid);
            n.gid = gid.unwrap_or(n.gid);
            n.atime = atime.map_or(n.atime, time);
            n.mtime = mtime.map_or(n.mtime, time);
            n.ctime = now;
            Ok(())
        });
        match r.and_then(|()| t.attr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree().node(ino.0).map(|n| &n.content) {
            Ok(Content::Symlink(target)) => reply.data(target),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => FileType::RegularFile,
            libc::S_IFCHR => FileType::CharDevice,
            libc::S_IFBLK => FileType::BlockDevice,
            libc::S_IFIFO => FileType::NamedPipe,
            libc::S_IFSOCK => FileType::Socket,
            _ => return reply.error(Errno::EINVAL),
        };
        let new = NewNode {
            perm: (mode & !umask & 0o7777) as u16,
            rdev,
            ..file_of(kind)
        };
        self.make(req, parent, name, new, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let new = NewNode {
            kind: FileType::Directory,
            perm: (mode & !umask & 0o7777) as u16,
            // The parent is set when it is linked in.
            content: Content::Dir(Dir::new(0)),
            ..file_of(FileType::Directory)
        };
        self.make(req, parent, name, new, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.tree().remove(parent.0, name.as_bytes(), false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.tree().remove(parent.0, name.as_bytes(), true));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let new = NewNode {
            kind: FileType::Symlink,
            perm: 0o777,
            content: Content::Symlink(target.as_os_str().as_bytes().to_vec()),
            ..file_of(FileType::Symlink)
        };
        self.make(req, parent, link_name, new, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.tree().rename(
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            flags.bits(),
        );
        empty(reply, r);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut t = self.tree();
        let r = t
            .link(ino.0, newparent.0, newname.as_bytes())
            .and_then(|()| t.attr(ino.0));
        entry(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.tree().node_mut(ino.0) {
            Ok(n) => {
                n.open += 1;
                reply.opened(FileHandle(0), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.tree().node(ino.0).map(|n| &n.content) {
            Ok(Content::File(data)) => {
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut t = self.tree();
        let n = match t.node_mut(ino.0) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let Content::File(data) = &mut n.content else {
            return reply.error(Errno::EINVAL);
        };
        let end = offset as usize + bytes.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[offset as usize..end].copy_from_slice(bytes);
        let now = SystemTime::now();
        (n.mtime, n.ctime) = (now, now);
        reply.written(bytes.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.tree().release(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // In memory: everything written is already as durable as it gets.
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let t = self.tree();
        let dir = match t.dir(ino.0) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        let dots = [(1, ino.0, "."), (2, dir.parent, "..")];
        for (off, i, name) in dots.into_iter().filter(|d| d.0 > offset) {
            if reply.add(INodeNo(i), off, FileType::Directory, name) {
                return reply.ok();
            }
        }
        for (off, child) in dir.entries_after(offset.max(2)) {
            let name = OsStr::from_bytes(&child.name);
            if reply.add(INodeNo(child.ino), off, child.kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A fixed 16 GiB with half free: tandem only checks that there is room.
        reply.statfs(1 << 22, 1 << 21, 1 << 21, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mut t = self.tree();
        let r = xattr_kept(name)
            .and_then(|()| t.node_mut(ino.0))
            .and_then(|n| {
                let name = name.as_bytes();
                let exists = n.xattrs.contains_key(name);
                if flags & libc::XATTR_CREATE != 0 && exists {
                    return Err(Errno::EEXIST);
                }
                if flags & libc::XATTR_REPLACE != 0 && !exists {
                    return Err(Errno::NO_XATTR);
                }
                n.xattrs.insert(name.to_vec(), value.to_vec());
                n.ctime = SystemTime::now();
                Ok(())
            });
        empty(reply, r);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let t = self.tree();
        let r = xattr_kept(name).and_then(|()| t.node(ino.0));
        match r.map(|n| n.xattrs.get(name.as_bytes())) {
            Ok(Some(value)) => xattr_reply(reply, size, value),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.tree().node(ino.0) {
            Ok(n) => {
                let mut list = Vec::new();
                for name in n.xattrs.keys() {
                    list.extend_from_slice(name);
                    list.push(0);
                }
                xattr_reply(reply, size, &list);
            }
            Err(e) => reply.error(e),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut t = self.tree();
        let r = xattr_kept(name)
            .and_then(|()| t.node_mut(ino.0))
            .and_then(|n| {
                n.xattrs.remove(name.as_bytes()).ok_or(Errno::NO_XATTR)?;
                n.ctime = SystemTime::now();
                Ok(())
            });
        empty(reply, r);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions, the kernel checks modes itself.
        empty(reply, self.tree().node(ino.0).map(|_| ()));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut t = self.tree();
        // The kernel looked the name up first, so it is normally new; an entry under
        // another spelling is opened (or refused with O_EXCL), as on macOS.
        let ino = match t.lookup(parent.0, name.as_bytes()) {
            Ok(_) if flags & libc::O_EXCL != 0 => Err(Errno::EEXIST),
            Ok(ino) => {
                let truncate = flags & libc::O_TRUNC != 0;
                match t.node_mut(ino).map(|n| &mut n.content) {
                    Ok(Content::File(data)) if truncate => {
                        data.clear();
                        Ok(ino)
                    }
                    Ok(Content::Dir(_)) => Err(Errno::EISDIR),
                    Ok(_) => Ok(ino),
                    Err(e) => Err(e),
                }
            }
            Err(_) => {
                let new = NewNode {
                    perm: (mode & !umask & 0o7777) as u16,
                    uid: req.uid(),
                    gid: req.gid(),
                    ..file_of(FileType::RegularFile)
                };
                t.create(parent.0, name.as_bytes(), new)
            }
        };
        let r = ino.and_then(|ino| {
            t.node_mut(ino)?.open += 1;
            t.attr(ino)
        });
        match r {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}
