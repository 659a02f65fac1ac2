//! Hard links (pure): names that share one file on the source share one on the target.
//!
//! Link structure is compared apart from content: a name's *anchor* is the first name (in
//! tree order) of the file it belongs to on that side, or the name itself. After the plan's
//! other actions, the target's files are regrouped to match the source's groups: a copy of
//! a file whose group already has a member in place becomes a link (the content is sent
//! once), a name in the wrong group is relinked, and a name that shares a file it should
//! not is given a file of its own. In bidi, links are only ever added (on either side);
//! a link broken on one side is not broken on the other.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Direction;
use crate::path::RelPath;
use crate::plan::{Action, Op, Plan, Side, Status};
use crate::tree::Tree;

fn anchor<'a>(tree: &'a Tree, p: &'a RelPath) -> &'a RelPath {
    tree.get(p).and_then(|e| e.link()).unwrap_or(p)
}

/// Names of each source file with more than one name, by anchor.
fn groups(tree: &Tree) -> HashMap<&RelPath, Vec<&RelPath>> {
    let mut out: HashMap<&RelPath, Vec<&RelPath>> = HashMap::new();
    for (p, e) in &tree.entries {
        if let Some(a) = e.link() {
            out.entry(a).or_insert_with(|| vec![a]).push(p);
        }
    }
    out
}

fn link_action(side: Side, path: &RelPath, to: &RelPath, target: &Tree, source: &Tree) -> Action {
    Action {
        side,
        path: path.clone(),
        op: Op::Link {
            to: to.clone(),
            source: source.get(path).cloned().expect("a source name"),
        },
        expect: target.get(path).cloned().map(Box::new),
        status: Status::Synchronized,
        reason: format!("hard link to '{to}', as on {}", side.other().word()).into(),
        conflict_copy: false,
        restores: false,
    }
}

/// Adds the link actions for `target` (taking `source`'s groups); `split` also gives
/// files of their own to names that share one the source does not.
fn regroup(plan: &mut Plan, target_side: Side, source: &Tree, target: &Tree, split: bool) {
    let src_groups = groups(source);
    // Without a file of several names on either side, every name is its own file already:
    // nothing to link or split (and no per-path bookkeeping to build for a large plan).
    let target_linked = || target.entries.values().any(|e| e.link().is_some());
    if src_groups.is_empty() && (!split || !target_linked()) {
        return;
    }
    // What the plan does at each target path, before links.
    let mut copied: BTreeSet<RelPath> = BTreeSet::new();
    let mut touched: BTreeSet<RelPath> = BTreeSet::new();
    for a in plan.actions.iter().filter(|a| a.side == target_side) {
        // Attribute changes keep the file (and its other names) as it is.
        if matches!(a.op, Op::SetMeta { .. } | Op::Restamp { .. }) {
            continue;
        }
        touched.insert(a.path.clone());
        if let Op::Rename { to, .. } = &a.op {
            touched.insert(to.clone());
        }
        if matches!(&a.op, Op::Copy { source, .. } if source.is_file()) {
            copied.insert(a.path.clone());
        }
    }
    let same_on_both = |p: &RelPath| match (source.get(p), target.get(p)) {
        (Some(s), Some(t)) => {
            s.is_file() && t.is_file() && s.same_content(t) && !touched.contains(p)
        }
        _ => false,
    };

    // A copy whose group has a member already there, or copied first, becomes a link.
    let mut linked: HashMap<RelPath, RelPath> = HashMap::new();
    for a in plan.actions.iter_mut().filter(|a| a.side == target_side) {
        let Op::Copy { from, source: s } = &a.op else {
            continue;
        };
        if from != &a.path || !s.is_file() {
            continue;
        }
        let Some(members) = src_groups.get(anchor(source, &a.path)) else {
            continue;
        };
        let holder = members.iter().copied().find(|m| {
            **m != a.path
                && (same_on_both(m)
                    || (copied.contains(*m) && !linked.contains_key(*m) && *m < &a.path))
        });
        if let Some(m) = holder {
            linked.insert(a.path.clone(), m.clone());
            a.op = Op::Link {
                to: m.clone(),
                source: s.clone(),
            };
            a.reason = format!("hard link to '{m}', as on {}", target_side.other().word()).into();
        }
    }

    // The target's files after the plan: group key per file name (copies stand alone,
    // new links join their holder's group).
    let mut key: BTreeMap<RelPath, RelPath> = BTreeMap::new();
    for (p, e) in &target.entries {
        if e.is_file() && !touched.contains(p) {
            key.insert(p.clone(), anchor(target, p).clone());
        }
    }
    for p in &copied {
        if !linked.contains_key(p) {
            key.insert(p.clone(), p.clone());
        }
    }
    for (p, m) in &linked {
        let k = key.get(m).cloned().unwrap_or_else(|| m.clone());
        key.insert(p.clone(), k);
    }
    let mut extra = Vec::new();
    if split {
        // Each target file keeps the names of one source group (the one of its first name);
        // the first name of every other group gets a file of its own.
        let mut members: BTreeMap<RelPath, Vec<RelPath>> = BTreeMap::new();
        for (p, k) in &key {
            if source.get(p).is_some_and(|e| e.is_file()) {
                members.entry(k.clone()).or_default().push(p.clone());
            }
        }
        for names in members.values().filter(|n| n.len() > 1) {
            let keeper = anchor(source, &names[0]);
            let mut seen = BTreeSet::new();
            for n in names {
                let a = anchor(source, n);
                if a != keeper && seen.insert(a.clone()) && !linked.contains_key(n) {
                    extra.push(Action {
                        side: target_side,
                        path: n.clone(),
                        op: Op::Unlink {
                            source: source.get(n).cloned().expect("a source name"),
                        },
                        expect: target.get(n).cloned().map(Box::new),
                        status: Status::Moved,
                        reason: format!("no longer a hard link on {}", target_side.other().word())
                            .into(),
                        conflict_copy: false,
                        restores: false,
                    });
                    key.insert(n.clone(), n.clone());
                }
            }
        }
    }
    // Every later name of a source group joins its first name's file.
    let keyed = |p: &RelPath| key.get(p).cloned();
    for (a, names) in &src_groups {
        for n in names.iter().filter(|n| *n != a) {
            if linked.contains_key(*n) || !source.get(n).is_some_and(|e| e.is_file()) {
                continue;
            }
            match (keyed(n), keyed(a)) {
                (Some(kn), Some(ka)) if kn != ka => {
                    extra.push(link_action(target_side, n, a, target, source));
                }
                _ => {}
            }
        }
    }
    // A name that gets a new file (its own, or its group's) gets its attributes with it:
    // a separate attribute change would find the file it expected gone.
    let renamed: BTreeSet<RelPath> = extra.iter().map(|a| a.path.clone()).collect();
    plan.actions.retain(|a| {
        !(a.side == target_side
            && matches!(a.op, Op::SetMeta { .. })
            && (renamed.contains(&a.path) || linked.contains_key(&a.path)))
    });
    plan.actions.extend(extra);
}

/// Adds what makes the target's hard links match the source's.
pub fn plan_links(plan: &mut Plan, local: &Tree, remote: &Tree, direction: Direction) {
    match direction {
        Direction::Push => regroup(plan, Side::Remote, local, remote, true),
        Direction::Pull => regroup(plan, Side::Local, remote, local, true),
        Direction::Bidi => {
            regroup(plan, Side::Remote, local, remote, false);
            regroup(plan, Side::Local, remote, local, false);
        }
    }
}
