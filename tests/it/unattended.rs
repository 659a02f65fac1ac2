//! The options for unattended runs: quiet output for cron, filters that keep history,
//! old-directory pruning, a bandwidth cap, keep directories, dedup; over the pipe transport
//! and over SSH.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::sides::{both, over_pipe};
use crate::sshd::ssh_fixture;
use crate::util::*;

#[track_caller]
fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{r:?}");
}

fn summary(r: &Run) -> serde_json::Value {
    json_events(&r.stdout).pop().expect("a summary")
}

#[test]
fn quiet_prints_nothing_on_success_and_problems_on_stderr() {
    let s = over_pipe();
    write(s.a.join("f"), "1");
    let r = (s.sync)("bidi", &["-q"]);
    ok(&r);
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    assert_same_tree(&s.a, &s.b);
    write(s.a.join("f"), "local");
    write(s.b.join("f"), "remote");
    let (before_a, before_b) = (snapshot(&s.a), snapshot(&s.b));
    let r = (s.sync)("bidi", &["-q"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains("CONFLICT") && r.stderr.contains("/f"),
        "{r:?}"
    );
    assert_unchanged(&s.a, &before_a);
    assert_unchanged(&s.b, &before_b);
    assert_same_tree_except(&s.a, &s.b, &Except::at(&["f"]));
}

#[test]
fn an_exclude_added_and_removed_keeps_the_history() {
    both(|s| {
        write(s.a.join("f.txt"), "v1");
        ok(&(s.sync)("bidi", &[]));
        assert_same_tree(&s.a, &s.b);
        let (before_a, before_b) = (snapshot(&s.a), snapshot(&s.b));
        ok(&(s.sync)("bidi", &["--exclude", "/f.txt"]));
        assert_unchanged(&s.a, &before_a);
        assert_unchanged(&s.b, &before_b);
        write(s.a.join("f.txt"), "v2, edited while excluded");
        let before_a = snapshot(&s.a);
        let r = (s.sync)("bidi", &["--format", "json"]);
        ok(&r);
        assert_eq!(summary(&r)["conflicts"], 0, "{r:?}");
        assert_eq!(read(s.b.join("f.txt")), "v2, edited while excluded");
        assert_unchanged(&s.a, &before_a);
        assert_same_tree(&s.a, &s.b);
    });
}

#[test]
fn old_directories_are_neither_copied_nor_deleted() {
    both(|s| {
        std::fs::create_dir_all(s.a.join("old/sub")).unwrap();
        write(s.a.join("old/sub/f"), "old stuff");
        write(s.a.join("new.txt"), "new");
        ok(&(s.sync)("push", &[]));
        assert_same_tree(&s.a, &s.b);
        // Time passes: the directory is now old on the far side, and gets a new file here.
        let touched = std::process::Command::new("touch")
            .args(["-d", "@1000000000"])
            .arg(s.b.join("old"))
            .status()
            .unwrap();
        assert!(touched.success());
        write(s.a.join("old/added"), "not copied");
        std::fs::remove_file(s.a.join("old/sub/f")).unwrap();
        write(s.a.join("new.txt"), "newer");
        let before_a = snapshot(&s.a);
        ok(&(s.sync)("push", &["--exclude-dirs-older-than", "7d"]));
        assert!(!s.b.join("old/added").exists());
        assert_eq!(read(s.b.join("old/sub/f")), "old stuff");
        assert_eq!(read(s.b.join("new.txt")), "newer");
        assert_unchanged(&s.a, &before_a);
        // All alike but the old directory, left out on both sides.
        assert_same_tree_except(&s.a, &s.b, &Except::at(&["old"]));
        // Without the option, the directory is in scope again.
        ok(&(s.sync)("push", &[]));
        assert_eq!(read(s.b.join("old/added")), "not copied");
        assert!(!s.b.join("old/sub/f").exists());
        assert_same_tree(&s.a, &s.b);
    });
}

#[test]
fn a_rate_cap_paces_the_transfer() {
    both(|s| {
        std::fs::write(s.a.join("big"), pseudo_random(16 << 20, 9)).unwrap();
        let start = Instant::now();
        ok(&(s.sync)("push", &["-l", "40m", "--compress", "none"]));
        let took = start.elapsed().as_secs_f64();
        // 16 MiB at 40 Mbit/s is 3.36 s; the cap allows one small burst.
        assert!((3.1..6.0).contains(&took), "{took} s");
        assert_same_tree(&s.a, &s.b);
    });
}

#[test]
fn keep_dirs_hold_what_the_sync_deleted_or_replaced() {
    both(|s| {
        // The far keep directory is the only difference a push leaves.
        let kept_far = Except::at(&[".kept"]);
        write(s.a.join("doomed"), "deleted later");
        write(s.a.join("d/replaced"), "version 1");
        ok(&(s.sync)("push", &["--keep-dir-remote", ".kept"]));
        assert_same_tree_except(&s.a, &s.b, &kept_far);
        std::fs::remove_file(s.a.join("doomed")).unwrap();
        write(s.a.join("d/replaced"), "version 2");
        ok(&(s.sync)("push", &["--keep-dir-remote", ".kept"]));
        assert_same_tree_except(&s.a, &s.b, &kept_far);
        write(s.a.join("d/replaced"), "version 3");
        ok(&(s.sync)("push", &["--keep-dir-remote", ".kept"]));
        assert_same_tree_except(&s.a, &s.b, &kept_far);
        assert_eq!(read(s.b.join("d/replaced")), "version 3");
        assert!(!s.b.join("doomed").exists());
        let kept = kept_files(&s.b.join(".kept"));
        assert!(
            kept.contains(&("doomed".into(), "deleted later".into())),
            "{kept:?}"
        );
        assert!(
            kept.contains(&("d/replaced".into(), "version 1".into())),
            "{kept:?}"
        );
        assert!(
            kept.contains(&("d/replaced".into(), "version 2".into())),
            "{kept:?}"
        );
        // The keep directory is not synced back or deleted by a push.
        assert!(!s.a.join(".kept").exists());
        // And the local side's, absolute, outside the root.
        let outside = s.a.parent().unwrap().join("kept-local");
        write(s.b.join("d/replaced"), "remote edit");
        ok(&(s.sync)(
            "pull",
            &["--keep-dir-local", outside.to_str().unwrap()],
        ));
        let kept = kept_files(&outside);
        assert!(
            kept.contains(&("d/replaced".into(), "version 3".into())),
            "{kept:?}"
        );
        assert_same_tree_except(&s.a, &s.b, &kept_far);
    });
}

/// (relative path below the dated directory, content) of every file kept.
fn kept_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stamp in std::fs::read_dir(dir).unwrap() {
        let stamp = stamp.unwrap().path();
        let mut stack = vec![stamp.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(&stamp)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    // A second version kept in the same second carries a .N suffix.
                    let rel = rel
                        .trim_end_matches(|c: char| c.is_ascii_digit())
                        .trim_end_matches('.')
                        .to_string();
                    out.push((rel, std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
    }
    out
}

#[test]
fn dedup_makes_a_copied_file_from_the_one_already_there() {
    both(|s| {
        std::fs::write(s.a.join("original"), pseudo_random(32 << 20, 3)).unwrap();
        ok(&(s.sync)("push", &[]));
        assert_same_tree(&s.a, &s.b);
        std::fs::copy(s.a.join("original"), s.a.join("copy")).unwrap();
        let r = (s.sync)("push", &["--dedup", "copy", "--format", "json"]);
        ok(&r);
        let wire = summary(&r)["bytes_sent"].as_u64().unwrap()
            + summary(&r)["bytes_received"].as_u64().unwrap();
        assert!(wire < 1 << 20, "{wire} bytes on the wire");
        let events = json_events(&r.stdout);
        assert!(
            events
                .iter()
                .any(|e| e["path"] == "copy" && e["status"] == "SYNCHRONIZED(ddp)"),
            "{r:?}"
        );
        assert_same_tree(&s.a, &s.b);
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_ne!(ino(&s.b.join("copy")), ino(&s.b.join("original")));
        // hardlink: the same inode when the attributes match.
        std::fs::hard_link(s.a.join("original"), s.a.join("linked")).unwrap();
        std::fs::remove_file(s.a.join("linked")).unwrap();
        std::process::Command::new("cp")
            .args(["-p"])
            .arg(s.a.join("original"))
            .arg(s.a.join("twin"))
            .status()
            .unwrap();
        ok(&(s.sync)(
            "push",
            &["--dedup", "hardlink", "--no-hard-links"],
        ));
        assert_eq!(ino(&s.b.join("twin")), ino(&s.b.join("original")));
        // Alike but for the link dedup made on the far side.
        assert_same_tree_except(
            &s.a,
            &s.b,
            &Except {
                hard_links: true,
                ..Except::default()
            },
        );
    });
}

#[test]
fn bad_values_of_the_unattended_options_are_refused() {
    let f = fixture();
    for bad in [
        &["-l", "fast"][..],
        &["-l", "0"],
        &["--target-rate", "12x"],
        &["--dedup", "maybe"],
        &["--exclude-dirs-older-than", "old"],
        &["--keep-dir-remote", "."],
        &["-L", ":3"],
        &["-R", "logs:0"],
    ] {
        let r = f.sync("push", bad);
        assert_eq!(r.code, 32, "{bad:?}: {r:?}");
    }
}

/// Every `.log*` file in `dir`, current one first, concatenated.
fn logs(dir: &Path) -> (usize, String) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let text = names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("");
    (names.len(), text)
}

#[test]
fn logs_on_both_sides_with_rotation() {
    both(|s| {
        let dir = s.a.parent().unwrap().join("logs");
        let far = s.a.parent().unwrap().join("far-logs");
        let long = "x".repeat(120);
        std::fs::create_dir(s.a.join("many")).unwrap();
        for i in 0..9000 {
            std::fs::write(s.a.join(format!("many/{long}{i:05}")), "").unwrap();
        }
        let local = format!("{}:1", dir.display());
        let remote = format!("{}:1", far.display());
        let r = (s.sync)("push", &["-q", "-L", &local, "-R", &remote]);
        ok(&r);
        let (files, text) = logs(&dir);
        assert!(files >= 2, "the 1 MB log did not rotate: {files} file(s)");
        let line = text
            .lines()
            .find(|l| l.contains(&format!("/many/{long}00042 SYNCHRONIZED")))
            .expect("a status line per file");
        // A timestamp first, on the same line.
        assert!(
            line.starts_with("20") && line.as_bytes()[10] == b'T',
            "{line}"
        );
        let (_, far_text) = logs(&far);
        assert!(
            far_text.contains(&format!("/many/{long}08999 SYNCHRONIZED")),
            "far log lacks the file"
        );
        assert_same_tree(&s.a, &s.b);
    });
}

#[test]
fn a_run_that_fails_early_is_logged() {
    let f = fixture();
    let dir = f.tmp.path().join("logs");
    let r = f.run(&[
        "-d",
        "/no/such/dir",
        "-r",
        f.b.to_str().unwrap(),
        "-K",
        "push",
        "-L",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 64, "{r:?}");
    let (_, text) = logs(&dir);
    assert!(text.contains("/no/such/dir"), "{text}");
    let r = f.run(&[
        "-d",
        f.a.to_str().unwrap(),
        "-r",
        f.b.to_str().unwrap(),
        "-K",
        "push",
        "-L",
        "logs:0",
    ]);
    assert_eq!(r.code, 32, "{r:?}");
}

#[test]
fn the_rules_file_form_end_to_end() {
    // Over a pipe, then to an SSH destination (-d user@host:path).
    for over_ssh in [false, true] {
        let ssh = over_ssh.then(ssh_fixture);
        let plain = fixture();
        let f = ssh.as_ref().map_or(&plain, |s| &s.f);
        let (a, b) = (&f.a, &f.b);
        write(a.join("a.c"), "a");
        write(a.join("b.c"), "not listed");
        write(a.join("x.h"), "h");
        write(a.join("sub/s.txt"), "s");
        let command = || match &ssh {
            Some(s) => {
                let mut c = s.client();
                c.arg("-P")
                    .arg(s.sshd.port.to_string())
                    .arg("-i")
                    .arg(s.sshd.key())
                    .arg("--agent-path")
                    .arg(agent_path());
                c
            }
            None => f.sync_command(),
        };
        let dst = match &ssh {
            Some(s) => s.remote(),
            None => b.display().to_string(),
        };
        let mut c = command();
        c.arg("-s")
            .arg(a)
            .arg("-d")
            .arg(&dst)
            .args(["a.c", "*.h", "sub", "missing.c"]);
        let r = output(c.output().unwrap());
        assert_eq!(r.code, 4, "{r:?}");
        assert!(r.stderr.contains("missing.c"), "{r:?}");
        assert_eq!(read(b.join("a.c")), "a");
        assert_eq!(read(b.join("x.h")), "h");
        assert_eq!(read(b.join("sub/s.txt")), "s");
        assert!(!b.join("b.c").exists() && !b.join("missing.c").exists());
        // What the rules name arrived; b.c is not among them.
        let unlisted = Except::at(&["b.c"]);
        assert_same_tree_except(a, b, &unlisted);
        let rules = std::fs::read_to_string(f.state.join("packingrules")).unwrap();
        assert!(
            rules.contains("LIST *.h") && !rules.contains("missing.c"),
            "{rules}"
        );
        // Later: both sides change; a bare run reconciles every rule, both ways.
        write(b.join("a.c"), "edited at the destination");
        write(a.join("new.h"), "matches the stored wildcard");
        let r = output(command().output().unwrap());
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(read(a.join("a.c")), "edited at the destination");
        assert_eq!(read(b.join("new.h")), "matches the stored wildcard");
        assert!(!b.join("b.c").exists());
        assert_same_tree_except(a, b, &unlisted);
    }
}

#[test]
fn a_bare_run_without_rules_says_how_to_add_them() {
    let f = fixture();
    let r = output(f.command().output().unwrap());
    assert_eq!(r.code, 16, "{r:?}");
    assert!(r.stderr.contains("-s SRC_DIR -d DST_DIR"), "{r:?}");
}
