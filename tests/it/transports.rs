//! The same engine over three transports (in-process, agent thread over a socket pair,
//! agent child over a pipe) must give the same results; deltas must move little data.

use std::path::Path;

use tandem::core::path::RelPath;
use tandem::core::plan::{Action, Op, Side, Status};
use tandem::core::reconcile::{Direction, Policy};
use tandem::core::tree::{Digest, Entry};
use tandem::disk::delta::refine::Ranges;
use tandem::endpoint::{
    Change, Chunk, Endpoint, GapRequest, LocalEndpoint, Received, Scan, SendRequest, SignRequest,
};
use tandem::error::{Error, Result};
use tandem::output::{Event, Reporter};
use tandem::state::rules::FilterSpec;
use tandem::state::session::Session;
use tandem::sync::transfer::{NoWatch, Stats, Transfers};
use tandem::sync::{run, Job, LocalTransport, RemoteSpec};

use crate::util::*;

#[derive(Default)]
struct Record(Vec<String>);

impl Reporter for Record {
    fn event(&mut self, e: &Event<'_>) {
        match e {
            Event::File {
                path, status, side, ..
            } => self.0.push(format!("{path} {status} {side:?}")),
            Event::Conflict {
                path, resolution, ..
            } => self.0.push(format!("{path} conflict {resolution:?}")),
            Event::Error { message, .. } => self.0.push(format!("error {message}")),
            _ => {}
        }
    }
}

fn job(f: &Fixture, transport: LocalTransport, direction: Direction) -> Job {
    Job {
        local_dir: f.a.clone(),
        remote: RemoteSpec::Local(f.b.clone()),
        session: Session {
            name: "t".into(),
            dir: f.state.clone(),
        },
        policy: Policy::new(direction),
        filter: FilterSpec::default(),
        dry_run: false,
        yes: true,
        halt_on_error: false,
        max_delete: None,
        preserve_owner: false,
        transport,
        compression: Default::default(),
        pending_max: 3,
        ssh: Default::default(),
        hard_links: true,
        // Every transport's agent is started with the option (its scans look up in
        // parallel wherever a directory is large enough).
        scan_threads: 2,
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

fn scenario(transport: LocalTransport) -> Vec<String> {
    let f = fixture();
    let mut log = Record::default();
    let mut step = |f: &Fixture, dir| {
        let status = run(&job(f, transport.clone(), dir), &mut log, &mut |_| true);
        log.0.push(format!("exit {}", status.0));
    };
    for i in 0..20 {
        write(
            f.a.join(format!("d{}/f{i}", i % 3)),
            &format!("file {i} ").repeat(i * 500 + 1),
        );
    }
    std::os::unix::fs::symlink("d0/f0", f.a.join("link")).unwrap();
    step(&f, Direction::Push);
    assert_same_tree(&f.a, &f.b);
    write(f.a.join("d0/f3"), &"changed locally ".repeat(4000));
    write(f.b.join("d1/f4"), &"changed remotely ".repeat(4000));
    write(f.a.join("d2/f5"), "both: local");
    write(f.b.join("d2/f5"), "both: remote!");
    std::fs::rename(f.a.join("d1/f7"), f.a.join("d0/f7-moved")).unwrap();
    std::fs::remove_file(f.b.join("d2/f8")).unwrap();
    step(&f, Direction::Bidi);
    assert_eq!(read(f.b.join("d0/f3")), "changed locally ".repeat(4000));
    assert_eq!(read(f.a.join("d1/f4")), "changed remotely ".repeat(4000));
    // All alike but the file changed on both sides, left as a conflict.
    assert_same_tree_except(&f.a, &f.b, &Except::at(&["d2/f5"]));
    std::fs::remove_file(f.b.join("d2/f5")).unwrap();
    step(&f, Direction::Pull);
    assert_same_tree(&f.a, &f.b);
    log.0
}

#[test]
fn in_process_thread_and_pipe_transports_behave_the_same() {
    let in_process = scenario(LocalTransport::InProcess);
    assert!(in_process.contains(&"exit 2".to_string()), "{in_process:?}");
    assert!(
        in_process.iter().any(|l| l.contains("(mov)")),
        "{in_process:?}"
    );
    let thread = scenario(LocalTransport::Thread);
    let pipe = scenario(LocalTransport::Pipe {
        agent: Some(agent_path()),
    });
    assert_eq!(in_process, thread);
    assert_eq!(in_process, pipe);
}

#[test]
fn a_small_change_in_a_big_file_moves_a_small_delta() {
    let f = fixture();
    let size = 24 << 20;
    let mut data = pseudo_random(size, 42);
    std::fs::write(f.a.join("big.bin"), &data).unwrap();
    assert_eq!(f.sync("push", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    // Change 1% of the file in scattered 4 KiB blocks.
    for k in 0..(size / 100 / 4096) {
        let at = (k * 7919 * 4096) % (size - 4096);
        data[at..at + 4096].copy_from_slice(&pseudo_random(4096, k as u64 + 1000));
    }
    std::fs::write(f.a.join("big.bin"), &data).unwrap();
    let r = f.sync("push", &["--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(std::fs::read(f.b.join("big.bin")).unwrap(), data);
    let summary = json_events(&r.stdout).pop().unwrap();
    let sent = summary["bytes_sent"].as_u64().unwrap();
    let saved = summary["bytes_saved_by_delta"].as_u64().unwrap();
    assert!(
        sent < size as u64 / 20,
        "sent {sent} bytes for a 1% change of {size}: {summary}"
    );
    assert!(saved > size as u64 * 9 / 10, "{summary}");
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn incompressible_data_is_sent_without_growing() {
    let f = fixture();
    std::fs::write(f.a.join("noise"), pseudo_random(4 << 20, 9)).unwrap();
    let r = f.sync("push", &["--format", "json"]);
    let summary = json_events(&r.stdout).pop().unwrap();
    let sent = summary["bytes_sent"].as_u64().unwrap();
    assert!(sent < (4 << 20) + (64 << 10), "{summary}");
    assert_same_tree(&f.a, &f.b);
    let r = f.sync(
        "push",
        &["--format", "json", "--compress", "none", "-N", "other"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn files_sent_whole_arrive_intact_at_every_size_around_a_literals_end() {
    let f = fixture();
    let piece = 256 << 10;
    let sizes = [0, 1, piece - 1, piece, piece + 1, 4 * piece, 4 * piece + 7];
    for (k, &n) in sizes.iter().enumerate() {
        std::fs::write(f.a.join(format!("up{k}")), pseudo_random(n, k as u64)).unwrap();
        std::fs::write(
            f.b.join(format!("down{k}")),
            pseudo_random(n, 50 + k as u64),
        )
        .unwrap();
    }
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    for (k, &n) in sizes.iter().enumerate() {
        let up = std::fs::read(f.b.join(format!("up{k}"))).unwrap();
        let down = std::fs::read(f.a.join(format!("down{k}"))).unwrap();
        assert_eq!(up, pseudo_random(n, k as u64), "up{k} ({n} bytes)");
        assert_eq!(down, pseudo_random(n, 50 + k as u64), "down{k} ({n} bytes)");
    }
    assert_same_tree(&f.a, &f.b);
}

/// A sender whose deltas are corrupted in transit the first time.
struct Corrupting {
    inner: LocalEndpoint,
    corrupted: bool,
}

impl Endpoint for Corrupting {
    fn place(&self) -> &str {
        self.inner.place()
    }
    fn scan(&mut self, f: &FilterSpec, known: tandem::state::known::Known<'_>) -> Result<Scan> {
        self.inner.scan(f, known)
    }
    fn digests(&mut self, p: &[RelPath]) -> Result<Vec<(RelPath, Result<Digest, String>)>> {
        self.inner.digests(p)
    }
    fn signatures(&mut self, f: &[SignRequest]) -> Result<Vec<Result<Vec<u8>, String>>> {
        self.inner.signatures(f)
    }
    fn gaps(&mut self, f: &[GapRequest]) -> Result<Vec<Result<Ranges, String>>> {
        self.inner.gaps(f)
    }
    fn send(
        &mut self,
        files: &[SendRequest],
        sink: &mut dyn FnMut(Chunk) -> Result<()>,
    ) -> Result<()> {
        let corrupt = !self.corrupted && files.iter().any(|f| f.signature.is_some());
        self.corrupted |= corrupt;
        self.inner.send(files, &mut |c| match c {
            Chunk::Data { id, mut ops } if corrupt => {
                for op in ops.iter_mut() {
                    if let tandem::disk::delta::DeltaOp::Literal(b) = op {
                        b[0] ^= 0xff;
                    }
                }
                sink(Chunk::Data { id, ops })
            }
            c => sink(c),
        })
    }
    fn receive(&mut self, c: Chunk) -> Result<()> {
        self.inner.receive(c)
    }
    fn received(&mut self, w: bool) -> Result<Vec<Received>> {
        self.inner.received(w)
    }
    fn sync(&mut self) -> Result<()> {
        self.inner.sync()
    }
    fn apply(&mut self, c: &[Change]) -> Result<Vec<Result<Option<Entry>>>> {
        self.inner.apply(c)
    }
}

fn open(dir: &Path) -> LocalEndpoint {
    LocalEndpoint::open(dir, format!("'{}'", dir.display()), false).unwrap()
}

#[test]
fn a_delta_that_fails_verification_is_resent_whole_once() {
    let f = fixture();
    let old = pseudo_random(1 << 20, 1);
    let mut new = old.clone();
    new[5000..9000].copy_from_slice(&pseudo_random(4000, 2));
    std::fs::write(f.a.join("x"), &new).unwrap();
    std::fs::write(f.b.join("x"), &old).unwrap();
    let mut local = Corrupting {
        inner: open(&f.a),
        corrupted: false,
    };
    let mut remote = open(&f.b);
    let lt = local
        .scan(&FilterSpec::default(), Default::default())
        .unwrap()
        .tree;
    let rt = remote
        .scan(&FilterSpec::default(), Default::default())
        .unwrap()
        .tree;
    let p = RelPath::new(b"x".to_vec()).unwrap();
    let action = Action {
        side: Side::Remote,
        path: p.clone(),
        op: Op::Copy {
            from: p.clone(),
            source: lt.get(&p).unwrap().clone(),
        },
        expect: rt.get(&p).cloned().map(Box::new),
        status: Status::Synchronized,
        reason: "".into(),
        conflict_copy: false,
        restores: false,
    };
    let mut out = Vec::new();
    let mut done = |a: &Action, r| {
        out.push((a.path.clone(), r));
        true
    };
    let (mut lt, mut rt) = (lt, rt);
    let mut transfers = Transfers {
        local: &mut local,
        remote: &mut remote,
        trees: [&mut lt, &mut rt],
        partials: [&Default::default(), &Default::default()],
        in_flight: 10,
        stats: Stats::default(),
    };
    transfers
        .copy(&mut [action], |_| true, &mut NoWatch, &mut done)
        .unwrap();
    let stats = transfers.stats;
    assert!(local.corrupted, "the test did not corrupt anything");
    assert!(out[0].1.is_ok(), "{:?}", out[0].1);
    assert_eq!(stats.resent, 1);
    assert_eq!(std::fs::read(f.b.join("x")).unwrap(), new);
    // The file arrived with all its attributes; directories are restamped by a run, not by
    // the transfers alone, so the roots' times are not compared.
    assert_same_tree_except(
        &f.a,
        &f.b,
        &Except {
            root: true,
            ..Except::default()
        },
    );
    assert!(matches!(
        Error::Verify {
            path: String::new(),
            place: String::new()
        }
        .exit_bit()
        .0,
        128
    ));
}

#[test]
fn thousands_of_changes_go_out_in_batches_and_each_is_reported() {
    let f = fixture();
    for d in 0..30 {
        for i in 0..100 {
            write(f.a.join(format!("d{d}/f{i}")), "x");
        }
    }
    assert_eq!(f.sync("push", &[]).code, 0);
    assert_same_tree(&f.a, &f.b);
    for d in 0..30 {
        std::fs::remove_dir_all(f.a.join(format!("d{d}"))).unwrap();
        std::fs::create_dir(f.a.join(format!("e{d}"))).unwrap();
    }
    let r = f.sync("push", &["-y", "--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let events = json_events(&r.stdout);
    let deleted = events
        .iter()
        .filter(|e| e["status"] == "SYNCHRONIZED(del)")
        .count();
    assert_eq!(deleted, 3030, "every deletion reported once");
    assert_eq!(events.last().unwrap()["files_deleted"], 3030);
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn an_interrupted_transfer_resumes_from_its_partial_file() {
    let f = fixture();
    let data = pseudo_random(8 << 20, 77);
    std::fs::write(f.a.join("big.iso"), &data).unwrap();
    // What a run killed half-way through leaves: the first half in the temp file.
    std::fs::write(f.b.join(".tandem-tmp.big.iso"), &data[..4 << 20]).unwrap();
    let r = f.sync("push", &["--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(std::fs::read(f.b.join("big.iso")).unwrap(), data);
    let summary = json_events(&r.stdout).pop().unwrap();
    let saved = summary["bytes_saved_by_delta"].as_u64().unwrap();
    let sent = summary["bytes_sent"].as_u64().unwrap();
    assert!(
        saved >= 4 << 20,
        "the partial half was not reused: {summary}"
    );
    assert!(sent < (4 << 20) + (512 << 10), "{summary}");
    assert_eq!(
        names(&f.b),
        ["big.iso"],
        "partial or temp files left behind"
    );
    assert_same_tree(&f.a, &f.b);
}

/// An agent on `root`, run in a thread of this process over a pipe.
fn in_process_agent(root: &Path) -> tandem::endpoint::RemoteEndpoint {
    tandem::sync::agent_thread(agent_options(root), Default::default()).unwrap()
}

/// What an agent on `root` serves with by default.
fn agent_options(root: &Path) -> tandem::wire::agent::AgentOptions {
    tandem::wire::agent::AgentOptions {
        root: root.to_path_buf(),
        label: "remote".into(),
        owner: false,
        compression: Default::default(),
        hard_links: true,
        scan_threads: 1,
        acls: Default::default(),
        rate: None,
        keep_dir: None,
        log: None,
        background: false,
    }
}

/// Both forms of endpoint build their scanned tree with the paths of a tree the client
/// holds (the baseline): one copy of each path's bytes, whatever holds it.
#[test]
fn scans_share_the_paths_of_the_baseline() {
    let f = fixture();
    for dir in ["a/b", "c/d/e", "f"] {
        std::fs::create_dir_all(f.a.join(dir)).unwrap();
        std::fs::create_dir_all(f.b.join(dir)).unwrap();
    }
    for name in ["a/b/x", "a/y", "a b", "a.b", "c/d/e/z", "g", "h\nnewline"] {
        write(f.a.join(name), name);
        write(f.b.join(name), name);
    }
    let mut local = open(&f.a);
    let known = local
        .scan(&FilterSpec::default(), Default::default())
        .unwrap()
        .tree;
    let mut agent = in_process_agent(&f.b);
    for (what, ep) in [
        ("local", &mut local as &mut dyn Endpoint),
        ("remote", &mut agent),
    ] {
        let tree = ep
            .scan(
                &FilterSpec::default(),
                tandem::state::known::Known::of(&known),
            )
            .unwrap()
            .tree;
        assert_eq!(tree.entries.len(), known.entries.len(), "{what}");
        for ((p, _), (q, _)) in tree.entries.iter().zip(&known.entries) {
            assert!(
                p == q && p.same_bytes(q),
                "{what}: {p} is a copy of its own"
            );
        }
    }
}

#[test]
fn an_agent_whose_client_vanishes_keeps_a_large_partial_for_next_time() {
    let f = fixture();
    let mut local = open(&f.a);
    let mut agent = in_process_agent(&f.b);
    std::fs::write(f.a.join("big"), pseudo_random(4 << 20, 5)).unwrap();
    write(f.a.join("small"), "tiny");
    let tree = local
        .scan(&FilterSpec::default(), Default::default())
        .unwrap()
        .tree;
    let req = |path: &str, id| {
        let p = RelPath::new(path.as_bytes().to_vec()).unwrap();
        SendRequest {
            id,
            path: p.clone(),
            expect: tree.get(&p).unwrap().clone(),
            target: p,
            target_expect: None,
            signature: None,
            refined: None,
        }
    };
    // Send everything but the ends, then vanish.
    local
        .send(&[req("big", 1), req("small", 2)], &mut |c| match c {
            Chunk::End { .. } => Ok(()),
            c => agent.receive(c),
        })
        .unwrap();
    agent.received(false).unwrap();
    drop(agent);
    // The agent thread notices the closed stream once it has handled everything sent.
    let partial = f.b.join(".tandem-tmp.big");
    let settled =
        || names(&f.b).len() == 1 && std::fs::metadata(&partial).is_ok_and(|m| m.len() == 4 << 20);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !settled() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        names(&f.b),
        [".tandem-tmp.big"],
        "large partial kept, small one removed"
    );
    assert_eq!(
        std::fs::metadata(f.b.join(".tandem-tmp.big"))
            .unwrap()
            .len(),
        4 << 20
    );
}

/// An agent with no compression, so that repeated messages keep their size.
fn uncompressed_agent(root: &Path) -> tandem::endpoint::RemoteEndpoint {
    let opts = tandem::wire::agent::AgentOptions {
        compression: tandem::disk::compress::Compression::None,
        ..agent_options(root)
    };
    tandem::sync::agent_thread(opts, tandem::disk::compress::Compression::None).unwrap()
}

/// Runs `call` on `remote` in a thread and waits for its answer, failing if none comes.
fn answered<T: Send + 'static>(
    mut remote: tandem::endpoint::RemoteEndpoint,
    call: impl FnOnce(&mut tandem::endpoint::RemoteEndpoint) -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call(&mut remote));
    });
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("the connection stalled: no answer in two minutes")
}

/// Asking for more files than the connection's buffers hold requests for: the client
/// reads the files while it still has requests to send (a pull with a large
/// `--pending-max` stalled both ends otherwise).
#[test]
fn asking_for_thousands_of_files_at_once_does_not_stall_the_connection() {
    let f = fixture();
    let deep = vec!["n".repeat(250); 4].join("/");
    std::fs::create_dir_all(f.b.join(&deep)).unwrap();
    std::fs::write(f.b.join(&deep).join("x"), pseudo_random(1000, 3)).unwrap();
    let mut remote = uncompressed_agent(&f.b);
    let tree = remote
        .scan(&FilterSpec::default(), Default::default())
        .unwrap()
        .tree;
    let path = RelPath::new(format!("{deep}/x").into_bytes()).unwrap();
    let expect = tree.get(&path).unwrap().clone();
    let requests: Vec<SendRequest> = (0..10_000)
        .map(|id| SendRequest {
            id,
            path: path.clone(),
            expect: expect.clone(),
            target: path.clone(),
            target_expect: None,
            signature: None,
            refined: None,
        })
        .collect();
    let ends = answered(remote, move |remote| {
        let mut ends = 0;
        remote
            .send(&requests, &mut |c| {
                ends += matches!(c, Chunk::End { .. }) as usize;
                Ok(())
            })
            .map(|()| ends)
    });
    assert_eq!(ends.unwrap(), 10_000, "every file sent whole");
}

/// A call with more changes than the connection's buffers hold answers: the client reads
/// answers while it still has changes to send (sending them all first stalled both ends,
/// each waiting for the other to read, from a renamed directory of 100,000 files on).
#[test]
fn a_hundred_thousand_changes_in_one_call_do_not_stall_the_connection() {
    let f = fixture();
    // Long requests and answers that each carry an entry fill the buffers soonest.
    let deep = vec!["n".repeat(250); 4].join("/");
    std::fs::create_dir_all(f.b.join(&deep)).unwrap();
    let remote = uncompressed_agent(&f.b);
    let dir = RelPath::new(deep.into_bytes()).unwrap();
    let changes: Vec<Change> = (0..120_000)
        .map(|i| Change::Restamp {
            path: dir.clone(),
            mtime_ns: i * 1_000_000_000,
        })
        .collect();
    let applied = answered(remote, move |remote| {
        remote.apply(&changes).map(|r| r.len())
    });
    assert_eq!(applied.unwrap(), 120_000);
}
