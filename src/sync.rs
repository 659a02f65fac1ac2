//! One run: lock, scan both sides, hash what is ambiguous, reconcile, check safety, execute
//! the plan action by action, and commit the baseline from what succeeded.

pub mod continuous;
pub mod dedup;
mod dirty;
mod execute;
mod refresh;
pub mod transfer;

use std::path::{Path, PathBuf};
use std::time::Instant;

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
use execute::{count, execute};
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

/// Both sides, open.
struct Opened {
    local: Box<dyn Endpoint>,
    remote: Box<dyn Endpoint>,
    /// For the user: a host key learned, an agent installed.
    notes: Vec<String>,
}

fn open_endpoints(job: &Job) -> Result<Opened> {
    let local = LocalEndpoint::open(
        &job.local_dir,
        format!("local '{}'", job.local_dir.display()),
        job.preserve_owner,
    )?
    .with_hard_links(job.hard_links)
    .with_scan_threads(job.scan_threads)
    .with_acls(job.acls[0])
    .with_keep_dir(job.keep_dirs[0].as_deref())?;
    let agent = |root: PathBuf| AgentOptions {
        root,
        label: format!("remote '{}'", job.remote.display()),
        owner: job.preserve_owner,
        compression: job.compression,
        hard_links: job.hard_links,
        acls: job.acls[1],
        scan_threads: job.scan_threads,
        rate: job.rate,
        keep_dir: job.keep_dirs[1].clone(),
        log: job.remote_log.clone(),
    };
    let mut notes = Vec::new();
    let remote: Box<dyn Endpoint> = match &job.remote {
        RemoteSpec::Local(dir) => {
            let opts = agent(dir.clone());
            match &job.transport {
                LocalTransport::InProcess => Box::new(
                    LocalEndpoint::open(dir, opts.label, job.preserve_owner)?
                        .with_hard_links(job.hard_links)
                        .with_scan_threads(job.scan_threads)
                        .with_acls(job.acls[1])
                        .with_keep_dir(job.keep_dirs[1].as_deref())?,
                ),
                LocalTransport::Pipe { agent } => {
                    let agent = crate::transport::pipe::find_agent(agent.as_deref())?;
                    Box::new(crate::transport::pipe::connect(&agent, &opts)?)
                }
                LocalTransport::Thread => Box::new(agent_thread(opts, job.compression)?),
            }
        }
        RemoteSpec::Ssh {
            user,
            host,
            port,
            path,
        } => {
            let dest = crate::transport::ssh::Hop {
                user: user.clone(),
                host: host.clone(),
                port: *port,
            };
            let (ep, n) = connect_ssh(&dest, job, &agent(PathBuf::from(path)))?;
            notes = n;
            Box::new(ep)
        }
    };
    Ok(Opened {
        local: Box::new(local),
        remote,
        notes,
    })
}

#[cfg(feature = "ssh")]
fn connect_ssh(
    dest: &crate::transport::ssh::Hop,
    job: &Job,
    agent: &AgentOptions,
) -> Result<(RemoteEndpoint, Vec<String>)> {
    crate::transport::ssh::connect(dest, &job.ssh, agent)
}

#[cfg(not(feature = "ssh"))]
fn connect_ssh(
    dest: &crate::transport::ssh::Hop,
    _job: &Job,
    _agent: &AgentOptions,
) -> Result<(RemoteEndpoint, Vec<String>)> {
    Err(Error::Unreachable(format!(
        "cannot reach '{}': this build of tandem has no SSH transport",
        dest.host
    )))
}

/// Serves an agent in a thread over a socket pair: the protocol without a process.
pub fn agent_thread(opts: AgentOptions, compression: Compression) -> Result<RemoteEndpoint> {
    let label = opts.label.clone();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| Error::Unreachable(format!("socketpair: {e}")))?;
    let theirs_w = theirs
        .try_clone()
        .map_err(|e| Error::Unreachable(format!("socketpair: {e}")))?;
    std::thread::spawn(move || {
        let _ = agent::serve(theirs, theirs_w, &opts);
    });
    let ours_w = ours
        .try_clone()
        .map_err(|e| Error::Unreachable(format!("socketpair: {e}")))?;
    RemoteEndpoint::new(ours, HalfClose(ours_w), label, compression.into(), None)
}

/// The writing half of a socket: closing it must tell the peer "no more input" even while
/// the reading half stays open (a pipe gets that for free; a socket needs `shutdown`).
struct HalfClose(std::os::unix::net::UnixStream);

impl std::io::Write for HalfClose {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for HalfClose {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Write);
    }
}

/// Two roots that are one directory, or one inside the other, would sync a tree into
/// itself (nesting it deeper on every run): refused before anything is written.
fn roots_apart(local: &Path, remote: &RemoteSpec) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let RemoteSpec::Local(remote) = remote else {
        return Ok(());
    };
    let (Ok(a), Ok(b)) = (std::fs::canonicalize(local), std::fs::canonicalize(remote)) else {
        return Ok(()); // a missing root is reported when it is opened
    };
    let same_inode = match (std::fs::metadata(&a), std::fs::metadata(&b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    };
    let why = if a == b || same_inode {
        "are the same directory"
    } else if b.starts_with(&a) {
        "are nested: the -r directory is inside the -d directory"
    } else if a.starts_with(&b) {
        "are nested: the -d directory is inside the -r directory"
    } else {
        return Ok(());
    };
    Err(Error::Usage(format!(
        "the roots '{}' and '{}' {why}; give two separate directories",
        local.display(),
        remote.display()
    )))
}

fn run_inner(
    job: &Job,
    run: &mut Run<'_>,
    confirm: Confirm<'_>,
    watch: &mut dyn Watch,
) -> Result<()> {
    let (_lock, mut old) = prepare(job)?;
    run.holds_session(job);
    let opened = open_endpoints(job)?;
    let mut sides = first_scan(job, opened, &mut old, run)?;
    cycle(job, &mut sides, &mut old, run, confirm, watch, &NOTHING_HOT)
}

/// The roots' own entries (bidi reads them before the cycle writes inside them).
type RootEntries = [Option<Entry>; 2];

/// Each root's own entry as found now, or `None` (reported) where it cannot be read.
fn root_entries(sides: &mut Sides, run: &mut Run<'_>) -> Result<RootEntries> {
    let mut out = [None, None];
    for side in [Side::Local, Side::Remote] {
        match root_meta(sides, side, None, None)? {
            Ok(e) => out[side as usize] = Some(e),
            Err(e) => run.error(None, Some(side), &e),
        }
    }
    Ok(out)
}

/// Asks `side` for its root's entry after setting what is given.
fn root_meta(
    sides: &mut Sides,
    side: Side,
    set: Option<i64>,
    mode: Option<u32>,
) -> Result<Result<Entry>> {
    let answer = sides
        .endpoint(side)
        .apply(&[Change::RootTime { set, mode }])?
        .pop();
    Ok(answer
        .unwrap_or_else(|| Err(Error::Protocol("no answer about the root".into())))
        .and_then(|e| e.ok_or_else(|| Error::Protocol("no root entry".into()))))
}

/// The roots end a cycle alike, as rsync leaves them: a one-way run gives the replica's
/// root its source's mtime and mode; bidi gives both the newer of the mtimes they had
/// before the cycle wrote inside them (the root is no entry of the trees, so no plan
/// restamps it).
fn restamp_roots(
    job: &Job,
    sides: &mut Sides,
    before: RootEntries,
    run: &mut Run<'_>,
) -> Result<()> {
    let (targets, mtime_ns, mode) = match job.policy.direction {
        Direction::Push | Direction::Pull => {
            let source = if job.policy.direction == Direction::Push {
                Side::Local
            } else {
                Side::Remote
            };
            // One round trip each: the replica sets only what differs.
            let from = match root_meta(sides, source, None, None)? {
                Ok(from) => from,
                Err(e) => {
                    run.error(None, Some(source), &e);
                    return Ok(());
                }
            };
            (vec![source.other()], from.mtime_ns, Some(from.mode))
        }
        Direction::Bidi => {
            let [Some(l), Some(r)] = before else {
                return Ok(());
            };
            (
                vec![Side::Local, Side::Remote],
                l.mtime_ns.max(r.mtime_ns),
                None,
            )
        }
    };
    for side in targets {
        match root_meta(sides, side, Some(mtime_ns), mode)? {
            // Only the owner may set a directory's times: a root that belongs to someone
            // else keeps its own (rsync warns the same way).
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                let message = format!(
                    "the root on {} keeps its own time: {source}",
                    sides.endpoint(side).place()
                );
                run.reporter.event(&Event::Notice { message: &message });
            }
            Err(e) => run.error(None, Some(side), &e),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Checks the roots, takes the session lock and loads the baseline.
fn prepare(job: &Job) -> Result<(crate::state::session::SessionLock, Baseline)> {
    roots_apart(&job.local_dir, &job.remote)?;
    let lock = job.session.lock()?;
    let old = Baseline::load(&job.session.baseline_path())?;
    let (local_root, remote_root) = roots(job);
    if let Some(b) = &old {
        if b.local_root != local_root || b.remote_root != remote_root {
            return Err(Error::State(format!(
                "session '{}' synchronizes '{}' with '{}', not '{}' with '{}'; choose another -N name",
                job.session.name, b.local_root, b.remote_root, local_root, remote_root
            )));
        }
    }
    Ok((lock, old.unwrap_or_default()))
}

/// The two roots as the user and the baseline name them.
fn roots(job: &Job) -> (String, String) {
    (job.local_dir.display().to_string(), job.remote.display())
}

/// Both sides, open, with what the run knows of each tree.
struct Sides {
    local: Box<dyn Endpoint>,
    remote: Box<dyn Endpoint>,
    /// Each side's tree as it is believed to be now (updated as the plan is carried out).
    trees: [Tree; 2],
    /// Each root's identity.
    ids: [crate::disk::fsops::RootId; 2],
    /// Partial transfers left on each side by an interrupted run.
    partials: [crate::disk::scan::Partials; 2],
}

impl Sides {
    fn endpoint(&mut self, side: Side) -> &mut dyn Endpoint {
        match side {
            Side::Local => self.local.as_mut(),
            Side::Remote => self.remote.as_mut(),
        }
    }
}

/// Scans both sides at once, reports what could not be read, and maps owners by name.
fn first_scan(job: &Job, opened: Opened, old: &mut Baseline, run: &mut Run<'_>) -> Result<Sides> {
    let Opened {
        mut local,
        mut remote,
        notes,
    } = opened;
    for n in &notes {
        run.reporter.event(&Event::Notice { message: n });
    }
    // The baseline's attributes were read as this run reads them: an unchanged file's
    // are taken from it, not read again (the scans leave them unread).
    let knows = |side: Side| old.acls == job.acls && job.acls[side as usize] == AclMode::Native;
    let knows = [knows(Side::Local), knows(Side::Remote)];
    let Baseline {
        tree: base,
        caches: [local_cache, remote_cache],
        ..
    } = old;
    let (ls, rs) = std::thread::scope(|s| {
        // Both trees fill their digests from the caches as entries come in, and hold what
        // they have in common with the baseline shared with it: paths, and the metadata
        // of every entry found as the baseline has it. Each side's cache, once its tree is
        // in, pairs the files that moved there and is let go, while the other side may
        // still be growing its tree.
        let l = s.spawn(|| {
            let known = Known::with_cache(base, local_cache).with_xattrs(knows[0]);
            let mut scan = local.scan(&job.filter, known)?;
            local_cache.spend_on(base, &mut scan.tree);
            Ok::<_, Error>(scan)
        });
        let known = Known::with_cache(base, remote_cache).with_xattrs(knows[1]);
        let mut r = remote.scan(&job.filter, known);
        if let Ok(r) = &mut r {
            remote_cache.spend_on(base, &mut r.tree);
        }
        (l.join().expect("scanner thread"), r)
    });
    let (mut ls, mut rs) = match (ls, rs) {
        (Ok(l), Ok(r)) => (l, r),
        (l, r) => {
            // The side that scanned has spent its cache: rebuilt, a retry fills again.
            if let Ok(l) = &l {
                local_cache.renew(base, &l.tree);
            }
            if let Ok(r) = &r {
                remote_cache.renew(base, &r.tree);
            }
            (l?, r?)
        }
    };
    read_unread_xattrs(job, local.as_mut(), &mut ls.tree)?;
    read_unread_xattrs(job, remote.as_mut(), &mut rs.tree)?;
    report_problems(run, Side::Local, local.place(), &ls.tree);
    report_problems(run, Side::Remote, remote.place(), &rs.tree);
    let owners = [ls.owners.take(), rs.owners.take()];
    let remote = map_owners(job, remote, owners, &ls.tree, &mut rs.tree)?;
    Ok(Sides {
        local,
        remote,
        ids: [ls.root_id, rs.root_id],
        partials: [ls.partials, rs.partials],
        trees: [ls.tree, rs.tree],
    })
}

/// Reads the ACLs and xattrs a scan left unread of files the baseline does not vouch for
/// (changed, moved or new since): one rescan of just those entries.
fn read_unread_xattrs(job: &Job, ep: &mut dyn Endpoint, tree: &mut Tree) -> Result<()> {
    let unread: Vec<(RelPath, bool)> = tree
        .entries
        .iter()
        .filter(|(_, e)| crate::disk::xattrs::is_unread(e.xattrs()))
        .map(|(p, _)| (p.clone(), false))
        .collect();
    if unread.is_empty() {
        return Ok(());
    }
    let found = ep.rescan(&job.filter, &unread)?;
    for (p, _) in &unread {
        match found.tree.entries.get(p) {
            Some(e) => {
                let mut e = e.clone();
                // A moved file's digest came from the cache: still good for the same file.
                if let Some(was) = tree.entries.get(p) {
                    if (was.stamp, was.size, was.mtime_ns) == (e.stamp, e.size, e.mtime_ns) {
                        e.digest = e.digest.or(was.digest);
                    }
                }
                tree.entries.insert(p.clone(), e);
            }
            // Gone since the scan: as a rescan would find it.
            None => {
                tree.entries.remove(p);
            }
        }
        if let Some(why) = found.tree.problems.get(p) {
            tree.problems.insert(p.clone(), why.clone());
        }
    }
    Ok(())
}

/// Reports every path of `tree` that could not be read (exit bit 8 for permissions).
fn report_problems(run: &mut Run<'_>, side: Side, place: &str, tree: &Tree) {
    for (path, why) in &tree.problems {
        let source = if why.contains("ermission denied") {
            std::io::ErrorKind::PermissionDenied.into()
        } else {
            std::io::Error::other(why.clone())
        };
        run.error(
            Some(path),
            Some(side),
            &Error::io("read", path, place, source),
        );
    }
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
    hash(sides, old, run)?;
    let Some(mut plan) = decide(job, sides, old, run, confirm)? else {
        return Ok(());
    };
    let held = hold_back(&mut plan, hot);
    dedup::find(job.dedup, &mut plan, sides)?;
    let roots = match job.policy.direction {
        Direction::Bidi => root_entries(sides, run)?,
        _ => [None, None],
    };
    let mut pending = execute(&mut plan, job, sides, run, watch);
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
    commit(job, sides, old, wrote, &pending)
}

/// How a directory left alone by `--exclude-dirs-older-than` is marked: as a path whose
/// state is unknown, so nothing at or below it is decided and its baseline stays.
const TOO_OLD: &str = "older than --exclude-dirs-older-than: not descended into";

/// Marks directories older than `--exclude-dirs-older-than` on either side, on both sides.
fn mark_old_dirs(job: &Job, trees: &mut [Tree; 2]) {
    for t in trees.iter_mut() {
        t.problems.retain(|_, why| why != TOO_OLD);
    }
    let Some(age) = job.exclude_dirs_older_than else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let cutoff = now.saturating_sub(age.as_nanos() as i64);
    let old: Vec<RelPath> = trees
        .iter()
        .flat_map(|t| {
            t.entries
                .iter()
                .filter(|(_, e)| e.is_dir() && e.mtime_ns < cutoff)
                .map(|(p, _)| p.clone())
        })
        .collect();
    for t in trees.iter_mut() {
        for p in &old {
            t.problems
                .entry(p.clone())
                .or_insert_with(|| TOO_OLD.into());
        }
    }
}

/// Fills digests from the hash cache (where the scan has not already) and hashes what
/// reconciliation needs to compare.
fn hash(sides: &mut Sides, old: &mut Baseline, run: &mut Run<'_>) -> Result<()> {
    let [lt, rt] = &mut sides.trees;
    let Baseline { tree, caches, .. } = old;
    caches[0].fill(tree, lt);
    caches[1].fill(tree, rt);
    let [need_l, need_r] = digests_needed(&old.tree, lt, rt);
    for (side, need) in [(Side::Local, need_l), (Side::Remote, need_r)] {
        if need.is_empty() {
            continue;
        }
        run.summary.files_hashed += need.len() as u64;
        let found = sides.endpoint(side).digests(&need)?;
        let place = sides.endpoint(side).place().to_string();
        let tree = &mut sides.trees[side as usize];
        for (path, digest) in found {
            match digest {
                Ok(d) => {
                    if let Some(e) = tree.entries.get_mut(&path) {
                        e.digest = Some(d);
                    }
                }
                Err(why) => {
                    let source = std::io::Error::other(why.clone());
                    run.error(
                        Some(&path),
                        Some(side),
                        &Error::io("hash", &path, &place, source),
                    );
                    tree.problems.insert(path, why);
                }
            }
        }
    }
    Ok(())
}

/// Reconciles, reports conflicts and runs the safety checks; `None` when there is nothing
/// to carry out (a dry run, which prints the plan instead).
fn decide(
    job: &Job,
    sides: &Sides,
    old: &Baseline,
    run: &mut Run<'_>,
    confirm: Confirm<'_>,
) -> Result<Option<Plan>> {
    let [lt, rt] = &sides.trees;
    let plan = reconcile(&old.tree, lt, rt, &job.policy);
    report_decisions(job, &plan, run);
    let root_changed = [
        old.root_ids[0].is_some_and(|id| id != sides.ids[0]),
        old.root_ids[1].is_some_and(|id| id != sides.ids[1]),
    ];
    let concerns = safety::check(&plan, [lt.len(), rt.len()], root_changed, job.max_delete);
    if job.dry_run {
        for c in &concerns {
            run.reporter.event(&Event::Notice {
                message: &format!("{c} (a real run would ask for confirmation)"),
            });
        }
        let (local_root, remote_root) = roots(job);
        print_plan(
            &plan,
            [&local_root, &remote_root],
            job.policy.everything,
            run,
        );
        return Ok(None);
    }
    confirm_concerns(job, &concerns, run, confirm)?;
    Ok(Some(plan))
}

/// Reports paths found identical and every conflict with what the policy did.
fn report_decisions(job: &Job, plan: &Plan, run: &mut Run<'_>) {
    for path in &plan.identical {
        run.reporter.event(&Event::File {
            path,
            status: Status::Exists,
            side: None,
            bytes: 0,
            reason: "identical on both sides",
            restored: false,
        });
    }
    for c in &plan.conflicts {
        run.reporter.event(&Event::Conflict {
            path: &c.path,
            reason: &c.reason,
            resolution: &c.resolution,
        });
        if c.resolution == Resolution::Unresolved {
            run.summary.conflicts += 1;
            run.exit |= ExitStatus::CONFLICTS;
        } else {
            run.summary.conflicts_resolved += 1;
            if job.dry_run {
                run.exit |= ExitStatus::RESOLVABLE;
            }
        }
    }
}

/// Refuses a plan the safety checks object to, unless `-y` or the user says go ahead.
fn confirm_concerns(
    job: &Job,
    concerns: &[Concern],
    run: &mut Run<'_>,
    confirm: Confirm<'_>,
) -> Result<()> {
    if concerns.is_empty() {
        return Ok(());
    }
    let refusal = |cs: &[&Concern], hint: &str| {
        let why: Vec<String> = cs.iter().map(|c| c.to_string()).collect();
        Error::Refused(format!(
            "refusing to run: {}; nothing was changed{hint}",
            why.join("; ")
        ))
    };
    let hard: Vec<&Concern> = concerns.iter().filter(|c| !c.confirmable()).collect();
    if !hard.is_empty() {
        return Err(refusal(&hard, ""));
    }
    if job.yes {
        for c in concerns {
            run.reporter.event(&Event::Notice {
                message: &format!("{c}; going ahead because of -y"),
            });
        }
    } else if !confirm(concerns) {
        let all: Vec<&Concern> = concerns.iter().collect();
        return Err(refusal(
            &all,
            ". Check the roots, then run again with -y (or answer yes at the prompt)",
        ));
    }
    Ok(())
}

/// Takes the sending of files still changing on their side out of the plan (nothing else
/// depends on a file's content arriving); returns their paths, whose baseline entries stay
/// as they were, so a later cycle decides them afresh.
fn hold_back(plan: &mut Plan, hot: Hot<'_>) -> Vec<RelPath> {
    let mut held = Vec::new();
    plan.actions.retain(|a| match &a.op {
        Op::Copy { from, source } if source.is_file() && hot(a.side.other(), from) => {
            held.push(a.path.clone());
            false
        }
        _ => true,
    });
    held
}

/// Makes what was written durable and records the new baseline (unless nothing changed).
fn commit(
    job: &Job,
    sides: &mut Sides,
    old: &mut Baseline,
    wrote: bool,
    pending: &[RelPath],
) -> Result<()> {
    if wrote {
        // The baseline must not record renames that a crash could still undo.
        sides.local.sync()?;
        sides.remote.sync()?;
    }
    let (local_root, remote_root) = roots(job);
    let [lt, rt] = &sides.trees;
    let ids = [Some(sides.ids[0]), Some(sides.ids[1])];
    // A run that changed nothing leaves the baseline file alone (no rewrite, no fsync),
    // and finds that out without building a second baseline beside the first.
    let same_but_tree = |old: &Baseline| {
        old.local_root == local_root
            && old.remote_root == remote_root
            && old.root_ids == ids
            && old.acls == job.acls
            && old.caches[0].is_of(&old.tree, lt)
            && old.caches[1].is_of(&old.tree, rt)
    };
    let unchanged = || {
        let mut next = next_entries(&old.tree, lt, rt, pending, job.policy.everything);
        let same_tree = old.tree.problems.is_empty()
            && old
                .tree
                .entries
                .iter()
                .all(|(p, e)| next.next().is_some_and(|(q, f)| *p == q && *e == f))
            && next.next().is_none();
        same_tree && same_but_tree(old)
    };
    if job.filter == FilterSpec::default() && unchanged() {
        return Ok(());
    }
    let mut tree = next_baseline(&old.tree, lt, rt, pending, job.policy.everything);
    // What the filter leaves out now keeps its history, for when it is back in scope.
    if job.filter != FilterSpec::default() {
        let filter = job.filter.build()?;
        for (path, entry) in &old.tree.entries {
            if filter.excludes_here_or_above(path, entry.is_dir()) {
                tree.insert(path.clone(), entry.clone());
            }
        }
    }
    if tree == old.tree && same_but_tree(old) {
        return Ok(());
    }
    let caches = [HashCache::of(&tree, lt), HashCache::of(&tree, rt)];
    let next = Baseline {
        local_root,
        remote_root,
        root_ids: ids,
        tree,
        caches,
        acls: job.acls,
    };
    next.commit(&job.session.baseline_path())?;
    *old = next;
    Ok(())
}

/// Owners by name (as root, without `--numeric-ids`): the far tree is renumbered as here,
/// and the far endpoint wrapped to renumber what goes back.
fn map_owners(
    job: &Job,
    remote: Box<dyn Endpoint>,
    [near, far]: [Option<Database>; 2],
    local_tree: &Tree,
    remote_tree: &mut Tree,
) -> Result<Box<dyn Endpoint>> {
    use crate::disk::owners::IdMap;
    if !job.preserve_owner || job.numeric_ids {
        return Ok(remote);
    }
    let near = near.unwrap_or_else(Database::load);
    let far = far.ok_or_else(|| {
        Error::Protocol(format!(
            "{} sent no user names to map owners by",
            remote.place()
        ))
    })?;
    let query = IdMap::query(&near, local_tree, remote_tree);
    let map = IdMap::build(&near, &query, &far.answer(&query));
    if map.is_identity() {
        return Ok(remote);
    }
    for e in remote_tree.entries.values_mut() {
        map.inward(e);
    }
    Ok(Box::new(crate::endpoint::mapped::OwnerMapped {
        inner: remote,
        map,
    }))
}

/// Bytes on the wire for the summary (counted before the last steps, so a run that
/// fails there still says what moved).
fn count_traffic(summary: &mut Summary, local: &dyn Endpoint, remote: &dyn Endpoint) {
    summary.bytes_sent_per_stream = remote.streams();
    for t in [local.traffic(), remote.traffic()] {
        summary.bytes_sent += t.sent;
        summary.bytes_received += t.received;
        summary.bytes_uncompressed += t.raw;
    }
    let wire = summary.bytes_sent + summary.bytes_received;
    summary.compression_ratio = if wire > 0 {
        summary.bytes_uncompressed as f64 / wire as f64
    } else {
        1.0
    };
}

fn print_plan(plan: &Plan, roots: [&str; 2], everything: bool, run: &mut Run<'_>) {
    for a in &plan.actions {
        for line in dryrun::commands(a, roots, everything) {
            run.reporter.event(&Event::Command {
                path: &a.path,
                status: a.status,
                line: &line,
            });
        }
        count(&mut run.summary, a);
    }
    for c in plan.unresolved() {
        let line = format!(
            "# conflict, left untouched: {} ({})",
            dryrun::shell_quote(c.path.as_bytes()),
            c.reason
        );
        run.reporter.event(&Event::Command {
            path: &c.path,
            status: Status::Conflict,
            line: &line,
        });
    }
}
