//! Hard links (pure): names that share one file on the source share one on the target.
//!
//! Link structure is compared apart from content: a name's *anchor* is the first name (in
//! tree order) of the file it belongs to on that side, or the name itself. After the plan's
//! other actions, the target's files are regrouped to match the source's groups: a copy of
//! a file whose group already has a member in place becomes a link (the content is sent
//! once), a name in the wrong group is relinked, and a name that shares a file it should
//! not is given a file of its own. In bidi, each side takes the other's link changes since
//! the baseline (a name added to a group, a link made or broken) where its own links did
//! not change; where both changed, each keeps its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Direction;
use crate::core::path::RelPath;
use crate::core::plan::{Action, Op, Plan, Side, Status};
use crate::core::tree::Tree;

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
    let r = Regroup {
        side: target_side,
        source,
        target,
        groups: groups(source),
    };
    // Without a file of several names on either side, every name is its own file already:
    // nothing to link or split (and no per-path bookkeeping to build for a large plan).
    let target_linked = || target.entries.values().any(|e| e.link().is_some());
    if r.groups.is_empty() && (!split || !target_linked()) {
        return;
    }
    let planned = r.planned(plan);
    let linked = r.link_copies(plan, &planned);
    let mut key = r.keys_after(&planned, &linked);
    let mut extra = if split {
        r.split(&linked, &mut key)
    } else {
        Vec::new()
    };
    extra.extend(r.join(&linked, &key));
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

/// One side being regrouped after the source's groups.
struct Regroup<'a> {
    /// The side whose files are regrouped.
    side: Side,
    source: &'a Tree,
    target: &'a Tree,
    /// The source's files of several names, by anchor.
    groups: HashMap<&'a RelPath, Vec<&'a RelPath>>,
}

/// What the plan does at the target's paths, before links.
struct Planned {
    /// Paths a regular file is copied to.
    copied: BTreeSet<RelPath>,
    /// Paths created, replaced, deleted or renamed from or to (attribute changes aside).
    touched: BTreeSet<RelPath>,
}

impl Regroup<'_> {
    fn planned(&self, plan: &Plan) -> Planned {
        let mut copied = BTreeSet::new();
        let mut touched = BTreeSet::new();
        for a in plan.actions.iter().filter(|a| a.side == self.side) {
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
        Planned { copied, touched }
    }

    /// A copy whose group has a member already there, or copied first, becomes a link;
    /// returns each such name with the member it links to.
    fn link_copies(&self, plan: &mut Plan, planned: &Planned) -> HashMap<RelPath, RelPath> {
        let same_on_both = |p: &RelPath| match (self.source.get(p), self.target.get(p)) {
            (Some(s), Some(t)) => {
                s.is_file() && t.is_file() && s.same_content(t) && !planned.touched.contains(p)
            }
            _ => false,
        };
        let mut linked: HashMap<RelPath, RelPath> = HashMap::new();
        for a in plan.actions.iter_mut().filter(|a| a.side == self.side) {
            let Op::Copy { from, source: s } = &a.op else {
                continue;
            };
            if from != &a.path || !s.is_file() {
                continue;
            }
            let Some(members) = self.groups.get(anchor(self.source, &a.path)) else {
                continue;
            };
            let holder = members.iter().copied().find(|m| {
                **m != a.path
                    && (same_on_both(m)
                        || (planned.copied.contains(*m)
                            && !linked.contains_key(*m)
                            && *m < &a.path))
            });
            if let Some(m) = holder {
                linked.insert(a.path.clone(), m.clone());
                a.op = Op::Link {
                    to: m.clone(),
                    source: s.clone(),
                };
                a.reason = format!("hard link to '{m}', as on {}", self.side.other().word()).into();
            }
        }
        linked
    }

    /// The target's files after the plan: group key per file name (copies stand alone,
    /// new links join their holder's group).
    fn keys_after(
        &self,
        planned: &Planned,
        linked: &HashMap<RelPath, RelPath>,
    ) -> BTreeMap<RelPath, RelPath> {
        let mut key: BTreeMap<RelPath, RelPath> = BTreeMap::new();
        for (p, e) in &self.target.entries {
            if e.is_file() && !planned.touched.contains(p) {
                key.insert(p.clone(), anchor(self.target, p).clone());
            }
        }
        for p in &planned.copied {
            if !linked.contains_key(p) {
                key.insert(p.clone(), p.clone());
            }
        }
        for (p, m) in linked {
            let k = key.get(m).cloned().unwrap_or_else(|| m.clone());
            key.insert(p.clone(), k);
        }
        key
    }

    /// Each target file keeps the names of one source group (the one of its first name);
    /// the first name of every other group gets a file of its own.
    fn split(
        &self,
        linked: &HashMap<RelPath, RelPath>,
        key: &mut BTreeMap<RelPath, RelPath>,
    ) -> Vec<Action> {
        let mut members: BTreeMap<RelPath, Vec<RelPath>> = BTreeMap::new();
        for (p, k) in key.iter() {
            if self.source.get(p).is_some_and(|e| e.is_file()) {
                members.entry(k.clone()).or_default().push(p.clone());
            }
        }
        let mut extra = Vec::new();
        for names in members.values().filter(|n| n.len() > 1) {
            let keeper = anchor(self.source, &names[0]);
            let mut seen = BTreeSet::new();
            for n in names {
                let a = anchor(self.source, n);
                if a != keeper && seen.insert(a.clone()) && !linked.contains_key(n) {
                    extra.push(self.unlink_action(n));
                    key.insert(n.clone(), n.clone());
                }
            }
        }
        extra
    }

    /// A name given a file of its own.
    fn unlink_action(&self, n: &RelPath) -> Action {
        Action {
            side: self.side,
            path: n.clone(),
            op: Op::Unlink {
                source: self.source.get(n).cloned().expect("a source name"),
            },
            expect: self.target.get(n).cloned().map(Box::new),
            status: Status::Moved,
            reason: format!("no longer a hard link on {}", self.side.other().word()).into(),
            conflict_copy: false,
            restores: false,
        }
    }

    /// Every later name of a source group joins its first name's file.
    fn join(
        &self,
        linked: &HashMap<RelPath, RelPath>,
        key: &BTreeMap<RelPath, RelPath>,
    ) -> Vec<Action> {
        let mut extra = Vec::new();
        for (a, names) in &self.groups {
            for n in names.iter().filter(|n| *n != a) {
                if linked.contains_key(*n) || !self.source.get(n).is_some_and(|e| e.is_file()) {
                    continue;
                }
                match (key.get(*n), key.get(*a)) {
                    (Some(kn), Some(ka)) if kn != ka => {
                        extra.push(link_action(self.side, n, a, self.target, self.source));
                    }
                    _ => {}
                }
            }
        }
        extra
    }
}

/// Adds what makes the target's hard links match the source's; in bidi, a side's link
/// changes since the baseline are carried to the other side where its links did not change.
pub fn plan_links(plan: &mut Plan, base: &Tree, local: &Tree, remote: &Tree, direction: Direction) {
    match direction {
        Direction::Push => regroup(plan, Side::Remote, local, remote, true),
        Direction::Pull => regroup(plan, Side::Local, remote, local, true),
        Direction::Bidi => {
            let linked = |t: &Tree| t.entries.values().any(|e| e.link().is_some());
            if !(linked(base) || linked(local) || linked(remote)) {
                return;
            }
            let held = Held::of(plan);
            let to_remote = wanted_links(base, local, remote, &held.for_target(Side::Remote));
            regroup(plan, Side::Remote, &to_remote, remote, true);
            let to_local = wanted_links(base, remote, local, &held.for_target(Side::Local));
            regroup(plan, Side::Local, &to_local, local, true);
        }
    }
}

/// What the plan does to each name's content in bidi, by side.
struct Held {
    /// Names whose content the plan writes on each side (`[local, remote]`).
    written: [BTreeSet<RelPath>; 2],
    /// Names in a conflict (and below one): their links are left as they are.
    conflicted: Vec<RelPath>,
}

/// [`Held`], seen from the side being regrouped.
struct Seen<'h> {
    /// Names the source's content goes to the target.
    to_target: &'h BTreeSet<RelPath>,
    /// Names the target's content goes to the source.
    to_source: &'h BTreeSet<RelPath>,
    conflicted: &'h [RelPath],
}

impl Held {
    fn of(plan: &Plan) -> Held {
        let mut written: [BTreeSet<RelPath>; 2] = Default::default();
        for a in &plan.actions {
            if matches!(
                a.op,
                Op::Copy { .. } | Op::Link { .. } | Op::Dedup { .. } | Op::Delete
            ) {
                written[a.side as usize].insert(a.path.clone());
            }
        }
        let conflicted = plan.conflicts.iter().map(|c| c.path.clone()).collect();
        Held {
            written,
            conflicted,
        }
    }

    fn for_target(&self, target: Side) -> Seen<'_> {
        Seen {
            to_target: &self.written[target as usize],
            to_source: &self.written[target.other() as usize],
            conflicted: &self.conflicted,
        }
    }
}

/// The links `target` should have after a bidi run, on `source`'s entries. A name whose
/// content goes from source to target takes the source's link with it; one whose content
/// stays the target's, or that is in a conflict, keeps the target's. Otherwise (content
/// alike) a name takes `source`'s link where that changed since the baseline and
/// `target`'s did not. Names new on `source` take its links.
fn wanted_links(base: &Tree, source: &Tree, target: &Tree, seen: &Seen<'_>) -> Tree {
    let link = |t: &Tree, p: &RelPath| t.get(p).and_then(|e| e.link()).cloned();
    let mut wanted = source.clone();
    for (p, e) in wanted.entries.iter_mut().filter(|(_, e)| e.is_file()) {
        let Some(t) = target.get(p).filter(|t| t.is_file()) else {
            continue;
        };
        let take_source = if seen.conflicted.iter().any(|c| p.starts_with(c)) {
            false
        } else if seen.to_target.contains(p) {
            true
        } else if seen.to_source.contains(p) {
            false
        } else {
            let was = link(base, p);
            e.link().cloned() != was && t.link().cloned() == was
        };
        if !take_source {
            e.set_link(t.link().cloned());
        }
    }
    wanted
}
