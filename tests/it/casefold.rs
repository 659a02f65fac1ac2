//! Roots that fold names: an NTFS image mounted with `lowntfs-3g -o ignore_case` (lookups
//! ignore case, listings are lower case, NFC and NFD stay two names, no modes or owners,
//! 100 ns times). Push, pull and bidi of trees with names that are one name there: nothing
//! is lost on either side, collisions are conflicts naming both names, and a second run
//! changes nothing.
//!
//! Needs root and ntfs-3g (CI installs it): without them these tests fail, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

pub(crate) const NFC: &str = "caf\u{e9}.txt";
pub(crate) const NFD: &str = "cafe\u{301}.txt";

/// An NTFS image mounted case-insensitively in a temp dir; unmounted when dropped.
struct NtfsMount {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl NtfsMount {
    fn new() -> NtfsMount {
        let dir = tempfile::tempdir().unwrap();
        let (img, mnt) = (dir.path().join("ntfs.img"), dir.path().join("mnt"));
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let run = |c: &mut Command, what: &str| {
            let o = c.output().unwrap_or_else(|e| {
                panic!("{what}: cannot run it ({e}); install ntfs-3g (Debian: apt-get install ntfs-3g fuse3) and run the tests as root")
            });
            assert!(
                o.status.success(),
                "{what} failed ({}): {}; the case-insensitive tests need ntfs-3g, /dev/fuse and root",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        };
        run(
            Command::new("mkntfs").args(["-q", "-F", "-Q"]).arg(&img),
            "mkntfs",
        );
        run(
            Command::new("lowntfs-3g")
                .args(["-o", "ignore_case"])
                .arg(&img)
                .arg(&mnt),
            "lowntfs-3g -o ignore_case",
        );
        NtfsMount { _dir: dir, mnt }
    }
}

impl Drop for NtfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// A fixture whose remote root is a fresh case-insensitive mount.
fn on_ntfs() -> (Fixture, NtfsMount) {
    let mount = NtfsMount::new();
    let mut f = fixture();
    f.b = mount.mnt.clone();
    (f, mount)
}

/// The comparison for an NTFS replica: what it cannot keep left out, and `skip` too.
fn ntfs_except(skip: &[&'static str]) -> Except {
    Except {
        paths: skip.to_vec(),
        unkept_attributes: true,
        ..Except::default()
    }
}

/// Asserts the run's only per-file lines are conflicts (it changed nothing) and that
/// it exited with exactly the conflict bit.
#[track_caller]
pub(crate) fn only_conflicts(r: &Run) {
    assert_eq!(r.code, 2, "{r:?}");
    for l in r.lines().iter().filter(|l| l.starts_with('/')) {
        assert!(l.contains("CONFLICT"), "changed something: {l}\n{r:?}");
    }
}

/// Asserts the run named the two colliding names in one conflict.
#[track_caller]
pub(crate) fn names_collision(r: &Run, a: &str, b: &str) {
    let named = r.lines().into_iter().any(|l| {
        l.contains("CONFLICT") && l.contains(&format!("'{a}'")) && l.contains(&format!("'{b}'"))
    });
    assert!(named, "no conflict naming '{a}' and '{b}':\n{r:?}");
}

/// The local tree the tests start from: two names that are one there, NFC and NFD twins
/// (two names on NTFS), lower-case names that NTFS lists as written.
pub(crate) fn source_tree(root: &Path) {
    write(root.join("a.txt"), "lower");
    write(root.join("A.txt"), "upper");
    write(root.join(NFC), "composed");
    write(root.join(NFD), "decomposed");
    write(root.join("docs/q.txt"), "q");
    write(root.join("notes.txt"), "notes");
}

#[test]
fn push_onto_a_case_insensitive_root_keeps_both_names_and_carries_a_case_only_rename() {
    let (f, _mount) = on_ntfs();
    source_tree(&f.a);
    let before = snapshot(&f.a);
    let r = f.sync("push", &[]);
    names_collision(&r, "A.txt", "a.txt");
    assert_eq!(r.code, 2, "{r:?}");
    assert_unchanged(&f.a, &before);
    // Both forms of the name arrived: NTFS keeps them apart.
    assert_same_tree_except(&f.a, &f.b, &ntfs_except(&["a.txt", "A.txt", "."]));
    assert!(
        !f.b.join("a.txt").exists(),
        "neither colliding name is written"
    );
    // Again: the same conflict, nothing else.
    let r = f.sync("push", &[]);
    names_collision(&r, "A.txt", "a.txt");
    only_conflicts(&r);
    // A case-only rename on the source: the replica keeps the file (a delete of the old
    // name would find the new one on a root that ignores case).
    std::fs::rename(f.a.join("notes.txt"), f.a.join("Notes.txt")).unwrap();
    let r = f.sync("push", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(read(f.b.join("notes.txt")), "notes", "{r:?}");
    assert_eq!(read(f.b.join("Notes.txt")), "notes");
    only_conflicts(&f.sync("push", &[]));
    // Resolved on the source: the one name left is written, and all is quiet.
    std::fs::remove_file(f.a.join("A.txt")).unwrap();
    std::fs::rename(f.a.join("Notes.txt"), f.a.join("notes.txt")).unwrap();
    let r = f.sync("push", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree_except(&f.a, &f.b, &ntfs_except(&["."]));
    let r = f.sync("push", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("SYNCHRONIZED"), "{r:?}");
}

#[test]
fn pull_from_a_case_insensitive_root_is_a_replica_and_then_quiet() {
    let (f, _mount) = on_ntfs();
    write(f.b.join("Report.TXT"), "report");
    write(f.b.join(NFC), "composed");
    write(f.b.join(NFD), "decomposed");
    write(f.b.join("Docs/Q.txt"), "q");
    let before = snapshot(&f.b);
    let r = f.sync("pull", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_unchanged(&f.b, &before);
    assert_same_tree_except(&f.b, &f.a, &ntfs_except(&["."]));
    let r = f.sync("pull", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("SYNCHRONIZED"), "{r:?}");
    // A case-only rename on the folding side, edited too: the replica follows, once.
    std::fs::rename(f.b.join("report.txt"), f.b.join("REPORT.txt")).unwrap();
    write(f.b.join("REPORT.txt"), "report, edited");
    let r = f.sync("pull", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree_except(&f.b, &f.a, &ntfs_except(&["."]));
    assert!(!f.sync("pull", &[]).stdout.contains("SYNCHRONIZED"));
}

#[test]
fn bidi_with_a_case_insensitive_root_loses_nothing_and_propagates_no_deletion() {
    let (f, _mount) = on_ntfs();
    source_tree(&f.a);
    let r = f.sync("bidi", &[]);
    names_collision(&r, "A.txt", "a.txt");
    assert_eq!(r.code, 2, "{r:?}");
    // Neither colliding name was deleted, neither written over the other.
    assert_eq!(read(f.a.join("a.txt")), "lower");
    assert_eq!(read(f.a.join("A.txt")), "upper");
    assert!(!f.b.join("a.txt").exists());
    assert_same_tree_except(&f.a, &f.b, &ntfs_except(&["a.txt", "A.txt", "."]));
    let (la, lb) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("bidi", &[]);
    names_collision(&r, "A.txt", "a.txt");
    only_conflicts(&r);
    assert_unchanged(&f.a, &la);
    assert_unchanged(&f.b, &lb);
    // A case-only rename on the case-sensitive side, then an edit on the folding side:
    // one file all along, on both sides.
    std::fs::rename(f.a.join("notes.txt"), f.a.join("Notes.txt")).unwrap();
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(read(f.a.join("Notes.txt")), "notes", "{r:?}");
    assert_eq!(read(f.b.join("notes.txt")), "notes", "{r:?}");
    only_conflicts(&f.sync("bidi", &[]));
    write(f.b.join("notes.txt"), "notes, edited there");
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(read(f.a.join("Notes.txt")), "notes, edited there", "{r:?}");
    assert!(
        !f.a.join("notes.txt").exists(),
        "one name on the case-sensitive side"
    );
    only_conflicts(&f.sync("bidi", &[]));
    // The collision resolved on the case-sensitive side: the survivor arrives.
    std::fs::remove_file(f.a.join("A.txt")).unwrap();
    std::fs::rename(f.a.join("Notes.txt"), f.a.join("notes.txt")).unwrap();
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(read(f.b.join("a.txt")), "lower");
    assert_same_tree_except(&f.a, &f.b, &ntfs_except(&["."]));
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("SYNCHRONIZED"), "{r:?}");
}
