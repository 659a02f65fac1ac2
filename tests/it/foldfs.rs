//! Roots that fold names as macOS does: `tandem-foldfs` (testfs/), an in-memory FUSE
//! filesystem that ignores case and Unicode normal form, keeps the case a name was
//! created with, and stores and lists names in NFD (as HFS+ does). Unlike ntfs-3g
//! (casefold.rs) it keeps modes, owners, xattrs and nanosecond times, so whole trees are
//! compared, and a name comes back from it in another form than it was written in.
//!
//! Needs root, /dev/fuse and the `tandem-foldfs` binary built beside `tandem`
//! (`cargo build --workspace --bins`, as scripts/test.sh does): without them these
//! tests fail, saying so.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use unicode_normalization::UnicodeNormalization;

use crate::casefold::{only_conflicts, NFC, NFD};
use crate::util::*;

/// A name with no twin, written in NFC: the filesystem hands it back in NFD.
const RESUME_NFC: &str = "r\u{e9}sum\u{e9}.txt";

/// A `tandem-foldfs` mounted on a temp dir; unmounted (and waited for) when dropped.
struct FoldMount {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
    child: Child,
}

impl FoldMount {
    fn new() -> FoldMount {
        let bin = Path::new(env!("CARGO_BIN_EXE_tandem")).with_file_name("tandem-foldfs");
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build -p tandem-foldfs` \
             (scripts/test.sh builds every binary of the workspace)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut child = Command::new(&bin)
            .arg(&mnt)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        // Live once the mount point is another filesystem than the dir holding it.
        let outer = std::fs::metadata(dir.path()).unwrap().dev();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::fs::metadata(&mnt).is_ok_and(|m| m.dev() != outer) {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let o = child.wait_with_output().unwrap();
                panic!(
                    "tandem-foldfs exited ({status}) before mounting: {}; \
                     it needs /dev/fuse and root (or fusermount3)",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            assert!(Instant::now() < deadline, "tandem-foldfs did not mount");
            std::thread::yield_now();
        }
        FoldMount {
            _dir: dir,
            mnt,
            child,
        }
    }
}

impl Drop for FoldMount {
    fn drop(&mut self) {
        // SIGTERM: the filesystem unmounts itself and exits.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A fixture whose remote root is a fresh folding filesystem.
fn on_foldfs() -> (Fixture, FoldMount) {
    let mount = FoldMount::new();
    let mut f = fixture();
    f.b = mount.mnt.clone();
    (f, mount)
}

/// The names directly in `dir`, as listed, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Asserts `a` and the folding root `b` hold the same tree in everything (modes, owners,
/// ns times, xattrs, hard links, the roots too), with `a`'s names taken as `b` can hold
/// them, in NFD, and `skip` (conflicts left for the user) left out.
#[track_caller]
fn assert_same_as_held(a: &Path, b: &Path, skip: &[&'static str]) {
    let nfd = |t: Tree| -> Tree {
        t.into_iter()
            .map(|(k, e)| {
                (
                    String::from_utf8(k)
                        .unwrap()
                        .nfd()
                        .collect::<String>()
                        .into_bytes(),
                    e,
                )
            })
            .collect()
    };
    let except = Except::at(skip);
    if let Some(d) = tree_difference(&nfd(snapshot(a)), &snapshot(b), &except) {
        panic!(
            "trees differ: {d}\n  first:  {}\n  second: {}",
            a.display(),
            b.display()
        );
    }
    // rsync compares by bytes: told to leave alone, on `b`, the NFD spellings of `a`'s
    // names in another form (it looks those names up in `b`, which finds them).
    let mut rsync = except.clone();
    for k in snapshot(a).into_keys() {
        let k = String::from_utf8(k).unwrap();
        let held: String = k.nfd().collect();
        if held != k {
            rsync.paths.push(Box::leak(held.into_boxed_str()));
        }
    }
    let lines = rsync_differences(a, b, &rsync);
    assert!(
        lines.is_empty(),
        "rsync sees differences:\n{}",
        lines.join("\n")
    );
}

/// Asserts the run named the two colliding names in one conflict (as on any folding
/// root), saying the root ignores case and form (what its probe found).
#[track_caller]
fn names_collision(r: &Run, a: &str, b: &str) {
    crate::casefold::names_collision(r, a, b);
    assert!(
        r.lines()
            .iter()
            .any(|l| l.contains("CONFLICT") && l.contains("ignores case and Unicode normal form")),
        "the conflict does not say why:\n{r:?}"
    );
}

/// Asserts the root lists `name` as written (case kept).
#[track_caller]
fn assert_listed(root: &Path, name: &str, r: &Run) {
    let names = listing(root);
    assert!(names.iter().any(|n| n == name), "{names:?}\n{r:?}");
}

/// Asserts a run changed nothing and found nothing to report.
#[track_caller]
fn quiet(r: &Run) {
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("SYNCHRONIZED"), "{r:?}");
    assert!(
        !r.stdout.contains("cannot keep"),
        "the probe found an attribute not kept: {r:?}"
    );
}

/// The local tree the tests start from: two names that are one by case, two by form, a
/// name the filesystem will list in NFD, and names that are unique there.
fn source_tree(root: &Path) {
    crate::casefold::source_tree(root);
    write(root.join(RESUME_NFC), "cv");
}

#[test]
fn foldfs_ignores_case_and_form_and_keeps_the_case_written() {
    let m = FoldMount::new();
    write(m.mnt.join("Caf\u{e9}.txt"), "x");
    assert_eq!(
        listing(&m.mnt),
        ["Cafe\u{301}.txt"],
        "stored in NFD, case kept"
    );
    let ino = std::fs::metadata(m.mnt.join("Caf\u{e9}.txt"))
        .unwrap()
        .ino();
    for other in ["CAFE\u{301}.TXT", "caf\u{e9}.txt"] {
        let md = std::fs::metadata(m.mnt.join(other)).unwrap();
        assert_eq!(md.ino(), ino, "{other} is the same entry");
    }
    let again = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(m.mnt.join("CAF\u{c9}.txt"));
    assert_eq!(again.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    // A case-only rename: Linux itself does nothing when both names are one inode, so
    // it goes through another name; the listing then has the new case.
    std::fs::rename(m.mnt.join("Caf\u{e9}.txt"), m.mnt.join("tmp")).unwrap();
    std::fs::rename(m.mnt.join("tmp"), m.mnt.join("cAF\u{e9}.txt")).unwrap();
    assert_eq!(listing(&m.mnt), ["cAFe\u{301}.txt"]);
    // It keeps what tandem keeps: modes, owners, ns times, user xattrs, hard links.
    let p = m.mnt.join("cafe\u{301}.txt");
    // Owner first: a chown clears setuid, as on any Linux filesystem.
    std::os::unix::fs::lchown(&p, Some(4242), Some(4343)).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o4751)).unwrap();
    let t = std::time::UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(t)
        .unwrap();
    rustix::fs::setxattr(&p, "user.k", b"v", rustix::fs::XattrFlags::empty()).unwrap();
    std::fs::hard_link(&p, m.mnt.join("Link")).unwrap();
    let md = std::fs::metadata(m.mnt.join("LINK")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o4751);
    assert_eq!((md.uid(), md.gid(), md.nlink()), (4242, 4343, 2));
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 123_456_789));
    assert_eq!(
        xattrs(&p).get(&b"user.k"[..]).map(Vec::as_slice),
        Some(&b"v"[..])
    );
    // POSIX ACLs are not kept, as on a filesystem without them.
    let acl = rustix::fs::setxattr(
        &p,
        "system.posix_acl_access",
        b"",
        rustix::fs::XattrFlags::empty(),
    );
    assert!(acl.is_err());
}

#[test]
fn push_onto_a_folding_root_keeps_both_names_and_carries_a_case_only_rename() {
    let (f, _mount) = on_foldfs();
    source_tree(&f.a);
    let before = snapshot(&f.a);
    let r = f.sync("push", &[]);
    names_collision(&r, "A.txt", "a.txt");
    names_collision(&r, NFD, NFC);
    assert_eq!(r.code, 2, "{r:?}");
    assert_unchanged(&f.a, &before);
    let collide = ["a.txt", "A.txt", NFC, NFD, "."];
    assert_same_as_held(&f.a, &f.b, &collide);
    assert!(
        !f.b.join("a.txt").exists(),
        "neither colliding name is written"
    );
    assert!(!f.b.join(NFC).exists(), "neither colliding name is written");
    // Again: the same conflicts, and the name listed in NFD is the entry written in NFC.
    let r = f.sync("push", &[]);
    names_collision(&r, "A.txt", "a.txt");
    names_collision(&r, NFD, NFC);
    only_conflicts(&r);
    // A case-only rename on the source: the replica's listing follows.
    std::fs::rename(f.a.join("notes.txt"), f.a.join("Notes.txt")).unwrap();
    let r = f.sync("push", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_listed(&f.b, "Notes.txt", &r);
    assert_same_as_held(&f.a, &f.b, &collide);
    only_conflicts(&f.sync("push", &[]));
    // Resolved on the source: the names left are written, and all is quiet.
    std::fs::remove_file(f.a.join("A.txt")).unwrap();
    std::fs::remove_file(f.a.join(NFD)).unwrap();
    let r = f.sync("push", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_as_held(&f.a, &f.b, &[]);
    quiet(&f.sync("push", &[]));
}

#[test]
fn pull_from_a_folding_root_is_a_replica_and_then_quiet() {
    let (f, _mount) = on_foldfs();
    write(f.b.join("Report.TXT"), "report");
    write(f.b.join(RESUME_NFC), "cv");
    write(f.b.join("Docs/Q.txt"), "q");
    std::fs::hard_link(f.b.join("Docs/Q.txt"), f.b.join("Docs/Link")).unwrap();
    std::os::unix::fs::symlink("Q.txt", f.b.join("Docs/S")).unwrap();
    std::os::unix::fs::lchown(f.b.join("Report.TXT"), Some(4242), Some(4343)).unwrap();
    let before = snapshot(&f.b);
    let r = f.sync("pull", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_unchanged(&f.b, &before);
    // What it listed (NFD) is what the replica has.
    assert_same_tree(&f.b, &f.a);
    quiet(&f.sync("pull", &[]));
    // A case-only rename on the folding side, edited too: the replica follows, once.
    std::fs::rename(f.b.join("Report.TXT"), f.b.join("tmp")).unwrap();
    std::fs::rename(f.b.join("tmp"), f.b.join("REPORT.txt")).unwrap();
    write(f.b.join("report.txt"), "report, edited");
    let r = f.sync("pull", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.b, &f.a);
    assert!(f.a.join("REPORT.txt").exists(), "{r:?}");
    quiet(&f.sync("pull", &[]));
}

#[test]
fn bidi_with_a_folding_root_loses_nothing_and_carries_case_only_renames_both_ways() {
    let (f, _mount) = on_foldfs();
    source_tree(&f.a);
    let r = f.sync("bidi", &[]);
    names_collision(&r, "A.txt", "a.txt");
    names_collision(&r, NFD, NFC);
    assert_eq!(r.code, 2, "{r:?}");
    // Neither colliding name was deleted, neither written over the other.
    assert_eq!(read(f.a.join("a.txt")), "lower");
    assert_eq!(read(f.a.join("A.txt")), "upper");
    assert_eq!(read(f.a.join(NFC)), "composed");
    assert_eq!(read(f.a.join(NFD)), "decomposed");
    let collide = ["a.txt", "A.txt", NFC, NFD];
    assert_same_as_held(&f.a, &f.b, &collide);
    let (la, lb) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("bidi", &[]);
    only_conflicts(&r);
    assert_unchanged(&f.a, &la);
    assert_unchanged(&f.b, &lb);
    // A case-only rename on the case-sensitive side: carried to the folding side.
    std::fs::rename(f.a.join("notes.txt"), f.a.join("Notes.txt")).unwrap();
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_listed(&f.b, "Notes.txt", &r);
    assert_same_as_held(&f.a, &f.b, &collide);
    only_conflicts(&f.sync("bidi", &[]));
    // One on the folding side, edited there too: carried back, one name on each side.
    std::fs::rename(f.b.join("docs"), f.b.join("tmp")).unwrap();
    std::fs::rename(f.b.join("tmp"), f.b.join("Docs")).unwrap();
    write(f.b.join("docs/Q.txt"), "q, edited there");
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(
        listing(&f.a)
            .iter()
            .filter(|n| n.eq_ignore_ascii_case("docs"))
            .count(),
        1
    );
    assert_eq!(read(f.a.join("Docs/q.txt")), "q, edited there", "{r:?}");
    assert_same_as_held(&f.a, &f.b, &collide);
    only_conflicts(&f.sync("bidi", &[]));
    // The collisions resolved on the case-sensitive side: the survivors arrive.
    std::fs::remove_file(f.a.join("A.txt")).unwrap();
    std::fs::remove_file(f.a.join(NFC)).unwrap();
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(read(f.b.join("a.txt")), "lower");
    assert_eq!(read(f.b.join(NFD)), "decomposed");
    assert_same_as_held(&f.a, &f.b, &[]);
    quiet(&f.sync("bidi", &[]));
}
