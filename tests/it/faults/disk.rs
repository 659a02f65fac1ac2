//! A receiving disk that fills up, on a tmpfs mounted for the test: a new file that does
//! not fit, and a delta without room for its temp file.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::running::run_bounded;
use super::{is_temp, via};
use crate::sshd::ssh_fixture;
use crate::util::*;

/// A tmpfs mounted for one test; unmounted when dropped, also when the test panics (the
/// full-disk tests here, and the one under the baseline in `safety.rs`).
pub(crate) struct Tmpfs(PathBuf);

impl Tmpfs {
    pub(crate) fn mount(dir: &Path, size: &str) -> Tmpfs {
        assert!(
            rustix::process::geteuid().is_root(),
            "the full-disk tests mount a tmpfs: run them as root (CI does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs at {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Grows or shrinks it (not below what it holds).
    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success(), "remount {size}");
    }

    fn free(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.0).unwrap();
        st.f_bavail * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (an agent killed late): detach it, so the temp dir can go.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Names under `root` that tandem writes while receiving.
fn temp_files(root: &Path) -> Vec<String> {
    snapshot(root)
        .keys()
        .filter(|k| is_temp(k))
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

fn small_file(i: usize, version: &str) -> String {
    format!("small {i} {version}\n")
}

#[test]
fn a_full_remote_disk_fails_the_file_that_does_not_fit_and_loses_nothing() {
    let s = ssh_fixture();
    let disk = Tmpfs::mount(&s.f.b, "4m");
    let push = |extra: &[&str]| {
        let mut c = via(&s, s.sshd.port, &s.f.b, "push");
        c.args(extra);
        run_bounded(c).unwrap()
    };
    let old_big = pseudo_random(1 << 20, 1);
    std::fs::write(s.f.a.join("big"), &old_big).unwrap();
    for i in 0..4 {
        write(s.f.a.join(format!("small/s{i}")), &small_file(i, "v1"));
    }
    let r = push(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&s.f.a, &s.f.b);
    // The new big file is bigger than all the free space; the small changes fit.
    std::fs::write(s.f.a.join("big"), pseudo_random(6 << 20, 2)).unwrap();
    write(s.f.a.join("small/s0"), &small_file(0, "v2"));
    for i in 4..7 {
        write(s.f.a.join(format!("small/s{i}")), &small_file(i, "v1"));
    }
    let free = disk.free();
    let r = push(&[]);
    eprintln!("full disk, push: exit {}; stderr:\n{}", r.code, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    assert_eq!(
        r.code, 128,
        "a full disk is 'anything else' (SPEC 6): {r:?}"
    );
    let message = r
        .stderr
        .lines()
        .find(|l| l.contains("'big'"))
        .unwrap_or_else(|| panic!("no message names the file: {r:?}"));
    assert!(message.contains("No space left on device"), "{message}");
    assert!(
        message.contains("bytes free there") && message.contains("make room"),
        "says how much room there is and what to do: {message}"
    );
    assert!(
        std::fs::read(s.f.b.join("big")).unwrap() == old_big,
        "the old big is kept"
    );
    // The small files arrived: one file that does not fit stops only itself.
    assert_same_tree_except(&s.f.a, &s.f.b, &Except::at(&["big"]));
    assert_eq!(temp_files(&s.f.b), Vec::<String>::new(), "temp files left");
    let small_new = 4 * 4096;
    assert!(
        disk.free() + small_new >= free,
        "space still taken: {} bytes free before, {} after",
        free,
        disk.free()
    );
    // With room again the next run converges, and the one after has nothing to do.
    disk.resize("64m");
    let r = push(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&s.f.a, &s.f.b);
    let r = push(&["--format", "json"]);
    let summary = json_events(&r.stdout).pop().unwrap();
    assert_eq!(summary["files_transferred"], 0, "{summary}");
    assert_eq!(r.code, 0, "{r:?}");
}

/// A delta is rebuilt into a temp file as large as the whole file: with less room than
/// that, the old version stays and the temp file goes; with room, the delta works again.
#[test]
fn a_delta_without_room_for_its_temp_file_leaves_the_old_version() {
    let s = ssh_fixture();
    let disk = Tmpfs::mount(&s.f.b, "8m");
    let push = |extra: &[&str]| {
        let mut c = via(&s, s.sshd.port, &s.f.b, "push");
        c.args(extra);
        run_bounded(c).unwrap()
    };
    let old = pseudo_random(3 << 20, 3);
    std::fs::write(s.f.a.join("big"), &old).unwrap();
    let r = push(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    // About 1 MiB free: the 4 KiB edit fits, a second copy of the file does not.
    disk.resize("4m");
    let mut new = old.clone();
    new[1 << 20..(1 << 20) + 4096].copy_from_slice(&pseudo_random(4096, 4));
    std::fs::write(s.f.a.join("big"), &new).unwrap();
    let free = disk.free();
    let r = push(&[]);
    eprintln!(
        "delta on a full disk: exit {}; stderr:\n{}",
        r.code, r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    assert_eq!(r.code, 128, "{r:?}");
    assert!(
        r.stderr.contains("'big'") && r.stderr.contains("No space left on device"),
        "{r:?}"
    );
    assert!(
        std::fs::read(s.f.b.join("big")).unwrap() == old,
        "the old big is kept"
    );
    assert_eq!(temp_files(&s.f.b), Vec::<String>::new(), "temp files left");
    assert!(disk.free() >= free, "space still taken");
    disk.resize("64m");
    let r = push(&["--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&s.f.a, &s.f.b);
    let summary = json_events(&r.stdout).pop().unwrap();
    assert!(
        summary["bytes_saved_by_delta"].as_u64().unwrap() >= 2 << 20,
        "not sent as a delta: {summary}"
    );
}
