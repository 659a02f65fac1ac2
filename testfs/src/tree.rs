//! The in-memory tree: inodes, and directories whose entries are found by a folded key
//! ([`names::key`]) and keep the spelling they were created with ([`names::stored`]).
//! Every operation that changes names is here, so the FUSE glue only replies.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo};

use crate::names;

/// The inode number of the root directory (FUSE's).
pub const ROOT: u64 = 1;

/// What an operation fails with: the errno the caller gets.
pub type R<T> = Result<T, Errno>;

/// `EILSEQ`, which macOS gives for a name that is not UTF-8.
fn eilseq() -> Errno {
    Errno::from_i32(libc::EILSEQ)
}

/// One name in a directory.
#[derive(Clone, Debug)]
pub struct Child {
    /// The spelling listed: NFD, case as created (or as last renamed to).
    pub name: Vec<u8>,
    /// The inode the name is of.
    pub ino: u64,
    /// Its kind, for listings and directory link counts.
    pub kind: FileType,
}

/// A directory's entries, by a cookie (a stable readdir offset: entries removed while a
/// listing is under way do not make it skip others) and by folded key.
#[derive(Debug)]
pub struct Dir {
    /// The directory holding this one (the root's is itself), for `..`.
    pub parent: u64,
    by_cookie: BTreeMap<u64, Child>,
    by_key: HashMap<Vec<u8>, u64>,
    next_cookie: u64,
}

impl Dir {
    /// An empty directory inside `parent`.
    pub fn new(parent: u64) -> Dir {
        Dir {
            parent,
            by_cookie: BTreeMap::new(),
            by_key: HashMap::new(),
            // 1 and 2 are the offsets after `.` and `..`.
            next_cookie: 3,
        }
    }

    /// The entry whose name folds to `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Child> {
        self.by_key.get(key).map(|c| &self.by_cookie[c])
    }

    fn insert(&mut self, key: Vec<u8>, child: Child) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        self.by_cookie.insert(cookie, child);
        self.by_key.insert(key, cookie);
    }

    fn remove(&mut self, key: &[u8]) -> Option<Child> {
        let cookie = self.by_key.remove(key)?;
        self.by_cookie.remove(&cookie)
    }

    /// The entry under `key`, changeable in place (a respelling keeps its place).
    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Child> {
        let cookie = self.by_key.get(key)?;
        self.by_cookie.get_mut(cookie)
    }

    /// The entries after readdir offset `offset`, each with its own offset.
    pub fn entries_after(&self, offset: u64) -> impl Iterator<Item = (u64, &Child)> {
        self.by_cookie
            .range(offset + 1..)
            .map(|(cookie, child)| (*cookie, child))
    }

    fn is_empty(&self) -> bool {
        self.by_cookie.is_empty()
    }

    fn subdirs(&self) -> u32 {
        let dirs = self.by_cookie.values();
        dirs.filter(|c| c.kind == FileType::Directory).count() as u32
    }
}

/// What a node holds besides its attributes.
#[derive(Debug)]
pub enum Content {
    /// A regular file's bytes.
    File(Vec<u8>),
    /// A directory's entries.
    Dir(Dir),
    /// A symlink's target.
    Symlink(Vec<u8>),
    /// A device node, FIFO or socket: attributes only.
    Special,
}

/// One inode.
#[derive(Debug)]
pub struct Node {
    /// Its kind.
    pub kind: FileType,
    /// Permission bits with setuid, setgid and sticky.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u32,
    /// Names of a non-directory (a directory's count is computed).
    pub nlink: u32,
    /// Access time.
    pub atime: SystemTime,
    /// Modification time.
    pub mtime: SystemTime,
    /// Status change time.
    pub ctime: SystemTime,
    /// Creation time.
    pub crtime: SystemTime,
    /// `user.*` extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Bytes, entries or target.
    pub content: Content,
    /// Open handles: an unlinked file lives on until the last is released.
    pub open: u32,
}

/// A new node's owner, mode and kind.
pub struct NewNode {
    /// Kind.
    pub kind: FileType,
    /// Permission bits (the umask already applied).
    pub perm: u16,
    /// The caller's uid.
    pub uid: u32,
    /// The caller's gid.
    pub gid: u32,
    /// Device number (device nodes).
    pub rdev: u32,
    /// Bytes, entries (give an empty [`Content::Dir`]: its parent is set here) or target.
    pub content: Content,
}

/// The whole filesystem.
#[derive(Debug)]
pub struct Tree {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
}

impl Tree {
    /// An empty filesystem whose root (mode 0755) belongs to `uid`/`gid`.
    pub fn new(uid: u32, gid: u32) -> Tree {
        let mut t = Tree {
            nodes: HashMap::new(),
            next_ino: ROOT + 1,
        };
        let root = NewNode {
            kind: FileType::Directory,
            perm: 0o755,
            uid,
            gid,
            rdev: 0,
            content: Content::Dir(Dir::new(ROOT)),
        };
        t.nodes.insert(ROOT, node(root));
        t
    }

    /// The node `ino` (`ENOENT` once it is gone).
    pub fn node(&self, ino: u64) -> R<&Node> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    /// The node `ino`, to change.
    pub fn node_mut(&mut self, ino: u64) -> R<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    /// The directory `ino` (`ENOTDIR` if it is none).
    pub fn dir(&self, ino: u64) -> R<&Dir> {
        match &self.node(ino)?.content {
            Content::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> R<&mut Dir> {
        match &mut self.node_mut(ino)?.content {
            Content::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// The attributes of `ino`, as the kernel is told them.
    pub fn attr(&self, ino: u64) -> R<FileAttr> {
        let n = self.node(ino)?;
        let (size, nlink) = match &n.content {
            Content::File(data) => (data.len() as u64, n.nlink),
            Content::Symlink(target) => (target.len() as u64, n.nlink),
            Content::Dir(d) => (0, 2 + d.subdirs()),
            Content::Special => (0, n.nlink),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            crtime: n.crtime,
            kind: n.kind,
            perm: n.perm,
            nlink,
            uid: n.uid,
            gid: n.gid,
            rdev: n.rdev,
            blksize: 4096,
            flags: 0,
        })
    }

    /// The inode `name` in `parent` is, under any case and either normal form.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> R<u64> {
        // A name that is not UTF-8 cannot have been created: nothing is there.
        let key = names::key(name).ok_or(Errno::ENOENT)?;
        let child = self.dir(parent)?.get(&key).ok_or(Errno::ENOENT)?;
        Ok(child.ino)
    }

    /// Creates `name` in `parent`: `EEXIST` if it exists under any spelling. New nodes
    /// in a setgid directory take its group, and new directories its setgid bit, as on
    /// Linux and macOS.
    pub fn create(&mut self, parent: u64, name: &[u8], mut new: NewNode) -> R<u64> {
        let (key, stored) = spellings(name)?;
        let p = self.node(parent)?;
        if p.perm & 0o2000 != 0 {
            new.gid = p.gid;
            if new.kind == FileType::Directory {
                new.perm |= 0o2000;
            }
        }
        if self.dir(parent)?.get(&key).is_some() {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        if let Content::Dir(d) = &mut new.content {
            d.parent = parent;
        }
        let kind = new.kind;
        self.nodes.insert(ino, node(new));
        let child = Child {
            name: stored,
            ino,
            kind,
        };
        self.dir_mut(parent)?.insert(key, child);
        self.touch(parent);
        Ok(ino)
    }

    /// A hard link `name` in `newparent` to the non-directory `ino`.
    pub fn link(&mut self, ino: u64, newparent: u64, name: &[u8]) -> R<()> {
        let (key, stored) = spellings(name)?;
        let kind = self.node(ino)?.kind;
        if kind == FileType::Directory {
            return Err(Errno::EPERM);
        }
        if self.dir(newparent)?.get(&key).is_some() {
            return Err(Errno::EEXIST);
        }
        let child = Child {
            name: stored,
            ino,
            kind,
        };
        self.dir_mut(newparent)?.insert(key, child);
        let n = self.node_mut(ino)?;
        n.nlink += 1;
        n.ctime = SystemTime::now();
        self.touch(newparent);
        Ok(())
    }

    /// Removes the name `name` from `parent`: a non-directory (`unlink`) or an empty
    /// directory (`rmdir`, `dir`).
    pub fn remove(&mut self, parent: u64, name: &[u8], dir: bool) -> R<()> {
        let key = names::key(name).ok_or(Errno::ENOENT)?;
        let child = self.dir(parent)?.get(&key).ok_or(Errno::ENOENT)?;
        let is_dir = child.kind == FileType::Directory;
        match (dir, is_dir) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if !self.dir(child.ino)?.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let child = self.dir_mut(parent)?.remove(&key).ok_or(Errno::ENOENT)?;
        self.drop_link(child.ino);
        self.touch(parent);
        Ok(())
    }

    /// `rename(2)` with its flags (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`). A target that
    /// is the source under another spelling is not another entry: the source is
    /// respelled, as macOS does (`Notes.txt` → `notes.txt` changes the listing).
    pub fn rename(
        &mut self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: u32,
    ) -> R<()> {
        let from = names::key(name).ok_or(Errno::ENOENT)?;
        let (to, stored) = spellings(newname)?;
        let src = self.dir(parent)?.get(&from).cloned().ok_or(Errno::ENOENT)?;
        let dst = self.dir(newparent)?.get(&to).cloned();
        let itself = parent == newparent && from == to;
        let now = SystemTime::now();
        if flags & libc::RENAME_EXCHANGE != 0 {
            let dst = dst.ok_or(Errno::ENOENT)?;
            if itself {
                return Ok(());
            }
            self.inside(newparent, &src)?;
            self.inside(parent, &dst)?;
            // The names stay where they are; the inodes change places.
            let (a, b) = (src.clone(), dst.clone());
            let slot = self.dir_mut(parent)?.get_mut(&from).ok_or(Errno::ENOENT)?;
            (slot.ino, slot.kind) = (b.ino, b.kind);
            let slot = self.dir_mut(newparent)?.get_mut(&to).ok_or(Errno::ENOENT)?;
            (slot.ino, slot.kind) = (a.ino, a.kind);
            self.reparent(a.ino, newparent);
            self.reparent(b.ino, parent);
            for ino in [a.ino, b.ino] {
                self.node_mut(ino)?.ctime = now;
            }
            self.touch(parent);
            self.touch(newparent);
            return Ok(());
        }
        if let Some(dst) = &dst {
            if itself {
                let slot = self.dir_mut(parent)?.get_mut(&from).ok_or(Errno::ENOENT)?;
                slot.name = stored;
                self.node_mut(src.ino)?.ctime = now;
                self.touch(parent);
                return Ok(());
            }
            if dst.ino == src.ino {
                // Two hard links of one file: POSIX says rename does nothing.
                return Ok(());
            }
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(Errno::EEXIST);
            }
            let (src_dir, dst_dir) = (
                src.kind == FileType::Directory,
                dst.kind == FileType::Directory,
            );
            match (src_dir, dst_dir) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !self.dir(dst.ino)?.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        self.inside(newparent, &src)?;
        if let Some(dst) = dst {
            self.dir_mut(newparent)?.remove(&to);
            self.drop_link(dst.ino);
        }
        let child = self.dir_mut(parent)?.remove(&from).ok_or(Errno::ENOENT)?;
        let child = Child {
            name: stored,
            ..child
        };
        self.dir_mut(newparent)?.insert(to, child);
        self.reparent(src.ino, newparent);
        self.node_mut(src.ino)?.ctime = now;
        self.touch(parent);
        self.touch(newparent);
        Ok(())
    }

    /// A handle on `ino` was closed: an unlinked file goes with its last one.
    pub fn release(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open = n.open.saturating_sub(1);
            if n.open == 0 && n.nlink == 0 {
                self.nodes.remove(&ino);
            }
        }
    }

    /// `EINVAL` if moving `child` into `dir` would put a directory inside itself.
    fn inside(&self, dir: u64, child: &Child) -> R<()> {
        if child.kind != FileType::Directory {
            return Ok(());
        }
        let mut at = dir;
        loop {
            if at == child.ino {
                return Err(Errno::EINVAL);
            }
            if at == ROOT {
                return Ok(());
            }
            at = self.dir(at)?.parent;
        }
    }

    fn reparent(&mut self, ino: u64, parent: u64) {
        if let Ok(d) = self.dir_mut(ino) {
            d.parent = parent;
        }
    }

    /// One name of `ino` is gone: a directory goes at once (it was empty), a file when
    /// its last name and its last handle are gone.
    fn drop_link(&mut self, ino: u64) {
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        n.nlink = n.nlink.saturating_sub(1);
        n.ctime = SystemTime::now();
        if n.kind == FileType::Directory || (n.nlink == 0 && n.open == 0) {
            self.nodes.remove(&ino);
        }
    }

    /// A directory's entries changed: its mtime and ctime are now.
    fn touch(&mut self, dir: u64) {
        if let Some(n) = self.nodes.get_mut(&dir) {
            let now = SystemTime::now();
            (n.mtime, n.ctime) = (now, now);
        }
    }
}

/// The key and the stored spelling of a name to create: `EILSEQ` if it is not UTF-8,
/// `ENAMETOOLONG` past 255 bytes (HFS+ counts UTF-16 units, APFS bytes: bytes are
/// stricter).
fn spellings(name: &[u8]) -> R<(Vec<u8>, Vec<u8>)> {
    let stored = names::stored(name).ok_or_else(eilseq)?;
    if stored.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok((names::key(name).ok_or_else(eilseq)?, stored))
}

fn node(new: NewNode) -> Node {
    let now = SystemTime::now();
    Node {
        kind: new.kind,
        perm: new.perm,
        uid: new.uid,
        gid: new.gid,
        rdev: new.rdev,
        nlink: 1,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        xattrs: BTreeMap::new(),
        content: new.content,
        open: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(t: &mut Tree, parent: u64, name: &str) -> R<u64> {
        let new = NewNode {
            kind: FileType::RegularFile,
            perm: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            content: Content::File(Vec::new()),
        };
        t.create(parent, name.as_bytes(), new)
    }

    fn listing(t: &Tree, dir: u64) -> Vec<String> {
        let d = t.dir(dir).unwrap();
        let names = d.entries_after(0).map(|(_, c)| c.name.clone());
        names.map(|n| String::from_utf8(n).unwrap()).collect()
    }

    #[test]
    fn one_entry_under_every_spelling() {
        let mut t = Tree::new(0, 0);
        let ino = file(&mut t, ROOT, "Caf\u{e9}").unwrap();
        assert_eq!(listing(&t, ROOT), ["Cafe\u{301}"]);
        assert_eq!(t.lookup(ROOT, "CAFE\u{301}".as_bytes()), Ok(ino));
        assert_eq!(file(&mut t, ROOT, "caf\u{e9}"), Err(Errno::EEXIST));
    }

    #[test]
    fn a_rename_onto_itself_respells_and_noreplace_refuses_others() {
        let mut t = Tree::new(0, 0);
        let ino = file(&mut t, ROOT, "Notes.txt").unwrap();
        file(&mut t, ROOT, "other").unwrap();
        let noreplace = libc::RENAME_NOREPLACE;
        t.rename(ROOT, b"Notes.txt", ROOT, b"notes.txt", noreplace)
            .unwrap();
        assert_eq!(listing(&t, ROOT), ["notes.txt", "other"]);
        assert_eq!(t.lookup(ROOT, b"NOTES.TXT"), Ok(ino));
        let r = t.rename(ROOT, b"notes.txt", ROOT, b"OTHER", noreplace);
        assert_eq!(r, Err(Errno::EEXIST));
        t.rename(ROOT, b"notes.txt", ROOT, b"OTHER", libc::RENAME_EXCHANGE)
            .unwrap();
        assert_eq!(t.lookup(ROOT, b"other"), Ok(ino));
        t.rename(ROOT, b"other", ROOT, b"Notes.txt", 0).unwrap();
        assert_eq!(listing(&t, ROOT), ["Notes.txt"]);
    }
}
