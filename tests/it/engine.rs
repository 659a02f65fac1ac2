//! The engine's safety rails, driven through the library: preconditions checked just before
//! each change, torn sources, failed verification, and a run killed mid-way.

use std::path::Path;
use std::time::{Duration, Instant};

use tandem::core::path::RelPath;
use tandem::core::reconcile::{Direction, Policy};
use tandem::core::tree::Digest;
use tandem::endpoint::{Chunk, Endpoint, LocalEndpoint, SendRequest};
use tandem::error::Error;
use tandem::output::{Event, Reporter};
use tandem::state::session::Session;
use tandem::sync::{run, Job, LocalTransport, RemoteSpec};

use crate::util::*;

fn job(f: &Fixture, direction: Direction) -> Job {
    Job {
        local_dir: f.a.clone(),
        remote: RemoteSpec::Local(f.b.clone()),
        session: Session {
            name: "engine".into(),
            dir: f.state.clone(),
        },
        policy: Policy::new(direction),
        filter: Default::default(),
        dry_run: false,
        yes: true,
        halt_on_error: false,
        max_delete: None,
        preserve_owner: false,
        transport: LocalTransport::Pipe {
            agent: Some(agent_path()),
        },
        compression: Default::default(),
        pending_max: 2000,
        ssh: Default::default(),
        hard_links: true,
        scan_threads: 1,
        numeric_ids: false,
        acls: Default::default(),
        exclude_dirs_older_than: None,
        rate: None,
        keep_dirs: Default::default(),
        dedup: Default::default(),
        remote_log: None,
        background: false,
    }
}

/// A reporter that runs `hook` when the plan is reported (an `(exs)` line comes after
/// the scan and the plan, before anything is executed), and records conflicts.
struct AfterPlanning<F: FnMut()> {
    hook: Option<F>,
    conflicts: Vec<String>,
}

impl<F: FnMut()> Reporter for AfterPlanning<F> {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::File {
                status: tandem::core::plan::Status::Exists,
                ..
            } => {
                if let Some(mut h) = self.hook.take() {
                    h();
                }
            }
            Event::Conflict { path, .. } => self.conflicts.push(path.to_string()),
            _ => {}
        }
    }
}

#[test]
fn target_edited_between_scan_and_apply_survives_as_a_conflict() {
    let f = fixture();
    for name in ["a", "b", "c1", "c2", "same"] {
        write(f.a.join(name), "v1");
    }
    assert_eq!(
        run(
            &job(&f, Direction::Bidi),
            &mut tandem::output::Silent,
            &mut |_| true
        )
        .0,
        0
    );
    assert_same_tree(&f.a, &f.b);
    // Edited alike on both sides: reported as (exs) once the plan is made.
    for side in [&f.a, &f.b] {
        write(side.join("same"), "v2 on both");
        set_mtime(side.join("same"), 1_700_000_000);
    }
    // Local edits a and b and deletes c1 and c2. The plan: rm c1, rm c2, cp a, cp b.
    write(f.a.join("a"), "v2 local");
    write(f.a.join("b"), "v2 local");
    std::fs::remove_file(f.a.join("c1")).unwrap();
    std::fs::remove_file(f.a.join("c2")).unwrap();
    // After the scan and the plan, before execution, someone edits the remote b and c2.
    let (rb, rc) = (f.b.join("b"), f.b.join("c2"));
    let mut reporter = AfterPlanning {
        hook: Some(|| {
            write(&rb, "remote edit made during the run");
            write(&rc, "remote edit made during the run, too");
        }),
        conflicts: vec![],
    };
    let status = run(&job(&f, Direction::Bidi), &mut reporter, &mut |_| true);
    assert_eq!(status.0 & 2, 2, "a changed target is a conflict");
    assert!(!f.b.join("c1").exists());
    assert_eq!(read(f.b.join("a")), "v2 local");
    assert_eq!(
        read(f.b.join("b")),
        "remote edit made during the run",
        "overwritten"
    );
    assert_eq!(
        read(f.b.join("c2")),
        "remote edit made during the run, too",
        "deleted"
    );
    assert_eq!(reporter.conflicts, ["c2", "b"]);
    // Everything else arrived; the two conflicts are left as they are on each side.
    let conflicts = Except::at(&["b", "c2"]);
    assert_same_tree_except(&f.a, &f.b, &conflicts);
    // The next run sees both sides changed: a conflict, still nothing lost.
    let again = run(
        &job(&f, Direction::Bidi),
        &mut tandem::output::Silent,
        &mut |_| true,
    );
    assert_eq!(again.0 & 2, 2);
    assert_eq!(read(f.b.join("b")), "remote edit made during the run");
    assert_eq!(read(f.a.join("b")), "v2 local");
    assert_eq!(read(f.b.join("c2")), "remote edit made during the run, too");
    assert_same_tree_except(&f.a, &f.b, &conflicts);
}

fn endpoint(dir: &Path) -> LocalEndpoint {
    LocalEndpoint::open(dir, format!("test '{}'", dir.display()), false).unwrap()
}

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

fn request(ep: &mut LocalEndpoint, path: &str) -> SendRequest {
    let e = ep
        .scan(&Default::default(), Default::default())
        .unwrap()
        .tree
        .get(&p(path))
        .unwrap()
        .clone();
    SendRequest {
        id: 1,
        path: p(path),
        expect: e,
        target: p(path),
        target_expect: None,
        signature: None,
        refined: None,
    }
}

#[test]
fn a_source_written_while_read_is_not_committed() {
    let f = fixture();
    write(f.a.join("growing.log"), &"line\n".repeat(500_000));
    let mut src = endpoint(&f.a);
    let mut dst = endpoint(&f.b);
    let req = request(&mut src, "growing.log");
    let path = f.a.join("growing.log");
    let mut appended = false;
    let mut last = None;
    src.send(std::slice::from_ref(&req), &mut |chunk| {
        // Someone appends to the file while it is being read.
        if matches!(chunk, Chunk::Data { .. }) && !appended {
            appended = true;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut file, b"appended\n").unwrap();
        }
        last = Some(chunk.clone());
        dst.receive(chunk)
    })
    .unwrap();
    assert!(
        matches!(last, Some(Chunk::Abort { .. })),
        "the sender did not notice: {last:?}"
    );
    let done = dst.received(true).unwrap();
    assert!(
        matches!(done[..], [(1, Err(Error::SourceChanged { .. }))]),
        "{done:?}"
    );
    assert!(
        names(&f.b).is_empty(),
        "something was committed or left behind: {:?}",
        names(&f.b)
    );
}

/// A source replaced after the scan (by a FIFO, a symlink, another file of the same size,
/// or nothing) is reported as changed and not sent, and the FIFO does not hang the sender.
#[test]
fn a_source_replaced_after_the_scan_is_reported_changed_and_not_sent() {
    type Replace = fn(&Path);
    let cases: [(&str, Replace); 4] = [
        ("fifo", |p| {
            let made = std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .unwrap();
            assert!(made.success());
        }),
        ("symlink", |p| {
            std::os::unix::fs::symlink("elsewhere", p).unwrap()
        }),
        ("another file", |p| write(p, "12345")),
        ("nothing", |_| {}),
    ];
    for (what, replace) in cases {
        let f = fixture();
        write(f.a.join("f"), "abcde");
        let mut src = endpoint(&f.a);
        let req = request(&mut src, "f");
        std::fs::remove_file(f.a.join("f")).unwrap();
        replace(&f.a.join("f"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut chunks = Vec::new();
            let sent = src.send(std::slice::from_ref(&req), &mut |c| {
                chunks.push(c);
                Ok(())
            });
            let _ = tx.send((sent.is_ok(), chunks));
        });
        let (ok, chunks) = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{what}: the sender hangs"));
        assert!(ok, "{what}");
        match &chunks[..] {
            [Chunk::Abort { error, .. }] => {
                let e: Error = error.clone().into();
                assert!(matches!(e, Error::SourceChanged { .. }), "{what}: {e:?}");
            }
            other => panic!("{what}: sent {other:?}"),
        }
    }
}

#[test]
fn data_failing_hash_verification_is_never_renamed_into_place() {
    let f = fixture();
    write(f.a.join("precious"), "new version");
    write(f.b.join("precious"), "original");
    let mut src = endpoint(&f.a);
    let mut dst = endpoint(&f.b);
    let mut req = request(&mut src, "precious");
    req.target_expect = dst
        .scan(&Default::default(), Default::default())
        .unwrap()
        .tree
        .get(&p("precious"))
        .cloned();
    src.send(&[req], &mut |chunk| {
        // A peer that lies about the hash of what it sent.
        let chunk = match chunk {
            Chunk::End { id, .. } => Chunk::End {
                id,
                digest: Digest::of(b"something else"),
            },
            c => c,
        };
        dst.receive(chunk)
    })
    .unwrap();
    let done = dst.received(true).unwrap();
    assert!(
        matches!(done[..], [(1, Err(Error::Verify { .. }))]),
        "{done:?}"
    );
    assert_eq!(read(f.b.join("precious")), "original");
    assert_eq!(names(&f.b), ["precious"], "temp file left behind");
}

#[test]
fn writes_never_follow_a_symlink_out_of_the_root() {
    let f = fixture();
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, f.b.join("sub")).unwrap();
    let mut dst = endpoint(&f.b);
    let mut src = endpoint(&f.a);
    write(f.a.join("sub/x"), "escape attempt");
    let req = request(&mut src, "sub/x");
    let dir_entry = src
        .scan(&Default::default(), Default::default())
        .unwrap()
        .tree
        .get(&p("sub"))
        .unwrap()
        .clone();
    src.send(&[req], &mut |c| dst.receive(c)).unwrap();
    let done = dst.received(true).unwrap();
    assert!(done[0].1.is_err(), "{done:?}");
    assert!(dst.mkdir(&p("sub/y"), &dir_entry).is_err());
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "wrote outside the root"
    );
}

#[test]
fn a_run_killed_mid_way_loses_nothing_and_the_next_run_converges() {
    let f = fixture();
    for d in 0..40 {
        for i in 0..100 {
            write(
                f.a.join(format!("d{d:02}/f{i:03}")),
                &format!("{d}-{i}-").repeat(500),
            );
        }
    }
    assert_eq!(
        f.sync("bidi", &["-N", "killed"]).code,
        0,
        "the baseline exists before the kill"
    );
    assert_same_tree(&f.a, &f.b);
    // Change every file so the next run has a lot to do, then kill it mid-way.
    for d in 0..40 {
        for i in 0..100 {
            write(
                f.a.join(format!("d{d:02}/f{i:03}")),
                &format!("v2-{d}-{i}-").repeat(500),
            );
        }
    }
    let mut c = f.sync_command();
    c.arg("-d")
        .arg(&f.a)
        .arg("-r")
        .arg(&f.b)
        .args(["-K", "bidi", "-N", "killed", "-q"]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let updated = |dir: &Path| {
        std::fs::read_to_string(dir.join("d00/f000")).is_ok_and(|s| s.starts_with("v2"))
    };
    while !updated(&f.b) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let was_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        was_running,
        "the run finished before it could be killed; make the workload larger"
    );
    // Every remote file is a whole old or a whole new version, never torn.
    let mut new_seen = 0;
    for d in 0..40 {
        for i in 0..100 {
            let got = read(f.b.join(format!("d{d:02}/f{i:03}")));
            let (old, new) = (
                format!("{d}-{i}-").repeat(500),
                format!("v2-{d}-{i}-").repeat(500),
            );
            assert!(got == old || got == new, "torn file d{d:02}/f{i:03}");
            new_seen += usize::from(got == new);
        }
    }
    assert!(new_seen < 4000, "nothing was left to do after the kill");
    let r = f.sync("bidi", &["-N", "killed"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
    let third = f.sync("bidi", &["-N", "killed"]);
    assert!(
        !third.stdout.contains("SYNCHRONIZED"),
        "third run had work left: {third:?}"
    );
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn a_killed_large_transfer_resumes_where_it_stopped() {
    let f = fixture();
    // Tiled noise: quick to make in a debug build, and a new file without a partial has
    // no basis at all, so anything "saved" below can only come from the partial.
    let block = pseudo_random(1 << 20, 0x9e37_79b9);
    let data = block.repeat(160);
    std::fs::write(f.a.join("disk.img"), &data).unwrap();
    let mut c = f.sync_command();
    c.arg("-d")
        .arg(&f.a)
        .arg("-r")
        .arg(&f.b)
        .args(["-K", "push", "-q", "--compress", "none"]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let partial = f.b.join(".tandem-tmp.disk.img");
    let deadline = Instant::now() + Duration::from_secs(60);
    let size = || std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    while size() < 32 << 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let was_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        was_running,
        "the transfer finished before it could be interrupted"
    );
    // The agent dies with its client; what it had written stays for the next run.
    let kept = size();
    assert!(kept >= 32 << 20, "partial file not kept ({kept} bytes)");
    let r = f.sync("push", &["--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let summary = json_events(&r.stdout).pop().unwrap();
    assert!(
        summary["bytes_saved_by_delta"].as_u64().unwrap() >= kept - (1 << 20),
        "{summary}"
    );
    assert_eq!(std::fs::read(f.b.join("disk.img")).unwrap(), data);
    assert_eq!(names(&f.b), ["disk.img"]);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn reads_never_follow_a_directory_swapped_for_a_symlink_after_the_scan() {
    let f = fixture();
    write(f.a.join("d/passwd"), "not the system's");
    let mut src = endpoint(&f.a);
    let req = request(&mut src, "d/passwd");
    // Between scan and send the directory becomes a symlink to /etc.
    std::fs::rename(f.a.join("d"), f.a.join("d-moved")).unwrap();
    std::os::unix::fs::symlink("/etc", f.a.join("d")).unwrap();
    let mut chunks = Vec::new();
    src.send(&[req], &mut |c| {
        chunks.push(c);
        Ok(())
    })
    .unwrap();
    assert!(
        matches!(chunks.last(), Some(Chunk::Abort { .. })),
        "read through the symlink: {chunks:?}"
    );
    assert!(
        !chunks.iter().any(|c| matches!(c, Chunk::Data { .. })),
        "sent data read outside the root"
    );
}

/// Sends `paths` (ids 1, 2, ...) from `src` to `dst` as new files, `tamper` seeing each
/// chunk on its way.
fn send_new(
    src: &mut LocalEndpoint,
    dst: &mut LocalEndpoint,
    paths: &[String],
    tamper: &mut dyn FnMut(&mut LocalEndpoint, Chunk) -> Chunk,
) {
    let tree = src
        .scan(&Default::default(), Default::default())
        .unwrap()
        .tree;
    let reqs: Vec<SendRequest> = paths
        .iter()
        .enumerate()
        .map(|(i, path)| SendRequest {
            id: i as u64 + 1,
            path: p(path),
            expect: tree.get(&p(path)).unwrap().clone(),
            target: p(path),
            target_expect: None,
            signature: None,
            refined: None,
        })
        .collect();
    src.send(&reqs, &mut |chunk| {
        let chunk = tamper(dst, chunk);
        dst.receive(chunk)
    })
    .unwrap();
}

#[test]
fn a_new_small_file_failing_hash_verification_is_never_placed() {
    let f = fixture();
    write(f.a.join("fresh"), "new file");
    let (mut src, mut dst) = (endpoint(&f.a), endpoint(&f.b));
    send_new(
        &mut src,
        &mut dst,
        &["fresh".into()],
        &mut |_, chunk| match chunk {
            // A peer that lies about the hash of what it sent.
            Chunk::End { id, .. } => Chunk::End {
                id,
                digest: Digest::of(b"something else"),
            },
            c => c,
        },
    );
    let done = dst.received(true).unwrap();
    assert!(
        matches!(done[..], [(1, Err(Error::Verify { .. }))]),
        "{done:?}"
    );
    assert!(names(&f.b).is_empty(), "placed, or a temp file left behind");
}

#[test]
fn a_small_file_appearing_at_the_target_while_it_is_received_is_never_replaced() {
    let f = fixture();
    write(f.a.join("x"), "ours");
    let (mut src, mut dst) = (endpoint(&f.a), endpoint(&f.b));
    let theirs = f.b.join("x");
    send_new(&mut src, &mut dst, &["x".into()], &mut |_, chunk| {
        if let Chunk::End { .. } = chunk {
            write(&theirs, "theirs, written meanwhile");
        }
        chunk
    });
    let done = dst.received(true).unwrap();
    assert!(
        matches!(done[..], [(1, Err(Error::Changed { .. }))]),
        "{done:?}"
    );
    assert_eq!(read(&theirs), "theirs, written meanwhile");
    assert_eq!(names(&f.b), ["x"], "temp file left behind");
}

#[test]
fn changes_after_many_small_files_see_every_file_in_place() {
    // Small new files are placed by writer threads: a change sent after them (here the
    // directory's mtime, set once its contents are in) must wait for all of them.
    let f = fixture();
    let paths: Vec<String> = (0..600).map(|i| format!("d/f{i:03}")).collect();
    for path in &paths {
        write(f.a.join(path), path);
    }
    std::fs::create_dir(f.b.join("d")).unwrap();
    let (mut src, mut dst) = (endpoint(&f.a), endpoint(&f.b));
    send_new(&mut src, &mut dst, &paths, &mut |_, chunk| chunk);
    let stamp = 1_000_000_000_000_000_000;
    let restamp = tandem::endpoint::Change::Restamp {
        path: p("d"),
        mtime_ns: stamp,
    };
    let applied = dst.apply(&[restamp]).unwrap();
    assert!(applied[0].is_ok(), "{applied:?}");
    let done = dst.received(true).unwrap();
    assert_eq!(done.len(), paths.len());
    assert!(done.iter().all(|(_, r)| r.is_ok()), "{done:?}");
    let mtime = std::fs::metadata(f.b.join("d"))
        .unwrap()
        .modified()
        .unwrap();
    let want = std::time::UNIX_EPOCH + Duration::from_nanos(stamp as u64);
    assert_eq!(
        mtime, want,
        "a file landed after the directory's mtime was set"
    );
    assert_eq!(names(&f.b.join("d")).len(), paths.len());
}
