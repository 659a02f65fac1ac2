//! `tandem verify`: bit rot injected beneath the stamps (bytes changed, size and mtime
//! restored; on a real ext4 image, beneath the filesystem) is found on the right side,
//! repaired from the good one, and refused where neither side matches; whole trees are
//! compared after every repair.

use std::path::Path;
use std::process::Command;

use crate::sshd::{ssh_fixture, SshFixture};
use crate::util::*;

/// A tree of a few kinds: small files, a 2 MiB file, a nested one, a symlink.
fn tree(root: &Path) {
    write(root.join("notes.txt"), "some notes\n");
    write(root.join("dir/sub/deep.txt"), &"deep ".repeat(3000));
    std::fs::write(root.join("photo.raw"), pseudo_random(2 << 20, 11)).unwrap();
    std::fs::write(root.join("dir/small.bin"), pseudo_random(9000, 12)).unwrap();
    std::os::unix::fs::symlink("notes.txt", root.join("link")).unwrap();
}

/// Flips one byte of `path` at `at` and puts its size and mtime back, as a disk that
/// corrupts data would leave it (the ctime moves here; beneath a filesystem it would not).
pub fn rot(path: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let before = std::fs::metadata(path).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5a]).unwrap();
    f.set_modified(before.modified().unwrap()).unwrap();
    drop(f);
    let after = std::fs::metadata(path).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(
        filetime(&after),
        filetime(&before),
        "mtime restored exactly"
    );
}

fn filetime(m: &std::fs::Metadata) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (m.mtime(), m.mtime_nsec())
}

/// The verify events of a JSON run, as (path, status, side).
fn findings(r: &Run) -> Vec<(String, String, Option<String>)> {
    json_events(&r.stdout)
        .into_iter()
        .filter(|e| e["event"] == "verify")
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
                e["side"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn status_of<'a>(found: &'a [(String, String, Option<String>)], path: &str) -> &'a str {
    found
        .iter()
        .find(|(p, ..)| p == path)
        .map(|(_, s, _)| s.as_str())
        .unwrap_or_else(|| panic!("no finding for {path}: {found:?}"))
}

fn summary(r: &Run) -> serde_json::Value {
    json_events(&r.stdout)
        .into_iter()
        .find(|e| e["event"] == "summary")
        .expect("a summary")["verify"]
        .clone()
}

/// `tandem verify -N NAME extra...` with the agent under test (the roots from the session).
fn verify(f: &Fixture, name: &str, extra: &[&str]) -> Run {
    let mut c = f.command();
    c.args(["verify", "-N", name, "--agent-path"])
        .arg(agent_path())
        .args(extra);
    output(c.output().unwrap())
}

#[test]
fn rot_on_the_replica_is_found_blamed_and_repaired_from_the_source() {
    let f = fixture();
    tree(&f.a);
    assert_eq!(f.sync("push", &["-N", "v"]).code, 0);
    let clean = verify(&f, "v", &["--format", "json"]);
    assert_eq!(clean.code, 0, "{clean:?}");
    let counts = summary(&clean);
    assert_eq!(counts["files_verified"], 4, "{clean:?}");
    assert_eq!(counts["files_corrupt"], 0);
    assert_eq!(counts["bytes_read"], 2 * (11 + 15000 + (2 << 20) + 9000));

    let good = std::fs::read(f.a.join("photo.raw")).unwrap();
    rot(&f.b.join("photo.raw"), 1_234_567);

    let found = verify(&f, "v", &["--format", "json"]);
    assert_eq!(
        found.code, 2,
        "corruption left in place is bit 2: {found:?}"
    );
    let list = findings(&found);
    assert_eq!(status_of(&list, "photo.raw"), "CORRUPT(remote)");
    assert_eq!(status_of(&list, "notes.txt"), "VERIFIED");
    assert_eq!(summary(&found)["files_corrupt"], 1);
    let human = verify(&f, "v", &[]);
    assert_eq!(human.code, 2);
    assert!(
        human.stdout.contains("/photo.raw") && human.stdout.contains("CORRUPT(remote)"),
        "{human:?}"
    );
    assert!(
        human.stdout.contains("--repair"),
        "says what to do: {human:?}"
    );

    let fixed = verify(&f, "v", &["--repair", "--format", "json"]);
    assert_eq!(fixed.code, 0, "repaired from the good side: {fixed:?}");
    assert_eq!(
        status_of(&findings(&fixed), "photo.raw"),
        "REPAIRED(remote)"
    );
    assert_eq!(summary(&fixed)["files_repaired"], 1);
    assert!(std::fs::read(f.b.join("photo.raw")).unwrap() == good);
    // The corrupt copy is kept beside the file, byte for byte as it was.
    let kept: Vec<String> = names(&f.b)
        .into_iter()
        .filter(|n| n.starts_with("photo.raw.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", names(&f.b));
    let corrupt = std::fs::read(f.b.join(&kept[0])).unwrap();
    assert_eq!(corrupt.len(), good.len());
    assert_eq!(
        corrupt.iter().zip(&good).filter(|(x, y)| x != y).count(),
        1,
        "the kept copy is the corrupt one"
    );
    // Beside it, the trees agree in everything, directory times included.
    let kept_name: &'static str = Box::leak(kept[0].clone().into_boxed_str());
    assert_same_tree_except(&f.a, &f.b, &Except::at(&[kept_name]));
    // Everything verifies now, and once the kept copy is gone the next sync has nothing
    // to do but the root's time.
    assert_eq!(verify(&f, "v", &[]).code, 0);
    std::fs::remove_file(f.b.join(&kept[0])).unwrap();
    let after = f.sync("push", &["-N", "v", "--format", "json"]);
    assert_eq!(after.code, 0, "{after:?}");
    assert!(
        !json_events(&after.stdout)
            .iter()
            .any(|e| e["event"] == "file"),
        "{after:?}"
    );
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn rot_on_the_source_is_blamed_on_it_and_repaired_into_the_keep_dir() {
    let s = ssh_fixture();
    tree(&s.f.a);
    assert_eq!(s.sync("push", &["-N", "sv"]).code, 0, "first push");
    rot(&s.f.a.join("dir/small.bin"), 100);
    let keep = s.f.tmp.path().join("kept");
    let run = |extra: &[&str]| -> Run {
        let mut c = ssh_verify(&s);
        c.args(extra);
        output(c.output().unwrap())
    };
    let found = run(&["--format", "json"]);
    assert_eq!(found.code, 2, "{found:?}");
    let list = findings(&found);
    assert_eq!(status_of(&list, "dir/small.bin"), "CORRUPT(local)");
    assert!(list
        .iter()
        .any(|(p, _, side)| p == "dir/small.bin" && side.as_deref() == Some("local")));
    // Over SSH only digests cross: far less than the 2 MiB read on the far side.
    let bytes = json_events(&found.stdout)
        .into_iter()
        .find(|e| e["event"] == "summary")
        .unwrap();
    let wire = bytes["bytes_sent"].as_u64().unwrap() + bytes["bytes_received"].as_u64().unwrap();
    assert!(wire < 200_000, "verify moved {wire} bytes: {found:?}");

    let keep_arg = keep.display().to_string();
    let fixed = run(&[
        "--repair",
        "--keep-dir-local",
        &keep_arg,
        "--format",
        "json",
    ]);
    assert_eq!(fixed.code, 0, "{fixed:?}");
    assert_eq!(
        status_of(&findings(&fixed), "dir/small.bin"),
        "REPAIRED(local)"
    );
    assert_same_tree(&s.f.a, &s.f.b);
    // The corrupt copy went to the keep directory, not beside the file.
    assert!(!names(&s.f.a.join("dir"))
        .iter()
        .any(|n| n.contains("corrupt")));
    let kept = find_named(&keep, "small.bin");
    assert_eq!(kept.len(), 1, "kept copies: {kept:?}");
    assert!(
        std::fs::read(&kept[0]).unwrap() != std::fs::read(s.f.a.join("dir/small.bin")).unwrap()
    );
    let again = run(&[]);
    assert_eq!(again.code, 0, "{again:?}");
}

/// `tandem verify -N sv` over SSH (the port and key given again, as for the sync).
fn ssh_verify(s: &SshFixture) -> Command {
    let mut c = s.client();
    c.args(["verify", "-N", "sv", "-P"])
        .arg(s.sshd.port.to_string())
        .arg("-i")
        .arg(s.sshd.key())
        .arg("--agent-path")
        .arg(native_agent_path());
    c
}

fn find_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn neither_side_matching_is_never_repaired_and_both_are_kept() {
    let f = fixture();
    tree(&f.a);
    assert_eq!(f.sync("bidi", &["-N", "n"]).code, 0);
    rot(&f.a.join("photo.raw"), 10);
    rot(&f.b.join("photo.raw"), 20);
    // The same change on both sides beneath the stamps: neither is wrong by the other.
    rot(&f.a.join("notes.txt"), 3);
    rot(&f.b.join("notes.txt"), 3);
    let (a_before, b_before) = (snapshot(&f.a), snapshot(&f.b));
    for extra in [&[][..], &["--repair"][..]] {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(extra);
        let r = verify(&f, "n", &args);
        assert_eq!(r.code, 2, "{extra:?}: {r:?}");
        let list = findings(&r);
        assert_eq!(status_of(&list, "photo.raw"), "CORRUPT(both)");
        assert_eq!(status_of(&list, "notes.txt"), "CHANGED(both)");
        assert_eq!(status_of(&list, "dir/small.bin"), "VERIFIED");
        assert_eq!(summary(&r)["files_repaired"], 0);
        assert_unchanged(&f.a, &a_before);
        assert_unchanged(&f.b, &b_before);
    }
    let quiet = verify(&f, "n", &["-q", "--repair"]);
    assert_eq!(quiet.code, 2);
    assert_eq!(quiet.stdout, "", "quiet: {quiet:?}");
    assert!(
        quiet.stderr.contains("/photo.raw CORRUPT(both)") && quiet.stderr.contains("not repaired"),
        "a finding still gets a line when quiet: {quiet:?}"
    );
}

#[test]
fn a_file_edited_since_the_sync_is_not_corruption() {
    let f = fixture();
    tree(&f.a);
    assert_eq!(f.sync("push", &["-N", "e"]).code, 0);
    write(f.a.join("notes.txt"), "edited, a new mtime\n");
    std::fs::remove_file(f.b.join("dir/small.bin")).unwrap();
    let r = verify(&f, "e", &["--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let list = findings(&r);
    assert_eq!(status_of(&list, "notes.txt"), "SKIPPED(edited)");
    assert_eq!(status_of(&list, "dir/small.bin"), "SKIPPED(edited)");
    assert_eq!(status_of(&list, "photo.raw"), "VERIFIED");
    assert_eq!(summary(&r)["files_edited"], 2);
}

#[test]
fn verify_without_a_session_or_repair_without_verify_is_a_clear_error() {
    let f = fixture();
    let r = verify(&f, "nothing", &[]);
    assert_eq!(r.code, 16, "{r:?}");
    assert!(r.stderr.contains("run a sync first"), "{r:?}");
    let r = f.run(&["verify"]);
    assert_eq!(r.code, 32, "{r:?}");
    assert!(r.stderr.contains("-N NAME"), "{r:?}");
    let r = f.sync("push", &["--repair"]);
    assert_eq!(r.code, 32, "{r:?}");
    assert!(r.stderr.contains("tandem verify"), "{r:?}");
    assert!(names(&f.b).is_empty(), "nothing was synced");
    write(f.a.join("x"), "x\n");
    assert_eq!(f.sync("push", &["-N", "c"]).code, 0);
    let r = verify(&f, "c", &["-C"]);
    assert_eq!(r.code, 32, "-C does not apply to verify: {r:?}");
    let r = f.run(&["-q", "verify", "-N", "c"]);
    assert_eq!(r.code, 32, "{r:?}");
    assert!(r.stderr.contains("give it first"), "{r:?}");
}

/// A disk that corrupts data: the replica on its own ext4 filesystem (a loop-mounted
/// image), one byte of a file's data block flipped in the image while it is unmounted,
/// so size, mtime, ctime and inode are all as they were.
#[test]
fn rot_beneath_an_ext4_filesystem_is_found_and_repaired() {
    let f = fixture();
    tree(&f.a);
    let disk = Ext4::on(f.tmp.path(), &f.b);
    assert_eq!(f.sync("push", &["-N", "x"]).code, 0);
    let target = f.b.join("photo.raw");
    let before = stamps(&target);
    disk.rot(&target, 777, true);
    assert_eq!(
        stamps(&target),
        before,
        "nothing about the file shows the change"
    );
    assert!(
        std::fs::read(&target).unwrap() != std::fs::read(f.a.join("photo.raw")).unwrap(),
        "the flipped byte is in the file"
    );
    // A sync cannot see it: nothing it looks at changed.
    let sync = f.sync("push", &["-N", "x", "--format", "json"]);
    assert_eq!(sync.code, 0, "{sync:?}");
    assert!(!json_events(&sync.stdout)
        .iter()
        .any(|e| e["event"] == "file"));
    let found = verify(&f, "x", &["--format", "json"]);
    assert_eq!(found.code, 2, "{found:?}");
    assert_eq!(status_of(&findings(&found), "photo.raw"), "CORRUPT(remote)");
    let fixed = verify(&f, "x", &["--repair"]);
    assert_eq!(fixed.code, 0, "{fixed:?}");
    let kept: Vec<String> = names(&f.b)
        .into_iter()
        .filter(|n| n.starts_with("photo.raw.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", names(&f.b));
    let kept_name: &'static str = Box::leak(kept[0].clone().into_boxed_str());
    assert_same_tree_except(&f.a, &f.b, &Except::at(&[kept_name]));
    assert_eq!(verify(&f, "x", &[]).code, 0);
    drop(disk);
}

/// Everything that tells a file changed without reading it: inode, size, mtime, ctime.
pub fn stamps(p: &Path) -> (u64, u64, i64, i64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap();
    (
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// A small ext4 filesystem on a loop device, mounted on a directory; unmounted and
/// detached when dropped.
pub struct Ext4 {
    device: std::path::PathBuf,
    dir: std::path::PathBuf,
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Ext4 {
    /// Makes a 32 MiB image in `tmp` and mounts it on `dir` (emptied of lost+found).
    pub fn on(tmp: &Path, dir: &Path) -> Ext4 {
        assert!(
            is_root(),
            "this test mounts an ext4 image: run the suite as root (CI does)"
        );
        let image = tmp.join("disk.img");
        ok(Command::new("truncate").arg("-s").arg("32M").arg(&image));
        ok(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096"])
            .arg(&image));
        let device = ok(Command::new("losetup").args(["-f", "--show"]).arg(&image));
        let disk = Ext4 {
            device: std::path::PathBuf::from(device.trim()),
            dir: dir.to_path_buf(),
        };
        disk.mount();
        // A fresh ext4 has lost+found; the tree compared is what tandem wrote.
        std::fs::remove_dir(dir.join("lost+found")).unwrap();
        disk
    }

    /// Flips the byte at `at` of `file` (below the mount) on the device itself, beneath
    /// the filesystem: unmounted and mounted again around it, or (`remount` false) while
    /// mounted, the file's cached pages dropped after, so the next read comes from the device.
    pub fn rot(&self, file: &Path, at: u64, remount: bool) {
        // Allocated and on disk (ext4 allocates late), so the extent map is final.
        ok(&mut Command::new("sync"));
        let frag = ok(Command::new("filefrag").arg("-v").arg(file));
        // The first extent's first block on the device, in 4 KiB filesystem blocks.
        let physical: u64 = frag
            .lines()
            .find_map(|l| {
                let cols: Vec<&str> = l.split(':').map(str::trim).collect();
                (cols.len() > 3 && cols[0] == "0")
                    .then(|| cols[2].split("..").next().unwrap().trim().parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no first extent in:\n{frag}"));
        assert!(at < 4096 * 8, "within the first extent");
        if remount {
            self.unmount();
        }
        {
            use std::io::{Read, Seek, SeekFrom, Write};
            let mut dev = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.device)
                .unwrap();
            let at = physical * 4096 + at;
            let mut b = [0u8];
            dev.seek(SeekFrom::Start(at)).unwrap();
            dev.read_exact(&mut b).unwrap();
            dev.seek(SeekFrom::Start(at)).unwrap();
            dev.write_all(&[!b[0]]).unwrap();
            dev.sync_all().unwrap();
        }
        if remount {
            self.mount();
        } else {
            // Only the file's clean cached pages go; reading it opens no write.
            let f = std::fs::File::open(file).unwrap();
            rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        }
    }

    fn mount(&self) {
        ok(Command::new("mount").arg(&self.device).arg(&self.dir));
    }

    fn unmount(&self) {
        ok(Command::new("umount").arg(&self.dir));
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).output();
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn a_digest_the_baseline_lacks_is_computed_recorded_and_said() {
    use tandem::core::path::RelPath;
    use tandem::state::baseline::Baseline;
    let f = fixture();
    tree(&f.a);
    assert_eq!(f.sync("push", &["-N", "d"]).code, 0);
    // A baseline from before digests were kept for every file (made here by hand).
    let path = f.state.join("d.baseline");
    let mut base = Baseline::load(&path).unwrap().unwrap();
    let key = RelPath::new("photo.raw").unwrap();
    let entry = base.tree.entries.get_mut(&key).unwrap();
    let digest = entry.digest.expect("a synced file has a digest");
    entry.digest = None;
    base.commit(&path).unwrap();

    let r = verify(&f, "d", &["--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(status_of(&findings(&r), "photo.raw"), "VERIFIED(new)");
    assert_eq!(summary(&r)["digests_recorded"], 1);
    assert!(
        json_events(&r.stdout).iter().any(|e| e["event"] == "notice"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("no digest for 1 files")),
        "said once: {r:?}"
    );
    let base = Baseline::load(&path).unwrap().unwrap();
    assert_eq!(base.tree.entries[&key].digest, Some(digest), "recorded");
    let again = verify(&f, "d", &["--format", "json"]);
    assert_eq!(status_of(&findings(&again), "photo.raw"), "VERIFIED");
    // And with it, rot is found again.
    rot(&f.b.join("photo.raw"), 5);
    assert_eq!(verify(&f, "d", &[]).code, 2);
}
