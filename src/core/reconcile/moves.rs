//! Move detection (pure): a file deleted on one side and a file with the same content
//! created on that same side become one rename, so the data is not sent again.

use std::collections::{HashMap, HashSet};

use crate::core::plan::{Action, Op, Plan, Side, Status};
use crate::core::tree::Digest;

/// Pairs deletions with creations of identical content on the same side and replaces each
/// pair by a `Rename`. Only files whose digests are known on both ends are paired.
pub fn detect(plan: &mut Plan) {
    for side in [Side::Local, Side::Remote] {
        let pairs = pairs(plan, side);
        if pairs.is_empty() {
            continue;
        }
        let mut paired = vec![false; plan.actions.len()];
        for (del, copy) in pairs {
            let Op::Copy { source, .. } = plan.actions[copy].op.clone() else {
                unreachable!("a pair's second action is a copy")
            };
            let to = plan.actions[copy].path.clone();
            let d = &mut plan.actions[del];
            d.reason = format!("moved to '{to}' on {}", side.other().word()).into();
            d.op = Op::Rename {
                to,
                source: Some(source),
            };
            d.status = Status::Moved;
            paired[copy] = true;
        }
        // One pass: removing the copies one by one would move the plan's tail each time
        // (a renamed directory of 100,000 files).
        let mut k = 0;
        plan.actions.retain(|_| {
            k += 1;
            !paired[k - 1]
        });
    }
}

/// The deletions on `side` that are moves: each deleted file (its digest known) paired with
/// a copy of the same content to a new path, as (index of the deletion, index of the copy).
fn pairs(plan: &Plan, side: Side) -> Vec<(usize, usize)> {
    let deletes = |a: &&Action| a.side == side && a.op == Op::Delete && !a.conflict_copy;
    // The content key of a deleted file, when its digest is known.
    let deleted_file = |a: &Action| {
        let e = a.expect.as_ref().filter(|e| e.is_file())?;
        Some((e.digest?, e.size))
    };
    // Most plans delete no file whose content is known (every initial push): nothing to
    // pair, and no set of every path created to build.
    if !plan
        .actions
        .iter()
        .filter(deletes)
        .any(|a| deleted_file(a).is_some())
    {
        return Vec::new();
    }
    // A path both deleted and created on this side is a type change: its deletion must
    // run in its own phase, so neither half may become part of a move.
    let created: HashSet<_> = plan
        .actions
        .iter()
        .filter(|a| a.side == side && a.op != Op::Delete)
        .map(|a| &a.path)
        .collect();
    let replaced: HashSet<_> = plan
        .actions
        .iter()
        .filter(|a| a.side == side && a.op == Op::Delete && created.contains(&a.path))
        .map(|a| a.path.clone())
        .collect();
    let mut deleted: HashMap<(Digest, u64), Vec<usize>> = HashMap::new();
    for (i, a) in plan.actions.iter().enumerate() {
        if !deletes(&a) || replaced.contains(&a.path) {
            continue;
        }
        if let Some(key) = deleted_file(a) {
            deleted.entry(key).or_default().push(i);
        }
    }
    let mut pairs = Vec::new();
    if deleted.is_empty() {
        return pairs;
    }
    for (i, a) in plan.actions.iter().enumerate() {
        let Op::Copy { from, source } = &a.op else {
            continue;
        };
        if a.side != side
            || a.expect.is_some()
            || from != &a.path
            || !source.is_file()
            || replaced.contains(&a.path)
        {
            continue;
        }
        let Some(d) = source.digest else {
            continue;
        };
        let Some(candidates) = deleted.get_mut(&(d, source.size)) else {
            continue;
        };
        // Never move a file into or out of its own subtree.
        let fits = |&&k: &&usize| {
            let from = &plan.actions[k].path;
            !a.path.starts_with(from) && !from.starts_with(&a.path)
        };
        if let Some(pos) = candidates.iter().rposition(|k| fits(&k)) {
            pairs.push((candidates.remove(pos), i));
        }
    }
    pairs
}
