//! Exit bits, clear errors, and the safety checks.

use std::fs::TryLockError;

use crate::util::*;

#[test]
fn missing_local_or_remote_root_is_exit_64() {
    let f = fixture();
    let mut c = f.sync_command();
    c.args(["-d", "/nonexistent/tandem-root", "-r"])
        .arg(&f.b)
        .args(["-K", "push"]);
    let r = output(c.output().unwrap());
    assert_eq!(r.code, 64, "{r:?}");
    assert!(
        r.stderr.contains("/nonexistent/tandem-root") && r.stderr.contains("does not exist"),
        "{r:?}"
    );
    let mut c = f.sync_command();
    c.arg("-d")
        .arg(&f.a)
        .args(["-r", "/nonexistent/other", "-K", "bidi"]);
    let r = output(c.output().unwrap());
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("remote '/nonexistent/other'"), "{r:?}");
}

#[test]
fn a_file_as_root_is_exit_64() {
    let f = fixture();
    write(f.tmp.path().join("plain"), "x");
    let mut c = f.sync_command();
    c.arg("-d")
        .arg(&f.a)
        .arg("-r")
        .arg(f.tmp.path().join("plain"))
        .args(["-K", "push"]);
    let r = output(c.output().unwrap());
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("not a directory"), "{r:?}");
}

#[test]
fn locked_session_is_exit_16_and_a_killed_holder_frees_it() {
    let f = fixture();
    std::fs::create_dir_all(&f.state).unwrap();
    let lock = std::fs::File::create(f.state.join("held.lock")).unwrap();
    assert!(!matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    let r = f.sync("push", &["-N", "held"]);
    assert_eq!(r.code, 16, "{r:?}");
    assert!(r.stderr.contains("in use by another tandem run"), "{r:?}");
    drop(lock);
    assert_eq!(f.sync("push", &["-N", "held"]).code, 0);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn corrupt_baseline_is_exit_16_and_changes_nothing() {
    let f = fixture();
    write(f.a.join("x"), "1");
    assert_eq!(f.sync("bidi", &["-N", "s"]).code, 0);
    assert_same_tree(&f.a, &f.b);
    let path = f.state.join("s.baseline");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 3);
    std::fs::write(&path, bytes).unwrap();
    std::fs::remove_file(f.a.join("x")).unwrap();
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("bidi", &["-N", "s"]);
    assert_eq!(r.code, 16, "{r:?}");
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
    assert!(
        r.stderr.contains("s.baseline") && r.stderr.contains("forget"),
        "{r:?}"
    );
    assert!(
        f.b.join("x").exists(),
        "nothing deleted on a corrupt baseline"
    );
    // forget starts over: with no baseline, the deletion is not propagated.
    assert_eq!(f.run(&["forget", "-N", "s"]).code, 0);
    assert_eq!(f.sync("bidi", &["-N", "s"]).code, 0);
    assert!(f.a.join("x").exists() && f.b.join("x").exists());
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn session_bound_to_other_roots_is_exit_16() {
    let f = fixture();
    assert_eq!(f.sync("push", &["-N", "mine"]).code, 0);
    assert_same_tree(&f.a, &f.b);
    let other = f.tmp.path().join("c");
    std::fs::create_dir(&other).unwrap();
    let mut c = f.sync_command();
    c.arg("-d")
        .arg(&f.a)
        .arg("-r")
        .arg(&other)
        .args(["-K", "push", "-N", "mine"]);
    let r = output(c.output().unwrap());
    assert_eq!(r.code, 16, "{r:?}");
}

fn many_files(f: &Fixture, n: usize) {
    for i in 0..n {
        write(f.a.join(format!("f{i:03}")), "x");
    }
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn mass_deletion_is_refused_without_a_tty_unless_yes() {
    let f = fixture();
    many_files(&f, 80);
    for i in 0..70 {
        std::fs::remove_file(f.a.join(format!("f{i:03}"))).unwrap();
    }
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 128, "{r:?}");
    assert!(
        r.stderr.contains("would delete 70 of 80") && r.stderr.contains("-y"),
        "{r:?}"
    );
    assert_eq!(names(&f.b).len(), 80, "nothing deleted");
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
    let r = f.sync("bidi", &["-y"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(names(&f.b).len(), 10);
    assert_unchanged(&f.a, &before_a);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn max_delete_refuses_even_with_yes() {
    let f = fixture();
    many_files(&f, 10);
    for i in 0..3 {
        std::fs::remove_file(f.a.join(format!("f{i:03}"))).unwrap();
    }
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("bidi", &["-y", "--max-delete", "2"]);
    assert_eq!(r.code, 128, "{r:?}");
    assert!(r.stderr.contains("--max-delete 2"), "{r:?}");
    assert_eq!(names(&f.b).len(), 10);
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
    assert_eq!(f.sync("bidi", &["--max-delete", "30%"]).code, 0);
    assert_eq!(names(&f.b).len(), 7);
    assert_unchanged(&f.a, &before_a);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn root_recreated_at_the_same_path_is_refused_however_small_the_tree() {
    let f = fixture();
    write(f.b.join("data"), "d");
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    // The remote "disk" is swapped for an empty directory at the same path.
    std::fs::remove_dir_all(&f.b).unwrap();
    std::fs::create_dir(&f.b).unwrap();
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 128, "{r:?}");
    assert!(r.stderr.contains("device/inode changed"), "{r:?}");
    assert!(f.a.join("data").exists(), "local data deleted");
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
}

#[test]
fn replaced_root_directory_is_refused() {
    let f = fixture();
    write(f.b.join("data"), "d");
    write(f.b.join("more"), "m");
    assert_eq!(f.sync("bidi", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    // Another directory (another disk) is put in place of the remote root.
    let other = f.tmp.path().join("other");
    write(other.join("data"), "d");
    std::fs::remove_dir_all(&f.b).unwrap();
    std::fs::rename(&other, &f.b).unwrap();
    let (before_a, before_b) = (snapshot(&f.a), snapshot(&f.b));
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 128, "{r:?}");
    assert!(r.stderr.contains("device/inode changed"), "{r:?}");
    assert!(f.a.join("more").exists(), "local data deleted");
    assert_unchanged(&f.a, &before_a);
    assert_unchanged(&f.b, &before_b);
    assert_eq!(f.sync("bidi", &["-y"]).code, 0);
    assert_same_tree(&f.a, &f.b);
}

/// Runs as an unprivileged user so permissions bite (tests run as root in CI).
fn as_nobody(f: &Fixture, extra: &[&str]) -> Run {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let mut c = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_tandem"),
        ]);
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
    };
    c.env("FILESYNC", &f.state)
        .stdin(std::process::Stdio::null());
    c.arg("-d").arg(&f.a).arg("-r").arg(&f.b).args(extra);
    output(c.output().unwrap())
}

fn open_up(f: &Fixture) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for p in [f.tmp.path(), &f.a, &f.b] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::create_dir_all(&f.state).unwrap();
    std::fs::set_permissions(&f.state, std::fs::Permissions::from_mode(0o777)).unwrap();
    // The trees are the running user's, as they would be: the replica is then alike in
    // everything, owners and the roots' times included, not only in what nobody can set.
    if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        let st = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&f.a)
            .arg(&f.b)
            .status()
            .unwrap();
        assert!(st.success(), "chown");
    }
}

#[test]
fn unreadable_file_sets_bit_8_and_the_rest_continues() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    write(f.a.join("a-ok"), "fine");
    write(f.a.join("b-secret"), "no");
    write(f.a.join("c-ok"), "fine too");
    std::fs::set_permissions(f.a.join("b-secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    open_up(&f);
    let before_a = snapshot(&f.a);
    let r = as_nobody(&f, &["-K", "push"]);
    assert_eq!(r.code & 8, 8, "{r:?}");
    assert!(
        r.stderr.contains("b-secret") && r.stderr.contains("ermission denied"),
        "{r:?}"
    );
    assert_eq!(names(&f.b), ["a-ok", "c-ok"]);
    // Everything but the file that could not be read.
    let unread = Except::at(&["b-secret"]);
    assert_unchanged(&f.a, &before_a);
    assert_same_tree_except(&f.a, &f.b, &unread);
    let r = as_nobody(&f, &["-K", "push", "--halt-on-error"]);
    assert_eq!(r.code & 8, 8, "{r:?}");
    assert_unchanged(&f.a, &before_a);
    assert_same_tree_except(&f.a, &f.b, &unread);
}

#[test]
fn unreadable_directory_is_not_taken_as_deleted() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    write(f.a.join("d/inner"), "x");
    open_up(&f);
    assert_eq!(as_nobody(&f, &["-K", "bidi"]).code, 0);
    assert_same_tree(&f.a, &f.b);
    // The remote copy becomes unreadable: its contents must not look deleted.
    std::fs::set_permissions(f.b.join("d"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let before_a = snapshot(&f.a);
    let r = as_nobody(&f, &["-K", "bidi"]);
    std::fs::set_permissions(f.b.join("d"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(r.code & 8, 8, "{r:?}");
    assert!(
        f.a.join("d/inner").exists(),
        "deleted locally because the remote could not be read"
    );
    // Nothing changed on either side: with its mode back, the remote is as it was.
    assert_unchanged(&f.a, &before_a);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn a_banner_before_the_agent_is_reported_not_parsed() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    write(f.a.join("x"), "1");
    let wrapper = f.tmp.path().join("noisy-agent");
    let script = format!(
        "#!/bin/sh\necho 'Welcome to the backup server!'\nexec '{}' \"$@\"\n",
        agent_path().display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = f.command();
    c.arg("--agent-path")
        .arg(&wrapper)
        .arg("-d")
        .arg(&f.a)
        .arg("-r")
        .arg(&f.b)
        .args(["-K", "push"]);
    let r = output(c.output().unwrap());
    assert_eq!(r.code, 64, "{r:?}");
    assert!(
        r.stderr.contains("Welcome to the backup server!") && r.stderr.contains("startup files"),
        "{r:?}"
    );
    assert!(
        !r.stderr.contains("tandem-agent:"),
        "the agent added noise: {r:?}"
    );
    assert!(names(&f.b).is_empty());
}

#[test]
fn halt_on_error_stops_at_the_first_unreadable_file_and_a_fixed_run_converges() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    for i in 0..30 {
        write(f.a.join(format!("f{i:02}")), &format!("file {i}"));
    }
    for i in [7, 17, 27] {
        std::fs::set_permissions(
            f.a.join(format!("f{i:02}")),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
    }
    open_up(&f);
    let before_a = snapshot(&f.a);
    let r = as_nobody(&f, &["-K", "push", "--halt-on-error"]);
    assert_eq!(r.code & 8, 8, "{r:?}");
    assert!(r.stderr.contains("--halt-on-error"), "{r:?}");
    assert_unchanged(&f.a, &before_a);
    // Nothing after the first failure started: at most the seven files before it arrived.
    let copied = names(&f.b);
    assert!(copied.len() <= 7, "did not halt: {copied:?}");
    assert!(!copied.iter().any(|n| n.as_str() > "f07"), "{copied:?}");
    for i in [7, 17, 27] {
        std::fs::set_permissions(
            f.a.join(format!("f{i:02}")),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let r = as_nobody(&f, &["-K", "push", "--halt-on-error"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn overlapping_roots_are_refused_before_anything_is_written() {
    let f = fixture();
    write(f.a.join("x"), "1");
    std::fs::create_dir(f.a.join("sub")).unwrap();
    let a = f.a.to_str().unwrap().to_string();
    let sub = f.a.join("sub").to_str().unwrap().to_string();
    let cases = [
        (a.clone(), a.clone(), "same directory"),
        (a.clone(), format!("{a}/./"), "same directory"),
        (a.clone(), sub.clone(), "nested"),
        (sub.clone(), a.clone(), "nested"),
    ];
    for (d, r, why) in cases {
        let mut c = f.sync_command();
        c.args(["-d", &d, "-r", &r, "-K", "push", "-y"]);
        let out = output(c.output().unwrap());
        assert_eq!(out.code, 32, "{d} {r}: {out:?}");
        assert!(
            out.stderr.contains(why) && out.stderr.contains(&d),
            "{out:?}"
        );
    }
    assert_eq!(names(&f.a), ["sub", "x"], "something was written");
}

#[test]
fn hostile_trees_never_reach_outside_the_roots() {
    let f = fixture();
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    write(outside.join("secret"), "keep out");
    // The source links to /etc: copied as a link, never followed.
    std::os::unix::fs::symlink("/etc", f.a.join("etc-link")).unwrap();
    // The destination has a symlink where the source has a directory.
    write(f.a.join("sub/x"), "inside");
    std::os::unix::fs::symlink(&outside, f.b.join("sub")).unwrap();
    let r = f.sync("push", &["-y"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_link(f.b.join("etc-link")).unwrap(),
        std::path::Path::new("/etc")
    );
    assert!(std::fs::symlink_metadata(f.b.join("sub")).unwrap().is_dir());
    assert_eq!(read(f.b.join("sub/x")), "inside");
    let left: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("secret")],
        "wrote outside the root"
    );
    assert_eq!(read(outside.join("secret")), "keep out");
    assert_same_tree(&f.a, &f.b);
}

/// Fills the filesystem of `dir` with one file, to the last byte it takes.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0x5au8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    // Whatever a partial block left: byte by byte.
    while f.write(&[0]).is_ok_and(|n| n == 1) {}
    path
}

#[test]
fn a_full_disk_under_the_baseline_keeps_the_old_one_and_the_next_run_converges() {
    let f = fixture();
    let _state = crate::faults::disk::Tmpfs::mount(&f.state, "512k");
    for i in 0..20 {
        write(f.a.join(format!("d/f{i}")), &format!("first {i}\n"));
    }
    assert_eq!(f.sync("push", &["-N", "full"]).code, 0);
    let baseline = f.state.join("full.baseline");
    let before = std::fs::read(&baseline).unwrap();
    let filler = fill(&f.state);
    // Enough new files that the baseline must grow.
    for i in 0..400 {
        write(
            f.a.join(format!("new/file-with-a-long-name-{i:04}")),
            "new\n",
        );
    }
    let r = f.sync("push", &["-N", "full"]);
    assert_eq!(
        r.code & 16,
        16,
        "a baseline that cannot be written is bit 16: {r:?}"
    );
    assert!(
        r.stderr.contains("baseline") && r.stderr.contains("No space left"),
        "says what and why: {r:?}"
    );
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    assert!(
        std::fs::read(&baseline).unwrap() == before,
        "the old baseline is whole"
    );
    let mut left: Vec<String> = names(&f.state);
    left.retain(|n| !n.starts_with("full.") && n != "filler");
    assert!(
        left.is_empty(),
        "nothing half-written left beside it: {left:?}"
    );
    // With room again, the next run records what the last one moved, and converges.
    std::fs::remove_file(filler).unwrap();
    let r = f.sync("push", &["-N", "full", "--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
    let third = f.sync("push", &["-N", "full", "--format", "json"]);
    assert_eq!(third.code, 0, "{third:?}");
    assert!(
        !json_events(&third.stdout)
            .iter()
            .any(|e| e["event"] == "file"),
        "nothing left to do: {third:?}"
    );
}
