//! Deciding and committing: reconcile into a plan, report it, check its safety with the user,
//! hold back what is still changing, and commit the new baseline from what succeeded.

use super::*;

/// Reconciles, reports conflicts and runs the safety checks; `None` when there is nothing
/// to carry out (a dry run, which prints the plan instead).
pub(super) fn decide(
    job: &Job,
    sides: &Sides,
    old: &Baseline,
    run: &mut Run<'_>,
    confirm: Confirm<'_>,
) -> Result<Option<Plan>> {
    let [lt, rt] = &sides.trees;
    let mut plan = reconcile(&old.tree, lt, rt, &job.policy);
    crate::core::names::finish_plan(&mut plan, &sides.alignment, &sides.trees);
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
pub(super) fn report_decisions(job: &Job, plan: &Plan, run: &mut Run<'_>) {
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
pub(super) fn confirm_concerns(
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
pub(super) fn hold_back(plan: &mut Plan, hot: Hot<'_>) -> Vec<RelPath> {
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
pub(super) fn commit(
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
    // What the run wrote is in the trees as the disk now has it: what a side cannot
    // keep is left out of the agreement, as it was of the decisions.
    crate::core::names::accommodate(&mut sides.trees, sides.holds);
    let [lt, rt] = &sides.trees;
    let ids = [Some(sides.ids[0]), Some(sides.ids[1])];
    // A run that changed nothing leaves the baseline file alone (no rewrite, no fsync),
    // and finds that out without building a second baseline beside the first.
    let same_but_tree = |old: &Baseline| {
        old.local_root == local_root
            && old.remote_root == remote_root
            && old.root_ids == ids
            && old.acls == job.acls
            && old.probed == sides.probed()
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
    // A baseline respelled to the agreed names is written even if nothing else changed.
    if job.filter == FilterSpec::default() && !sides.alignment.base_respelled && unchanged() {
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
        probed: sides.probed(),
    };
    next.commit(&job.session.baseline_path())?;
    *old = next;
    Ok(())
}

/// Bytes on the wire for the summary (counted before the last steps, so a run that
/// fails there still says what moved).
pub(super) fn count_traffic(summary: &mut Summary, local: &dyn Endpoint, remote: &dyn Endpoint) {
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

pub(super) fn print_plan(plan: &Plan, roots: [&str; 2], everything: bool, run: &mut Run<'_>) {
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
