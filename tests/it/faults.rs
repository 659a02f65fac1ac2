//! Faults injected into real runs over SSH: the connection cut at many byte offsets of a
//! push, a pull and a bidi run (through [`CutProxy`]), the remote agent killed, and a
//! receiving disk that fills up. After each fault nothing is lost or mixed — every entry
//! on both sides is whole, in its old or its new version, every change is still on the
//! side that made it, and a push or pull leaves its source as it was — and a clean rerun
//! converges to the intended state, after which a third run has nothing to do.
//!
//! Each cut test prints one line of figures (points cut, runs converged, entries checked,
//! entries lost or mixed) and, with `--nocapture`, one line per point.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cut_proxy::{CutProxy, NEVER};
use crate::sshd::{ssh_fixture, user, SshFixture};
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

/// What the fault runs found, for the closing line; `failures` fail the test.
#[derive(Default)]
struct Figures {
    points: usize,
    cut: usize,
    finished_before_cut: usize,
    converged: usize,
    entries_checked: usize,
    files_checked: usize,
    lost: usize,
    mixed: usize,
    temps_left: usize,
    cut_in_goodbye: usize,
    /// Deleted empty directories a rerun brought back.
    came_back: Vec<String>,
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
    /// The source of a push or pull, as it must stay (times and modes included).
    source: Option<(Side, Tree)>,
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
            source: None,
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
        sc.source = match direction {
            "push" => Some((Side::A, snapshot(&a))),
            "pull" => Some((Side::B, snapshot(&b))),
            _ => None,
        };
        sc
    }

    /// A push or pull never writes to its source, whatever happened to the run.
    fn source_untouched(&self) -> Result<(), String> {
        let Some((side, tree)) = &self.source else {
            return Ok(());
        };
        match tree_difference(tree, &snapshot(self.root(*side)), &Except::default()) {
            None => Ok(()),
            Some(d) => Err(format!("the source {side:?} changed: {d}")),
        }
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

    fn command(&self, port: u16, extra: &[&str]) -> Command {
        let mut c = via(&self.s, port, &self.s.f.b, self.direction);
        c.args(extra);
        c
    }

    fn run_direct(&self, extra: &[&str]) -> Result<Run, String> {
        run_bounded(self.command(self.s.sshd.port, extra))
    }

    /// A proxy to the server with `budget`, whose port the client trusts.
    fn proxy(&self, budget: u64) -> CutProxy {
        let proxy = CutProxy::start(self.s.sshd.port, budget);
        trust_port(&self.s, proxy.port());
        proxy
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

    /// The run's total bytes through the proxy when nothing is cut: the smaller of two
    /// runs, as the total varies by some hundred bytes (padding, window updates), and cut
    /// points meant for the last exchanges must fall inside every run.
    fn clean_total(&self) -> u64 {
        let mut totals = Vec::new();
        for _ in 0..2 {
            self.restore();
            let proxy = self.proxy(NEVER);
            let r = run_bounded(self.command(proxy.port(), &[])).unwrap();
            assert_eq!(r.code, 0, "the clean run: {r:?}");
            assert!(!proxy.was_cut());
            totals.push(proxy.passed());
            eprintln!(
                "faults {}: a clean run passes {} bytes over {} connection(s)",
                self.direction,
                proxy.passed(),
                proxy.connections()
            );
        }
        totals.into_iter().min().unwrap()
    }

    /// Cuts a run after `budget` bytes and checks what it left, the rerun and the run
    /// after it. Returns how many changes the cut run had brought across.
    fn cut_at(&self, budget: u64, fig: &mut Figures) -> usize {
        self.restore();
        fig.points += 1;
        let at = format!("{} cut at {budget}", self.direction);
        let fail = |fig: &mut Figures, what: String| fig.failures.push(format!("{at}: {what}"));
        let proxy = self.proxy(budget);
        let r = run_bounded(self.command(proxy.port(), &[]));
        let cut = proxy.was_cut();
        drop(proxy);
        fig.cut += usize::from(cut);
        if let Err(e) = self.agents_gone() {
            fail(fig, e);
        }
        let across = self.changes_across();
        match r.as_ref().map(|r| (r, judge_exit(r, cut))) {
            Err(e) => fail(fig, e.clone()),
            Ok((_, Err(why))) => fail(fig, why),
            Ok((r, Ok(ending))) => {
                match ending {
                    Ending::Finished => fig.finished_before_cut += 1,
                    // Exit 0 says everything is up to date: the cut came in the goodbye.
                    Ending::FinishedThoughCut => match self.alike_and_as_intended() {
                        Ok(back) => {
                            fig.cut_in_goodbye += 1;
                            fig.came_back.extend(back);
                        }
                        Err(e) => fail(fig, format!("exit 0 after the cut, but {e}")),
                    },
                    Ending::Lost => {}
                }
                eprintln!(
                    "  {at}: exit {}, {}, {across} of {} changes across; {}",
                    r.code,
                    if cut { "cut" } else { "not cut" },
                    self.origin.len(),
                    r.stderr.lines().last().unwrap_or("")
                );
            }
        }
        for why in self.whole_and_nothing_lost(fig) {
            fail(fig, why);
        }
        if let Err(why) = self.source_untouched() {
            fail(fig, why);
        }
        match self.converges() {
            Ok(back) => {
                fig.converged += 1;
                fig.came_back.extend(back);
            }
            Err(why) => fail(fig, why),
        }
        across
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
                let is_file = |i: Option<&Item>| matches!(i, Some(Item::File(_)));
                fig.files_checked += usize::from(is_file(old) || is_file(new));
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
    /// then changes nothing. Returns the deleted empty directories that came back.
    fn converges(&self) -> Result<Vec<String>, String> {
        let r = self.run_direct(&[])?;
        if r.code != 0 {
            return Err(format!("the rerun did not converge: {r:?}"));
        }
        let back = self
            .alike_and_as_intended()
            .and_then(|back| self.source_untouched().map(|()| back))
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
        Ok(back)
    }

    /// Both trees alike, and as intended but for empty directories a side deleted that
    /// came back (a product bug, see `a_directory_emptied_on_one_side_and_deleted_on_the_
    /// other_stays_deleted`): those are returned, anything else is an error.
    fn alike_and_as_intended(&self) -> Result<Vec<String>, String> {
        let (a, b) = (&self.s.f.a, &self.s.f.b);
        if let Some(d) = tree_difference(&snapshot(a), &snapshot(b), &Except::default()) {
            return Err(format!("the trees differ: {d}"));
        }
        let rsync = rsync_differences(a, b, &Except::default());
        if !rsync.is_empty() {
            return Err(format!("rsync sees differences: {rsync:?}"));
        }
        let now = model(a);
        let differ: std::collections::BTreeSet<&Vec<u8>> = now
            .keys()
            .chain(self.after.keys())
            .filter(|p| now.get(*p) != self.after.get(*p))
            .collect();
        let empty_dir = |p: &Vec<u8>| {
            let mut below = p.clone();
            below.push(b'/');
            now.get(p) == Some(&Item::Dir) && !now.keys().any(|k| k.starts_with(&below))
        };
        let (back, wrong): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = differ.into_iter().partition(|p| {
            // Deleted directories that came back are recorded, and the sweep fails on them.
            empty_dir(p) && !self.after.contains_key(*p) && self.before.contains_key(*p)
        });
        let names = |v: Vec<&Vec<u8>>| -> Vec<String> {
            v.into_iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        };
        if !wrong.is_empty() {
            return Err(format!("not the intended state at {:?}", names(wrong)));
        }
        Ok(names(back))
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

/// How a run through the proxy ended.
enum Ending {
    /// Exit 0, nothing cut.
    Finished,
    /// Exit 0 though the proxy cut: only right if the cut came after the last of the
    /// run's work, in the connection's goodbye.
    FinishedThoughCut,
    /// Bit 64 with a message about the connection.
    Lost,
}

/// Whether a cut run ended as it should: 0 only if it finished, otherwise "cannot reach
/// the remote" (64) with a message about the connection; never a panic.
fn judge_exit(r: &Run, cut: bool) -> Result<Ending, String> {
    if r.stderr.contains("panicked") || r.stdout.contains("panicked") {
        return Err(format!("panicked: {r:?}"));
    }
    match (r.code, cut) {
        (0, false) => Ok(Ending::Finished),
        (0, true) => Ok(Ending::FinishedThoughCut),
        (_, false) => Err(format!("failed without a cut: {r:?}")),
        (code, true) if code & 64 == 0 => Err(format!("exit {code} without bit 64: {r:?}")),
        (_, true) if blames_the_key(&r.stderr) => {
            Err(format!("a lost connection blamed on the key: {r:?}"))
        }
        (_, true) if !names_the_connection(&r.stderr) => Err(format!(
            "stderr does not name the connection problem: {r:?}"
        )),
        _ => Ok(Ending::Lost),
    }
}

/// What the client says when a frame from the agent ends early.
const TRUNCATED: &str = "connection closed in the middle of a frame";

fn names_the_connection(stderr: &str) -> bool {
    let s = stderr.to_lowercase();
    [
        "connection",
        "disconnected",
        "handshake",
        "eof",
        "closed",
        "reset",
        "broken pipe",
    ]
    .iter()
    .any(|w| s.contains(w))
}

fn blames_the_key(stderr: &str) -> bool {
    stderr.contains("permission denied") || stderr.contains("refused by the server")
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

/// `tandem -d a -r USER@127.0.0.1:REMOTE_ROOT -P port -K direction -N faults` with the
/// native agent.
fn via(s: &SshFixture, port: u16, remote_root: &Path, direction: &str) -> Command {
    let mut c = s.client();
    c.arg("-d")
        .arg(&s.f.a)
        .arg("-r")
        .arg(format!("{}@127.0.0.1:{}", user(), remote_root.display()))
        .arg("-P")
        .arg(port.to_string())
        .arg("-i")
        .arg(s.sshd.key())
        .args(["-K", direction, "-N", SESSION])
        .arg("--agent-path")
        .arg(native_agent_path());
    c
}

/// Lets the client trust the server's host key when it connects through `port`:
/// known_hosts entries are keyed by host and port.
fn trust_port(s: &SshFixture, port: u16) {
    let line = s.sshd.known_hosts_line();
    let key = line.split_once(' ').unwrap().1;
    let path = s.home.join(".ssh/known_hosts");
    let mut all = std::fs::read_to_string(&path).unwrap();
    all.push_str(&format!("[127.0.0.1]:{port} {key}"));
    std::fs::write(&path, all).unwrap();
}

/// Runs `c` to its end, or kills it at [`RUN_LIMIT`]: a hang is a failure, not a stuck
/// test binary.
fn run_bounded(c: Command) -> Result<Run, String> {
    Running::start(c).finish()
}

/// A client started with its output drained as it comes (a full pipe cannot stall it),
/// stdout also line by line to whoever watches its events.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    deadline: Instant,
}

impl Running {
    fn start(mut c: Command) -> Running {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufRead::lines(out).map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        });
        Running {
            child,
            lines,
            stdout,
            stderr,
            deadline: Instant::now() + RUN_LIMIT,
        }
    }

    fn ended(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the end, or kills the client at the deadline and says it hung.
    fn finish(mut self) -> Result<Run, String> {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self.stderr.join().unwrap_or_default();
                return Err(format!(
                    "HANG: still running after {RUN_LIMIT:?}; stderr: {stderr}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(Run {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
        })
    }
}

/// Pids of `tandem-agent` processes serving `root` (the client names both the agent and
/// the root in its arguments too, so the program run is what tells them apart).
fn agents_serving(root: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmd.split(|b| *b == 0).map(String::from_utf8_lossy);
        let program = args.next().unwrap_or_default();
        if program.ends_with("tandem-agent") && args.any(|a| a.contains(root)) && !is_zombie(pid) {
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
    let middle = (1..=12).map(|k| total * k / 13);
    let late = [4_000, 1_500, 600, 200, 50, 1].map(|back| total.saturating_sub(back));
    let mut points: Vec<u64> = early.into_iter().chain(middle).chain(late).collect();
    points.sort_unstable();
    points.dedup();
    points
}

/// Extra cut points placed where the changes arrive.
const BISECTIONS: usize = 6;

fn cut_everywhere(direction: &'static str) {
    let started = Instant::now();
    let sc = Scenario::new(direction);
    let total = sc.clean_total();
    let mut fig = Figures::default();
    let mut seen: Vec<(u64, usize)> = cut_points(total)
        .into_iter()
        .map(|budget| (budget, sc.cut_at(budget, &mut fig)))
        .collect();
    // Denser where the run makes progress: halfway between the two neighbouring points
    // furthest apart whose cuts left different numbers of changes across.
    for _ in 0..BISECTIONS {
        seen.sort_unstable();
        let Some(mid) = seen
            .windows(2)
            .filter(|w| w[0].1 != w[1].1 && w[1].0 - w[0].0 > 1)
            .max_by_key(|w| w[1].0 - w[0].0)
            .map(|w| (w[0].0 + w[1].0) / 2)
        else {
            break;
        };
        seen.push((mid, sc.cut_at(mid, &mut fig)));
    }
    eprintln!(
        "faults {direction}: {} points ({} cut, {} finished first, {} cut in the goodbye), {} converged ({} with a deleted empty directory back: {:?}), {} entries checked ({} files), {} lost, {} mixed, {} temp files left by cuts, {:.0?}",
        fig.points,
        fig.cut,
        fig.finished_before_cut,
        fig.cut_in_goodbye,
        fig.converged,
        fig.came_back.len(),
        fig.came_back,
        fig.entries_checked,
        fig.files_checked,
        fig.lost,
        fig.mixed,
        fig.temps_left,
        started.elapsed()
    );
    assert!(fig.points >= 18, "too few cut points: {}", fig.points);
    assert!(
        fig.came_back.is_empty(),
        "deleted directories came back: {:?}",
        fig.came_back
    );
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

/// The checks have teeth: a torn file, a change lost on the side that made it and a
/// stray file are each found, and a tree off the intended state is not taken for it.
#[test]
fn the_checks_find_a_torn_file_a_lost_change_and_a_stray_file() {
    let sc = Scenario::new("push");
    sc.restore();
    let mut fig = Figures::default();
    assert_eq!(sc.whole_and_nothing_lost(&mut fig), Vec::<String>::new());
    let big = sc.s.f.b.join("big.bin");
    let half = std::fs::read(&big).unwrap()[..BIG / 2].to_vec();
    std::fs::write(&big, half).unwrap();
    std::fs::remove_file(sc.s.f.a.join("new/n00.txt")).unwrap();
    write(sc.s.f.b.join("docs/stray"), "stray");
    write(sc.s.f.b.join("docs/.tandem-tmp.f00.txt"), "a partial");
    let wrong = sc.whole_and_nothing_lost(&mut fig);
    assert_eq!(wrong.len(), 3, "{wrong:#?}");
    assert!(
        wrong[0].starts_with("LOST: 'new/n00.txt' on A"),
        "{wrong:#?}"
    );
    assert!(wrong[1].starts_with("MIXED: 'big.bin' on B"), "{wrong:#?}");
    assert!(wrong[2].contains("unexpected 'docs/stray'"), "{wrong:#?}");
    assert_eq!((fig.lost, fig.mixed, fig.temps_left), (1, 2, 1));
    assert!(sc.alike_and_as_intended().is_err());
    assert!(sc.source_untouched().is_err());
}

/// A connection lost while logging in is not a refused key: the message must say the
/// connection was lost, not send the user off to fix `authorized_keys`.
#[test]
fn a_connection_lost_while_logging_in_is_not_blamed_on_the_key() {
    let s = ssh_fixture();
    write(s.f.a.join("f"), "f\n");
    let mut blamed = Vec::new();
    // From the key exchange to the agent's start: the login lies in between.
    for budget in (1_500..5_000).step_by(100) {
        let proxy = CutProxy::start(s.sshd.port, budget);
        trust_port(&s, proxy.port());
        let r = run_bounded(via(&s, proxy.port(), &s.f.b, "push")).unwrap();
        assert!(proxy.was_cut(), "{r:?}");
        assert_eq!(r.code, 64, "{r:?}");
        if blames_the_key(&r.stderr) || !names_the_connection(&r.stderr) {
            blamed.push(format!("cut at {budget}: {}", r.stderr.trim()));
        }
    }
    assert!(blamed.is_empty(), "{}", blamed.join("\n"));
}

/// A connection cut while the client reads a frame from the agent is "cannot reach the
/// remote" (64), as a cut between frames is, not a broken agent (128).
#[test]
fn a_connection_cut_in_the_middle_of_a_frame_is_unreachable() {
    let s = ssh_fixture();
    // A pull of one big new file: the client reads large data frames, most of a cut's
    // chances land inside one.
    std::fs::write(s.f.b.join("big"), pseudo_random(4 << 20, 9)).unwrap();
    let proxy = CutProxy::start(s.sshd.port, NEVER);
    trust_port(&s, proxy.port());
    let mut c = via(&s, proxy.port(), &s.f.b, "pull");
    c.args(["--compress", "none"]);
    let r = run_bounded(c).unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let total = proxy.passed();
    drop(proxy);
    let mut wrong = Vec::new();
    for pct in [30, 45, 60, 75, 90] {
        // Each cut starts as the first run did: nothing local, no baseline.
        for dir in [&s.f.a, &s.f.state] {
            std::fs::remove_dir_all(dir).unwrap();
        }
        std::fs::create_dir(&s.f.a).unwrap();
        let proxy = CutProxy::start(s.sshd.port, total * pct / 100);
        trust_port(&s, proxy.port());
        let mut c = via(&s, proxy.port(), &s.f.b, "pull");
        c.args(["--compress", "none"]);
        let r = run_bounded(c).unwrap();
        assert!(proxy.was_cut(), "{r:?}");
        if r.code != 64 || !names_the_connection(&r.stderr) || r.stderr.contains(TRUNCATED) {
            wrong.push(format!(
                "cut at {pct}%: exit {}: {}",
                r.code,
                r.stderr.trim()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The state a bidi run cut part-way leaves when it had moved a directory's files on the
/// remote, as they were moved locally, but not yet removed the directory there: deleted
/// locally, emptied remotely. Nothing survives in it, so it should go; it comes back.
#[test]
fn a_directory_emptied_on_one_side_and_deleted_on_the_other_stays_deleted() {
    let f = fixture();
    for i in 0..3 {
        write(f.a.join(format!("batch/b{i}")), &format!("{i}\n"));
    }
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::create_dir(f.a.join("moved")).unwrap();
    std::fs::rename(f.a.join("batch"), f.a.join("moved/batch2")).unwrap();
    std::fs::create_dir_all(f.b.join("moved/batch2")).unwrap();
    for i in 0..3 {
        let name = format!("b{i}");
        std::fs::rename(
            f.b.join("batch").join(&name),
            f.b.join("moved/batch2").join(&name),
        )
        .unwrap();
    }
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        !f.a.join("batch").exists() && !f.b.join("batch").exists(),
        "the deleted directory came back: {r:?}"
    );
    assert_same_tree(&f.a, &f.b);
}

/// A tmpfs mounted for one test; unmounted when dropped, also when the test panics.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
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

/// When, in a push, the remote agent is killed.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// As soon as it runs: during the handshake and the scans.
    Started,
    /// Once the client has reported this many files done.
    AfterFiles(usize),
    /// Once this share (in percent) of a clean run's bytes has passed.
    AfterBytes(u64),
}

#[test]
fn a_killed_agent_loses_nothing_and_the_next_run_converges() {
    let started = Instant::now();
    let sc = Scenario::new("push");
    let total = sc.clean_total();
    let root = sc.s.f.b.to_string_lossy().into_owned();
    let mut fig = Figures::default();
    let mut killed = 0;
    let kills = [
        Kill::Started,
        Kill::AfterFiles(1),
        Kill::AfterFiles(40),
        Kill::AfterBytes(50),
        Kill::AfterBytes(90),
    ];
    for kill in kills {
        sc.restore();
        fig.points += 1;
        let proxy = sc.proxy(NEVER);
        let mut run = Running::start(sc.command(proxy.port(), &["--format", "json"]));
        let mut files = 0;
        let fired = loop {
            if run.ended() {
                break false;
            }
            files += run
                .lines
                .try_iter()
                .filter(|l| l.contains(r#""event":"file""#))
                .count();
            let now = match kill {
                Kill::Started => !agents_serving(&root).is_empty(),
                Kill::AfterFiles(n) => files >= n,
                Kill::AfterBytes(pct) => proxy.passed() >= total * pct / 100,
            };
            // Past the deadline, finish() below kills the client and reports the hang.
            if now || Instant::now() >= run.deadline {
                break now;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let pids = if fired { agents_serving(&root) } else { vec![] };
        for &pid in &pids {
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        killed += usize::from(!pids.is_empty());
        let at = format!("agent killed at {kill:?}");
        let r = run.finish();
        drop(proxy);
        if let Err(e) = sc.agents_gone() {
            fig.failures.push(format!("{at}: {e}"));
        }
        match &r {
            Err(e) => fig.failures.push(format!("{at}: {e}")),
            Ok(r) => {
                let error = r
                    .stdout
                    .lines()
                    .find(|l| l.contains(r#""event":"error""#))
                    .unwrap_or("");
                eprintln!(
                    "  {at}: {} killed, exit {}, {} of {} changes across; {error}",
                    pids.len(),
                    r.code,
                    sc.changes_across(),
                    sc.origin.len(),
                );
                match judge_kill(r, !pids.is_empty()) {
                    Err(why) => fig.failures.push(format!("{at}: {why}")),
                    Ok(Ending::FinishedThoughCut) => match sc.alike_and_as_intended() {
                        Ok(back) => fig.came_back.extend(back),
                        Err(e) => fig.failures.push(format!("{at}: exit 0, but {e}")),
                    },
                    Ok(_) => {}
                }
            }
        }
        for why in sc.whole_and_nothing_lost(&mut fig) {
            fig.failures.push(format!("{at}: {why}"));
        }
        if let Err(why) = sc.source_untouched() {
            fig.failures.push(format!("{at}: {why}"));
        }
        match sc.converges() {
            Ok(back) => {
                fig.converged += 1;
                fig.came_back.extend(back);
            }
            Err(why) => fig.failures.push(format!("{at}: {why}")),
        }
    }
    eprintln!(
        "faults agent kill: {} points ({killed} killed), {} converged, {} files checked, {} lost, {} mixed, {:.0?}",
        fig.points,
        fig.converged,
        fig.files_checked,
        fig.lost,
        fig.mixed,
        started.elapsed()
    );
    assert!(killed >= 3, "too few kills landed: {killed}");
    assert!(
        fig.failures.is_empty(),
        "{} failure(s):\n{}",
        fig.failures.len(),
        fig.failures.join("\n")
    );
}

/// A run whose agent was killed fails, saying so: bit 64 while the agent starts ("cannot
/// start the agent"), 128 once it served (the remote was reached, then its agent died);
/// never a panic. Exit 0 is only right if the kill came after the
/// last of the run's work.
fn judge_kill(r: &Run, killed: bool) -> Result<Ending, String> {
    if r.stderr.contains("panicked") {
        return Err(format!("panicked: {r:?}"));
    }
    let said = format!("{}{}", r.stdout, r.stderr);
    match (r.code, killed) {
        (0, false) => Ok(Ending::Finished),
        (0, true) => Ok(Ending::FinishedThoughCut),
        (_, false) => Err(format!("failed without a kill: {r:?}")),
        (code, true) if code & (64 | 128) == 0 => {
            Err(format!("exit {code} without bit 64 or 128: {r:?}"))
        }
        // Killed while it wrote a frame, the agent is reported as a connection closed in
        // the middle of one, without the signal: vaguer, but it names the agent.
        (_, true)
            if !(said.contains("agent")
                && (said.contains("killed by signal") || said.contains("broken connection"))) =>
        {
            Err(format!("no message says the agent went away: {r:?}"))
        }
        _ => Ok(Ending::Lost),
    }
}
