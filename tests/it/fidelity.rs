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
    run(
        "setfacl",
        &["-d", "-m", "u:65534:rwx,g:65534:rx"],
        &s.a.join("shared"),
    );
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
    run(
        "setfacl",
        &["-b", "-m", "u:65534:r"],
        &s.a.join("shared/own"),
    );
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
    let far = [
        "--preserve-acls",
        "native",
        "--remote-preserve-acls",
        "metafile",
    ];
    write(s.a.join("d/f.txt"), "guarded");
    write(s.a.join("d/e/g.txt"), "deeper");
    write(s.a.join("top.txt"), "top");
    run("setfacl", &["-m", "u:65534:rw"], &s.a.join("d/f.txt"));
    run(
        "setfattr",
        &["-n", "user.note", "-v", "one"],
        &s.a.join("d/e/g.txt"),
    );
    run(
        "setfattr",
        &["-n", "user.note", "-v", "top"],
        &s.a.join("top.txt"),
    );
    age_dirs(&s.a, 1_500_000_000);
    ok(&(s.sync)("push", &far));
    assert!(s.b.join("d/.tandem-xattrs").is_file());
    assert!(s.b.join(".tandem-xattrs").is_file());
    assert_same_tree_except(&s.a, &s.b, &metafile);
    // An ACL change alone, and an xattr change alone.
    run("setfacl", &["-m", "u:65534:r"], &s.a.join("d/f.txt"));
    run(
        "setfattr",
        &["-n", "user.note", "-v", "two"],
        &s.a.join("d/e/g.txt"),
    );
    ok(&(s.sync)("push", &far));
    assert_same_tree_except(&s.a, &s.b, &metafile);
    // Bidi: a change on each side.
    let before_b = snapshot(&s.b);
    run(
        "setfattr",
        &["-n", "user.note", "-v", "three"],
        &s.a.join("d/e/g.txt"),
    );
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
    let near = [
        "--preserve-acls",
        "metafile",
        "--remote-preserve-acls",
        "native",
    ];
    write(s.b.join("d/f.txt"), "guarded");
    write(s.b.join("d/e/g.txt"), "deeper");
    run("setfacl", &["-m", "u:65534:rw"], &s.b.join("d/f.txt"));
    run(
        "setfattr",
        &["-n", "user.note", "-v", "one"],
        &s.b.join("d/e/g.txt"),
    );
    age_dirs(&s.b, 1_500_000_000);
    ok(&(s.sync)("pull", &near));
    assert!(s.a.join("d/e/.tandem-xattrs").is_file());
    assert_same_tree_except(&s.a, &s.b, &metafile);
    run(
        "setfattr",
        &["-n", "user.note", "-v", "two"],
        &s.b.join("d/e/g.txt"),
    );
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
    assert!(
        is_root(),
        "owners are kept only as root: run the tests as root"
    );
    both(far_side_owner_in_bidi);
}

fn ino(p: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap())
}

fn link(from: &Path, to: &Path) {
    std::fs::hard_link(from, to).unwrap();
}

fn hard_link_group_edited_in_place(s: &Sides) {
    write(s.a.join("one"), "x\n");
    link(&s.a.join("one"), &s.a.join("two"));
    ok(&(s.sync)("bidi", &[]));
    assert_same_tree(&s.a, &s.b);
    // An edit in place: both names see it; the far side must too, still one file.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.a.join("one"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"y\n").unwrap();
    drop(f);
    let before = snapshot(&s.a);
    let r = (s.sync)("bidi", &[]);
    ok(&r);
    assert!(!r.stdout.contains("CONFLICT"), "{r:?}");
    assert_same_tree(&s.a, &s.b);
    assert_unchanged(&s.a, &before);
    assert_eq!(ino(&s.b.join("one")), ino(&s.b.join("two")));
    // A push, then bidi in the same session: a large file with a second name, 2% changed.
    std::fs::write(s.a.join("big"), pseudo_random(16 << 20, 7)).unwrap();
    link(&s.a.join("big"), &s.a.join("big2"));
    ok(&(s.sync)("push", &[]));
    assert_same_tree(&s.a, &s.b);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(s.a.join("big"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &pseudo_random(340_000, 8), 1 << 20).unwrap();
    drop(f);
    let before = snapshot(&s.a);
    let r = (s.sync)("bidi", &[]);
    ok(&r);
    assert_same_tree(&s.a, &s.b);
    assert_unchanged(&s.a, &before);
}

#[test]
fn every_name_of_a_hard_linked_file_is_in_the_baseline() {
    both(hard_link_group_edited_in_place);
}

/// After a first bidi run, `changed` gains a fourth name for a group, loses a name of
/// another, breaks a pair, edits a group in place and links a lone file.
fn one_sided_link_changes(s: &Sides, changed: &Path) {
    for (i, names) in [
        vec!["g1/a", "g1/b", "g1/c"],
        vec!["g2/a", "g2/b", "g2/c"],
        vec!["g3/a", "g3/b"],
        vec!["g4/a", "g4/b"],
        vec!["lone"],
        vec!["lone2"],
    ]
    .iter()
    .enumerate()
    {
        write(s.a.join(names[0]), &format!("group {i}\n"));
        for n in &names[1..] {
            let p = s.a.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            link(&s.a.join(names[0]), &p);
        }
    }
    ok(&(s.sync)("bidi", &[]));
    assert_same_tree(&s.a, &s.b);
    let c = |n: &str| changed.join(n);
    link(&c("g1/a"), &c("g1/d"));
    std::fs::remove_file(c("g2/b")).unwrap();
    std::fs::remove_file(c("g3/b")).unwrap();
    write(c("g3/b"), "a file of its own\n");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(c("g4/b"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"edited in place\n").unwrap();
    drop(f);
    link(&c("lone"), &c("lone-too"));
    let before = snapshot(changed);
    let r = (s.sync)("bidi", &[]);
    ok(&r);
    assert!(!r.stdout.contains("CONFLICT"), "{r:?}");
    assert_same_tree(&s.a, &s.b);
    assert_unchanged(changed, &before);
    ok(&(s.sync)("bidi", &[]));
    assert_same_tree(&s.a, &s.b);
    assert_unchanged(changed, &before);
}

#[test]
fn hard_link_changes_on_one_side_reach_the_other_in_bidi() {
    both(|s| one_sided_link_changes(s, &s.a.clone()));
    both(|s| one_sided_link_changes(s, &s.b.clone()));
}

fn below_a_conflicted_directory(s: &Sides) {
    use std::os::unix::fs::PermissionsExt;
    for (root, mode) in [(&s.a, 0o700), (&s.b, 0o750)] {
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    write(s.a.join("d/f"), "below a conflict");
    write(s.a.join("other"), "elsewhere");
    let r = (s.sync)("bidi", &[]);
    assert_eq!(r.code, 2, "the directory's modes conflict: {r:?}");
    assert!(r.stdout.contains("/d/f"), "{r:?}");
    let d = Except::at(&["d"]);
    assert_same_tree_except(&s.a, &s.b, &d);
    let file = |root: &Path| snapshot(root).remove(b"d/f".as_slice()).unwrap();
    assert_eq!(file(&s.a), file(&s.b));
    // Later runs report the conflict, and nothing about the file they leave alone.
    let (before_a, before_b) = (snapshot(&s.a), snapshot(&s.b));
    for _ in 0..2 {
        let r = (s.sync)("bidi", &[]);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stdout.contains("CONFLICT"), "{r:?}");
        assert!(
            !r.stdout.contains("/d/f"),
            "a path nothing was done to is reported: {r:?}"
        );
        assert_unchanged(&s.a, &before_a);
        assert_unchanged(&s.b, &before_b);
    }
    // A change to the file below the conflict still goes across.
    write(s.b.join("d/f"), "changed on b");
    let r = (s.sync)("bidi", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(read(s.a.join("d/f")), "changed on b");
    assert_eq!(file(&s.a), file(&s.b));
}

#[test]
fn a_file_below_a_conflicted_directory_is_recorded_once_it_is_the_same() {
    both(below_a_conflicted_directory);
}

/// The session's line in `tandem sessions --format json`.
fn session_json(s: &Sides, name: &str) -> serde_json::Value {
    let r = (s.run)(&["sessions", "--format", "json"]);
    ok(&r);
    let all: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let one = all.iter().find(|v| v["session"] == name).cloned();
    one.unwrap_or_else(|| panic!("no session {name}: {r:?}"))
}

fn last_run_status(s: &Sides) {
    fn named<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["-N", "nightly"], extra].concat()
    }
    write(s.a.join("f"), "one");
    write(s.a.join("g"), "two");
    // A first run that fails before it can write a baseline: the remote root is missing.
    let away = s.b.with_extension("away");
    std::fs::rename(&s.b, &away).unwrap();
    let r = (s.sync)("push", &named(&[]));
    assert_eq!(r.code, 64, "{r:?}");
    std::fs::rename(&away, &s.b).unwrap();
    let v = session_json(s, "nightly");
    assert_eq!(v["last_run"]["exit"], 64, "{v}");
    assert_eq!(v["last_run"]["direction"], "push", "{v}");
    assert!(
        v["last_run"]["meaning"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{v}"
    );
    assert_eq!(v["last_run"]["last_ok"], serde_json::Value::Null, "{v}");
    assert_eq!(v["entries"], serde_json::Value::Null, "{v}");
    let r = (s.run)(&["status", "-N", "nightly"]);
    ok(&r);
    assert!(
        r.stdout
            .contains("exit 64 (a root or the remote unreachable)"),
        "{r:?}"
    );
    assert!(r.stdout.contains("last ok:   never"), "{r:?}");
    // A good run.
    ok(&(s.sync)("push", &named(&[])));
    assert_same_tree(&s.a, &s.b);
    let v = session_json(s, "nightly");
    let good = v["last_run"]["ended"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - good).abs() < 60, "{v}");
    assert_eq!(v["last_run"]["exit"], 0, "{v}");
    assert_eq!(v["last_run"]["files"], 2, "{v}");
    assert_eq!(v["last_run"]["bytes"], 6, "{v}");
    assert_eq!(v["last_run"]["last_ok"], good, "{v}");
    assert_eq!(v["entries"], 2, "{v}");
    let r = (s.run)(&["status", "-N", "nightly"]);
    assert!(r.stdout.contains("direction: push"), "{r:?}");
    assert!(r.stdout.contains("moved:     2 files, 6 B"), "{r:?}");
    assert!(r.stdout.contains("(just now)"), "{r:?}");
    assert!(r.stdout.contains("last ok:   this one"), "{r:?}");
    // A bidi run that ends with a conflict: the last good run is still the push.
    write(s.a.join("f"), "changed here");
    write(s.b.join("f"), "changed there");
    let r = (s.sync)("bidi", &named(&[]));
    assert_eq!(r.code, 2, "{r:?}");
    let v = session_json(s, "nightly");
    assert_eq!(v["last_run"]["direction"], "bidi", "{v}");
    assert_eq!(v["last_run"]["exit"], 2, "{v}");
    assert_eq!(v["last_run"]["meaning"], "unresolved conflicts", "{v}");
    assert_eq!(v["last_run"]["last_ok"], good, "{v}");
    let r = (s.run)(&["sessions"]);
    let line = r
        .lines()
        .into_iter()
        .find(|l| l.starts_with("nightly\t"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("bidi, exit 2 (unresolved conflicts)"),
        "{line}"
    );
    assert!(line.contains("last exit 0: "), "{line}");
    // A dry run is not a run of the session.
    let r = (s.sync)("push", &named(&["-n"]));
    assert_eq!(r.code & !1, 0, "{r:?}");
    assert_eq!(session_json(s, "nightly")["last_run"]["direction"], "bidi");
}

#[test]
fn sessions_and_status_say_when_and_how_the_last_run_ended() {
    both(last_run_status);
}

fn acls_known_from_the_baseline(s: &Sides) {
    let native = ["--preserve-acls", "native"];
    for i in 0..20 {
        write(s.a.join(format!("d/f{i:02}")), &format!("file {i}"));
    }
    run("setfacl", &["-m", "u:65534:r"], &s.a.join("d/f03"));
    // A session that did not keep ACLs, then one that does: every ACL is read, none
    // taken from a baseline that never had them.
    ok(&(s.sync)("push", &[]));
    ok(&(s.sync)("push", &native));
    assert_same_tree(&s.a, &s.b);
    // Changed on either side since: found, though unchanged files' are not read again.
    run("setfacl", &["-m", "u:65534:rw"], &s.a.join("d/f05"));
    run(
        "setfattr",
        &["-n", "user.k", "-v", "far"],
        &s.b.join("d/f07"),
    );
    std::fs::rename(s.a.join("d/f03"), s.a.join("d/moved")).unwrap();
    let before_b = snapshot(&s.b);
    let r = (s.sync)("bidi", &native);
    ok(&r);
    assert_same_tree(&s.a, &s.b);
    assert_eq!(
        xattrs(&s.a.join("d/f07"))
            .get(b"user.k".as_slice())
            .unwrap(),
        b"far"
    );
    assert_ne!(before_b, snapshot(&s.b));
    // And a no-op after it leaves both as they are.
    let (a, b) = (snapshot(&s.a), snapshot(&s.b));
    let r = (s.sync)("bidi", &["--preserve-acls", "native", "--format", "json"]);
    ok(&r);
    assert_eq!(json_events(&r.stdout).pop().unwrap()["moved"], 0, "{r:?}");
    assert_unchanged(&s.a, &a);
    assert_unchanged(&s.b, &b);
}

#[test]
fn acls_of_unchanged_files_come_from_the_baseline_and_changes_are_still_seen() {
    both(acls_known_from_the_baseline);
}

/// One side links two equal files (a dedup tool), the other edits one of them: the edit
/// wins and reaches both sides; with both editing it, it is a conflict that loses neither.
fn a_link_made_here_and_an_edit_there(s: &Sides) {
    write(s.a.join("a"), "same\n");
    write(s.a.join("n"), "same\n");
    set_mtime(s.a.join("a"), 1_600_000_000);
    set_mtime(s.a.join("n"), 1_600_000_000);
    ok(&(s.sync)("bidi", &[]));
    assert_same_tree(&s.a, &s.b);
    std::fs::remove_file(s.a.join("n")).unwrap();
    link(&s.a.join("a"), &s.a.join("n"));
    write(s.b.join("n"), "edited there\n");
    let r = (s.sync)("bidi", &[]);
    ok(&r);
    assert_eq!(read(s.a.join("n")), "edited there\n", "{r:?}");
    assert_eq!(read(s.b.join("n")), "edited there\n", "{r:?}");
    assert_eq!(read(s.a.join("a")), "same\n");
    assert_same_tree(&s.a, &s.b);
    // Both change `n` now: here by linking it to `a` again, there by editing it.
    std::fs::remove_file(s.a.join("n")).unwrap();
    link(&s.a.join("a"), &s.a.join("n"));
    write(s.b.join("n"), "edited again there\n");
    let (before_a, before_b) = (snapshot(&s.a), snapshot(&s.b));
    let r = (s.sync)("bidi", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    // Only the roots' times move (they end alike, the newer of the two).
    let roots = Except {
        root: true,
        ..Except::default()
    };
    assert_eq!(tree_difference(&before_a, &snapshot(&s.a), &roots), None);
    assert_eq!(tree_difference(&before_b, &snapshot(&s.b), &roots), None);
}

#[test]
fn a_link_made_on_one_side_never_overwrites_an_edit_made_on_the_other() {
    both(a_link_made_here_and_an_edit_there);
}
