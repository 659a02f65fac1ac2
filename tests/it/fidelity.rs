//! What was promised and must hold, each over the pipe and over SSH: ACLs exactly as the
//! source has them, directory times in metafile mode, owners in bidi, hard-link groups in
//! the baseline and in bidi, conflicted directories, and what a session's status says.

use std::path::Path;
use std::process::Command;

use crate::sides::{both, Sides};
use crate::util::*;

#[track_caller]
fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{r:?}");
}

/// Runs `cmd args path`, which must succeed.
fn run(cmd: &str, args: &[&str], path: &Path) {
    let st = Command::new(cmd).args(args).arg(path).status().unwrap();
    assert!(st.success(), "{cmd} {args:?} {}", path.display());
}

/// An entry made in a directory with a default ACL, then stripped of the ACL it inherited:
/// a source entry without ACLs.
fn plain_entry_in_acl_dir(path: &Path, kind: &str) {
    match kind {
        "dir" => std::fs::create_dir(path).unwrap(),
        "fifo" => run("mkfifo", &[], path),
        _ => write(path, kind),
    }
    run("setfacl", &["-b", "-k"], path);
    assert!(
        !xattrs(path).contains_key(b"system.posix_acl_access".as_slice()),
        "the test entry kept its ACL"
    );
}

fn inherited_acls(s: &Sides) {
    let native = ["--preserve-acls", "native"];
    std::fs::create_dir(s.a.join("shared")).unwrap();
    run("setfacl", &["-d", "-m", "u:65534:rwx,g:65534:rx"], &s.a.join("shared"));
    for name in ["file", "dir", "fifo"] {
        plain_entry_in_acl_dir(&s.a.join("shared").join(name), name);
    }
    // The first run, push: the target's copy of `shared` has the default ACL too.
    ok(&(s.sync)("push", &native));
    assert_same_tree(&s.a, &s.b);
    assert!(xattrs(&s.b.join("shared")).contains_key(b"system.posix_acl_default".as_slice()));
    // Pull, into a side whose directory hands its ACL to every new entry.
    plain_entry_in_acl_dir(&s.b.join("shared/pulled"), "pulled");
    plain_entry_in_acl_dir(&s.b.join("shared/pulled-dir"), "dir");
    ok(&(s.sync)("pull", &native));
    assert_same_tree(&s.a, &s.b);
    // An update replaces the file with a temp file, which inherits as a new one does.
    plain_entry_in_acl_dir(&s.a.join("shared/from-a"), "from a");
    plain_entry_in_acl_dir(&s.b.join("shared/from-b"), "from b");
    write(s.a.join("shared/file"), "changed on a");
    run("setfacl", &["-b"], &s.a.join("shared/file"));
    ok(&(s.sync)("bidi", &native));
    assert_same_tree(&s.a, &s.b);
    // An entry that has an ACL of its own keeps exactly that one.
    write(s.a.join("shared/own"), "own");
    run("setfacl", &["-b", "-m", "u:65534:r"], &s.a.join("shared/own"));
    ok(&(s.sync)("push", &native));
    assert_same_tree(&s.a, &s.b);
    ok(&(s.sync)("bidi", &native));
    assert_same_tree(&s.a, &s.b);
}

#[test]
fn an_inherited_acl_is_removed_so_the_target_has_exactly_the_sources() {
    both(inherited_acls);
}

/// Sets the mtime of every directory below `root` (and of `root`) to `secs`.
fn age_dirs(root: &Path, secs: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    let mut dirs = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            }
        }
        all.push(d);
    }
    // Deepest first would not matter: setting a directory's time changes nothing above.
    for d in all {
        std::fs::File::open(&d).unwrap().set_modified(t).unwrap();
    }
}

fn metafile_dir_times(s: &Sides) {
    let metafile = Except {
        metafile: true,
        ..Except::default()
    };
    // The far side keeps them in side files.
    let far = ["--preserve-acls", "native", "--remote-preserve-acls", "metafile"];
    write(s.a.join("d/f.txt"), "guarded");
    write(s.a.join("d/e/g.txt"), "deeper");
    write(s.a.join("top.txt"), "top");
    run("setfacl", &["-m", "u:65534:rw"], &s.a.join("d/f.txt"));
    run("setfattr", &["-n", "user.note", "-v", "one"], &s.a.join("d/e/g.txt"));
    run("setfattr", &["-n", "user.note", "-v", "top"], &s.a.join("top.txt"));
    age_dirs(&s.a, 1_500_000_000);
    ok(&(s.sync)("push", &far));
    assert!(s.b.join("d/.tandem-xattrs").is_file());
    assert!(s.b.join(".tandem-xattrs").is_file());
    assert_same_tree_except(&s.a, &s.b, &metafile);
    // An ACL change alone, and an xattr change alone.
    run("setfacl", &["-m", "u:65534:r"], &s.a.join("d/f.txt"));
    run("setfattr", &["-n", "user.note", "-v", "two"], &s.a.join("d/e/g.txt"));
    ok(&(s.sync)("push", &far));
    assert_same_tree_except(&s.a, &s.b, &metafile);
    // Bidi: a change on each side.
    let before_b = snapshot(&s.b);
    run("setfattr", &["-n", "user.note", "-v", "three"], &s.a.join("d/e/g.txt"));
    age_dirs(&s.a, 1_510_000_000);
    ok(&(s.sync)("bidi", &far));
    assert_same_tree_except(&s.a, &s.b, &metafile);
    assert_ne!(before_b, snapshot(&s.b));
}

fn local_metafile_dir_times(s: &Sides) {
    let metafile = Except {
        metafile: true,
        ..Except::default()
    };
    // The local side keeps them in side files; the far side has them on its files.
    let near = ["--preserve-acls", "metafile", "--remote-preserve-acls", "native"];
    write(s.b.join("d/f.txt"), "guarded");
    write(s.b.join("d/e/g.txt"), "deeper");
    run("setfacl", &["-m", "u:65534:rw"], &s.b.join("d/f.txt"));
    run("setfattr", &["-n", "user.note", "-v", "one"], &s.b.join("d/e/g.txt"));
    age_dirs(&s.b, 1_500_000_000);
    ok(&(s.sync)("pull", &near));
    assert!(s.a.join("d/e/.tandem-xattrs").is_file());
    assert_same_tree_except(&s.a, &s.b, &metafile);
    run("setfattr", &["-n", "user.note", "-v", "two"], &s.b.join("d/e/g.txt"));
    ok(&(s.sync)("pull", &near));
    assert_same_tree_except(&s.a, &s.b, &metafile);
    let before_b = snapshot(&s.b);
    write(s.a.join("d/new.txt"), "made here");
    age_dirs(&s.a, 1_520_000_000);
    ok(&(s.sync)("bidi", &near));
    assert_same_tree_except(&s.a, &s.b, &metafile);
    assert_ne!(before_b, snapshot(&s.b));
    // Back to native on both: the attributes in the side files are on the files again.
    std::fs::remove_dir_all(s.a.join("d")).unwrap();
    ok(&(s.sync)("pull", &["--preserve-acls", "native"]));
    assert_same_tree(&s.a, &s.b);
}

#[test]
fn metafile_mode_keeps_directory_times() {
    both(metafile_dir_times);
    both(local_metafile_dir_times);
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn far_side_owner_in_bidi(s: &Sides) {
    use std::os::unix::fs::PermissionsExt;
    write(s.a.join("d/f"), "in d");
    write(s.a.join("g"), "top");
    ok(&(s.sync)("bidi", &[]));
    assert_same_tree(&s.a, &s.b);
    // The far side changes group, mode and mtime of a directory, and group and mode of a
    // file; the near side nothing.
    let chgrp = |p: &Path| {
        std::os::unix::fs::lchown(p, None, Some(65534)).unwrap();
    };
    chgrp(&s.b.join("d"));
    std::fs::set_permissions(s.b.join("d"), std::fs::Permissions::from_mode(0o2750)).unwrap();
    std::fs::File::open(s.b.join("d"))
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_400_000_000))
        .unwrap();
    chgrp(&s.b.join("g"));
    std::fs::set_permissions(s.b.join("g"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let before = snapshot(&s.b);
    ok(&(s.sync)("bidi", &[]));
    assert_same_tree(&s.a, &s.b);
    assert_unchanged(&s.b, &before);
    // And the other way, with -e.
    std::os::unix::fs::lchown(s.a.join("d"), None, Some(0)).unwrap();
    std::fs::set_permissions(s.a.join("d"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = snapshot(&s.a);
    ok(&(s.sync)("bidi", &["-e"]));
    assert_same_tree(&s.a, &s.b);
    assert_unchanged(&s.a, &before);
}

#[test]
fn a_far_side_owner_change_crosses_with_its_attributes_in_bidi() {
    assert!(is_root(), "owners are kept only as root: run the tests as root");
    both(far_side_owner_in_bidi);
}
