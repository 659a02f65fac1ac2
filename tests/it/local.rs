//! Syncs between two local directories through the command line, trees compared after.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

use crate::util::*;

fn populate(root: &std::path::Path) {
    write(root.join("top.txt"), "top");
    write(root.join("docs/readme.md"), "# readme\n");
    write(root.join("docs/deep/er/file.bin"), &"x".repeat(300_000));
    std::fs::create_dir_all(root.join("empty/dir")).unwrap();
    symlink("top.txt", root.join("link-to-top")).unwrap();
    symlink("/nonexistent/target", root.join("dangling")).unwrap();
    write(root.join("script.sh"), "#!/bin/sh\n");
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("docs/deep"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    set_mtime(root.join("top.txt"), 1_000_000_000);
}

#[test]
fn push_makes_an_exact_replica_and_a_second_run_is_a_no_op() {
    let f = fixture();
    populate(&f.a);
    write(f.b.join("stale.txt"), "only on the remote");
    let r = f.sync("push", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
    assert!(
        r.stdout.contains("/top.txt") && r.stdout.contains("SYNCHRONIZED"),
        "{r:?}"
    );
    assert!(r.stdout.contains("SYNCHRONIZED(del)"), "{r:?}");
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let again = f.sync("push", &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        !again.stdout.contains("SYNCHRONIZED"),
        "second run did something: {again:?}"
    );
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn pull_makes_the_local_side_a_replica() {
    let f = fixture();
    populate(&f.b);
    write(f.a.join("local-only"), "gone after pull");
    let r = f.sync("pull", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn push_overwrites_remote_edits_and_pull_overwrites_local_edits() {
    let f = fixture();
    write(f.a.join("x"), "v1");
    assert_eq!(f.sync("push", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    write(f.b.join("x"), "remote edit");
    let before_a = snapshot(&f.a);
    assert_eq!(f.sync("push", &[]).code, 0);
    assert_eq!(read(f.b.join("x")), "v1");
    assert_unchanged(&f.a, &before_a);
    assert_same_tree(&f.a, &f.b);
    write(f.a.join("x"), "local edit");
    let before_b = snapshot(&f.b);
    assert_eq!(f.sync("pull", &[]).code, 0);
    assert_eq!(read(f.a.join("x")), "v1");
    assert_unchanged(&f.b, &before_b);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn bidi_propagates_changes_and_deletions_both_ways() {
    let f = fixture();
    populate(&f.a);
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    write(f.a.join("new-local"), "L");
    write(f.b.join("docs/new-remote"), "R");
    write(f.b.join("top.txt"), "edited remotely");
    std::fs::remove_file(f.a.join("script.sh")).unwrap();
    std::fs::remove_dir_all(f.b.join("empty")).unwrap();
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
    assert_eq!(read(f.a.join("top.txt")), "edited remotely");
    assert!(!f.b.join("script.sh").exists());
    assert!(!f.a.join("empty").exists());
    assert_eq!(read(f.b.join("new-local")), "L");
    assert_eq!(read(f.a.join("docs/new-remote")), "R");
}

#[test]
fn bidi_first_run_merges_and_reports_identical_files() {
    let f = fixture();
    write(f.a.join("same"), "same");
    write(f.b.join("same"), "same");
    // Identical means the same mtime too: two writes can straddle a clock tick.
    set_mtime(f.a.join("same"), 1_600_000_000);
    set_mtime(f.b.join("same"), 1_600_000_000);
    write(f.a.join("only-a"), "a");
    write(f.b.join("only-b"), "b");
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("/same") && r.stdout.contains("SYNCHRONIZED(exs)"),
        "{r:?}"
    );
    assert_eq!(names(&f.a), ["only-a", "only-b", "same"]);
    assert_same_tree(&f.a, &f.b);
    let again = f.sync("bidi", &[]);
    assert!(!again.stdout.contains("SYNCHRONIZED"), "{again:?}");
    assert_same_tree(&f.a, &f.b);
    // Deleting the only file on one side is an ordinary deletion, not a safety stop.
    std::fs::remove_file(f.a.join("same")).unwrap();
    std::fs::remove_file(f.a.join("only-a")).unwrap();
    std::fs::remove_file(f.a.join("only-b")).unwrap();
    let before_a = snapshot(&f.a);
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(names(&f.b).is_empty());
    assert_unchanged(&f.a, &before_a);
    assert_same_tree(&f.a, &f.b);
}

fn conflicted() -> Fixture {
    let f = fixture();
    write(f.a.join("doc.txt"), "base");
    write(f.a.join("other.txt"), "unrelated");
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    write(f.a.join("doc.txt"), "local version");
    set_mtime(f.a.join("doc.txt"), 2_000_000_000);
    write(f.b.join("doc.txt"), "remote version!");
    set_mtime(f.b.join("doc.txt"), 1_900_000_000);
    f
}

#[test]
fn conflict_without_policy_is_left_untouched_with_exit_bit_2() {
    let f = conflicted();
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("CONFLICT"), "{r:?}");
    assert_eq!(read(f.a.join("doc.txt")), "local version");
    assert_eq!(read(f.b.join("doc.txt")), "remote version!");
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
    let conflict = Except::at(&["doc.txt"]);
    assert_same_tree_except(&f.a, &f.b, &conflict);
    // Still a conflict next time: the baseline did not absorb either side.
    assert_eq!(f.sync("bidi", &[]).code, 2);
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
    assert_same_tree_except(&f.a, &f.b, &conflict);
}

#[test]
fn conflict_policies_pick_the_right_winner() {
    for (flag, winner) in [
        ("src", "local version"),
        ("local", "local version"),
        ("dst", "remote version!"),
        ("remote", "remote version!"),
        ("new", "local version"),
        ("old", "remote version!"),
    ] {
        let f = conflicted();
        let r = f.sync("bidi", &["-f", flag]);
        assert_eq!(r.code, 0, "-f {flag}: {r:?}");
        assert_eq!(read(f.a.join("doc.txt")), winner, "-f {flag}");
        assert_same_tree(&f.a, &f.b);
    }
}

#[test]
fn keep_both_keeps_both_versions_on_both_sides() {
    let f = conflicted();
    let r = f.sync("bidi", &["--keep-both"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
    let names = names(&f.a);
    let copy = names
        .iter()
        .find(|n| n.starts_with("doc.txt.conflict-"))
        .unwrap_or_else(|| panic!("no conflict copy in {names:?}"));
    assert_eq!(
        read(f.a.join("doc.txt")),
        "local version",
        "newer wins the name"
    );
    assert_eq!(read(f.a.join(copy)), "remote version!");
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn modification_beats_deletion() {
    let f = fixture();
    write(f.a.join("d/keep"), "v1");
    write(f.a.join("d/drop"), "v1");
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    std::fs::remove_dir_all(f.a.join("d")).unwrap();
    write(f.b.join("d/keep"), "v2 edited remotely");
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(read(f.a.join("d/keep")), "v2 edited remotely");
    assert!(
        !f.b.join("d/drop").exists(),
        "the unmodified file's deletion still propagates"
    );
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn renames_are_replayed_as_renames() {
    let f = fixture();
    write(f.a.join("old/name.dat"), &"payload".repeat(1000));
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    let ino = std::fs::metadata(f.b.join("old/name.dat")).unwrap().ino();
    std::fs::create_dir(f.a.join("new")).unwrap();
    std::fs::rename(f.a.join("old/name.dat"), f.a.join("new/renamed.dat")).unwrap();
    let before_a = snapshot(&f.a);
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("SYNCHRONIZED(mov)"), "{r:?}");
    assert_unchanged(&f.a, &before_a);
    assert_same_tree(&f.a, &f.b);
    assert_eq!(
        std::fs::metadata(f.b.join("new/renamed.dat"))
            .unwrap()
            .ino(),
        ino,
        "moved, not copied"
    );
}

#[test]
fn type_changes_file_dir_symlink() {
    let f = fixture();
    write(f.a.join("was-file"), "f");
    write(f.a.join("was-dir/inner"), "i");
    write(f.a.join("was-link-target"), "t");
    symlink("was-link-target", f.a.join("was-link")).unwrap();
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    std::fs::remove_file(f.a.join("was-file")).unwrap();
    write(f.a.join("was-file/now-inside"), "n");
    std::fs::remove_dir_all(f.a.join("was-dir")).unwrap();
    write(f.a.join("was-dir"), "now a file");
    std::fs::remove_file(f.a.join("was-link")).unwrap();
    write(f.a.join("was-link"), "now a file too");
    let before_a = snapshot(&f.a);
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_unchanged(&f.a, &before_a);
    assert_same_tree(&f.a, &f.b);
    // And back, from the other side.
    std::fs::remove_dir_all(f.b.join("was-file")).unwrap();
    symlink("elsewhere", f.b.join("was-file")).unwrap();
    let before_b = snapshot(&f.b);
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_unchanged(&f.b, &before_b);
    assert_same_tree(&f.a, &f.b);
    assert_eq!(
        std::fs::read_link(f.a.join("was-file")).unwrap().to_str(),
        Some("elsewhere")
    );
}

#[test]
fn dry_run_changes_nothing_not_even_the_baseline() {
    let f = fixture();
    populate(&f.a);
    write(f.b.join("extra"), "e");
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("push", &["-n"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("cp -p "), "{r:?}");
    assert!(r.stdout.contains("mkdir -m 755 "), "{r:?}");
    assert!(r.stdout.contains("ln -sfn top.txt "), "{r:?}");
    assert!(
        r.stdout.contains("rm ") && r.stdout.contains("/b/extra"),
        "{r:?}"
    );
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
    let baselines: Vec<_> = std::fs::read_dir(&f.state)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".baseline"))
        .collect();
    assert!(baselines.is_empty(), "dry run wrote a baseline");
}

#[test]
fn dry_run_exit_bit_1_for_conflicts_a_policy_would_resolve() {
    let f = conflicted();
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("bidi", &["-n", "-f", "src"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(read(f.b.join("doc.txt")), "remote version!");
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
}

#[test]
fn any_linux_name_round_trips() {
    let f = fixture();
    let names: [&[u8]; 5] = [
        b"new\nline",
        b"latin1-\xe9\xff",
        b"tab\there",
        b"back\\slash",
        &[b'n'; 255],
    ];
    for n in names {
        std::fs::write(f.a.join(os(n)), n).unwrap();
    }
    std::fs::create_dir(f.a.join(os(b"dir-\xfe"))).unwrap();
    std::fs::write(f.a.join(os(b"dir-\xfe")).join(os(b"in\x01side")), "x").unwrap();
    let r = f.sync("push", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
    assert!(
        r.stdout.contains("latin1-\\xe9\\xff"),
        "escaped in output: {r:?}"
    );
    let j = f.sync("bidi", &["--format", "json", "-N", "odd-names"]);
    assert_eq!(j.code, 0, "{j:?}");
    json_events(&j.stdout);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn json_output_has_events_and_a_final_summary() {
    let f = fixture();
    populate(&f.a);
    write(f.b.join("gone"), "x");
    let r = f.sync("push", &["--format", "json", "--compress", "zstd"]);
    assert_eq!(r.code, 0, "{r:?}");
    let events = json_events(&r.stdout);
    let files: Vec<_> = events.iter().filter(|e| e["event"] == "file").collect();
    assert!(
        files
            .iter()
            .any(|e| e["path"] == "docs/readme.md" && e["status"] == "SYNCHRONIZED"),
        "{r:?}"
    );
    assert!(
        files
            .iter()
            .any(|e| e["path"] == "gone" && e["status"] == "SYNCHRONIZED(del)"),
        "{r:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "summary");
    assert_eq!(last["files_deleted"], 1);
    assert_eq!(last["files_transferred"], 6, "4 files + 2 symlinks: {last}");
    assert_eq!(last["bytes_total"], 3 + 9 + 300_000 + 10);
    assert_eq!(last["conflicts"], 0);
    assert_eq!(last["errors"], 0);
    assert_eq!(last["exit"], 0);
    // The other side is an agent over a pipe: real protocol traffic, counted.
    // ...compressed: 300 kB of one repeated byte costs almost nothing on the wire.
    let sent = last["bytes_sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 20_000, "{last}");
    assert!(last["bytes_received"].as_u64().unwrap() > 0, "{last}");
    assert!(last["elapsed_s"].is_f64());
    assert_same_tree(&f.a, &f.b);
    // Without --compress, a local pipe sends data as it is: compressing would only cost CPU.
    write(f.a.join("again"), &"y".repeat(300_000));
    let r = f.sync("push", &["--format", "json"]);
    let last = json_events(&r.stdout).pop().unwrap();
    assert!(last["bytes_sent"].as_u64().unwrap() > 300_000, "{last}");
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn json_conflict_event_and_exit_in_summary() {
    let f = conflicted();
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("bidi", &["--format", "json"]);
    assert_eq!(r.code, 2);
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
    assert_same_tree_except(&f.a, &f.b, &Except::at(&["doc.txt"]));
    let events = json_events(&r.stdout);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "conflict" && e["path"] == "doc.txt" && e["reason"].is_string()),
        "{r:?}"
    );
    assert_eq!(events.last().unwrap()["exit"], 2);
    assert_eq!(events.last().unwrap()["conflicts"], 1);
}

#[test]
fn excluded_paths_are_left_alone() {
    let f = fixture();
    write(f.a.join("keep.txt"), "k");
    write(f.a.join("debug.log"), "l");
    write(f.a.join("important.log"), "i");
    write(f.a.join("target/big"), "b");
    write(f.b.join("remote.log"), "stays");
    let ex = f.tmp.path().join("excludes");
    write(&ex, "# build output\ntarget/\n");
    let before_a = snapshot(&f.a);
    let r = f.sync(
        "push",
        &[
            "--exclude",
            "*.log",
            "--include",
            "important.log",
            "--exclude-from",
            ex.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(names(&f.b), ["important.log", "keep.txt", "remote.log"]);
    assert_unchanged(&f.a, &before_a);
    // Excluded on both sides: the local ones not copied, the remote one not deleted.
    assert_same_tree_except(
        &f.a,
        &f.b,
        &Except::at(&["debug.log", "target", "remote.log"]),
    );
}

#[test]
fn unchanged_files_are_not_rehashed_or_rewritten() {
    let f = fixture();
    write(f.a.join("x"), "content");
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    let ino = std::fs::metadata(f.b.join("x")).unwrap().ino();
    // Touch only the mtime: content identical, so only attributes move.
    set_mtime(f.a.join("x"), 1_500_000_000);
    let before_a = snapshot(&f.a);
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_unchanged(&f.a, &before_a);
    assert!(r.stdout.contains("SYNCHRONIZED(mov)"), "{r:?}");
    assert_eq!(
        std::fs::metadata(f.b.join("x")).unwrap().ino(),
        ino,
        "rewritten although identical"
    );
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn a_deletion_undone_by_a_modification_says_so() {
    let f = fixture();
    write(f.a.join("notes.txt"), "v1");
    write(f.a.join("dir/inside.txt"), "v1");
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    std::fs::remove_file(f.a.join("notes.txt")).unwrap();
    write(f.b.join("notes.txt"), "v2, edited on the other side");
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(read(f.a.join("notes.txt")), "v2, edited on the other side");
    assert_same_tree(&f.a, &f.b);
    let line = r
        .lines()
        .into_iter()
        .find(|l| l.contains("notes.txt"))
        .unwrap();
    assert!(
        line.contains("deleted on local") && line.contains("restored"),
        "{r:?}"
    );
    // And in JSON, for the unattended.
    std::fs::remove_dir_all(f.b.join("dir")).unwrap();
    write(f.a.join("dir/inside.txt"), "v2");
    let r = f.sync("bidi", &["--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let events = json_events(&r.stdout);
    let back = events
        .iter()
        .find(|e| e["event"] == "file" && e["path"] == "dir/inside.txt")
        .unwrap();
    assert_eq!(back["restored"], true, "{r:?}");
    assert!(
        back["reason"]
            .as_str()
            .unwrap()
            .contains("deleted on remote"),
        "{r:?}"
    );
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn long_names_and_deep_paths_round_trip_every_way() {
    let f = fixture();
    let long = "n".repeat(255);
    let mut deep = f.a.clone();
    for i in 0..60 {
        deep = deep.join(format!("level{i:02}"));
    }
    write(deep.join(&long), "at the bottom");
    write(f.a.join(os(b"nl\nand\xffbyte")), "odd");
    for dir in ["push", "pull", "bidi"] {
        let r = f.sync(dir, &["-N", dir, "-y"]);
        assert_eq!(r.code, 0, "{dir}: {r:?}");
        assert_same_tree(&f.a, &f.b);
    }
}
