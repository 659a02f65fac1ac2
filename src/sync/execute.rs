//! Carrying out a plan: its phases in order, every file's content moved together in one
//! pipelined transfer, every other change of a phase in one batch per side; each outcome
//! reported as it comes, and the trees updated with what succeeded.

use super::transfer::{Stats, Transfers, Watch};
use super::{Job, Run, Sides};
use crate::core::path::RelPath;
use crate::core::plan::{apply_to, Action, Op, Plan, Resolution, Side, Status};
use crate::core::tree::{Entry, MapBuilder, Tree};
use crate::endpoint::{Change, Endpoint};
use crate::error::{Error, Result};
use crate::exit::ExitStatus;
use crate::output::{Event, Summary};

/// Counts a completed action in the summary.
pub(super) fn count(s: &mut Summary, a: &Action) {
    match &a.op {
        Op::Copy { source, .. } | Op::Link { source, .. } => count_file(s, source),
        Op::Dedup { source, .. } => count_file(s, source),
        Op::Unlink { .. } => s.moved += 1,
        Op::Delete => s.files_deleted += 1,
        Op::Mkdir { .. } => s.dirs_created += 1,
        Op::Rename { .. } | Op::SetMeta { .. } => s.moved += 1,
        Op::Restamp { .. } => {}
    }
}

/// Counts one entry brought over (its bytes, for a file).
fn count_file(s: &mut Summary, source: &Entry) {
    s.files_transferred += 1;
    if source.is_file() {
        s.bytes_total += source.size;
    }
}

/// Whether an action moves a regular file's content (done by the transfers).
fn is_file_copy(a: &Action) -> bool {
    matches!(&a.op, Op::Copy { source, .. } if source.is_file())
}

/// What carrying out the plan has left so far: the paths whose actions did not complete
/// (their baseline entries stay as they were), and whether the run must stop.
struct Left {
    pending: Vec<RelPath>,
    halted: bool,
}

/// Runs the plan in order; returns the paths whose actions did not complete. File
/// contents all move together, pipelined, when the first file copy comes up (every copy
/// is in one phase, after the directories they need exist); each is reported as soon as
/// it is committed, and the trees are updated once the transfers are over.
pub(super) fn execute(
    plan: &mut Plan,
    job: &Job,
    sides: &mut Sides,
    run: &mut Run<'_>,
    watch: &mut dyn Watch,
) -> Vec<RelPath> {
    let mut left = Left {
        // A directory whose attributes alone conflict is not agreed on, so the baseline
        // keeps its old entry anyway; what is below it is recorded as it settles.
        pending: plan
            .unresolved()
            .filter(|c| !c.attributes_only)
            .map(|c| c.path.clone())
            .collect(),
        halted: false,
    };
    let mut copied = false;
    let mut next = 0;
    while next < plan.actions.len() {
        let i = next;
        left.halted |= run.stopping();
        if left.halted {
            left.pending
                .extend(plan.actions[i..].iter().map(|a| a.path.clone()));
            break;
        }
        if is_file_copy(&plan.actions[i]) {
            next = i + 1;
            if !copied {
                copied = true;
                copy_files(plan, job, sides, run, watch, &mut left);
            }
            continue;
        }
        next = phase_end(&plan.actions, i, job.halt_on_error);
        apply_phase(&plan.actions[i..next], job, sides, run, &mut left);
    }
    left.pending
}

/// Moves the content of every file the plan copies, pipelined up to `--pending-max`,
/// reporting each as it commits; the trees learn the placed files once all are over.
fn copy_files(
    plan: &mut Plan,
    job: &Job,
    sides: &mut Sides,
    run: &mut Run<'_>,
    watch: &mut dyn Watch,
    left: &mut Left,
) {
    let copies = plan.actions.iter().filter(|a| is_file_copy(a));
    let (files, bytes) = copies.fold((0, 0), |(n, b), a| (n + 1, b + a.bytes()));
    watch.start(files, bytes);
    // With --halt-on-error one file at a time, so the first error really stops the run:
    // no further file starts.
    let in_flight = if job.halt_on_error {
        1
    } else {
        job.pending_max
    };
    let Sides {
        local,
        remote,
        trees: [lt, rt],
        partials: [lp, rp],
        ..
    } = sides;
    let mut transfers = Transfers {
        local: local.as_mut(),
        remote: remote.as_mut(),
        trees: [&mut *lt, &mut *rt],
        partials: [&*lp, &*rp],
        in_flight,
        stats: Stats::default(),
    };
    let mut placed = Placed::default();
    let outcome = transfers.copy(&mut plan.actions, is_file_copy, watch, &mut |a, r| {
        let r = r.map(Some);
        left.halted |= settle(a, &r, job, run, &mut left.pending);
        if let Ok(Some(entry)) = r {
            placed.add(a, entry);
        }
        !left.halted && !run.stopping()
    });
    run.summary.bytes_literal = transfers.stats.literal;
    run.summary.bytes_saved_by_delta = transfers.stats.matched;
    placed.record(lt, rt);
    if let Err(e) = outcome {
        run.error(None, None, &e);
        left.halted = true;
    }
}

/// Where the batch that starts at `i` ends: every change of its phase up to the next file
/// copy (one change alone with --halt-on-error, so the first error really stops the run).
fn phase_end(actions: &[Action], i: usize, halt_on_error: bool) -> usize {
    if halt_on_error {
        return i + 1;
    }
    let phase = actions[i].phase();
    let more = actions[i + 1..]
        .iter()
        .take_while(|a| !is_file_copy(a) && a.phase() == phase)
        .count();
    i + 1 + more
}

/// Applies one batch of changes (one message per side) and settles each outcome.
fn apply_phase(batch: &[Action], job: &Job, sides: &mut Sides, run: &mut Run<'_>, left: &mut Left) {
    let results = match apply_batch(batch, sides.local.as_mut(), sides.remote.as_mut()) {
        Ok(r) => r,
        Err(e) => {
            run.error(None, None, &e);
            left.halted = true;
            left.pending.extend(batch.iter().map(|a| a.path.clone()));
            return;
        }
    };
    let [lt, rt] = &mut sides.trees;
    for (a, r) in batch.iter().zip(results) {
        left.halted |= settle(a, &r, job, run, &mut left.pending);
        if let Ok(entry) = r {
            record(a, entry, lt, rt);
        }
    }
}

/// Applies changes on both sides, one message per side; results in the batch's order.
fn apply_batch<'e>(
    batch: &[Action],
    local: &'e mut dyn Endpoint,
    remote: &'e mut dyn Endpoint,
) -> Result<Vec<Result<Option<Entry>>>> {
    let mut results: Vec<Option<Result<Option<Entry>>>> = batch.iter().map(|_| None).collect();
    for (side, ep) in [(Side::Local, local), (Side::Remote, remote)] {
        let mine: Vec<usize> = (0..batch.len())
            .filter(|&k| batch[k].side == side)
            .collect();
        let mut changes = Vec::with_capacity(mine.len());
        let mut sent = Vec::with_capacity(mine.len());
        for &k in &mine {
            match change_of(&batch[k]) {
                Ok(c) => {
                    changes.push(c);
                    sent.push(k);
                }
                Err(e) => results[k] = Some(Err(e)),
            }
        }
        if changes.is_empty() {
            continue;
        }
        for (k, r) in sent.into_iter().zip(ep.apply(&changes)?) {
            results[k] = Some(r);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Protocol("a change got no answer".into()))))
        .collect())
}

/// Files the transfers placed, gathered while they run and recorded in one merge per
/// side when they are over: thousands of new files inserted one by one would leave the
/// tree's nodes half empty. (Their sources learn their digests as each copy commits,
/// before any target joins a tree: a source path that is also a target, a conflict's copy
/// kept both ways, never takes its replacement's digest.)
#[derive(Default)]
struct Placed {
    /// What now stands at each target, per side (`[local, remote]`).
    entries: [MapBuilder<RelPath, Entry>; 2],
}

impl Placed {
    fn add(&mut self, a: &Action, entry: Entry) {
        self.entries[a.side as usize].push(a.path.clone(), entry);
    }

    /// Adds the targets' new entries to the trees.
    fn record(self, lt: &mut Tree, rt: &mut Tree) {
        let [l, r] = self.entries.map(MapBuilder::finish);
        lt.absorb(l);
        rt.absorb(r);
    }
}

/// Updates the trees with an action that succeeded (other than a file's copy, whose
/// transfer learns its source's digest).
fn record(a: &Action, entry: Option<Entry>, lt: &mut Tree, rt: &mut Tree) {
    let dst_tree = if a.side == Side::Local { lt } else { rt };
    apply_to(dst_tree, a, entry);
}

/// Reports an action's outcome; returns true if the run must stop (`--halt-on-error`).
fn settle(
    a: &Action,
    r: &Result<Option<Entry>>,
    job: &Job,
    run: &mut Run<'_>,
    pending: &mut Vec<RelPath>,
) -> bool {
    match r {
        // Restamping a directory is bookkeeping: not news to report.
        Ok(_) if matches!(a.op, Op::Restamp { .. }) => false,
        Ok(_) => {
            count(&mut run.summary, a);
            run.reporter.event(&Event::File {
                path: a.target(),
                status: a.status,
                side: Some(a.side),
                bytes: a.bytes(),
                reason: &a.reason,
                restored: a.restores,
            });
            false
        }
        Err(Error::SourceChanged { path, place }) => {
            pending.push(a.path.clone());
            let message = format!("'{path}' on {place} changed while it was being read; skipped, it will be sent next run");
            run.reporter.event(&Event::File {
                path: &a.path,
                status: Status::Skipped,
                side: Some(a.side),
                bytes: 0,
                reason: &message,
                restored: false,
            });
            false
        }
        Err(e) => {
            pending.push(a.path.clone());
            pending.push(a.target().clone());
            if let Error::Changed { .. } = e {
                run.summary.conflicts += 1;
                let reason = e.to_string();
                run.reporter.event(&Event::Conflict {
                    path: &a.path,
                    reason: &reason,
                    resolution: &Resolution::Unresolved,
                });
                run.exit |= ExitStatus::CONFLICTS;
                false
            } else {
                run.error(Some(&a.path), Some(a.side), e);
                if job.halt_on_error {
                    run.reporter.event(&Event::Notice {
                        message: "stopping at the first error (--halt-on-error)",
                    });
                }
                job.halt_on_error
            }
        }
    }
}

/// The endpoint change for an action other than a file copy.
fn change_of(a: &Action) -> Result<Change> {
    let path = a.path.clone();
    let expect = || {
        a.expect
            .as_deref()
            .cloned()
            .ok_or_else(|| Error::Protocol(format!("plan for '{}' lacks its precondition", a.path)))
    };
    Ok(match &a.op {
        Op::Link { to, source } => Change::Link {
            path,
            expect: a.expect.as_deref().cloned(),
            first: to.clone(),
            source: source.clone(),
        },
        Op::Unlink { source } => Change::Unlink {
            path,
            expect: expect()?,
            source: source.clone(),
        },
        Op::Copy { source, .. } => Change::MakeNode {
            path,
            expect: a.expect.as_deref().cloned(),
            source: source.clone(),
        },
        Op::Mkdir { source } => Change::Mkdir {
            path,
            source: source.clone(),
        },
        Op::Delete => Change::Delete {
            path,
            expect: expect()?,
        },
        Op::Rename { to, source } => Change::Rename {
            from: path,
            to: to.clone(),
            expect: expect()?,
            meta: source.clone(),
        },
        Op::SetMeta { source } => Change::SetMeta {
            path,
            expect: expect()?,
            source: source.clone(),
        },
        Op::Restamp { mtime_ns } => Change::Restamp {
            path,
            mtime_ns: *mtime_ns,
        },
        Op::Dedup {
            from,
            from_expect,
            source,
            hardlink,
        } => Change::Dedup {
            path,
            expect: a.expect.as_deref().cloned(),
            from: from.clone(),
            from_expect: (**from_expect).clone(),
            source: (**source).clone(),
            hardlink: *hardlink,
        },
    })
}
