//! Continuous mode (`-C`), over the pipe transport and over SSH: changes on either side
//! arrive, replicas stay replicas, conflicts keep both versions, a lost agent is
//! reconnected, SIGTERM commits and exits 0, and an idle session stays idle. Every wait is a
//! poll with a deadline.

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sshd::{ssh_fixture, SshFixture};
use crate::util::*;

/// Long enough for a slow CI machine; a change normally arrives in cooloff + a fraction.
const DEADLINE: Duration = Duration::from_secs(20);

/// A running `tandem -C`, its JSON events gathered as they come.
struct Live {
    child: Child,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Live {
    fn start(mut c: Command) -> Live {
        // Its watchers are made with the queue size of the moment: not a shrunk one, unless
        // this is the test that shrank it.
        let _size =
            (!SHRINKING.get()).then(|| QUEUE_SIZE.read().unwrap_or_else(|e| e.into_inner()));
        c.arg("-C")
            .args(["--cooloff", "1s", "--format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
                sink.lock().unwrap().push(v);
            }
        });
        let live = Live { child, events };
        live.wait_event("the first sync", |e| e["event"] == "watching");
        live
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.events.lock().unwrap().clone()
    }

    fn count(&self, pred: impl Fn(&serde_json::Value) -> bool) -> usize {
        self.events().iter().filter(|e| pred(e)).count()
    }

    #[track_caller]
    fn wait_event(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let events = self.events.clone();
        poll(what, || events.lock().unwrap().iter().any(&pred));
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM; the exit code, which must come within 10 s.
    fn terminate(mut self) -> i32 {
        signal("TERM", self.child.id());
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < until, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(name: &str, pid: u32) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// Polls `cond` until it holds, failing after [`DEADLINE`].
#[track_caller]
fn poll(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[track_caller]
fn arrives(path: &Path, content: &str) {
    poll(&format!("{} to read {content:?}", path.display()), || {
        std::fs::read_to_string(path).is_ok_and(|s| s == content)
    });
}

/// Waits until both trees are the same, then asserts it: a cycle restores directory times
/// after its files land, so the last file arriving is not yet the end of the cycle.
#[track_caller]
fn converge(a: &Path, b: &Path) {
    let until = Instant::now() + DEADLINE;
    while snapshot(a) != snapshot(b) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_same_tree(a, b);
}

/// [`converge`], leaving out what `except` names (a conflict kept on both sides).
#[track_caller]
fn converge_except(a: &Path, b: &Path, except: &Except) {
    let until = Instant::now() + DEADLINE;
    while tree_difference(&snapshot(a), &snapshot(b), except).is_some() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_same_tree_except(a, b, except);
}

#[track_caller]
fn vanishes(path: &Path) {
    poll(&format!("{} to go", path.display()), || {
        std::fs::symlink_metadata(path).is_err()
    });
}

/// Starts `tandem -d a -r b -K DIR EXTRA... -C`.
type StartFn = Box<dyn Fn(&str, &[&str]) -> Live>;
/// Runs `tandem -d a -r b -K DIR EXTRA...` once.
type OnceFn = Box<dyn Fn(&str, &[&str]) -> Run>;

/// Two roots and a way to start `tandem -C` on them.
struct Sides {
    a: PathBuf,
    b: PathBuf,
    start: StartFn,
    once: OnceFn,
    ssh: Option<std::rc::Rc<SshFixture>>,
    _keep: Box<dyn std::any::Any>,
}

fn over_pipe() -> Sides {
    let f = std::rc::Rc::new(fixture());
    let (g, h) = (f.clone(), f.clone());
    Sides {
        a: f.a.clone(),
        b: f.b.clone(),
        start: Box::new(move |dir, extra| {
            let mut c = g.sync_command();
            c.arg("-d")
                .arg(&g.a)
                .arg("-r")
                .arg(&g.b)
                .args(["-K", dir])
                .args(extra);
            Live::start(c)
        }),
        once: Box::new(move |dir, extra| h.sync(dir, extra)),
        ssh: None,
        _keep: Box::new(f),
    }
}

fn over_ssh() -> Sides {
    let s = std::rc::Rc::new(ssh_fixture());
    let (g, h) = (s.clone(), s.clone());
    Sides {
        a: s.f.a.clone(),
        b: s.f.b.clone(),
        start: Box::new(move |dir, extra| Live::start(g.sync_command(dir, extra))),
        once: Box::new(move |dir, extra| h.sync(dir, extra)),
        ssh: Some(s.clone()),
        _keep: Box::new(s),
    }
}

fn both(scenario: fn(&Sides)) {
    scenario(&over_pipe());
    scenario(&over_ssh());
}

#[test]
fn continuous_changes_on_either_side_arrive() {
    both(|s| {
        write(s.a.join("start"), "0");
        let live = (s.start)("bidi", &[]);
        assert_eq!(read(s.b.join("start")), "0");
        // Created, modified, renamed, chmod-ed, deleted; files and directories; both sides.
        write(s.a.join("new"), "from a");
        arrives(&s.b.join("new"), "from a");
        write(s.b.join("new"), "changed on b");
        arrives(&s.a.join("new"), "changed on b");
        std::fs::rename(s.a.join("new"), s.a.join("renamed")).unwrap();
        arrives(&s.b.join("renamed"), "changed on b");
        vanishes(&s.b.join("new"));
        std::fs::set_permissions(s.b.join("renamed"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        poll("the mode to arrive", || {
            std::fs::metadata(s.a.join("renamed"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
                == 0o600
        });
        std::fs::create_dir_all(s.b.join("d1/d2/d3")).unwrap();
        write(s.b.join("d1/d2/d3/deep"), "deep");
        arrives(&s.a.join("d1/d2/d3/deep"), "deep");
        // An edit inside a directory the sync itself just created on this side.
        write(s.a.join("d1/d2/d3/deep"), "edited where it arrived");
        arrives(&s.b.join("d1/d2/d3/deep"), "edited where it arrived");
        std::fs::rename(s.a.join("d1"), s.a.join("moved")).unwrap();
        arrives(&s.b.join("moved/d2/d3/deep"), "edited where it arrived");
        vanishes(&s.b.join("d1"));
        std::fs::remove_file(s.b.join("renamed")).unwrap();
        vanishes(&s.a.join("renamed"));
        converge(&s.a, &s.b);
        // No echo: nothing came back the other way.
        let back = live.count(|e| e["event"] == "conflict" || e["event"] == "error");
        assert_eq!(back, 0, "{:#?}", live.events());
        assert_eq!(live.terminate(), 0);
    });
}

#[test]
fn continuous_two_thousand_files_arrive_in_few_cycles() {
    both(|s| {
        let live = (s.start)("push", &[]);
        std::fs::create_dir(s.a.join("many")).unwrap();
        for i in 0..2000 {
            write(s.a.join(format!("many/f{i:04}")), &i.to_string());
        }
        poll("2000 files to arrive", || {
            std::fs::read_dir(s.b.join("many")).is_ok_and(|d| d.count() == 2000)
        });
        arrives(&s.b.join("many/f1999"), "1999");
        converge(&s.a, &s.b);
        let cycles = live
            .count(|e| e["event"] == "summary" && e["files_transferred"].as_u64().unwrap_or(0) > 0);
        // Each cycle takes what has been quiet for the cooloff. On a loaded machine the
        // burst itself takes seconds to write, so while it is written, every cycle that
        // ends finds the next slice settled: a dozen or so slices, never file by file
        // (2000 cycles), nor anywhere near it.
        assert!(cycles <= 40, "{cycles} cycles for one burst of 2000 files");
        assert_eq!(live.terminate(), 0);
    });
}

#[test]
fn continuous_push_keeps_the_replica_a_replica() {
    both(|s| {
        write(s.a.join("f"), "original");
        let live = (s.start)("push", &[]);
        arrives(&s.b.join("f"), "original");
        write(s.b.join("f"), "stray edit");
        write(s.b.join("stray"), "stray file");
        arrives(&s.b.join("f"), "original");
        vanishes(&s.b.join("stray"));
        converge(&s.a, &s.b);
        assert_eq!(live.terminate(), 0);
    });
}

#[test]
fn continuous_conflict_keeps_both_versions() {
    both(|s| {
        write(s.a.join("f"), "base");
        let live = (s.start)("bidi", &[]);
        arrives(&s.b.join("f"), "base");
        // Both edits land within one cooloff: one cycle sees both.
        write(s.a.join("f"), "local edit");
        write(s.b.join("f"), "remote edit");
        live.wait_event("a conflict", |e| {
            e["event"] == "conflict" && e["path"] == "f" && e["resolution"] == "unresolved"
        });
        assert_eq!(read(s.a.join("f")), "local edit");
        assert_eq!(read(s.b.join("f")), "remote edit");
        converge_except(&s.a, &s.b, &Except::at(&["f"]));
        assert_eq!(live.terminate(), 0);
    });
}

#[test]
fn continuous_sigterm_commits_the_baseline() {
    both(|s| {
        write(s.a.join("keep"), "k");
        write(s.a.join("doomed"), "d");
        let live = (s.start)("bidi", &[]);
        write(s.a.join("late"), "late");
        arrives(&s.b.join("late"), "late");
        converge(&s.a, &s.b);
        assert_eq!(live.terminate(), 0);
        assert_same_tree(&s.a, &s.b);
        // A one-shot run right after is a no-op...
        let r = (s.once)("bidi", &["--format", "json"]);
        assert_eq!(r.code, 0, "{r:?}");
        let summary = json_events(&r.stdout).pop().unwrap();
        assert_eq!(summary["files_transferred"], 0, "{r:?}");
        assert_same_tree(&s.a, &s.b);
        // ...and a deletion made after the stop propagates (the baseline is current).
        std::fs::remove_file(s.a.join("doomed")).unwrap();
        let before_a = snapshot(&s.a);
        let r = (s.once)("bidi", &[]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(!s.b.join("doomed").exists());
        assert_eq!(read(s.b.join("keep")), "k");
        assert_unchanged(&s.a, &before_a);
        assert_same_tree(&s.a, &s.b);
        // No temp files left behind.
        for root in [&s.a, &s.b] {
            let stray: Vec<String> = names(root)
                .into_iter()
                .filter(|n| n.contains(".tandem"))
                .collect();
            assert!(stray.is_empty(), "{stray:?}");
        }
    });
}

#[test]
fn continuous_a_file_that_keeps_changing_waits_and_holds_back_nothing() {
    both(|s| {
        let live = (s.start)("push", &[]);
        let log = s.a.join("growing.log");
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                // Appends every 200 ms for 6 s: never quiet for the 1 s cooloff.
                for i in 0..30 {
                    let mut text = std::fs::read_to_string(&log).unwrap_or_default();
                    text.push_str(&format!("{i}\n"));
                    std::fs::write(&log, text).unwrap();
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        poll("the log to start", || log.exists());
        write(s.a.join("other"), "not held back");
        arrives(&s.b.join("other"), "not held back");
        assert!(!writer.is_finished(), "the writer should still be writing");
        live.wait_event("the log reported as unsettled", |e| {
            e["event"] == "file" && e["path"] == "growing.log" && e["status"] == "SYNCHRONIZED(skp)"
        });
        writer.join().unwrap();
        arrives(&s.b.join("growing.log"), &read(&log));
        converge(&s.a, &s.b);
        assert_eq!(live.terminate(), 0);
    });
}

#[test]
fn continuous_reconnects_after_the_agent_is_killed() {
    both(|s| {
        let live = (s.start)("push", &[]);
        match &s.ssh {
            Some(ssh) => assert!(ssh.sshd.kill_connections() > 0),
            None => {
                let agents = children_of(live.pid());
                assert!(!agents.is_empty());
                for pid in agents {
                    signal("KILL", pid);
                }
            }
        }
        live.wait_event("a reconnect", |e| e["event"] == "reconnecting");
        live.wait_event("watching again", |e| e["event"] == "watching");
        poll("a second watching event", || {
            live.count(|e| e["event"] == "watching") >= 2
        });
        write(s.a.join("after"), "after the reconnect");
        arrives(&s.b.join("after"), "after the reconnect");
        converge(&s.a, &s.b);
        assert_eq!(live.terminate(), 0);
    });
}

#[test]
fn continuous_a_reconnect_reads_no_unchanged_file_again() {
    let s = over_pipe();
    same_size_files([&s.a, &s.b], 50);
    // Equal sizes on both sides: only content tells them apart, and the baseline's cache
    // is what spares reading them again.
    assert_eq!((s.once)("bidi", &[]).code, 0);
    assert_same_tree(&s.a, &s.b);
    let live = (s.start)("bidi", &[]);
    // Changed while the connection is lost: the reconnect's full scans carry the change,
    // and each side's digests must come from the cache kept since the last cycle.
    write(s.a.join("d/7"), "same size XX");
    for pid in children_of(live.pid()) {
        signal("KILL", pid);
    }
    arrives(&s.b.join("d/7"), "same size XX");
    live.wait_event("the summary of the transfer", |e| {
        e["event"] == "summary" && e["files_transferred"] == 1
    });
    let hashed: Vec<u64> = live
        .events()
        .iter()
        .filter(|e| e["event"] == "summary")
        .map(|e| e["files_hashed"].as_u64().expect("files_hashed"))
        .collect();
    assert!(
        hashed.iter().all(|&n| n <= 2),
        "files read again per cycle: {hashed:?}"
    );
    converge(&s.a, &s.b);
    assert_eq!(live.terminate(), 0);
}

#[test]
fn continuous_session_is_locked_while_it_runs() {
    let s = over_pipe();
    let live = (s.start)("push", &[]);
    let r = (s.once)("push", &[]);
    assert_eq!(r.code, 16, "{r:?}");
    converge(&s.a, &s.b);
    assert_eq!(live.terminate(), 0);
}

#[test]
fn continuous_idle_session_uses_almost_no_cpu() {
    let s = over_pipe();
    for i in 0..200 {
        write(s.a.join(format!("f{i}")), "x");
    }
    let live = (s.start)("bidi", &[]);
    let mut pids = children_of(live.pid());
    pids.push(live.pid());
    // Let the first cycle's echo settle, then measure 10 s of idling.
    std::thread::sleep(Duration::from_secs(3));
    let before: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    std::thread::sleep(Duration::from_secs(10));
    let after: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    // Clock ticks are 1/100 s: allow 0.3 s of CPU in 10 s (3%).
    assert!(after - before <= 30, "{} ticks idle", after - before);
    converge(&s.a, &s.b);
    assert_eq!(live.terminate(), 0);
}

#[test]
fn continuous_rejects_bad_intervals_and_dry_run() {
    let f = fixture();
    for bad in [
        &["--cooloff", "2m"][..],
        &["--cooloff", "soon"],
        &["--scan-interval", "often"],
        &["--remote-scan-interval", "0s"],
        &["-n"],
    ] {
        let mut args = vec!["-C"];
        args.extend_from_slice(bad);
        let r = f.sync("push", &args);
        assert_eq!(r.code, 32, "{bad:?}: {r:?}");
    }
}

fn children_of(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .arg("-P")
        .arg(pid.to_string())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 0, utime 11, stime 12.
    field(11) + field(12)
}

#[test]
fn continuous_ctrl_c_to_the_process_group_stops_cleanly() {
    use std::os::unix::process::CommandExt;
    let f = fixture();
    write(f.a.join("f"), "1");
    let mut c = f.sync_command();
    c.arg("-d")
        .arg(&f.a)
        .arg("-r")
        .arg(&f.b)
        .args(["-K", "push"]);
    // Its own process group, as a shell gives a foreground job: Ctrl-C reaches the agent too.
    c.process_group(0);
    let live = Live::start(c);
    arrives(&f.b.join("f"), "1");
    assert!(!children_of(live.pid()).is_empty());
    // The whole group at once, client and agent, as the terminal does.
    let ok = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", live.pid())])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    assert_eq!(live.terminate(), 0);
    let r = f.sync("push", &["--format", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        json_events(&r.stdout).pop().unwrap()["files_transferred"],
        0
    );
    assert_same_tree(&f.a, &f.b);
}

#[test]
fn continuous_sigkilled_client_leaves_no_agent_and_recovers() {
    let s = over_pipe();
    write(s.a.join("f"), "1");
    let live = (s.start)("bidi", &[]);
    let agents = children_of(live.pid());
    assert!(!agents.is_empty());
    signal("KILL", live.pid());
    for pid in agents {
        poll("the agent to go", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |st| st.contains(") Z"))
        });
    }
    drop(live);
    write(s.a.join("g"), "made while stopped");
    let live = (s.start)("bidi", &[]);
    arrives(&s.b.join("g"), "made while stopped");
    converge(&s.a, &s.b);
    assert_eq!(live.terminate(), 0);
}

/// The unit in contrib/: `systemd-analyze verify` accepts it (where systemd is installed),
/// and the command line it runs works as a service would run it.
#[test]
fn continuous_systemd_unit_verifies_and_its_command_runs() {
    let f = fixture();
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/tandem@.service"),
    )
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let bin = env!("CARGO_BIN_EXE_tandem");
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("svc.env");
        std::fs::write(&env, "TANDEM_ARGS=-d /tmp -r /tmp -K push\n").unwrap();
        let local = unit
            .replace("/usr/local/bin/tandem", bin)
            .replace("/etc/tandem/%i.env", &env.display().to_string())
            .replace("Documentation=man:tandem(1)\n", "");
        let path = dir.path().join("tandem@svc.service");
        std::fs::write(&path, local).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success() && !text.contains("tandem@svc"),
            "{text}"
        );
    }
    // The command line itself, with the instance and the environment filled in.
    let args = format!(
        "-d {} -r {} -K push --agent-path {}",
        f.a.display(),
        f.b.display(),
        agent_path().display()
    );
    let line = exec.replace("%i", "svc").replace("$TANDEM_ARGS", &args);
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/tandem"));
    write(f.a.join("f"), "served");
    let mut c = f.command();
    // Live::start adds its own output options; the unit's are checked above.
    let words: Vec<&str> = words.filter(|w| *w != "-C").collect();
    let format_at = words.iter().position(|w| *w == "--format").unwrap();
    let mut rest = words.clone();
    rest.drain(format_at..format_at + 2);
    c.args(&rest);
    let live = Live::start(c);
    arrives(&f.b.join("f"), "served");
    converge(&f.a, &f.b);
    assert_eq!(live.terminate(), 0);
}

/// The inotify queue size is system-wide: a test shrinks it only while no other session
/// is starting (each holds this for reading until it watches).
static QUEUE_SIZE: std::sync::RwLock<()> = std::sync::RwLock::new(());

thread_local! {
    /// This thread holds [`QUEUE_SIZE`] for writing.
    static SHRINKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

const MAX_QUEUED: &str = "/proc/sys/fs/inotify/max_queued_events";

/// Starts `tandem -C` with inotify queues of 8 events (a queue's size is fixed when it
/// is made), then puts the setting back.
fn start_with_small_queues(s: &Sides, dir: &str) -> Live {
    let _alone = QUEUE_SIZE.write().unwrap_or_else(|e| e.into_inner());
    let old = std::fs::read_to_string(MAX_QUEUED).expect("inotify settings are readable");
    std::fs::write(MAX_QUEUED, "8").expect("root may set fs.inotify.max_queued_events");
    SHRINKING.set(true);
    let live = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (s.start)(dir, &[])));
    SHRINKING.set(false);
    std::fs::write(MAX_QUEUED, old.trim()).unwrap();
    live.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// A flood keeps the queue of the watched side `src` overflowing while directories are
/// made there, so the events that would have put watches on them are lost; the rescan
/// finds them, and from then on a change in each arrives within cooloff + 2 s.
fn overflow_then_new_directory(s: &Sides, dir: &str, src: &Path, dst: &Path) {
    let live = start_with_small_queues(s, dir);
    std::fs::create_dir(src.join("flood")).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (stop, src) = (stop.clone(), src.to_path_buf());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Two names in turn: the kernel merges an event with an identical last one.
                std::fs::write(src.join(format!("flood/f{}", i % 2)), i.to_string()).unwrap();
                i += 1;
            }
        })
    };
    let late: Vec<String> = (0..40).map(|i| format!("late{i:02}")).collect();
    for d in &late {
        std::fs::create_dir(src.join(d)).unwrap();
        for _ in 0..2000 {
            std::hint::spin_loop();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    live.wait_event("the overflow to be noticed", |e| {
        e["event"] == "notice"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("overflowed"))
    });
    poll("the late directories to arrive", || {
        late.iter().all(|d| dst.join(d).is_dir())
    });
    // One at a time: a single write does not overflow a queue of 8, a burst would (and
    // be found by the rescan that follows, watched or not).
    for d in &late {
        write(src.join(d).join("f"), "written after the overflow");
        let start = Instant::now();
        arrives(&dst.join(d).join("f"), "written after the overflow");
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "{d}/f took {took:?}: a directory made during the overflow is not watched"
        );
    }
    converge(&s.a, &s.b);
    assert_eq!(live.terminate(), 0);
}

#[test]
fn continuous_a_directory_made_after_a_queue_overflow_is_watched() {
    both(|s| overflow_then_new_directory(s, "push", &s.a, &s.b));
    both(|s| overflow_then_new_directory(s, "pull", &s.b, &s.a));
}

/// `--verify-interval`: a background pass finds a replica's data corrupted beneath its
/// filesystem (ext4 on a loop device, the byte flipped on the device while mounted: no
/// watcher sees it, no stamp moves), names it, and the run's exit status says so.
#[test]
fn continuous_verify_interval_finds_rot_in_the_background() {
    let f = fixture();
    write(f.a.join("notes.txt"), "notes\n");
    std::fs::write(f.a.join("photo.raw"), pseudo_random(200_000, 5)).unwrap();
    let disk = crate::verify::Ext4::on(f.tmp.path(), &f.b);
    let mut c = f.sync_command();
    c.arg("-d").arg(&f.a).arg("-r").arg(&f.b).args([
        "-K",
        "push",
        "-N",
        "cv",
        "--verify-interval",
        "1s",
    ]);
    let live = Live::start(c);
    let target = f.b.join("photo.raw");
    let before = crate::verify::stamps(&target);
    disk.rot(&target, 4321, false);
    assert_eq!(crate::verify::stamps(&target), before);
    let corrupt = |e: &serde_json::Value| {
        e["event"] == "verify" && e["path"] == "photo.raw" && e["status"] == "CORRUPT(remote)"
    };
    live.wait_event("the background verify's finding", corrupt);
    live.wait_event("a pass reported done", |e| {
        e["event"] == "notice"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("verify pass done") && m.contains("1 corrupt"))
    });
    assert_eq!(
        live.count(|e| e["event"] == "verify" && e["status"] == "VERIFIED"),
        0,
        "a background pass names only what is wrong"
    );
    assert_eq!(live.terminate(), 2, "corruption found is bit 2");
    // Repaired from the source, the replica is whole again.
    let mut c = f.command();
    c.args(["verify", "-N", "cv", "--repair", "--agent-path"])
        .arg(agent_path());
    let r = output(c.output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(std::fs::read(&target).unwrap() == std::fs::read(f.a.join("photo.raw")).unwrap());
    let kept: Vec<String> = names(&f.b)
        .into_iter()
        .filter(|n| n.starts_with("photo.raw.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", names(&f.b));
    let kept: &'static str = Box::leak(kept[0].clone().into_boxed_str());
    assert_same_tree_except(&f.a, &f.b, &Except::at(&[kept]));
    drop(disk);
}
