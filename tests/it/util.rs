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

/// The agent binary built beside the client (scripts/test.sh builds it first).
pub fn agent_path() -> PathBuf {
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

    /// Runs `tandem -d a -r b -K <dir> <extra...>`.
    pub fn sync(&self, dir: &str, extra: &[&str]) -> Run {
        let mut c = self.command();
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

#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Node {
    File {
        content: Vec<u8>,
        mode: u32,
        mtime: i64,
    },
    Dir {
        mode: u32,
        mtime: i64,
    },
    Link {
        target: Vec<u8>,
        mtime: i64,
    },
    Other {
        mode: u32,
        mtime: i64,
    },
}

/// Everything below `root`: path → kind, contents, mode, mtime (ns).
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, Node>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let mode = md.permissions().mode() & 0o7777;
        let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
        let node = if md.file_type().is_symlink() {
            Node::Link {
                target: std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
                mtime,
            }
        } else if md.is_dir() {
            walk(root, &p, out);
            // Read after its contents: walking does not change it, syncing must not either.
            let md = std::fs::symlink_metadata(&p).unwrap();
            Node::Dir {
                mode,
                mtime: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            }
        } else if md.is_file() {
            Node::File {
                content: std::fs::read(&p).unwrap(),
                mode,
                mtime,
            }
        } else {
            Node::Other {
                mode: md.mode(),
                mtime,
            }
        };
        out.insert(rel, node);
    }
}

/// Asserts two trees hold the same entries with the same contents, modes and mtimes (of
/// every kind: files, directories, symlinks, special files).
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    let names = |s: &BTreeMap<Vec<u8>, Node>| {
        s.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&sa), names(&sb), "different entries");
    assert_eq!(sa, sb, "same entries, different contents or attributes");
}

pub fn names(root: &Path) -> Vec<String> {
    snapshot(root)
        .keys()
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
