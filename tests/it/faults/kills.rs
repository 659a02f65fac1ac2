//! The remote agent killed at points of a push: nothing lost, and the next run converges.

use std::time::{Duration, Instant};

use super::running::{agents_serving, Running};
use super::{Ending, Figures, Scenario};
use crate::cut_proxy::NEVER;
use crate::util::*;

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
