//! One run: lock, scan both sides, hash what is ambiguous, reconcile, check safety, execute
//! the plan action by action, and commit the baseline from what succeeded.

pub mod continuous;
mod decide;
pub mod dedup;
mod dirty;
mod execute;
mod open;
mod refresh;
mod sides;
pub mod transfer;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::core::names::{self, Alignment, NameRules};
use crate::core::path::RelPath;
use crate::core::plan::{Op, Plan, Resolution, Side, Status};
use crate::core::reconcile::safety::{self, Concern, DeleteLimit};
use crate::core::reconcile::Direction;
use crate::core::reconcile::{digests_needed, next_baseline, next_entries, reconcile, Policy};
use crate::core::tree::{Entry, Tree};
use crate::disk::compress::Compression;
use crate::disk::owners::Database;
use crate::disk::xattrs::AclMode;
use crate::endpoint::{Change, Endpoint, LocalEndpoint, RemoteEndpoint};
use crate::error::{Error, Result};
use crate::exit::ExitStatus;
use crate::output::{dryrun, Event, Reporter, Summary};
use crate::state::baseline::Baseline;
use crate::state::hash_cache::HashCache;
use crate::state::known::Known;
use crate::state::rules::FilterSpec;
use crate::state::session::Session;
use crate::wire::agent::{self, AgentOptions};
use decide::*;
use execute::{count, execute};
pub use open::agent_thread;
use open::*;
use sides::*;
use transfer::Watch;

/// How a `-r` directory on this machine is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalTransport {
    /// `tandem-agent` as a child process over a pipe (the default; same protocol as SSH).
    Pipe {
        /// `--agent-path`, if given.
        agent: Option<PathBuf>,
    },
    /// The agent in a thread over a socket pair (tests).
    Thread,
    /// No agent: both sides in this process (tests, comparisons).
    InProcess,
}

/// Where the second side lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteSpec {
    /// A directory on this machine.
    Local(PathBuf),
    /// A directory on another host, over SSH.
    Ssh {
        /// Login name, if given.
        user: Option<String>,
        /// Host name or address.
        host: String,
        /// Port, if given.
        port: Option<u16>,
        /// Path on the host.
        path: String,
    },
}

impl RemoteSpec {
    /// The root as shown to the user and stored in the baseline.
    pub fn display(&self) -> String {
        match self {
            RemoteSpec::Local(p) => p.display().to_string(),
            RemoteSpec::Ssh {
                user, host, path, ..
            } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                match user {
                    Some(u) => format!("{u}@{host}:{path}"),
                    None => format!("{host}:{path}"),
                }
            }
        }
    }
}

/// Everything one run needs, validated.
#[derive(Clone, Debug)]
pub struct Job {
    /// The `-d` directory.
    pub local_dir: PathBuf,
    /// The `-r` side.
    pub remote: RemoteSpec,
    /// Session name and state directory.
    pub session: Session,
    /// Direction and conflict policy.
    pub policy: Policy,
    /// Include/exclude patterns.
    pub filter: FilterSpec,
    /// `-n`: decide and print, change nothing.
    pub dry_run: bool,
    /// `-y`: skip the safety prompts.
    pub yes: bool,
    /// Stop at the first read/write error.
    pub halt_on_error: bool,
    /// `--max-delete`.
    pub max_delete: Option<DeleteLimit>,
    /// Preserve owner and group (root, or `-e`).
    pub preserve_owner: bool,
    /// How a local `-r` directory is served.
    pub transport: LocalTransport,
    /// `--compress`.
    pub compression: Compression,
    /// `--pending-max`: files in flight at once.
    pub pending_max: usize,
    /// How to reach an SSH remote.
    pub ssh: crate::transport::ssh::SshOptions,
    /// Keep hard links within the tree as hard links (`--no-hard-links` turns it off).
    pub hard_links: bool,
    /// `--scan-threads`: threads per side that look entries up while scanning.
    pub scan_threads: usize,
    /// `--numeric-ids`: owners by number, not mapped by name.
    pub numeric_ids: bool,
    /// Where each side keeps ACLs and xattrs (`[local, remote]`); kept only when neither
    /// side says none.
    pub acls: [crate::disk::xattrs::AclMode; 2],
    /// `--exclude-dirs-older-than`: directories older than this (on either side) are left
    /// alone, contents and all.
    pub exclude_dirs_older_than: Option<std::time::Duration>,
    /// `-l`: most bits per second on the wire.
    pub rate: Option<u64>,
    /// `--keep-dir-local`, `--keep-dir-remote`: where each side keeps what the sync
    /// deletes or replaces (relative to its root, or absolute).
    pub keep_dirs: [Option<PathBuf>; 2],
    /// `--dedup`: content already on the receiving side is copied there, not sent.
    pub dedup: dedup::Dedup,
    /// `-R`: the agent's log on the far side.
    pub remote_log: Option<crate::output::log::LogSpec>,
    /// Both sides run behind everything else on their host (`tandem verify`).
    pub background: bool,
}

/// Asks the user to confirm the listed concerns; returns true to go ahead.
pub type Confirm<'a> = &'a mut dyn FnMut(&[Concern]) -> bool;

struct Run<'a> {
    reporter: &'a mut dyn Reporter,
    exit: ExitStatus,
    summary: Summary,
    last_error: Option<String>,
    /// Set when the user asked to stop: no further file starts.
    stop: Option<&'a std::sync::atomic::AtomicBool>,
    started: Instant,
    /// When the step running now began.
    step_started: Instant,
    /// Where the run is recorded as the session's last, once it holds the session (a
    /// dry run is not recorded).
    record: Option<Record>,
}

/// What a run's record names besides its summary.
struct Record {
    session: crate::state::session::Session,
    direction: Direction,
    roots: (String, String),
}

impl<'a> Run<'a> {
    fn new(reporter: &'a mut dyn Reporter, job: &Job) -> Run<'a> {
        Run {
            reporter,
            exit: ExitStatus::OK,
            summary: Summary {
                dry_run: job.dry_run,
                ..Default::default()
            },
            last_error: None,
            stop: None,
            started: Instant::now(),
            step_started: Instant::now(),
            record: None,
        }
    }

    /// The run holds its session: from now on it counts as the session's last run.
    fn holds_session(&mut self, job: &Job) {
        if !job.dry_run {
            self.record = Some(Record {
                session: job.session.clone(),
                direction: job.policy.direction,
                roots: roots(job),
            });
        }
    }

    /// Writes the session's last-run record (a failure to is an error of the run).
    fn record(&mut self) {
        let Some(Record {
            session,
            direction,
            roots: (local_root, remote_root),
        }) = self.record.take()
        else {
            return;
        };
        let s = &self.summary;
        let ended = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let run = crate::state::session::last_run::LastRun {
            ended,
            direction: direction.word().into(),
            exit: self.exit.0,
            files: s.files_transferred + s.files_deleted + s.dirs_created + s.moved,
            bytes: s.bytes_total,
            local_root,
            remote_root,
            last_ok: None,
        };
        if let Err(e) = session.record_run(run) {
            self.error(None, None, &e);
        }
    }

    /// The step `name` has ended: its time is added to the summary's phases.
    fn phase(&mut self, name: &'static str) {
        let now = Instant::now();
        let spent = now.duration_since(self.step_started).as_secs_f64();
        self.step_started = now;
        let phases = &mut self.summary.phases_s;
        match phases.iter_mut().find(|(n, _)| *n == name) {
            Some((_, s)) => *s += spent,
            None => phases.push((name, spent)),
        }
    }

    fn stopping(&self) -> bool {
        self.stop
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Reports the summary and returns the exit status.
    fn finish(mut self) -> ExitStatus {
        self.record();
        self.summary.elapsed_s = self.started.elapsed().as_secs_f64();
        self.summary.exit = self.exit.0;
        let summary = self.summary.clone();
        self.reporter.event(&Event::Summary(&summary));
        self.exit
    }

    fn error(&mut self, path: Option<&RelPath>, side: Option<Side>, err: &Error) {
        let bit = err.exit_bit();
        self.exit |= bit;
        let message = err.to_string();
        // A broken connection fails every later step the same way: say it once.
        if path.is_none() && self.last_error.as_deref() == Some(message.as_str()) {
            return;
        }
        self.last_error = path.is_none().then(|| message.clone());
        self.summary.errors += 1;
        self.reporter.event(&Event::Error {
            path,
            side,
            message: &message,
            exit_bit: bit.0,
        });
    }
}

/// Runs one sync and returns its exit status; everything else is reported as events.
pub fn run(job: &Job, reporter: &mut dyn Reporter, confirm: Confirm<'_>) -> ExitStatus {
    run_watched(job, reporter, confirm, &mut transfer::NoWatch)
}

/// [`run`], with transfers reported to `watch` (progress bars).
pub fn run_watched(
    job: &Job,
    reporter: &mut dyn Reporter,
    confirm: Confirm<'_>,
    watch: &mut dyn Watch,
) -> ExitStatus {
    let mut run = Run::new(reporter, job);
    if let Err(e) = run_inner(job, &mut run, confirm, watch) {
        run.error(None, None, &e);
    }
    watch.finish();
    run.finish()
}

fn run_inner(
    job: &Job,
    run: &mut Run<'_>,
    confirm: Confirm<'_>,
    watch: &mut dyn Watch,
) -> Result<()> {
    let (_lock, mut old) = prepare(job)?;
    run.holds_session(job);
    run.phase("lock");
    let opened = open_endpoints(job)?;
    run.phase("connect");
    let mut sides = first_scan(job, opened, &mut old, run)?;
    run.phase("scan");
    cycle(job, &mut sides, &mut old, run, confirm, watch, &NOTHING_HOT)
}

/// Paths still changing on a side (continuous mode): files there are not sent yet.
type Hot<'a> = &'a dyn Fn(Side, &RelPath) -> bool;

const NOTHING_HOT: fn(Side, &RelPath) -> bool = |_, _| false;

/// One pass over both trees as scanned: hash, decide, check, carry out, commit.
fn cycle(
    job: &Job,
    sides: &mut Sides,
    old: &mut Baseline,
    run: &mut Run<'_>,
    confirm: Confirm<'_>,
    watch: &mut dyn Watch,
    hot: Hot<'_>,
) -> Result<()> {
    mark_old_dirs(job, &mut sides.trees);
    // Before hashing: digests are asked for by the names reconciliation will use (on a
    // root that folds names, the agreed spelling finds the same file).
    sides.alignment = names::align(
        &mut old.tree,
        &mut sides.trees,
        sides.names,
        job.policy.direction,
    );
    hash(sides, old, run)?;
    run.phase("hash");
    names::accommodate(&mut sides.trees, sides.holds);
    let decided = decide(job, sides, old, run, confirm)?;
    run.phase("decide");
    let Some(mut plan) = decided else {
        return Ok(());
    };
    let held = hold_back(&mut plan, hot);
    dedup::find(job.dedup, &mut plan, sides)?;
    let roots = match job.policy.direction {
        Direction::Bidi => root_entries(sides, run)?,
        _ => [None, None],
    };
    let mut pending = execute(&mut plan, job, sides, run, watch);
    run.phase("transfer");
    pending.extend(held);
    restamp_roots(job, sides, roots, run)?;
    for n in sides.remote.notes() {
        run.reporter.event(&Event::Notice { message: &n });
    }
    count_traffic(
        &mut run.summary,
        sides.local.as_ref(),
        sides.remote.as_ref(),
    );
    let done = plan.actions.len();
    // The plan and the half-empty B-tree nodes its results were inserted into are not
    // needed for the commit, which builds the largest structures of the run.
    drop(plan);
    for tree in &mut sides.trees {
        if done > tree.len() / 16 {
            tree.compact();
        }
    }
    let wrote = done > 0;
    let committed = commit(job, sides, old, wrote, &pending);
    run.phase("commit");
    committed
}
