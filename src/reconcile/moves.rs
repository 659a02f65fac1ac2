//! Move detection (pure): a file deleted on one side and a file with the same content
//! created on that same side become one rename, so the data is not sent again.

use std::collections::{HashMap, HashSet};

use crate::plan::{Op, Plan, Side, Status};
use crate::tree::Digest;

/// Pairs deletions with creations of identical content on the same side and replaces each
/// pair by a `Rename`. Only files whose digests are known on both ends are paired.
pub fn detect(plan: &mut Plan) {
    for side in [Side::Local, Side::Remote] {
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
            if a.side != side || a.op != Op::Delete || a.conflict_copy || replaced.contains(&a.path)
            {
                continue;
            }
            if let Some(e) = a.expect.as_ref().filter(|e| e.is_file()) {
                if let Some(d) = e.digest {
                    deleted.entry((d, e.size)).or_default().push(i);
                }
            }
        }
        if deleted.is_empty() {
            continue;
        }
        let mut pairs = Vec::new();
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
        let mut drop = Vec::new();
        for (del, copy) in pairs {
            let Op::Copy { source, .. } = plan.actions[copy].op.clone() else {
                unreachable!()
            };
            let to = plan.actions[copy].path.clone();
            let d = &mut plan.actions[del];
            d.reason = format!("moved to '{to}' on {}", side.other().word()).into();
            d.op = Op::Rename {
                to,
                source: Some(source),
            };
            d.status = Status::Moved;
            drop.push(copy);
        }
        drop.sort_unstable();
        for i in drop.into_iter().rev() {
            plan.actions.remove(i);
        }
    }
}
