//! Faults injected into real runs over SSH: the connection cut at many byte offsets of a
//! push, a pull and a bidi run, and a receiving disk that fills up. After each fault
//! nothing is lost or mixed — every entry on both sides is whole, in its old or its new
//! version, and every change is still on the side that made it — and a clean rerun
//! converges to the intended state, after which a third run has nothing to do.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cut_proxy::{CutProxy, NEVER};
use crate::sshd::{ssh_fixture, SshFixture};
use crate::util::*;

/// Every run names the session: its default name would follow the port, and runs through
/// a proxy and straight to the server must share one baseline.
const SESSION: &str = "faults";

/// Longer than any run of the workload takes in a debug build on a busy machine.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// How long an agent may outlive the connection it served.
const AGENT_LIMIT: Duration = Duration::from_secs(20);

/// Which root: the local `a` or the remote `b`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    A,
    B,
}

/// An entry as the checks see it: a file is its content, a directory is there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Item {
    File([u8; 32]),
    Dir,
    Other,
}

/// A tree without the root: relative path → item.
type Model = BTreeMap<Vec<u8>, Item>;

fn model(root: &Path) -> Model {
    snapshot(root)
        .into_iter()
        .filter(|(k, _)| k != b".")
        .map(|(k, e)| {
            let item = match e.kind {
                Kind::File => Item::File(e.content.unwrap()),
                Kind::Dir => Item::Dir,
                _ => Item::Other,
            };
            (k, item)
        })
        .collect()
}

/// Whether a name is one tandem writes while receiving: left by an interrupted run (kept
/// to resume from), never taken for a synchronized file.
fn is_temp(path: &[u8]) -> bool {
    let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
    name.starts_with(b".tandem-tmp.") || name.starts_with(b".tandem-part.")
}

// The workload: small files in a few directories, one big file edited in a few places
// (it goes as a delta), and a directory of files renamed at once.

const DIRS: usize = 5;
const PER_DIR: usize = 30;
const BATCH: usize = 30;
const BIG: usize = 6 << 20;

fn small(d: usize, i: usize, version: &str) -> String {
    format!("docs/d{d}/f{i:02}.txt {version}\n").repeat(8 + (d * 7 + i * 13) % 60)
}

fn before_state(root: &Path) {
    for d in 0..DIRS {
        for i in 0..PER_DIR {
            write(
                root.join(format!("docs/d{d}/f{i:02}.txt")),
                &small(d, i, "v1"),
            );
        }
    }
    for k in 0..BATCH {
        write(
            root.join(format!("batch/b{k:02}.dat")),
            &format!("batch member {k}\n").repeat(40 + k),
        );
    }
    std::fs::write(root.join("big.bin"), pseudo_random(BIG, 11)).unwrap();
}

/// Every fifth small file of the directories `dirs` gets a new version.
fn edit_small(root: &Path, dirs: std::ops::Range<usize>) {
    for d in dirs {
        for i in (0..PER_DIR).step_by(5) {
            write(
                root.join(format!("docs/d{d}/f{i:02}.txt")),
                &small(d, i, "v2"),
            );
        }
    }
}

fn add_new(root: &Path) {
    for k in 0..12 {
        write(root.join(format!("new/n{k:02}.txt")), &format!("new {k}\n"));
    }
}

fn delete_some(root: &Path) {
    for i in [1, 2, 3, 4, 6] {
        std::fs::remove_file(root.join(format!("docs/d4/f{i:02}.txt"))).unwrap();
    }
}

/// Three 4 KiB patches: the rest of the file is the receiver's to reuse.
fn edit_big(root: &Path) {
    let path = root.join("big.bin");
    let mut big = std::fs::read(&path).unwrap();
    for (n, at) in [1usize << 20, (7 << 20) / 2, 5 << 20]
        .into_iter()
        .enumerate()
    {
        big[at..at + 4096].copy_from_slice(&pseudo_random(4096, 100 + n as u64));
    }
    std::fs::write(&path, big).unwrap();
}

fn move_batch(root: &Path) {
    std::fs::create_dir_all(root.join("moved")).unwrap();
    std::fs::rename(root.join("batch"), root.join("moved/batch2")).unwrap();
}

/// Makes the "after" changes of `direction` on its source side or sides; for bidi the two
/// sides change different paths, so nothing conflicts.
fn make_changes(direction: &str, a: &Path, b: &Path) {
    match direction {
        "push" | "pull" => {
            let src = if direction == "push" { a } else { b };
            edit_small(src, 0..DIRS);
            add_new(src);
            delete_some(src);
            edit_big(src);
            move_batch(src);
        }
        _ => {
            edit_big(a);
            edit_small(a, 0..3);
            move_batch(a);
            edit_small(b, 3..DIRS);
            add_new(b);
            delete_some(b);
        }
    }
}

/// What one cut-point run must find.
#[derive(Default)]
struct Figures {
    points: usize,
    cut: usize,
    finished_before_cut: usize,
    converged: usize,
    entries_checked: usize,
    lost: usize,
    mixed: usize,
    temps_left: usize,
    failures: Vec<String>,
}

/// One workload over a real sshd: the trees after a synced run and the changes, kept as
/// a template that every cut point starts from.
struct Scenario {
    s: SshFixture,
    direction: &'static str,
    template: PathBuf,
    before: Model,
    /// The intended end state of both sides.
    after: Model,
    /// The side that changed each path that differs between `before` and `after`.
    origin: BTreeMap<Vec<u8>, Side>,
}

impl Scenario {
    fn new(direction: &'static str) -> Scenario {
        let s = ssh_fixture();
        let (a, b) = (s.f.a.clone(), s.f.b.clone());
        before_state(if direction == "pull" { &b } else { &a });
        let mut sc = Scenario {
            s,
            direction,
            template: PathBuf::new(),
            before: Model::new(),
            after: Model::new(),
            origin: BTreeMap::new(),
        };
        let r = sc.run_direct(&[]).unwrap();
        assert_eq!(r.code, 0, "the first sync: {r:?}");
        assert_same_tree(&a, &b);
        sc.before = model(&a);
        make_changes(direction, &a, &b);
        sc.template = sc.s.f.tmp.path().join("template");
        std::fs::create_dir(&sc.template).unwrap();
        for from in [&a, &b, &sc.s.f.state] {
            copy_tree(from, &sc.template.join(from.file_name().unwrap()));
        }
        sc.intend([model(&a), model(&b)]);
        sc
    }

    /// Works out the end state: each path as the side that changed it has it.
    fn intend(&mut self, changed: [Model; 2]) {
        let paths: std::collections::BTreeSet<Vec<u8>> = changed
            .iter()
            .flat_map(|m| m.keys())
            .chain(self.before.keys())
            .cloned()
            .collect();
        for p in paths {
            let old = self.before.get(&p).copied();
            let [on_a, on_b] = [&changed[0], &changed[1]].map(|m| m.get(&p).copied());
            let (new, side) = if on_a != old {
                (on_a, Some(Side::A))
            } else if on_b != old {
                (on_b, Some(Side::B))
            } else {
                (old, None)
            };
            if let Some(item) = new {
                self.after.insert(p.clone(), item);
            }
            if let Some(side) = side {
                self.origin.insert(p, side);
            }
        }
    }

    fn root(&self, side: Side) -> &Path {
        match side {
            Side::A => &self.s.f.a,
            Side::B => &self.s.f.b,
        }
    }

    /// `tandem -d a -r USER@127.0.0.1:b -P port ...` with the native agent.
    fn command(&self, port: u16, extra: &[&str]) -> Command {
        let mut c = self.s.client();
        c.arg("-d")
            .arg(&self.s.f.a)
            .arg("-r")
            .arg(self.s.remote())
            .arg("-P")
            .arg(port.to_string())
            .arg("-i")
            .arg(self.s.sshd.key())
            .args(["-K", self.direction, "-N", SESSION])
            .args(extra)
            .arg("--agent-path")
            .arg(native_agent_path());
        c
    }

    fn run_direct(&self, extra: &[&str]) -> Result<Run, String> {
        run_bounded(self.command(self.s.sshd.port, extra))
    }

    /// Lets the client trust the server's host key when it connects through `port`:
    /// known_hosts entries are keyed by host and port.
    fn trust_port(&self, port: u16) {
        let line = self.s.sshd.known_hosts_line();
        let key = line.split_once(' ').unwrap().1;
        let path = self.s.home.join(".ssh/known_hosts");
        let mut all = std::fs::read_to_string(&path).unwrap();
        all.push_str(&format!("[127.0.0.1]:{port} {key}"));
        std::fs::write(&path, all).unwrap();
    }

    /// Puts both roots and the state back as they were after the changes: the roots
    /// themselves stay (a root's identity is part of the baseline), their contents are
    /// copied from the template.
    fn restore(&self) {
        for root in [&self.s.f.a, &self.s.f.b] {
            for e in std::fs::read_dir(root).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(&p).unwrap();
                } else {
                    std::fs::remove_file(&p).unwrap();
                }
            }
        }
        std::fs::remove_dir_all(&self.s.f.state).unwrap();
        for to in [&self.s.f.a, &self.s.f.b, &self.s.f.state] {
            copy_tree(&self.template.join(to.file_name().unwrap()), to);
        }
    }

    /// The run's total bytes through the proxy when nothing is cut.
    fn clean_total(&self) -> u64 {
        self.restore();
        let proxy = CutProxy::start(self.s.sshd.port, NEVER);
        self.trust_port(proxy.port());
        let r = run_bounded(self.command(proxy.port(), &[])).unwrap();
        assert_eq!(r.code, 0, "the clean run: {r:?}");
        assert!(!proxy.was_cut());
        let total = proxy.passed();
        eprintln!(
            "faults {}: a clean run passes {total} bytes over {} connection(s)",
            self.direction,
            proxy.connections()
        );
        total
    }

    /// Cuts a run after `budget` bytes and checks what it left, the rerun and the run
    /// after it.
    fn cut_at(&self, budget: u64, fig: &mut Figures) {
        self.restore();
        fig.points += 1;
        let at = format!("{} cut at {budget}", self.direction);
        let fail = |fig: &mut Figures, what: String| fig.failures.push(format!("{at}: {what}"));
        let proxy = CutProxy::start(self.s.sshd.port, budget);
        self.trust_port(proxy.port());
        let r = run_bounded(self.command(proxy.port(), &[]));
        let cut = proxy.was_cut();
        drop(proxy);
        fig.cut += usize::from(cut);
        if let Err(e) = self.agents_gone() {
            fail(fig, e);
        }
        match &r {
            Err(e) => fail(fig, e.clone()),
            Ok(r) => {
                if let Some(why) = judge_exit(r, cut) {
                    fail(fig, why);
                }
                fig.finished_before_cut += usize::from(r.code == 0 && !cut);
                eprintln!(
                    "  {at}: exit {}, {}, {} of {} changes across; {}",
                    r.code,
                    if cut { "cut" } else { "not cut" },
                    self.changes_across(),
                    self.origin.len(),
                    r.stderr.lines().last().unwrap_or("")
                );
            }
        }
        for why in self.whole_and_nothing_lost(fig) {
            fail(fig, why);
        }
        match self.converges() {
            Ok(()) => fig.converged += 1,
            Err(why) => fail(fig, why),
        }
    }

    /// How many changed paths the other side has in their new version already.
    fn changes_across(&self) -> usize {
        let now = [model(&self.s.f.a), model(&self.s.f.b)];
        self.origin
            .iter()
            .filter(|(p, side)| {
                let other = &now[usize::from(**side == Side::A)];
                other.get(*p) == self.after.get(*p)
            })
            .count()
    }

    /// Every entry on both sides is its old or its new version, and every change is still
    /// on the side that made it. Returns what is wrong.
    fn whole_and_nothing_lost(&self, fig: &mut Figures) -> Vec<String> {
        let mut wrong = Vec::new();
        for side in [Side::A, Side::B] {
            let now = model(self.root(side));
            let paths: std::collections::BTreeSet<&Vec<u8>> = self
                .before
                .keys()
                .chain(self.after.keys())
                .chain(now.keys())
                .collect();
            for p in paths {
                let name = String::from_utf8_lossy(p);
                let (old, new, got) = (self.before.get(p), self.after.get(p), now.get(p));
                if old.is_none() && new.is_none() {
                    if is_temp(p) {
                        fig.temps_left += 1;
                    } else {
                        fig.mixed += 1;
                        wrong.push(format!("{side:?} has an unexpected '{name}'"));
                    }
                    continue;
                }
                fig.entries_checked += 1;
                let must_be_new = old == new || self.origin.get(p) == Some(&side);
                if must_be_new && got != new {
                    fig.lost += 1;
                    wrong.push(format!(
                        "LOST: '{name}' on {side:?} should be {} but is {}",
                        describe(new, old),
                        describe(got, old)
                    ));
                } else if got != old && got != new {
                    fig.mixed += 1;
                    wrong.push(format!(
                        "MIXED: '{name}' on {side:?} is neither its old nor its new version ({})",
                        describe(got, old)
                    ));
                }
            }
        }
        wrong
    }

    /// A clean rerun exits 0 and leaves both sides alike and as intended; a third run
    /// then changes nothing.
    fn converges(&self) -> Result<(), String> {
        let r = self.run_direct(&[])?;
        if r.code != 0 {
            return Err(format!("the rerun did not converge: {r:?}"));
        }
        self.alike_and_as_intended()
            .map_err(|e| format!("after the rerun: {e}"))?;
        let sides = [snapshot(&self.s.f.a), snapshot(&self.s.f.b)];
        let r = self.run_direct(&["--format", "json"])?;
        let summary = json_events(&r.stdout).pop().unwrap_or_default();
        let work: Vec<_> = json_events(&r.stdout)
            .into_iter()
            .filter(|e| e["event"] == "file" && e["status"] != "SYNCHRONIZED(exs)")
            .collect();
        if r.code != 0 || summary["files_transferred"] != 0 || summary["files_deleted"] != 0 {
            return Err(format!("the third run had work: {r:?}"));
        }
        if !work.is_empty() {
            return Err(format!("the third run had work: {work:?}"));
        }
        for (side, was) in [&self.s.f.a, &self.s.f.b].into_iter().zip(&sides) {
            if let Some(d) = tree_difference(was, &snapshot(side), &Except::default()) {
                return Err(format!("the third run changed {}: {d}", side.display()));
            }
        }
        Ok(())
    }

    fn alike_and_as_intended(&self) -> Result<(), String> {
        let (a, b) = (&self.s.f.a, &self.s.f.b);
        if let Some(d) = tree_difference(&snapshot(a), &snapshot(b), &Except::default()) {
            return Err(format!("the trees differ: {d}"));
        }
        let rsync = rsync_differences(a, b, &Except::default());
        if !rsync.is_empty() {
            return Err(format!("rsync sees differences: {rsync:?}"));
        }
        let now = model(a);
        if now != self.after {
            let differ: Vec<_> = now
                .keys()
                .chain(self.after.keys())
                .filter(|p| now.get(*p) != self.after.get(*p))
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            return Err(format!("not the intended state at {differ:?}"));
        }
        Ok(())
    }

    /// Waits until no agent serves this scenario's remote root: one that went on writing
    /// after its connection was cut would race the checks.
    fn agents_gone(&self) -> Result<(), String> {
        let root = self.s.f.b.to_string_lossy().into_owned();
        let deadline = Instant::now() + AGENT_LIMIT;
        loop {
            let left = agents_serving(&root);
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the agent (pids {left:?}) still runs {AGENT_LIMIT:?} after its client ended"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a cut run ended as it should: 0 only if it finished before the cut, otherwise
/// "cannot reach the remote" (64) with a message about the connection; never a panic.
fn judge_exit(r: &Run, cut: bool) -> Option<String> {
    if r.stderr.contains("panicked") || r.stdout.contains("panicked") {
        return Some(format!("panicked: {r:?}"));
    }
    match (r.code, cut) {
        (0, false) => None,
        (0, true) => Some(format!("exit 0 though the connection was cut: {r:?}")),
        (_, false) => Some(format!("failed without a cut: {r:?}")),
        (code, true) if code & 64 == 0 => Some(format!("exit {code} without bit 64: {r:?}")),
        (_, true) if !names_the_connection(&r.stderr) => Some(format!(
            "stderr does not name the connection problem: {r:?}"
        )),
        _ => None,
    }
}

fn names_the_connection(stderr: &str) -> bool {
    let s = stderr.to_lowercase();
    ["connection", "disconnect", "ssh"]
        .iter()
        .any(|w| s.contains(w))
}

fn describe(item: Option<&Item>, old: Option<&Item>) -> String {
    match item {
        None => "absent".into(),
        Some(i) if Some(i) == old => "its old version".into(),
        Some(Item::File(h)) => format!("a file with BLAKE3 {}", hex8(h)),
        Some(i) => format!("{i:?}"),
    }
}

fn hex8(h: &[u8; 32]) -> String {
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `cp -a from/. to`: contents, modes and ns times, `to` itself included.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let mut src = from.as_os_str().to_owned();
    src.push("/.");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success(), "cp -a {} {}", from.display(), to.display());
}

/// Runs `c` to its end, or kills it at [`RUN_LIMIT`]: a hang is a failure, not a stuck
/// test binary.
fn run_bounded(mut c: Command) -> Result<Run, String> {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Drained as it comes, so a full pipe cannot stall the child.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            return Err(format!(
                "HANG: still running after {RUN_LIMIT:?}; stderr: {stderr}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    })
}

/// Pids of `tandem-agent` processes whose command line names `root`.
fn agents_serving(root: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("tandem-agent") && cmd.contains(root) && !is_zombie(pid) {
            pids.push(pid);
        }
    }
    pids
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(") ").is_some_and(|(_, a)| a.starts_with('Z'))
    })
}

/// Cut points over a clean run of `total` bytes: many in the SSH handshake and the
/// agent's start, an even spread over the middle, and several in the last exchanges,
/// where the remote commits and the client writes its baseline.
fn cut_points(total: u64) -> Vec<u64> {
    let early = [0, 1, 21, 200, 1_000, 2_500, 5_000];
    let middle = (1..=8).map(|k| total * k / 9);
    let late = [4_000, 1_500, 600, 200, 50, 1].map(|back| total.saturating_sub(back));
    let mut points: Vec<u64> = early.into_iter().chain(middle).chain(late).collect();
    points.sort_unstable();
    points.dedup();
    points
}

fn cut_everywhere(direction: &'static str) {
    let started = Instant::now();
    let sc = Scenario::new(direction);
    let total = sc.clean_total();
    let mut fig = Figures::default();
    for budget in cut_points(total) {
        sc.cut_at(budget, &mut fig);
    }
    eprintln!(
        "faults {direction}: {} points ({} cut, {} finished first), {} converged, {} entries checked, {} lost, {} mixed, {} temp files left by cuts, {:.0?}",
        fig.points,
        fig.cut,
        fig.finished_before_cut,
        fig.converged,
        fig.entries_checked,
        fig.lost,
        fig.mixed,
        fig.temps_left,
        started.elapsed()
    );
    assert!(fig.points >= 18, "too few cut points: {}", fig.points);
    assert!(
        fig.failures.is_empty(),
        "{} failure(s):\n{}",
        fig.failures.len(),
        fig.failures.join("\n")
    );
}

#[test]
fn cut_push_at_every_point() {
    cut_everywhere("push");
}

#[test]
fn cut_pull_at_every_point() {
    cut_everywhere("pull");
}

#[test]
fn cut_bidi_at_every_point() {
    cut_everywhere("bidi");
}
