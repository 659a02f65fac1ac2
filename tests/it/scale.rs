//! What the large-tree rework could break: tree order with odd names across scan parts,
//! the wire and the baseline; exact move detection among many equal files; a baseline
//! cut short anywhere.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::util::*;

/// Names whose bytes sort around `/` (0x2f) and around each other in every tricky way:
/// a tree ordered by plain byte strings would put `a-b` between `a` and `a/x`.
const ODD: &[&[u8]] = &[
    b"a",
    b"a b",
    b"a!",
    b"a-b",
    b"a.b",
    b"a0",
    b"A",
    b"a\nnewline",
    b"a\xffnot-utf8",
    b"\xc3\xa4-umlaut",
    b"-dash-first",
    b".hidden",
    b"z",
];

fn odd_tree(root: &Path) {
    for dir in ODD {
        let d = root.join(std::ffi::OsStr::from_bytes(dir));
        std::fs::create_dir_all(&d).unwrap();
        for name in ODD {
            let p = d.join(std::ffi::OsStr::from_bytes(name));
            std::fs::write(&p, [dir, &b"/"[..], name].concat()).unwrap();
        }
    }
    // Enough entries that the far side's scan arrives in two parts (SCAN_BATCH).
    for i in 0..20_100 {
        write(
            root.join(format!("a/many/{:04}-{}", i, i % 7)),
            &i.to_string(),
        );
    }
}

/// Asserts a run (with `--format json`) succeeded and changed nothing.
#[track_caller]
fn assert_nothing_done(r: Run) {
    assert_eq!(r.code, 0, "{r:?}");
    let done: Vec<_> = json_events(&r.stdout)
        .into_iter()
        .filter(|e| e["event"] == "file" && e["status"] != "SYNCHRONIZED(exs)")
        .collect();
    assert!(done.is_empty(), "a no-op run did something: {done:?}");
}

#[test]
fn odd_names_keep_their_order_through_scan_parts_wire_and_baseline() {
    let f = fixture();
    // Odd file names cannot also be directory names at the same level: files go one
    // level down.
    odd_tree(&f.a.join("top"));
    let r = f.sync("bidi", &["-N", "odd"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);

    // A second run over the same trees, now with a baseline: nothing to do at all. A merge
    // that lost its place in tree order would see adds and deletes here.
    assert_nothing_done(f.sync("bidi", &["-N", "odd", "--format", "json"]));
    assert_same_tree(&f.a, &f.b);

    // Deletions on each side propagate to exactly those paths.
    let gone_a =
        f.a.join("top")
            .join(std::ffi::OsStr::from_bytes(b"a\xffnot-utf8"));
    let gone_b =
        f.b.join("top/a-b")
            .join(std::ffi::OsStr::from_bytes(b"a\nnewline"));
    std::fs::remove_dir_all(&gone_a).unwrap();
    std::fs::remove_file(&gone_b).unwrap();
    write(f.b.join("top/a/new"), "from b");
    let r = f.sync("bidi", &["-N", "odd"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
    assert!(!f
        .b
        .join("top")
        .join(std::ffi::OsStr::from_bytes(b"a\xffnot-utf8"))
        .exists());
    assert!(!f
        .a
        .join("top/a-b")
        .join(std::ffi::OsStr::from_bytes(b"a\nnewline"))
        .exists());
    assert_eq!(read(f.a.join("top/a/new")), "from b");
    assert_eq!(read(f.a.join("top/a/many/20099-2")), "20099");
}

#[test]
fn a_move_among_many_equal_files_is_replayed_exactly() {
    let f = fixture();
    for i in 0..300 {
        write(
            f.a.join(format!("dup/{i:03}")),
            &"same content\n".repeat(50),
        );
    }
    write(f.a.join("dup/unique"), &"only one like me\n".repeat(500));
    assert_eq!(f.sync("push", &["-N", "mv"]).code, 0);
    assert_same_tree(&f.a, &f.b);
    let ino = |p: &str| std::fs::metadata(f.b.join(p)).unwrap().ino();
    let before: Vec<u64> = (0..300).map(|i| ino(&format!("dup/{i:03}"))).collect();
    let unique = ino("dup/unique");

    std::fs::create_dir(f.a.join("moved")).unwrap();
    std::fs::rename(f.a.join("dup/unique"), f.a.join("moved/unique")).unwrap();
    std::fs::rename(f.a.join("dup/150"), f.a.join("moved/150")).unwrap();
    let r = f.sync("push", &["-N", "mv", "--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
    assert_eq!(
        ino("moved/unique"),
        unique,
        "the unique file was moved, not copied"
    );
    // Every other copy is left exactly where and as it was.
    for (i, was) in before.iter().enumerate().filter(|(i, _)| *i != 150) {
        assert_eq!(ino(&format!("dup/{i:03}")), *was, "dup/{i:03} was touched");
    }
    let events = json_events(&r.stdout);
    let touched: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "file" && e["status"] != "SYNCHRONIZED(exs)")
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect();
    for p in &touched {
        assert!(
            p.starts_with("moved") || p == "dup/150" || p == "dup/unique",
            "{p} was touched by a run that only moved two files: {touched:?}"
        );
    }
}

#[test]
fn a_baseline_cut_short_anywhere_is_exit_16_and_changes_nothing() {
    let f = fixture();
    for i in 0..200 {
        write(f.a.join(format!("d/{i}")), &i.to_string());
    }
    assert_eq!(f.sync("bidi", &["-N", "cut"]).code, 0);
    assert_same_tree(&f.a, &f.b);
    let path = f.state.join("cut.baseline");
    let whole = std::fs::read(&path).unwrap();
    std::fs::remove_file(f.a.join("d/7")).unwrap();
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    for cut in [0, 10, 40, whole.len() / 2, whole.len() - 1] {
        std::fs::write(&path, &whole[..cut]).unwrap();
        let r = f.sync("bidi", &["-N", "cut"]);
        assert_eq!(r.code, 16, "cut at {cut}: {r:?}");
        assert!(r.stderr.contains("cut.baseline"), "cut at {cut}: {r:?}");
        assert!(
            f.b.join("d/7").exists(),
            "cut at {cut}: a deletion went through"
        );
        assert_unchanged(&f.a, &before_a);
        assert_unchanged(&f.b, &before_b);
    }
    std::fs::write(&path, &whole).unwrap();
    assert_eq!(f.sync("bidi", &["-N", "cut"]).code, 0);
    assert!(
        !f.b.join("d/7").exists(),
        "the intact baseline propagates the deletion"
    );
    assert_unchanged(&f.a, &before_a);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn unchanged_files_are_never_hashed_twice() {
    let f = fixture();
    same_size_files([&f.a, &f.b], 50);
    let hashed = |r: &Run| {
        assert_eq!(r.code, 0, "{r:?}");
        let events = json_events(&r.stdout);
        let summary = events
            .iter()
            .rev()
            .find(|e| e["event"] == "summary")
            .expect("a summary");
        summary["files_hashed"].as_u64().expect("files_hashed")
    };
    // Equal sizes on both sides: only content can tell, so the first run reads them all.
    assert_eq!(
        hashed(&f.sync("bidi", &["-N", "h", "--format", "json"])),
        100
    );
    assert_same_tree(&f.a, &f.b);
    // From the baseline's cache: nothing is read again.
    assert_eq!(hashed(&f.sync("bidi", &["-N", "h", "--format", "json"])), 0);
    assert_same_tree(&f.a, &f.b);
    // Rewritten with the same size: that one file is read again (on its side only).
    write(f.a.join("d/7"), "same size XX");
    let before_a = snapshot(&f.a);
    assert_eq!(hashed(&f.sync("bidi", &["-N", "h", "--format", "json"])), 1);
    assert_eq!(read(f.b.join("d/7")), "same size XX");
    assert_unchanged(&f.a, &before_a);
    assert_same_tree(&f.a, &f.b);
    assert_eq!(hashed(&f.sync("bidi", &["-N", "h", "--format", "json"])), 0);
    assert_same_tree(&f.a, &f.b);
}

/// `--scan-threads`: several threads find the same tree as one, in the same order (the
/// plan of a dry run is the same line for line), hard links split between threads keep
/// their first name as the anchor, the far side's agent scans with them too (a no-op
/// after finds nothing to do), and a count out of range is refused as invalid (32).
#[test]
fn scan_threads_find_the_same_tree_in_the_same_order() {
    let f = fixture();
    odd_tree(&f.a.join("top"));
    // Hard links and a symlink in a directory large enough to be shared out.
    let big = f.a.join("top/a/many");
    for k in 0..5 {
        std::fs::hard_link(big.join("0007-0"), big.join(format!("link{k}"))).unwrap();
    }
    std::os::unix::fs::symlink("0001-1", big.join("sym")).unwrap();

    let plan = |threads: &str| -> Vec<serde_json::Value> {
        let args = [
            "-N",
            "st",
            "-n",
            "--format",
            "json",
            "--scan-threads",
            threads,
        ];
        let r = f.sync("push", &args);
        assert_eq!(r.code, 0, "{r:?}");
        let events = json_events(&r.stdout);
        // The summary's timing differs from run to run; everything before it must not.
        events
            .into_iter()
            .filter(|e| e.get("elapsed_s").is_none())
            .collect()
    };
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let one = plan("1");
    assert!(
        one.len() > 20_000,
        "the dry run listed {} events",
        one.len()
    );
    assert_eq!(plan("4"), one, "four threads planned otherwise than one");
    // Dry runs: neither side touched.
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);

    let r = f.sync("push", &["-N", "st", "--scan-threads", "4"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
    let ino = |p: &str| std::fs::metadata(f.b.join(p)).unwrap().ino();
    let anchor = ino("top/a/many/0007-0");
    for k in 0..5 {
        assert_eq!(ino(&format!("top/a/many/link{k}")), anchor, "link{k}");
    }

    // Both sides scanned in parallel now, against the baseline: nothing to do.
    let args = ["-N", "st", "--scan-threads", "3", "--format", "json"];
    assert_nothing_done(f.sync("push", &args));
    assert_same_tree(&f.a, &f.b);

    for bad in ["0", "65", "many"] {
        let r = f.sync("push", &["-N", "st", "--scan-threads", bad]);
        assert_eq!(r.code, 32, "--scan-threads {bad}: {r:?}");
        assert!(r.stderr.contains("--scan-threads"), "{}", r.stderr);
    }
}

/// A renamed directory is replayed as moves without reading its files again, on either
/// side: each file keeps its inode and ctime through the rename, so the hash cache knows
/// it. A file rewritten meanwhile with its size and mtime put back is still read, and
/// sent as what it now is.
#[test]
fn a_renamed_directory_pairs_its_files_without_reading_them() {
    let f = fixture();
    for d in 0..4 {
        for i in 0..50 {
            let body = format!("{d}/{i} {}\n", "x".repeat(d * 50 + i));
            write(f.a.join(format!("tree/d{d}/f{i:02}")), &body);
        }
    }
    let json = |r: Run| {
        assert_eq!(r.code, 0, "{r:?}");
        json_events(&r.stdout).pop().unwrap()
    };
    json(f.sync("push", &["--format", "json"]));
    assert_same_tree(&f.a, &f.b);
    let count = |s: &serde_json::Value, key: &str| s[key].as_u64().unwrap();

    std::fs::rename(f.a.join("tree"), f.a.join("renamed")).unwrap();
    let s = json(f.sync("push", &["--format", "json"]));
    assert_eq!(count(&s, "files_hashed"), 0, "{s}");
    assert_eq!(count(&s, "files_transferred"), 0, "{s}");
    assert!(count(&s, "moved") >= 200, "{s}");
    assert_same_tree(&f.a, &f.b);

    // The far side renames it back: pulled as moves, nothing read either.
    std::fs::rename(f.b.join("renamed"), f.b.join("tree")).unwrap();
    let s = json(f.sync("pull", &["--format", "json"]));
    assert_eq!(count(&s, "files_hashed"), 0, "{s}");
    assert_eq!(count(&s, "files_transferred"), 0, "{s}");
    assert_same_tree(&f.a, &f.b);

    // Same size, same mtime, other bytes: the new ctime gives it away.
    let victim = f.a.join("tree/d1/f07");
    let before = std::fs::metadata(&victim).unwrap().modified().unwrap();
    let body = read(&victim).replace('x', "y");
    std::fs::rename(f.a.join("tree"), f.a.join("again")).unwrap();
    let victim = f.a.join("again/d1/f07");
    write(&victim, &body);
    let file = std::fs::File::options().write(true).open(&victim).unwrap();
    file.set_modified(before).unwrap();
    assert_eq!(
        std::fs::metadata(&victim).unwrap().modified().unwrap(),
        before
    );
    let s = json(f.sync("push", &["--format", "json"]));
    assert!(count(&s, "files_hashed") >= 1, "{s}");
    assert_eq!(count(&s, "files_transferred"), 1, "{s}");
    assert_eq!(read(f.b.join("again/d1/f07")), body);
    assert_same_tree(&f.a, &f.b);
}
