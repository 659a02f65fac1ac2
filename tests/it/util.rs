//! Temp trees, running the binary, and whole-tree snapshots.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Two roots and a state directory in one temp dir.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub a: PathBuf,
    pub b: PathBuf,
    pub state: PathBuf,
}

pub fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, state) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("state"),
    );
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    Fixture { tmp, a, b, state }
}

/// What a run printed and returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn output(o: Output) -> Run {
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The agent binary built beside the client (scripts/test.sh builds it first), or the one
/// `TANDEM_TEST_AGENT` names: scripts/test.sh runs the core suite again with the aarch64
/// agent, under qemu-user.
pub fn agent_path() -> PathBuf {
    match std::env::var_os("TANDEM_TEST_AGENT") {
        Some(agent) => PathBuf::from(agent),
        None => native_agent_path(),
    }
}

/// The agent built beside the client, for this machine: the one an SSH host here runs
/// (the agent checks it was built for the host's machine, and one for another is refused).
pub fn native_agent_path() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tandem")).with_file_name("tandem-agent")
}

impl Fixture {
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tandem"));
        c.env("FILESYNC", &self.state)
            .stdin(std::process::Stdio::null());
        c
    }

    /// The client with the agent under test, ready for sync arguments.
    pub fn sync_command(&self) -> Command {
        let mut c = self.command();
        c.arg("--agent-path").arg(agent_path());
        c
    }

    /// Runs `tandem -d a -r b -K <dir> <extra...>` with the agent under test.
    pub fn sync(&self, dir: &str, extra: &[&str]) -> Run {
        self.sync_with(self.sync_command(), dir, extra)
    }

    /// Runs `c -d a -r b -K <dir> <extra...>`.
    pub fn sync_with(&self, mut c: Command, dir: &str, extra: &[&str]) -> Run {
        c.arg("-d")
            .arg(&self.a)
            .arg("-r")
            .arg(&self.b)
            .arg("-K")
            .arg(dir)
            .args(extra);
        output(c.output().unwrap())
    }

    pub fn run(&self, args: &[&str]) -> Run {
        output(self.command().args(args).output().unwrap())
    }
}

pub fn write(path: impl AsRef<Path>, content: &str) {
    let path = path.as_ref();
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Sets a file's mtime (seconds), so conflicts resolved by age are deterministic.
/// Files `d/0` .. `d/{n-1}` in both roots, of one size, alike on both sides (content and
/// mtime): a first run can tell them equal only by reading them.
pub fn same_size_files(roots: [&Path; 2], n: usize) {
    for i in 0..n {
        for root in roots {
            let p = root.join(format!("d/{i}"));
            write(&p, &format!("same size {i:02}"));
            // Equal times on both sides: written a clock tick apart they would differ,
            // and a first run would call that a conflict.
            set_mtime(&p, 1_600_000_000);
        }
    }
}

pub fn set_mtime(path: impl AsRef<Path>, secs: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// What a directory entry is.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

/// Everything tandem promises to keep about one entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    pub size: u64,
    /// BLAKE3 of a regular file's bytes.
    pub content: Option<[u8; 32]>,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Device number of a device node.
    pub rdev: u64,
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since the epoch; for a directory, read after its contents.
    pub mtime: i128,
    /// The other names in the tree for this inode, sorted.
    pub links: Vec<Vec<u8>>,
    /// Bytes of disk a regular file occupies (holes are not allocated).
    pub allocated: u64,
    /// Every extended attribute, ACLs (`system.posix_acl_*`) included.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Entry {
    /// How this entry differs from `other`, one line per attribute; empty when alike.
    pub fn differences(&self, other: &Entry) -> Vec<String> {
        let mut d = Vec::new();
        let mut check = |what: &str, x: String, y: String| {
            if x != y {
                d.push(format!("{what}: {x} vs {y}"));
            }
        };
        check(
            "kind",
            format!("{:?}", self.kind),
            format!("{:?}", other.kind),
        );
        check("size", self.size.to_string(), other.size.to_string());
        check("content", hex(&self.content), hex(&other.content));
        check("symlink target", lossy(&self.target), lossy(&other.target));
        check(
            "mode",
            format!("{:o}", self.mode),
            format!("{:o}", other.mode),
        );
        check("rdev", self.rdev.to_string(), other.rdev.to_string());
        check("uid", self.uid.to_string(), other.uid.to_string());
        check("gid", self.gid.to_string(), other.gid.to_string());
        check("mtime ns", self.mtime.to_string(), other.mtime.to_string());
        let names = |l: &[Vec<u8>]| {
            format!(
                "{:?}",
                l.iter()
                    .map(|n| lossy(&Some(n.clone())))
                    .collect::<Vec<_>>()
            )
        };
        check("hard links", names(&self.links), names(&other.links));
        // Sparse or not, within a filesystem's rounding: a filled hole of a few blocks
        // is noise, a filled 1 MiB hole is not.
        let slack = (64u64 << 10).max(self.size.max(other.size) / 8);
        if self.allocated.abs_diff(other.allocated) > slack {
            check(
                "allocated bytes",
                self.allocated.to_string(),
                other.allocated.to_string(),
            );
        }
        let attrs = |x: &BTreeMap<Vec<u8>, Vec<u8>>| {
            format!(
                "{:?}",
                x.iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
                    .collect::<Vec<_>>()
            )
        };
        check("xattrs", attrs(&self.xattrs), attrs(&other.xattrs));
        d
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.differences(other).is_empty()
    }
}

fn hex(h: &Option<[u8; 32]>) -> String {
    h.map_or("-".into(), |h| {
        h.iter().take(8).map(|b| format!("{b:02x}")).collect()
    })
}

fn lossy(b: &Option<Vec<u8>>) -> String {
    b.as_ref()
        .map_or("-".into(), |b| String::from_utf8_lossy(b).into_owned())
}

/// A whole tree: relative path (the root itself is `.`) → entry.
pub type Tree = BTreeMap<Vec<u8>, Entry>;

/// Everything below `root`, the root included as `.`.
pub fn snapshot(root: &Path) -> Tree {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    let md = std::fs::symlink_metadata(root).unwrap();
    out.insert(b".".to_vec(), entry(root, &md));
    for names in inodes.values().filter(|n| n.len() > 1) {
        for n in names {
            let e = out.get_mut(n).unwrap();
            e.links = names.iter().filter(|m| *m != n).cloned().collect();
        }
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Tree, inodes: &mut BTreeMap<(u64, u64), Vec<Vec<u8>>>) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let mut md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            walk(root, &p, out, inodes);
            // Read after its contents: walking does not change it, syncing must not either.
            md = std::fs::symlink_metadata(&p).unwrap();
        } else if md.nlink() > 1 {
            inodes
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel.clone());
        }
        out.insert(rel, entry(&p, &md));
    }
}

fn entry(p: &Path, md: &std::fs::Metadata) -> Entry {
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() {
        Kind::CharDev
    } else {
        Kind::BlockDev
    };
    let file = kind == Kind::File;
    Entry {
        kind,
        size: if file || kind == Kind::Symlink {
            md.size()
        } else {
            0
        },
        content: file.then(|| *blake3::hash(&std::fs::read(p).unwrap()).as_bytes()),
        target: (kind == Kind::Symlink).then(|| {
            std::fs::read_link(p)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        }),
        mode: md.permissions().mode() & 0o7777,
        rdev: if matches!(kind, Kind::CharDev | Kind::BlockDev) {
            md.rdev()
        } else {
            0
        },
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        links: Vec::new(),
        allocated: if file { md.blocks() * 512 } else { 0 },
        xattrs: xattrs(p),
    }
}

/// Every extended attribute of `p` (not following a symlink).
pub fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut list = vec![0u8; 64 << 10];
    let n = match rustix::fs::llistxattr(p, &mut list[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => 0,
        Err(e) => panic!("listing xattrs of {}: {e}", p.display()),
    };
    let mut out = BTreeMap::new();
    for name in list[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 64 << 10];
        let len = rustix::fs::lgetxattr(p, os(name), &mut value[..])
            .unwrap_or_else(|e| panic!("reading xattr of {}: {e}", p.display()));
        value.truncate(len);
        out.insert(name.to_vec(), value);
    }
    out
}

/// What a comparison leaves out.
#[derive(Default, Clone)]
pub struct Except {
    /// Paths (and everything below them) not compared: conflicts left for the user.
    pub paths: Vec<&'static str>,
    /// Side files of `--preserve-acls metafile` are skipped, and xattrs not compared.
    pub metafile: bool,
    /// The roots themselves are not compared (bidi between roots that differ).
    pub root: bool,
    /// Hard-link groups are not compared (`--no-hard-links`).
    pub hard_links: bool,
    /// One tree is on a root that keeps no modes, owners, xattrs or nanosecond times
    /// (NTFS through ntfs-3g): those are not compared, times only to 100 ns.
    pub unkept_attributes: bool,
}

impl Except {
    /// Leaves out these paths (conflicts left for the user), and nothing else.
    pub fn at(paths: &[&'static str]) -> Except {
        Except {
            paths: paths.to_vec(),
            ..Except::default()
        }
    }

    fn skips(&self, path: &[u8]) -> bool {
        let p = String::from_utf8_lossy(path);
        (self.root && p == ".")
            || (self.metafile && (p == ".tandem-xattrs" || p.ends_with("/.tandem-xattrs")))
            || self
                .paths
                .iter()
                .any(|x| p == *x || p.starts_with(&format!("{x}/")))
    }
}

/// The first difference between two trees, named by path and attribute.
pub fn tree_difference(sa: &Tree, sb: &Tree, except: &Except) -> Option<String> {
    let keys: std::collections::BTreeSet<&Vec<u8>> = sa.keys().chain(sb.keys()).collect();
    for k in keys.into_iter().filter(|k| !except.skips(k)) {
        let name = String::from_utf8_lossy(k);
        match (sa.get(k), sb.get(k)) {
            (Some(_), None) => return Some(format!("{name}: only in the first tree")),
            (None, Some(_)) => return Some(format!("{name}: only in the second tree")),
            (Some(x), Some(y)) => {
                let mut d = x.differences(y);
                if except.metafile {
                    d.retain(|l| !l.starts_with("xattrs"));
                }
                if except.hard_links {
                    d.retain(|l| !l.starts_with("hard links"));
                }
                if except.unkept_attributes {
                    let unkept = ["mode", "uid", "gid", "xattrs", "allocated", "mtime"];
                    d.retain(|l| !unkept.iter().any(|u| l.starts_with(u)));
                    if x.kind != Kind::Dir && x.mtime / 100 != y.mtime / 100 {
                        d.push(format!("mtime ns (to 100 ns): {} vs {}", x.mtime, y.mtime));
                    }
                }
                if !d.is_empty() {
                    return Some(format!("{name}: {}", d.join("; ")));
                }
            }
            (None, None) => unreachable!(),
        }
    }
    None
}

/// Asserts two trees are the same in everything: entries, kinds, contents, modes, owners,
/// ns mtimes (directories and the roots included), symlink targets, hard-link groups,
/// sparse allocation, xattrs and ACLs; and that `rsync -aniHAXc --delete` agrees.
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    assert_same_tree_except(a, b, &Except::default());
}

/// [`assert_same_tree`], leaving out what `except` names.
#[track_caller]
pub fn assert_same_tree_except(a: &Path, b: &Path, except: &Except) {
    if let Some(d) = tree_difference(&snapshot(a), &snapshot(b), except) {
        panic!(
            "trees differ: {d}\n  first:  {}\n  second: {}",
            a.display(),
            b.display()
        );
    }
    let lines = rsync_differences(a, b, except);
    assert!(
        lines.is_empty(),
        "rsync -aniHAXc --delete sees differences:\n{}",
        lines.join("\n")
    );
}

/// What `rsync -aniHAXc --delete a/ b/` would change, one itemized line each, without
/// what `except` leaves out.
pub fn rsync_differences(a: &Path, b: &Path, except: &Except) -> Vec<String> {
    let mut src = a.as_os_str().to_owned();
    src.push("/");
    let mut dst = b.as_os_str().to_owned();
    dst.push("/");
    let mut c = Command::new("rsync");
    // Without modes, owners and times: content (-c) and kinds only.
    c.arg(if except.unkept_attributes {
        "-rlnic"
    } else {
        "-anic"
    })
    .arg("--delete");
    if !except.hard_links {
        c.arg("-H");
    }
    if !except.metafile && !except.unkept_attributes {
        c.arg("-AX");
    }
    if except.metafile {
        c.arg("--exclude=.tandem-xattrs");
    }
    for p in &except.paths {
        c.arg(format!("--exclude=/{p}"));
    }
    let o = c.arg(&src).arg(&dst).output().expect("rsync runs");
    assert!(
        o.status.success(),
        "rsync failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !(except.root && l.ends_with(" ./")))
        .map(str::to_owned)
        .collect()
}

/// Asserts a side is exactly as it was (a bidi run must not touch the side that changed).
#[track_caller]
pub fn assert_unchanged(root: &Path, before: &Tree) {
    if let Some(d) = tree_difference(before, &snapshot(root), &Except::default()) {
        panic!("{} changed: {d}", root.display());
    }
}

pub fn names(root: &Path) -> Vec<String> {
    snapshot(root)
        .keys()
        .filter(|k| *k != b".")
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

pub fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// Parses JSON lines, asserting every line is an object with an "event".
pub fn json_events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}"));
            assert!(v["event"].is_string(), "no event field: {l}");
            v
        })
        .collect()
}

/// Incompressible bytes from a seed (xorshift), for transfer tests.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
