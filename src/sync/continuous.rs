//! Continuous mode (`-C`): one full sync, then both trees are watched and each change is
//! brought across in a cycle that rescans only what changed — the local tree by a watcher
//! in this process, the far one by the agent's. The session lock is held throughout; a
//! lost connection is retried with capped exponential backoff and the session resumes
//! from the committed baseline; SIGTERM or Ctrl-C ends it after the cycle in progress.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dirty::Dirty;
use super::refresh::{merge, widen};
use super::transfer::Watch;
use super::{
    cycle, first_scan, open_endpoints, prepare, report_problems, Confirm, Job, Run, Sides,
};
use crate::core::path::RelPath;
use crate::core::plan::{Side, Status};
use crate::disk::watch::Hint;
use crate::error::{Error, Result};
use crate::exit::ExitStatus;
use crate::output::{Event, Reporter};
use crate::state::baseline::Baseline;
use crate::state::known::Known;

/// How continuous mode paces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `--cooloff`: a file is sent only once it has stopped changing for this long.
    pub cooloff: Duration,
    /// `--scan-interval`: rescan the whole local tree this often.
    pub scan_interval: Option<Duration>,
    /// `--remote-scan-interval`: rescan the whole far tree this often.
    pub remote_scan_interval: Option<Duration>,
    /// `--verify-interval`: verify the session this often, in the background.
    pub verify_interval: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cooloff: Duration::from_secs(3),
            scan_interval: None,
            remote_scan_interval: None,
            verify_interval: None,
        }
    }
}

/// The first wait before reconnecting, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// How often a side whose watcher gave up (watch limit) is rescanned whole.
const FALLBACK_SCAN: Duration = Duration::from_secs(30);

/// A background verify reads this much of each side at a time, syncing in between...
const VERIFY_SLICE: u64 = 64 << 20;
/// ...at most this fast (both sides' bytes together, a second), and at most a quarter of
/// the time.
const VERIFY_RATE: f64 = 64.0 * 1048576.0;

/// What wakes the loop.
enum Wake {
    /// A watcher's report, tagged with the connection it came from.
    Hint(Side, u64, Hint),
    /// SIGTERM or SIGINT.
    Stop,
}

/// Why the loop stopped waiting.
enum Next {
    Work,
    /// The next slice of a background verify is due.
    Verify,
    Stop,
    Lost(String),
}

/// Runs until stopped by a signal; returns 0 then. A first connection that fails, or a
/// first sync the safety checks refuse, ends the run with its exit status, as a one-shot
/// run would.
pub fn run(
    job: &Job,
    opts: &Options,
    reporter: &mut dyn Reporter,
    confirm: Confirm<'_>,
    watch: &mut dyn Watch,
) -> ExitStatus {
    let fail = |reporter: &mut dyn Reporter, e: &Error| {
        let mut run = Run::new(reporter, job);
        run.error(None, None, e);
        run.finish()
    };
    if job.dry_run {
        let e = Error::Usage(
            "-C cannot be combined with -n: a dry run changes nothing to watch".into(),
        );
        return fail(reporter, &e);
    }
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = listen_for_signals(&tx, &stop) {
        return fail(reporter, &e);
    }
    let (_lock, old) = match prepare(job) {
        Ok(x) => x,
        Err(e) => return fail(reporter, &e),
    };
    let mut state = Continuous {
        job,
        opts,
        tx,
        rx,
        stop,
        old,
        generation: 0,
        dirty: Default::default(),
        next_full: [None, None],
        fallback: [false, false],
        notes: Vec::new(),
        said: HashSet::new(),
        pass: None,
        verify_due: opts.verify_interval.map(|d| Instant::now() + d),
        found: ExitStatus::OK,
    };
    state.serve(reporter, confirm, watch)
}

/// The loop's state between cycles.
struct Continuous<'j> {
    job: &'j Job,
    opts: &'j Options,
    tx: Sender<Wake>,
    rx: Receiver<Wake>,
    stop: Arc<AtomicBool>,
    old: Baseline,
    /// Counts connections, so reports from an abandoned one are ignored.
    generation: u64,
    dirty: [Dirty; 2],
    next_full: [Option<Instant>; 2],
    /// The side's watcher gave up: it is rescanned whole every [`FALLBACK_SCAN`].
    fallback: [bool; 2],
    /// Notes to give at the next cycle.
    notes: Vec<String>,
    /// Notes already given (each is said once).
    said: HashSet<String>,
    /// The background verify under way, if one is.
    pass: Option<super::verify::Pass>,
    /// When its next slice (or the next pass) is due.
    verify_due: Option<Instant>,
    /// What the finished verify passes found (exit bits, given at the end).
    found: ExitStatus,
}

impl Continuous<'_> {
    fn serve(
        &mut self,
        reporter: &mut dyn Reporter,
        confirm: Confirm<'_>,
        watch: &mut dyn Watch,
    ) -> ExitStatus {
        let mut sides = match self.connect(reporter, confirm, watch) {
            Ok(s) => s,
            Err(exit) => return exit,
        };
        let mut attempt = 0u32;
        loop {
            match sides.as_mut() {
                Some(s) => {
                    let lost = match self.wait() {
                        Next::Stop => break,
                        Next::Lost(why) => Some(why),
                        Next::Work => self.step(s, reporter, watch).err().map(|e| e.to_string()),
                        Next::Verify => self.verify_step(s, reporter).err().map(|e| e.to_string()),
                    };
                    if let Some(why) = lost {
                        sides = None;
                        attempt = 0;
                        self.retry_note(reporter, &mut attempt, &why);
                    }
                }
                None => {
                    if self.pause(backoff(attempt)) {
                        break;
                    }
                    match self.connect(reporter, &mut |_| false, watch) {
                        Ok(Some(s)) => sides = Some(s),
                        Ok(None) | Err(_) => {
                            self.retry_note(reporter, &mut attempt, "still cannot connect")
                        }
                    }
                }
            }
        }
        drop(sides); // closes the connection: the agent stops
        reporter.event(&Event::Notice {
            message: "stopped; the baseline is committed",
        });
        // What a background verify found is the run's to report (bit 2 corrupt, 8
        // unreadable); syncing itself reports as it goes.
        self.found | self.pass.as_ref().map_or(ExitStatus::OK, |p| p.exit)
    }

    /// Verifies the next slice of the session (`--verify-interval`), and says when the
    /// next one is due: soon while a pass is under way, an interval after it ends.
    fn verify_step(&mut self, sides: &mut Sides, reporter: &mut dyn Reporter) -> Result<()> {
        let Some(interval) = self.opts.verify_interval else {
            self.verify_due = None;
            return Ok(());
        };
        let pass = self.pass.get_or_insert_with(super::verify::Pass::new);
        let started = Instant::now();
        let (bytes, through) =
            pass.slice(self.job, sides, &self.old.tree, VERIFY_SLICE, reporter)?;
        if !through {
            let pace = Duration::from_secs_f64(bytes as f64 / VERIFY_RATE);
            self.verify_due = Some(Instant::now() + pace.max(started.elapsed() * 3));
            return Ok(());
        }
        let pass = self.pass.take().expect("a pass under way");
        self.found |= pass.exit;
        let c = &pass.counts;
        let message = format!(
            "verify pass done in {:.1}s: {} files match the last sync, {} corrupt, {} unreadable, {} edited since (not verified); {} read; next in {}",
            pass.started.elapsed().as_secs_f64(),
            c.files_verified,
            c.files_corrupt,
            c.files_unreadable,
            c.files_edited,
            crate::output::human_bytes(c.bytes_read),
            humantime::format_duration(interval),
        );
        reporter.event(&Event::Notice { message: &message });
        self.verify_due = Some(Instant::now() + interval);
        Ok(())
    }

    /// Tells the monitor a retry is coming.
    fn retry_note(&mut self, reporter: &mut dyn Reporter, attempt: &mut u32, why: &str) {
        *attempt += 1;
        reporter.event(&Event::Reconnecting {
            attempt: *attempt,
            delay_s: backoff(*attempt).as_secs_f64(),
            message: why,
        });
    }

    /// Waits up to `d`; true if asked to stop meanwhile.
    fn pause(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(Wake::Stop) => return true,
                Ok(Wake::Hint(..)) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Opens both sides, starts their watchers, and runs the first full cycle. `Err`
    /// carries the exit status of a failure that ends the run (the first connection);
    /// `Ok(None)` is a failed reconnection, reported, to be retried.
    fn connect(
        &mut self,
        reporter: &mut dyn Reporter,
        confirm: Confirm<'_>,
        watch: &mut dyn Watch,
    ) -> std::result::Result<Option<Sides>, ExitStatus> {
        self.generation += 1;
        let first = self.generation == 1;
        let stop = self.stop.clone();
        let mut run = Run::new(reporter, self.job);
        run.holds_session(self.job);
        run.stop = Some(&stop);
        let outcome = self.open_and_sync(&mut run, confirm, watch);
        let failed = outcome.is_err();
        if let Err(e) = &outcome {
            run.error(None, None, e);
        }
        let exit = run.finish();
        match outcome {
            Ok(sides) => {
                let message = format!(
                    "watching '{}' and '{}' for changes (cooloff {}s)",
                    self.job.local_dir.display(),
                    self.job.remote.display(),
                    self.opts.cooloff.as_secs_f64()
                );
                reporter.event(&Event::Watching { message: &message });
                Ok(Some(sides))
            }
            Err(_) if first && failed => Err(exit),
            Err(_) => Ok(None),
        }
    }

    fn open_and_sync(
        &mut self,
        run: &mut Run<'_>,
        confirm: Confirm<'_>,
        watch: &mut dyn Watch,
    ) -> Result<Sides> {
        let mut opened = open_endpoints(self.job)?;
        // Watches start before the first scan, so a change made meanwhile is not missed.
        for (side, ep) in [
            (Side::Local, opened.local.as_mut()),
            (Side::Remote, opened.remote.as_mut()),
        ] {
            let (tx, generation) = (self.tx.clone(), self.generation);
            ep.watch(Box::new(move |hint| {
                let _ = tx.send(Wake::Hint(side, generation, hint));
            }))?;
        }
        let mut sides = first_scan(self.job, opened, &mut self.old, run)?;
        let now = Instant::now();
        for side in [Side::Local, Side::Remote] {
            self.dirty[side as usize].clear();
            self.next_full[side as usize] = self.interval(side).map(|d| now + d);
        }
        let outcome = cycle(
            self.job,
            &mut sides,
            &mut self.old,
            run,
            confirm,
            watch,
            &|_, _| false,
        );
        self.old.renew_caches(&sides.trees);
        outcome?;
        Ok(sides)
    }

    /// The forced full-rescan interval of a side, if any.
    fn interval(&self, side: Side) -> Option<Duration> {
        let asked = match side {
            Side::Local => self.opts.scan_interval,
            Side::Remote => self.opts.remote_scan_interval,
        };
        if self.fallback[side as usize] {
            Some(asked.map_or(FALLBACK_SCAN, |d| d.min(FALLBACK_SCAN)))
        } else {
            asked
        }
    }

    /// How long a path may keep changing before it is reported as not settling.
    fn patience(&self) -> Duration {
        self.opts.cooloff * 2 + Duration::from_secs(2)
    }

    /// Blocks until there is work, a stop, or the connection is lost.
    fn wait(&mut self) -> Next {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Next::Stop;
            }
            let now = Instant::now();
            let mut due = None::<Instant>;
            for side in [Side::Local, Side::Remote] {
                let i = side as usize;
                if self.next_full[i].is_some_and(|t| now >= t) {
                    self.dirty[i].full = true;
                }
                if self.dirty[i].ready(now, self.opts.cooloff) {
                    return Next::Work;
                }
                let candidates = [
                    self.dirty[i].next_due(self.opts.cooloff, self.patience()),
                    self.next_full[i],
                ];
                for t in candidates.into_iter().flatten() {
                    due = Some(due.map_or(t, |d: Instant| d.min(t)));
                }
            }
            if due.is_some_and(|t| now >= t) {
                return Next::Work;
            }
            // Syncing first: a verify slice waits while anything is ready to sync.
            if let Some(t) = self.verify_due {
                if now >= t {
                    return Next::Verify;
                }
                due = Some(due.map_or(t, |d: Instant| d.min(t)));
            }
            let wake = match due {
                Some(t) => self.rx.recv_timeout(t - now),
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match wake {
                Ok(Wake::Stop) => return Next::Stop,
                Ok(Wake::Hint(side, generation, hint)) if generation == self.generation => {
                    if let Some(why) = self.note(side, hint) {
                        return Next::Lost(why);
                    }
                }
                Ok(Wake::Hint(..)) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Next::Stop,
            }
        }
    }

    /// Records a watcher's report; `Some` if it says the far side is gone.
    fn note(&mut self, side: Side, hint: Hint) -> Option<String> {
        let now = Instant::now();
        let dirty = &mut self.dirty[side as usize];
        match hint {
            Hint::Paths(paths) => {
                for (p, deep) in paths {
                    dirty.touch(p, deep, now);
                }
            }
            Hint::Rescan(why) => {
                dirty.full = true;
                if why.contains("watch limit") {
                    self.fallback[side as usize] = true;
                    if self.next_full[side as usize].is_none() {
                        self.next_full[side as usize] = Some(now + FALLBACK_SCAN);
                    }
                }
                let note = format!("{} side: {why}; rescanning it whole", side.word());
                if self.said.insert(note.clone()) {
                    self.notes.push(note);
                }
            }
            Hint::Gone(why) => return Some(why),
        }
        None
    }

    /// One cycle: rescan what settled (or everything, where asked), then sync.
    fn step(
        &mut self,
        sides: &mut Sides,
        reporter: &mut dyn Reporter,
        watch: &mut dyn Watch,
    ) -> Result<()> {
        let stop = self.stop.clone();
        let mut run = Run::new(reporter, self.job);
        run.holds_session(self.job);
        run.stop = Some(&stop);
        for note in std::mem::take(&mut self.notes) {
            run.reporter.event(&Event::Notice { message: &note });
        }
        let now = Instant::now();
        for side in [Side::Local, Side::Remote] {
            self.refresh(sides, side, now, &mut run)?;
        }
        let hot: [BTreeSet<RelPath>; 2] = [
            self.dirty[0].hot().cloned().collect(),
            self.dirty[1].hot().cloned().collect(),
        ];
        self.report_unsettled(now, &mut run);
        let wire_before = wire(sides);
        let outcome = cycle(
            self.job,
            sides,
            &mut self.old,
            &mut run,
            &mut |_| false,
            watch,
            &|side, p| hot[side as usize].contains(p),
        );
        self.old.renew_caches(&sides.trees);
        let result = match outcome {
            // A refusal leaves both trees as they were: say so, and keep watching.
            Err(e @ Error::Refused(_)) => {
                run.error(None, None, &e);
                Ok(())
            }
            other => other,
        };
        if let Err(e) = &result {
            run.error(None, None, e);
        }
        let [sent, received, raw] = wire_before;
        let s = &mut run.summary;
        s.bytes_sent = s.bytes_sent.saturating_sub(sent);
        s.bytes_received = s.bytes_received.saturating_sub(received);
        s.bytes_uncompressed = s.bytes_uncompressed.saturating_sub(raw);
        // Cycles that only saw the echo of the last one's writes are not news.
        let news = s.files_transferred
            + s.files_deleted
            + s.dirs_created
            + s.moved
            + s.conflicts
            + s.conflicts_resolved
            + s.errors
            > 0;
        if news || run.exit != ExitStatus::OK {
            run.finish();
        }
        result
    }

    /// Brings one side's tree up to date: whole, or the paths that settled.
    fn refresh(
        &mut self,
        sides: &mut Sides,
        side: Side,
        now: Instant,
        run: &mut Run<'_>,
    ) -> Result<()> {
        let i = side as usize;
        // A root that folds names has its tree respelled to the other side's names: a
        // partial rescan, by the names on its disk, would put a second spelling beside
        // the first. It is scanned whole instead.
        if self.dirty[i].full || sides.names[i].folds() {
            self.dirty[i].clear();
            self.next_full[i] = self.interval(side).map(|d| now + d);
            let known = Known::with_cache(&self.old.tree, &self.old.caches[i])
                .with_probed(sides.probed()[i]);
            let scan = sides.endpoint(side).scan(&self.job.filter, known)?;
            report_problems(run, side, sides.endpoint(side).place(), &scan.tree);
            sides.trees[i] = scan.tree;
            return Ok(());
        }
        let settled = self.dirty[i].take_settled(now, self.opts.cooloff);
        if settled.is_empty() {
            return Ok(());
        }
        let asked = widen(&sides.trees[i], &settled);
        let found = sides.endpoint(side).rescan(&self.job.filter, &asked)?;
        report_problems(run, side, sides.endpoint(side).place(), &found.tree);
        merge(&mut sides.trees[i], &asked, found);
        Ok(())
    }

    /// Reports files that keep changing (they are sent once they settle).
    fn report_unsettled(&mut self, now: Instant, run: &mut Run<'_>) {
        let (cooloff, patience) = (self.opts.cooloff, self.patience());
        for side in [Side::Local, Side::Remote] {
            for path in self.dirty[side as usize].unsettled(now, patience) {
                let reason = format!(
                    "still changing after {}s; it is sent once it has not changed for {}s",
                    patience.as_secs(),
                    cooloff.as_secs_f64()
                );
                run.reporter.event(&Event::File {
                    path: &path,
                    status: Status::Skipped,
                    side: Some(side),
                    bytes: 0,
                    reason: &reason,
                    restored: false,
                });
            }
        }
    }
}

/// Bytes on the connection so far (sent, received, before compression).
fn wire(sides: &Sides) -> [u64; 3] {
    let [l, r] = [sides.local.traffic(), sides.remote.traffic()];
    [l.sent + r.sent, l.received + r.received, l.raw + r.raw]
}

/// The wait before reconnection attempt `n` (1 s, doubling, at most 60 s).
fn backoff(attempt: u32) -> Duration {
    let (first, cap) = BACKOFF;
    first
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(cap)
}

/// SIGTERM and SIGINT stop the loop after the cycle in progress (no new file starts).
fn listen_for_signals(tx: &Sender<Wake>, stop: &Arc<AtomicBool>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| Error::Protocol(format!("cannot listen for signals: {e}")))?;
    let (tx, stop) = (tx.clone(), stop.clone());
    std::thread::spawn(move || {
        for _ in signals.forever() {
            stop.store(true, Ordering::Relaxed);
            let _ = tx.send(Wake::Stop);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
