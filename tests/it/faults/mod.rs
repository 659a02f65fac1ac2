//! Faults injected into real runs over SSH: the connection cut at many byte offsets of a
//! push, a pull and a bidi run (through [`CutProxy`]), the remote agent killed, and a
//! receiving disk that fills up. After each fault nothing is lost or mixed — every entry
//! on both sides is whole, in its old or its new version, every change is still on the
//! side that made it, and a push or pull leaves its source as it was — and a clean rerun
//! converges to the intended state, after which a third run has nothing to do.
//!
//! Each cut test prints one line of figures (points cut, runs converged, entries checked,
//! entries lost or mixed) and, with `--nocapture`, one line per point.
//!
//! The harness is here: the [`Scenario`] every fault starts from, the checks it makes
//! and the verdict on how a run ended. The workload it changes is in [`workload`], the
//! bounded client runs and the agents' processes in [`running`], and the tests by fault
//! in [`cuts`], [`disk`] and [`kills`].

mod cuts;
pub(crate) mod disk;
mod kills;
mod running;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cut_proxy::{CutProxy, NEVER};
use crate::sshd::{ssh_fixture, user, SshFixture};
use crate::util::*;
use running::{agents_serving, run_bounded};
use workload::{before_state, make_changes, BIG};

/// Every run names the session: its default name would follow the port, and runs through
/// a proxy and straight to the server must share one baseline.
const SESSION: &str = "faults";

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
        crate::sshd::trust_port(&self.s, proxy.port());
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
