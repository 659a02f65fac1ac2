//! Metadata fidelity, over the pipe transport and over SSH alike: mtimes of every kind of
//! entry, attribute-only changes, attribute conflicts, special files.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sides::{both, Sides};
use crate::util::*;

#[track_caller]
fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{r:?}");
}

fn set_times(path: &Path, secs: i64) {
    let status = std::process::Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{secs}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn mtime(path: &Path) -> i64 {
    let md = std::fs::symlink_metadata(path).unwrap();
    md.mtime() * 1_000_000_000 + md.mtime_nsec()
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn mtimes_of_every_kind(s: &Sides) {
    write(s.a.join("d/e/f.txt"), "x");
    write(s.a.join("d/g.txt"), "y");
    symlink("g.txt", s.a.join("d/link")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(s.a.join("d/pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    for (p, t) in [
        ("d/e/f.txt", 1_000_000_000),
        ("d/link", 1_100_000_000),
        ("d/pipe", 1_150_000_000),
        ("d/e", 1_200_000_000),
        ("d", 1_300_000_000),
    ] {
        set_times(&s.a.join(p), t);
    }
    ok(&(s.sync)("push", &[]));
    // Every kind keeps its mtime, directories included (set after their contents).
    assert_same_tree(&s.a, &s.b);
    assert_eq!(mtime(&s.b.join("d")), 1_300_000_000 * 1_000_000_000);
    // A new file inside changes the directory's time on the source; the replica follows.
    write(s.a.join("d/e/new.txt"), "z");
    set_times(&s.a.join("d/e"), 1_250_000_000);
    ok(&(s.sync)("push", &[]));
    assert_same_tree(&s.a, &s.b);
    // Pulled back the other way, too.
    write(s.b.join("d/from-b"), "b");
    set_times(&s.b.join("d"), 1_400_000_000);
    ok(&(s.sync)("pull", &[]));
    assert_same_tree(&s.a, &s.b);
    assert_eq!(mtime(&s.a.join("d")), 1_400_000_000 * 1_000_000_000);
}

#[test]
fn every_kind_of_entry_keeps_its_mtime() {
    both(mtimes_of_every_kind);
}

fn root_mtimes(s: &Sides) {
    write(s.a.join("top.txt"), "x");
    write(s.a.join("d/inner"), "y");
    set_times(&s.a, 1_500_000_000);
    ok(&(s.sync)("push", &[]));
    // Creating top.txt and d changed the replica root's time; it ends as the source's.
    assert_eq!(mtime(&s.b), 1_500_000_000 * 1_000_000_000, "push");
    assert_same_tree(&s.a, &s.b);
    // A run with nothing to do leaves the root alone: setting the time it already has
    // would still change its ctime.
    let ctime = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.ctime(), m.ctime_nsec())
    };
    let before = ctime(&s.b);
    let (before_a, before_b) = (snapshot(&s.a), snapshot(&s.b));
    ok(&(s.sync)("push", &[]));
    assert_eq!(
        ctime(&s.b),
        before,
        "a no-op run touched the replica's root"
    );
    assert_unchanged(&s.a, &before_a);
    assert_unchanged(&s.b, &before_b);
    assert_same_tree(&s.a, &s.b);
    // A dry run changes nothing, the root's time included.
    set_times(&s.a, 1_510_000_000);
    let (before_a, before_b) = (snapshot(&s.a), snapshot(&s.b));
    ok(&(s.sync)("push", &["-n"]));
    assert_eq!(mtime(&s.b), 1_500_000_000 * 1_000_000_000, "dry run");
    assert_unchanged(&s.a, &before_a);
    assert_unchanged(&s.b, &before_b);
    // A top-level deletion pulled the other way: the local root takes the far one's time.
    std::fs::remove_file(s.b.join("top.txt")).unwrap();
    set_times(&s.b, 1_600_000_000);
    ok(&(s.sync)("pull", &[]));
    assert!(!s.a.join("top.txt").exists());
    assert_eq!(mtime(&s.a), 1_600_000_000 * 1_000_000_000, "pull");
    assert_same_tree(&s.a, &s.b);
}

#[test]
fn the_replica_root_keeps_the_source_root_mtime() {
    both(root_mtimes);
}

fn new_file_modes(s: &Sides) {
    // Temp files start with the source's permission bits (and owner read/write); whatever
    // the umask or a change of owner does to them is set right before the rename.
    let modes = [
        0o000, 0o400, 0o444, 0o600, 0o640, 0o664, 0o755, 0o777, 0o4755, 0o2750,
    ];
    let name = |m: u32| format!("m{m:04o}");
    for m in modes {
        write(s.a.join(name(m)), "x");
        if is_root() && m == 0o4755 {
            // A change of owner clears set-id bits: the receiver must set them after it
            // (and so must this test).
            std::os::unix::fs::chown(s.a.join(name(m)), Some(4321), Some(4321)).unwrap();
        }
        std::fs::set_permissions(s.a.join(name(m)), std::fs::Permissions::from_mode(m)).unwrap();
    }
    ok(&(s.sync)("push", &[]));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    for m in modes {
        assert_eq!(mode(&s.b.join(name(m))), m, "{}", name(m));
    }
    if is_root() {
        assert_eq!(
            std::fs::metadata(s.b.join(name(0o4755))).unwrap().uid(),
            4321
        );
    }
    assert_same_tree(&s.a, &s.b);
    // New contents over a read-only file keep its mode too.
    let ro = s.a.join(name(0o400));
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o600)).unwrap();
    write(&ro, "changed");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o400)).unwrap();
    ok(&(s.sync)("push", &[]));
    assert_eq!(std::fs::read(s.b.join(name(0o400))).unwrap(), b"changed");
    assert_eq!(mode(&s.b.join(name(0o400))), 0o400);
    assert_same_tree(&s.a, &s.b);
}

#[test]
fn new_files_arrive_with_their_modes_and_owners() {
    both(new_file_modes);
}

fn attribute_changes_alone(s: &Sides) {
    write(s.a.join("f"), "content");
    write(s.a.join("d/x"), "x");
    symlink("f", s.a.join("link")).unwrap();
    ok(&(s.sync)("bidi", &[]));
    assert_same_tree(&s.a, &s.b);
    // Attributes change on either side, nothing else: they cross without content.
    std::fs::set_permissions(s.a.join("f"), std::fs::Permissions::from_mode(0o4750)).unwrap();
    set_times(&s.b.join("link"), 1_500_000_000);
    std::fs::set_permissions(s.b.join("d"), std::fs::Permissions::from_mode(0o1770)).unwrap();
    set_times(&s.b.join("d"), 1_600_000_000);
    let r = (s.sync)("bidi", &["--format", "json"]);
    ok(&r);
    assert_same_tree(&s.a, &s.b);
    let summary = json_events(&r.stdout).pop().unwrap();
    assert_eq!(summary["bytes_total"], 0, "content was sent: {summary}");
    assert_eq!(
        std::fs::metadata(s.b.join("f")).unwrap().mode() & 0o7777,
        0o4750
    );
    assert_eq!(mtime(&s.a.join("link")), 1_500_000_000 * 1_000_000_000);
    assert_eq!(
        std::fs::metadata(s.a.join("d")).unwrap().mode() & 0o7777,
        0o1770
    );
}

#[test]
fn attribute_changes_alone_propagate_on_every_kind() {
    both(attribute_changes_alone);
}

fn attribute_conflicts(s: &Sides) {
    write(s.a.join("f"), "content");
    ok(&(s.sync)("bidi", &[]));
    assert_same_tree(&s.a, &s.b);
    std::fs::set_permissions(s.a.join("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(s.b.join("f"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (before_a, before_b) = (snapshot(&s.a), snapshot(&s.b));
    let conflict = Except::at(&["f"]);
    let r = (s.sync)("bidi", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("CONFLICT") && r.stdout.contains("mode"),
        "{r:?}"
    );
    // Left as they are, and still a conflict next time: never different in silence.
    assert_eq!(
        std::fs::metadata(s.b.join("f")).unwrap().mode() & 0o777,
        0o755
    );
    assert_unchanged(&s.a, &before_a);
    assert_unchanged(&s.b, &before_b);
    assert_same_tree_except(&s.a, &s.b, &conflict);
    assert_eq!((s.sync)("bidi", &[]).code, 2);
    assert_unchanged(&s.a, &before_a);
    assert_unchanged(&s.b, &before_b);
    assert_same_tree_except(&s.a, &s.b, &conflict);
    // -f settles it.
    ok(&(s.sync)("bidi", &["-f", "src"]));
    assert_eq!(
        std::fs::metadata(s.b.join("f")).unwrap().mode() & 0o777,
        0o600
    );
    assert_same_tree(&s.a, &s.b);
    ok(&(s.sync)("bidi", &[]));
    assert_same_tree(&s.a, &s.b);
}

#[test]
fn attributes_changed_on_both_sides_are_a_conflict() {
    both(attribute_conflicts);
}

fn special_files(s: &Sides) {
    let mknod = std::process::Command::new("mknod")
        .arg(s.a.join("null-like"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(mknod.success());
    set_times(&s.a.join("null-like"), 1_000_000_000);
    ok(&(s.sync)("push", &[]));
    let md = std::fs::symlink_metadata(s.b.join("null-like")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &md.file_type()
    ));
    assert_eq!(
        md.rdev(),
        std::fs::symlink_metadata(s.a.join("null-like"))
            .unwrap()
            .rdev()
    );
    assert_same_tree(&s.a, &s.b);
}

#[test]
fn device_nodes_arrive_with_their_numbers_as_root() {
    if !is_root() {
        eprintln!("SKIPPED: device nodes need root (CI runs as root)");
        return;
    }
    both(special_files);
}

fn disk_usage(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn sparse_files(s: &Sides) {
    use std::os::unix::fs::FileExt;
    let make = |path: &Path| {
        let f = std::fs::File::create(path).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[7u8; 4096], 20 << 20).unwrap();
    };
    make(&s.a.join("sparse.img"));
    assert!(
        disk_usage(&s.a.join("sparse.img")) < 1 << 20,
        "the test file is not sparse"
    );
    let r = (s.sync)("push", &["--format", "json"]);
    ok(&r);
    assert_same_tree(&s.a, &s.b);
    assert!(
        disk_usage(&s.b.join("sparse.img")) < 1 << 20,
        "arrived fully allocated"
    );
    let summary = json_events(&r.stdout).pop().unwrap();
    assert!(
        summary["bytes_sent"].as_u64().unwrap() < 1 << 20,
        "holes were sent: {summary}"
    );
    // A delta against the sparse old version keeps it sparse.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(s.a.join("sparse.img"))
        .unwrap();
    f.write_all_at(&[9u8; 4096], 40 << 20).unwrap();
    drop(f);
    ok(&(s.sync)("push", &[]));
    assert_same_tree(&s.a, &s.b);
    assert!(
        disk_usage(&s.b.join("sparse.img")) < 1 << 20,
        "the delta filled the holes"
    );
    // A file that grows by a hole: a 16 MiB basis has 2 KiB delta blocks, so its zero
    // blocks are copied in halves, and those must stay holes too.
    let grow = std::fs::File::create(s.a.join("grow.img")).unwrap();
    grow.set_len(16 << 20).unwrap();
    grow.write_all_at(&[5u8; 4096], 1 << 20).unwrap();
    ok(&(s.sync)("push", &[]));
    assert_same_tree(&s.a, &s.b);
    grow.set_len(48 << 20).unwrap();
    drop(grow);
    ok(&(s.sync)("push", &[]));
    assert_same_tree(&s.a, &s.b);
    assert!(
        disk_usage(&s.b.join("grow.img")) < 1 << 20,
        "the hole it grew by was filled: {} bytes allocated",
        disk_usage(&s.b.join("grow.img"))
    );
    // And back again with pull, to a side that never had it.
    std::fs::remove_file(s.a.join("sparse.img")).unwrap();
    ok(&(s.sync)("pull", &["-y"]));
    assert_same_tree(&s.a, &s.b);
    assert!(disk_usage(&s.a.join("sparse.img")) < 1 << 20);
}

#[test]
fn sparse_files_stay_sparse() {
    both(sparse_files);
}

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

fn hard_links(s: &Sides) {
    std::fs::write(s.a.join("one"), pseudo_random(300_000, 3)).unwrap();
    std::fs::create_dir(s.a.join("sub")).unwrap();
    std::fs::hard_link(s.a.join("one"), s.a.join("sub/two")).unwrap();
    std::fs::hard_link(s.a.join("one"), s.a.join("three")).unwrap();
    let r = (s.sync)("push", &["--format", "json"]);
    ok(&r);
    assert_same_tree(&s.a, &s.b);
    // One inode on the target too, and the content crossed once.
    assert_eq!(ino(&s.b.join("one")), ino(&s.b.join("sub/two")));
    assert_eq!(ino(&s.b.join("one")), ino(&s.b.join("three")));
    let summary = json_events(&r.stdout).pop().unwrap();
    assert!(
        summary["bytes_sent"].as_u64().unwrap() < 400_000,
        "{summary}"
    );
    ok(&(s.sync)("push", &[]));
    assert_same_tree(&s.a, &s.b);
    // A link broken on the source (the name now a file of its own) is broken on the target;
    // a new link is made there too.
    std::fs::remove_file(s.a.join("three")).unwrap();
    std::fs::copy(s.a.join("one"), s.a.join("three")).unwrap();
    std::fs::hard_link(s.a.join("one"), s.a.join("four")).unwrap();
    ok(&(s.sync)("push", &[]));
    assert_ne!(ino(&s.b.join("one")), ino(&s.b.join("three")));
    assert_eq!(ino(&s.b.join("one")), ino(&s.b.join("four")));
    assert_same_tree(&s.a, &s.b);
    // Bidi keeps them, both ways.
    std::fs::hard_link(s.b.join("three"), s.b.join("five")).unwrap();
    let before_b = snapshot(&s.b);
    ok(&(s.sync)("bidi", &[]));
    assert_eq!(ino(&s.a.join("three")), ino(&s.a.join("five")));
    assert_unchanged(&s.b, &before_b);
    assert_same_tree(&s.a, &s.b);
    ok(&(s.sync)("bidi", &[]));
    assert_same_tree(&s.a, &s.b);
}

#[test]
fn hard_links_stay_hard_links() {
    both(hard_links);
}

#[test]
fn no_hard_links_copies_each_name() {
    let f = fixture();
    write(f.a.join("one"), "shared");
    std::fs::hard_link(f.a.join("one"), f.a.join("two")).unwrap();
    let r = f.sync("push", &["--no-hard-links"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_ne!(ino(&f.b.join("one")), ino(&f.b.join("two")));
    let links = Except {
        hard_links: true,
        ..Except::default()
    };
    assert_same_tree_except(&f.a, &f.b, &links);
}

/// Runs `program args` with /etc/passwd and /etc/group replaced (a private mount
/// namespace), as a host with another user database would.
fn with_users_script(dir: &Path, passwd: &str, group: &str, program: &Path) -> PathBuf {
    let (p, g) = (dir.join("passwd"), dir.join("group"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&p, passwd).unwrap();
    std::fs::write(&g, group).unwrap();
    let script = dir.join("run");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec unshare -m sh -c 'mount --bind {} /etc/passwd && mount --bind {} /etc/group && exec \"$0\" \"$@\"' '{}' \"$@\"\n",
            p.display(),
            g.display(),
            program.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn owners_travel_by_name_unless_numeric_ids() {
    if !is_root() {
        eprintln!("SKIPPED: owners need root (CI runs as root)");
        return;
    }
    let f = fixture();
    let near = with_users_script(
        &f.tmp.path().join("near"),
        "root:x:0:0::/root:/bin/sh\nalice:x:2001:2001::/:/bin/sh\n",
        "root:x:0:\nteam:x:3001:\n",
        Path::new(env!("CARGO_BIN_EXE_tandem")),
    );
    let far = with_users_script(
        &f.tmp.path().join("far"),
        "root:x:0:0::/root:/bin/sh\nalice:x:2500:2500::/:/bin/sh\n",
        "root:x:0:\nteam:x:3500:\n",
        &agent_path(),
    );
    write(f.a.join("alices"), "a");
    write(f.a.join("nobodys"), "n");
    std::os::unix::fs::chown(f.a.join("alices"), Some(2001), Some(3001)).unwrap();
    std::os::unix::fs::chown(f.a.join("nobodys"), Some(2999), Some(3999)).unwrap();
    let run = |extra: &[&str]| {
        let mut c = std::process::Command::new(&near);
        c.env("FILESYNC", &f.state)
            .stdin(std::process::Stdio::null());
        c.arg("-d").arg(&f.a).arg("-r").arg(&f.b);
        c.arg("--agent-path")
            .arg(&far)
            .args(["-K", "push"])
            .args(extra);
        output(c.output().unwrap())
    };
    let r = run(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    let owner = |p: &Path| {
        let md = std::fs::metadata(p).unwrap();
        (md.uid(), md.gid())
    };
    assert_eq!(
        owner(&f.b.join("alices")),
        (2500, 3500),
        "not mapped by name"
    );
    assert_eq!(
        owner(&f.b.join("nobodys")),
        (2999, 3999),
        "unknown names keep numbers"
    );
    // Alike but for alice's numbers, which differ on purpose (mapped by name).
    let mapped = Except::at(&["alices"]);
    assert_same_tree_except(&f.a, &f.b, &mapped);
    // A second run sees nothing to do: alice is alice on both sides.
    let before_b = snapshot(&f.b);
    let r = run(&["-e", "--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(json_events(&r.stdout).pop().unwrap()["moved"], 0, "{r:?}");
    assert_unchanged(&f.b, &before_b);
    assert_same_tree_except(&f.a, &f.b, &mapped);
    // --numeric-ids keeps the numbers: with -e, alice's file differs and is fixed.
    let r = run(&["-e", "--numeric-ids"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(owner(&f.b.join("alices")), (2001, 3001));
    assert_same_tree(&f.a, &f.b);
}

/// A root client keeps owners; an agent that is not root cannot give files away, but still
/// names its users, so the run works and the files are simply its user's.
#[test]
fn owners_kept_by_a_root_client_with_an_unprivileged_agent() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to run the agent as another user (CI runs as root)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    for p in [f.tmp.path(), &f.b] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let agent = f.tmp.path().join("agent-as-nobody");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups '{}' \"$@\"\n",
            agent_path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    write(f.a.join("f"), "x");
    let mut c = f.command();
    c.arg("--agent-path").arg(&agent);
    let r = f.sync_with(c, "push", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(read(f.b.join("f")), "x");
    assert_eq!(std::fs::metadata(f.b.join("f")).unwrap().uid(), 65534);
    // Alike but for the owner the agent could not give the file, and the far root, which
    // is root's: an agent that is not its owner can set neither its mode nor its time.
    assert_same_tree_except(
        &f.a,
        &f.b,
        &Except {
            paths: vec!["f"],
            root: true,
            ..Except::default()
        },
    );
}

fn facl(path: &Path) -> String {
    let out = std::process::Command::new("getfacl")
        .args(["-c", "-n", "-p"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "getfacl: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn fattr(path: &Path) -> String {
    let out = std::process::Command::new("getfattr")
        .args(["-d", "-m", "^user\\.", "--absolute-names", "--only-values"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(cmd: &str, args: &[&str], path: &Path) {
    let st = std::process::Command::new(cmd)
        .args(args)
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "{cmd} {args:?}");
}

fn acls_and_xattrs(s: &Sides) {
    write(s.a.join("d/f.txt"), "guarded");
    run(
        "setfacl",
        &["-m", "u:65534:rw,g:65534:r"],
        &s.a.join("d/f.txt"),
    );
    run("setfacl", &["-d", "-m", "u:65534:rx"], &s.a.join("d"));
    run(
        "setfattr",
        &["-n", "user.color", "-v", "blue"],
        &s.a.join("d/f.txt"),
    );
    ok(&(s.sync)("push", &["--preserve-acls", "native"]));
    assert_eq!(facl(&s.b.join("d/f.txt")), facl(&s.a.join("d/f.txt")));
    assert_eq!(facl(&s.b.join("d")), facl(&s.a.join("d")));
    assert_eq!(fattr(&s.b.join("d/f.txt")), "blue");
    assert_same_tree(&s.a, &s.b);
    // An ACL change alone is an attribute change: no content sent.
    run("setfacl", &["-m", "u:65534:r"], &s.a.join("d/f.txt"));
    let r = (s.sync)("push", &["--preserve-acls", "native", "--format", "json"]);
    ok(&r);
    assert_eq!(facl(&s.b.join("d/f.txt")), facl(&s.a.join("d/f.txt")));
    let summary = json_events(&r.stdout).pop().unwrap();
    assert_eq!(summary["bytes_total"], 0, "{summary}");
    assert_eq!(summary["moved"], 1, "{summary}");
    assert!(r.stdout.contains("SYNCHRONIZED(mov)"), "{r:?}");
    assert_same_tree(&s.a, &s.b);
    // Without the option nothing is compared: a no-op.
    run(
        "setfattr",
        &["-n", "user.color", "-v", "red"],
        &s.a.join("d/f.txt"),
    );
    let (before_a, before_b) = (snapshot(&s.a), snapshot(&s.b));
    let r = (s.sync)("push", &["--format", "json"]);
    assert_eq!(json_events(&r.stdout).pop().unwrap()["moved"], 0, "{r:?}");
    assert_eq!(fattr(&s.b.join("d/f.txt")), "blue");
    assert_unchanged(&s.a, &before_a);
    assert_unchanged(&s.b, &before_b);
    assert_same_tree_except(&s.a, &s.b, &Except::at(&["d/f.txt"]));
}

#[test]
fn acls_and_xattrs_survive_natively() {
    both(acls_and_xattrs);
}

fn metafile_round_trip(s: &Sides) {
    write(s.a.join("d/f.txt"), "guarded");
    run("setfacl", &["-m", "u:65534:rw"], &s.a.join("d/f.txt"));
    run(
        "setfattr",
        &["-n", "user.note", "-v", "kept aside"],
        &s.a.join("d/f.txt"),
    );
    let before = (facl(&s.a.join("d/f.txt")), fattr(&s.a.join("d/f.txt")));
    let opts = [
        "--preserve-acls",
        "native",
        "--remote-preserve-acls",
        "metafile",
    ];
    // Alike but for where the far side keeps xattrs and ACLs.
    let metafile = Except {
        metafile: true,
        ..Except::default()
    };
    ok(&(s.sync)("push", &opts));
    // The far side keeps them in a side file, not on the file.
    assert_eq!(fattr(&s.b.join("d/f.txt")), "");
    assert!(s.b.join("d/.tandem-xattrs").is_file());
    assert_same_tree_except(&s.a, &s.b, &metafile);
    ok(&(s.sync)("push", &opts));
    assert_same_tree_except(&s.a, &s.b, &metafile);
    // Lost here, then pulled back: restored exactly.
    std::fs::remove_dir_all(s.a.join("d")).unwrap();
    ok(&(s.sync)("pull", &opts));
    assert_eq!(
        (facl(&s.a.join("d/f.txt")), fattr(&s.a.join("d/f.txt"))),
        before
    );
    assert!(
        !s.a.join("d/.tandem-xattrs").exists(),
        "the side file was synced"
    );
    assert_same_tree_except(&s.a, &s.b, &metafile);
    ok(&(s.sync)("bidi", &opts));
    assert_same_tree_except(&s.a, &s.b, &metafile);
}

#[test]
fn acls_kept_in_a_metafile_come_back_exactly() {
    both(metafile_round_trip);
}
