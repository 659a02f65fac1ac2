//! Reconciliation: baseline + two trees + policy in, [`Plan`] out. Pure: no IO, no async.
//!
//! Bidi is three-way per path: a side "changed" a path when its state differs from the
//! baseline. Where both sides hold a directory (or one deleted a directory the other still
//! has) we descend and decide per child; anywhere else the subtree is decided as a whole:
//! one side changed → propagate it; both changed alike → record agreement; one deleted and
//! the other modified → the modification wins; otherwise a conflict for the policy.
//! Push and pull make the far side equal to the near one, path by path.

pub mod links;
pub mod moves;
pub mod policy;
mod reconciler;
pub mod safety;
use reconciler::Reconciler;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use crate::core::merge::merge;
use crate::core::path::RelPath;
use crate::core::plan::{Action, Conflict, Op, Plan, Reason, Resolution, Side, Status};
use crate::core::tree::{same_state, Entry, Tree};

pub use policy::{Direction, Favor, Policy};

/// Decides what to do to make `local` and `remote` agree, given the last agreed state.
pub fn reconcile(base: &Tree, local: &Tree, remote: &Tree, policy: &Policy) -> Plan {
    let unsettled = |row: &Row<'_>| !settled(row, policy.everything);
    decide(
        base,
        local,
        remote,
        policy,
        rows_of(base, local, remote, unsettled),
    )
}

/// [`reconcile`] over the rows given (tests give every row, settled or not).
fn decide<'a>(
    base: &'a Tree,
    local: &'a Tree,
    remote: &'a Tree,
    policy: &'a Policy,
    (paths, rows): (Vec<&'a RelPath>, Vec<Row<'a>>),
) -> Plan {
    let mut r = Reconciler {
        base,
        local,
        remote,
        policy,
        paths: &paths,
        rows: &rows,
        hint: std::cell::Cell::new(0),
        // Most rows give one action (a creation, a deletion), and the directories among
        // them a restamp more: sized once, as growing a list of a million actions copies
        // it while both copies are held. Not twice the rows to be safe: room never filled
        // still costs memory when the allocator hands out pages the scan used and freed.
        plan: Plan {
            actions: Vec::with_capacity(rows.len() + dir_rows(&rows) + rows.len() / 64 + 16),
            ..Plan::default()
        },
        deleted: HashSet::new(),
        restoring: false,
        last_reason: None,
    };
    r.walk(0, paths.len());
    let mut plan = r.plan;
    moves::detect(&mut plan);
    links::plan_links(&mut plan, base, local, remote, policy.direction);
    restamp_touched_dirs(&mut plan, base, local, remote, policy);
    plan.sort();
    plan
}

/// How many rows have a directory on some side.
fn dir_rows(rows: &[Row<'_>]) -> usize {
    let has_dir = |row: &&Row<'_>| row.iter().flatten().any(|e| e.is_dir());
    rows.iter().filter(has_dir).count()
}

/// Files whose content hash reconciliation will need, per side (`[local, remote]`): those
/// whose digest is unknown and whose size matches the baseline's, the other side's, or (for
/// new files, as move candidates) any baseline file's. Everything else is decided by
/// metadata alone, so an unchanged tree is never re-hashed.
pub fn digests_needed(base: &Tree, local: &Tree, remote: &Tree) -> [Vec<RelPath>; 2] {
    let base_sizes: HashSet<u64> = base
        .entries
        .values()
        .filter(|e| e.is_file())
        .map(|e| e.size)
        .collect();
    let need = |tree: &Tree, other: &Tree| -> Vec<RelPath> {
        tree.entries
            .iter()
            .filter(|(_, e)| e.is_file() && e.digest.is_none())
            .filter(|(p, e)| {
                let same_size =
                    |x: Option<&Entry>| x.is_some_and(|x| x.is_file() && x.size == e.size);
                let in_base = base.get(p);
                same_size(in_base)
                    || same_size(other.get(p))
                    || (!in_base.is_some_and(|e| e.is_file()) && base_sizes.contains(&e.size))
            })
            .map(|(p, _)| p.clone())
            .collect()
    };
    [need(local, remote), need(remote, local)]
}

/// The baseline after a run: every path whose two sides now agree is recorded as agreed
/// (or dropped if absent on both); every other path, and everything at or below a
/// `pending` path (unresolved conflicts, failed actions), keeps its old baseline entry, so
/// it is still seen as pending next time.
pub fn next_baseline(
    old: &Tree,
    local: &Tree,
    remote: &Tree,
    pending: &[RelPath],
    everything: bool,
) -> Tree {
    Tree::from_entries(next_entries(old, local, remote, pending, everything))
}

/// The entries of [`next_baseline`] in tree order, one at a time (a run can compare them
/// with the old baseline without building the new one).
pub fn next_entries<'a>(
    old: &'a Tree,
    local: &'a Tree,
    remote: &'a Tree,
    pending: &'a [RelPath],
    everything: bool,
) -> impl Iterator<Item = (RelPath, Entry)> + 'a {
    merge([&old.entries, &local.entries, &remote.entries]).filter_map(move |(p, [o, l, r])| {
        let unknown = local.has_problem_at_or_above(p)
            || remote.has_problem_at_or_above(p)
            || pending.iter().any(|q| p.starts_with(q));
        let (l, r) = (linked_digest(local, l), linked_digest(remote, r));
        let agreed = !unknown && same_state(l.as_deref(), r.as_deref(), everything);
        let owners_differ =
            agreed && matches!((&l, &r), (Some(l), Some(r)) if (l.uid, l.gid) != (r.uid, r.gid));
        let keep = if agreed { l } else { o.map(Cow::Borrowed) };
        keep.map(|e| {
            let mut e = e.into_owned();
            // Stamps are per side; the baseline holds the agreed state only.
            e.stamp = Default::default();
            // Sides agreed but for their owners (without `-e`): no owner is the agreed
            // one, so a later change of either side's is not taken for the other's.
            if owners_differ {
                (e.uid, e.gid) = (
                    crate::core::tree::UNKNOWN_OWNER,
                    crate::core::tree::UNKNOWN_OWNER,
                );
            }
            (p.clone(), e)
        })
    })
}

/// `e`, with the digest of the first name of its hard-link group when it has none of its
/// own: the names share one file, and only one of them is read when it is sent.
fn linked_digest<'a>(tree: &'a Tree, e: Option<&'a Entry>) -> Option<Cow<'a, Entry>> {
    let e = e?;
    let anchor = e
        .link()
        .filter(|_| e.digest.is_none())
        .and_then(|a| tree.get(a));
    match anchor {
        Some(a) if a.digest.is_some() && a.size == e.size && a.mtime_ns == e.mtime_ns => {
            let mut e = e.clone();
            e.digest = a.digest;
            Some(Cow::Owned(e))
        }
        _ => Some(Cow::Borrowed(e)),
    }
}

/// The agreed value of one field, or `None` when both sides changed it differently.
fn merge_field(l: i64, r: i64, base: Option<i64>) -> Option<i64> {
    match (l == r, base) {
        (true, _) => Some(l),
        (false, Some(b)) if b == l => Some(r),
        (false, Some(b)) if b == r => Some(l),
        _ => None,
    }
}

/// Directories whose contents the plan changes get their mtime set again at the end (a
/// write inside resets it): to the source's in push and pull, to the merged one in bidi.
fn restamp_touched_dirs(
    plan: &mut Plan,
    base: &Tree,
    local: &Tree,
    remote: &Tree,
    policy: &Policy,
) {
    let mut touched: BTreeSet<(Side, RelPath)> = BTreeSet::new();
    let mut settled: HashSet<(Side, RelPath)> = HashSet::new();
    let mut deleted: HashSet<(Side, RelPath)> = HashSet::new();
    let mut created: std::collections::HashMap<(Side, RelPath), Entry> = Default::default();
    for a in &plan.actions {
        let key = |p: &RelPath| (a.side, p.clone());
        match &a.op {
            Op::SetMeta { .. } | Op::Restamp { .. } => {
                settled.insert(key(&a.path));
                continue;
            }
            Op::Delete => {
                deleted.insert(key(&a.path));
            }
            Op::Mkdir { source } => {
                touched.insert(key(&a.path));
                created.insert(key(&a.path), source.clone());
            }
            Op::Rename { to, .. } => {
                if let Some(dir) = to.parent() {
                    touched.insert(key(&dir));
                }
            }
            Op::Copy { .. } | Op::Dedup { .. } | Op::Link { .. } | Op::Unlink { .. } => {}
        }
        if let Some(dir) = a.path.parent() {
            touched.insert(key(&dir));
        }
    }
    let tree = |side: Side| if side == Side::Local { local } else { remote };
    let dir_mtime = |t: &Tree, d: &RelPath| t.get(d).filter(|e| e.is_dir()).map(|e| e.mtime_ns);
    for (side, d) in touched {
        if settled.contains(&(side, d.clone())) {
            continue;
        }
        // A directory deleted this run is gone, unless it is created again (a type change).
        let made = created.get(&(side, d.clone()));
        let now = tree(side).get(&d).filter(|e| e.is_dir());
        let now = now.filter(|_| !deleted.contains(&(side, d.clone())));
        let Some(expect) = made.or(now) else {
            continue;
        };
        let (l, r) = (dir_mtime(local, &d), dir_mtime(remote, &d));
        let wanted = match (policy.direction, l, r) {
            (Direction::Push, Some(l), _) => l,
            (Direction::Pull, _, Some(r)) => r,
            (Direction::Bidi, Some(l), Some(r)) => {
                merge_field(l, r, dir_mtime(base, &d)).unwrap_or(l.max(r))
            }
            (Direction::Bidi, Some(t), None) | (Direction::Bidi, None, Some(t)) => t,
            _ => continue,
        };
        plan.actions.push(Action {
            side,
            path: d,
            op: Op::Restamp { mtime_ns: wanted },
            expect: Some(Box::new(expect.clone())),
            status: Status::Moved,
            reason: "contents changed".into(),
            conflict_copy: false,
            restores: false,
        });
    }
}

/// A path's entries in the base, local and remote trees.
type Row<'a> = [Option<&'a Entry>; 3];

/// True when a row needs no decision in any direction: the path is on both sides and in
/// the baseline, all in one state. In bidi, a directory like that is walked into only to
/// find each child settled or not on its own; whatever is above an unsettled path is
/// never consulted (a subtree decided as a whole has a side without the directory).
fn settled(row: &Row<'_>, everything: bool) -> bool {
    match row {
        [Some(b), Some(l), Some(r)] => b.same_state(l, everything) && l.same_state(r, everything),
        _ => false,
    }
}

/// Every path of the three trees in tree order whose row is wanted, with its three entries,
/// found by one walk over them (a path settled everywhere is left out: a run that changed
/// nothing holds no rows); unreadable paths with no entry anywhere are included too (and
/// skipped when walked). Two lists sized exactly, by a first walk that counts: on a large
/// tree a list grown by doubling holds up to twice what it needs.
fn rows_of<'a>(
    base: &'a Tree,
    local: &'a Tree,
    remote: &'a Tree,
    wanted: impl Fn(&Row<'a>) -> bool,
) -> (Vec<&'a RelPath>, Vec<Row<'a>>) {
    let rows =
        || merge([&base.entries, &local.entries, &remote.entries]).filter(|(_, row)| wanted(row));
    let size = rows().count();
    let (mut paths, mut kept) = (Vec::with_capacity(size), Vec::with_capacity(size));
    for (p, row) in rows() {
        paths.push(p);
        kept.push(row);
    }
    if local.problems.is_empty() && remote.problems.is_empty() {
        return (paths, kept);
    }
    let unreadable = local.problems.keys().chain(remote.problems.keys());
    let mut all: Vec<(&RelPath, Row<'_>)> = paths
        .into_iter()
        .zip(kept)
        .chain(unreadable.map(|p| (p, [None; 3])))
        .collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    all.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 = merge_rows(kept.1, later.1);
        }
        same
    });
    all.into_iter().unzip()
}

/// The two rows of one path (one from the trees, one for its problem) as one.
fn merge_rows<'a>(a: Row<'a>, b: Row<'a>) -> Row<'a> {
    [a[0].or(b[0]), a[1].or(b[1]), a[2].or(b[2])]
}
