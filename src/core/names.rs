//! Names on roots that fold them (pure): a root that ignores case (NTFS, APFS, HFS+) or
//! Unicode normal form (APFS, HFS+) holds one entry where a case-sensitive root holds
//! two, and may list a name in another spelling than it was written with (HFS+ lists
//! NFD, ntfs-3g with `ignore_case` lists lower case).
//!
//! Before reconciliation, [`align`] looks at each side that folds and will be written to:
//! - names of the other side that are one name here (`README` and `readme`) are a
//!   collision: held like an unreadable path (nothing at or below them is decided and
//!   their baseline stays), and reported as a conflict naming all of them;
//! - an entry here that is the other side's entry under another spelling is renamed in
//!   this side's tree to the agreed spelling, so reconciliation sees one entry, not a
//!   deletion and a creation. Where this side keeps spellings, the disk is renamed to
//!   match afterwards (a case-only rename, carried as a rename), see [`Alignment::renames`].
//!
//! The key two names collide under, [`NameRules::key`], folds more than any one of these
//! filesystems does (each uses its own table: NTFS an upcase table of UTF-16 units, HFS+
//! a fixed Unicode 2.1 table, APFS full case folding of NFD): folding too much only makes
//! a conflict of two names the target could have held apart, folding too little could
//! write one over the other.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::core::merge::merge;
use crate::core::path::RelPath;
use crate::core::plan::{Action, Conflict, Op, Plan, Resolution, Side, Status};
use crate::core::reconcile::Direction;
use crate::core::tree::Tree;

/// What a root does to names, probed at scan time; the default (also for a root that could
/// not be probed, such as a read-only one) is a case-sensitive root that keeps names as
/// written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRules {
    /// Names that differ only in case are one entry.
    pub folds_case: bool,
    /// Names that differ only in Unicode normal form (NFC, NFD) are one entry.
    pub folds_form: bool,
    /// A listing may spell a name otherwise than it was written (another case, NFD for
    /// NFC): the spelling a listing returns is not news.
    pub respells: bool,
    /// What a listing respells is the Unicode normal form only, never the case (HFS+
    /// lists NFD, with the case a name was written in): there another case in a listing
    /// is news, and a case-only rename changes what is listed. False for roots probed
    /// before this was asked, which are taken to respell anything, as before.
    #[serde(default)]
    pub respells_only_form: bool,
}

impl NameRules {
    /// True when two different names can be one entry here.
    pub fn folds(&self) -> bool {
        self.folds_case || self.folds_form
    }

    /// The name two paths share when they are one entry on this root: NFC (when forms
    /// fold), then each character upper- then lower-cased (when case folds: std's full
    /// Unicode mappings; the round trip also folds `ſ` to `s` and `ß` to `ss`, as full
    /// case folding does). Bytes that are not UTF-8 fold their ASCII letters only.
    pub fn key<'a>(&self, path: &'a [u8]) -> Cow<'a, [u8]> {
        if !self.folds() {
            return Cow::Borrowed(path);
        }
        if path.is_ascii() {
            if !self.folds_case || !path.iter().any(u8::is_ascii_uppercase) {
                return Cow::Borrowed(path);
            }
            return Cow::Owned(path.to_ascii_lowercase());
        }
        let Ok(s) = std::str::from_utf8(path) else {
            return match self.folds_case {
                true => Cow::Owned(path.to_ascii_lowercase()),
                false => Cow::Borrowed(path),
            };
        };
        let formed: Cow<'_, str> = match self.folds_form {
            true => Cow::Owned(s.nfc().collect()),
            false => Cow::Borrowed(s),
        };
        if !self.folds_case {
            return Cow::Owned(formed.into_owned().into_bytes());
        }
        let folded: String = formed
            .chars()
            .flat_map(char::to_uppercase)
            .flat_map(char::to_lowercase)
            .collect();
        // Lower-casing can decompose (`İ` becomes `i` and a combining dot).
        let folded = match self.folds_form {
            true => folded.nfc().collect(),
            false => folded,
        };
        Cow::Owned(folded.into_bytes())
    }

    /// True when this root may list a path written as `written` as `listed` of its own
    /// accord (so nobody renamed it): the same bytes; on a root that respells, names
    /// that are one here, and only in normal form where it respells only that.
    pub fn may_list_as(&self, written: &[u8], listed: &[u8]) -> bool {
        if written == listed || !self.respells {
            return written == listed;
        }
        if !self.respells_only_form {
            return true;
        }
        let form = NameRules {
            folds_form: true,
            ..NameRules::default()
        };
        form.key(written) == form.key(listed)
    }

    /// How this root folds, in words for messages: "ignores case and Unicode form".
    pub fn words(&self) -> &'static str {
        match (self.folds_case, self.folds_form) {
            (true, true) => "ignores case and Unicode normal form",
            (true, false) => "ignores case",
            (false, true) => "ignores Unicode normal form",
            (false, false) => "keeps names apart",
        }
    }
}

/// What attributes a root keeps as written, probed at scan time; the default (also for a
/// root that could not be probed) keeps everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holds {
    /// Permission bits (not on NTFS through ntfs-3g, FAT, many SMB mounts).
    pub modes: bool,
    /// Owner and group (probed as root only; FAT and ntfs-3g keep none).
    pub owners: bool,
    /// The step of its modification times in nanoseconds: 1 on ext4, 100 on NTFS,
    /// 1,000,000,000 on HFS+ (FAT's 2 s too).
    pub mtime_step_ns: u32,
}

impl Default for Holds {
    fn default() -> Holds {
        Holds {
            modes: true,
            owners: true,
            mtime_step_ns: 1,
        }
    }
}

impl Holds {
    /// What this root cannot keep, in words ("permission bits, owners"), if anything.
    pub fn lacks(&self) -> Option<String> {
        let mut l = Vec::new();
        if !self.modes {
            l.push("permission bits".to_string());
        }
        if !self.owners {
            l.push("owners".into());
        }
        if self.mtime_step_ns > 1 {
            l.push(format!("times finer than {} ns", self.mtime_step_ns));
        }
        (!l.is_empty()).then(|| l.join(", "))
    }
}

/// Takes what a side cannot keep out of the comparison: where a side lacks an attribute,
/// its entries take the other side's value of it when the two entries are otherwise one
/// state (same kind and size; times equal at the side's step, files of known equal content;
/// run after hashing). So a mode the target
/// cannot hold is not reported as changed on every run; the disk is never asked for it.
pub fn accommodate(trees: &mut [Tree; 2], holds: [Holds; 2]) {
    for side in [Side::Local, Side::Remote] {
        let h = holds[side as usize];
        if h.modes && h.owners && h.mtime_step_ns <= 1 {
            continue;
        }
        let step = i64::from(h.mtime_step_ns.max(1));
        let [a, b] = trees;
        let (own, other) = match side {
            Side::Local => (a, &*b),
            Side::Remote => (b, &*a),
        };
        for (p, e) in own.entries.iter_mut() {
            let Some(o) = other.get(p) else { continue };
            if e.kind != o.kind || e.size != o.size {
                continue;
            }
            // A step's worth of truncation either way: the copy's time is the source's
            // rounded down (NTFS) or to the nearest (some SMB servers).
            let near =
                |x: i64, y: i64| x.div_euclid(step) == y.div_euclid(step) || (x - y).abs() < step;
            // A file's time only where its content is known to be the same: an action that
            // replaces it checks the disk's time against the tree's.
            let same = !e.is_file() || (e.digest.is_some() && e.digest == o.digest);
            let mtime = if same && near(e.mtime_ns, o.mtime_ns) {
                o.mtime_ns
            } else {
                e.mtime_ns
            };
            let mode = if h.modes || e.is_symlink() {
                e.mode
            } else {
                o.mode
            };
            let (uid, gid) = if h.owners {
                (e.uid, e.gid)
            } else {
                (o.uid, o.gid)
            };
            if (mtime, mode, uid, gid) != (e.mtime_ns, e.mode, e.uid, e.gid) {
                let m = &mut **e;
                m.mtime_ns = mtime;
                m.mode = mode;
                m.uid = uid;
                m.gid = gid;
            }
        }
    }
}

/// Names that are one name on `side`: none of them is decided this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collision {
    /// The side that cannot hold them apart.
    pub side: Side,
    /// Every name involved, in tree order.
    pub names: Vec<RelPath>,
    /// What happened, in words.
    pub why: String,
}

/// An entry of `side` known to reconciliation as `name`, which that side's disk spells
/// `on_disk` (the same entry: the side folds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Respelled {
    /// The side whose tree was renamed.
    pub side: Side,
    /// The agreed spelling.
    pub name: RelPath,
    /// The spelling the scan found.
    pub on_disk: RelPath,
    /// The side keeps spellings: its disk is renamed to `name` after reconciliation.
    pub rename: bool,
}

/// What [`align`] did to the trees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alignment {
    /// Groups of names held back as conflicts.
    pub collisions: Vec<Collision>,
    /// Entries renamed in a tree to the agreed spelling (only those whose own name
    /// changed, not their descendants).
    pub respelled: Vec<Respelled>,
    /// The baseline's spelling of some entry changed too: it must be written again.
    pub base_respelled: bool,
}

/// How a collision is marked among a tree's problems: a path whose state is not decided
/// this run (cleared and found again by every [`align`]).
pub const COLLIDES: &str = "names collide on a side that folds them";

/// Aligns the spellings of both trees for reconciliation and holds back names that
/// collide on a side that folds them (see the module's description). Only sides written
/// to are looked at: both in bidi, the replica in push and pull.
pub fn align(
    base: &mut Tree,
    trees: &mut [Tree; 2],
    rules: [NameRules; 2],
    direction: Direction,
) -> Alignment {
    for t in trees.iter_mut() {
        t.problems.retain(|_, why| why != COLLIDES);
    }
    let mut out = Alignment::default();
    let targets: &[Side] = match direction {
        Direction::Push => &[Side::Remote],
        Direction::Pull => &[Side::Local],
        Direction::Bidi => &[Side::Local, Side::Remote],
    };
    // Decided on the trees as scanned, then applied: the second side's decisions must
    // not see the first side's renames.
    let mut decided: Vec<(Side, HashMap<RelPath, RelPath>, NameRules)> = Vec::new();
    let mut base_renames = HashMap::new();
    for &side in targets {
        let r = rules[side as usize];
        if !r.folds() {
            continue;
        }
        let (own, other) = (&trees[side as usize], &trees[side.other() as usize]);
        let mut renames = HashMap::new();
        for group in groups(base, own, other, r) {
            let renamed = decide_group(side, r, direction, &group, &mut out.collisions);
            if let Some((s, c)) = renamed {
                // The baseline spelled it as this side did: it follows, so reconciliation
                // compares one entry under one name in all three trees.
                if group.having(2) == [&s] {
                    base_renames.insert(s.clone(), c.clone());
                }
                renames.insert(s, c);
            }
        }
        decided.push((side, renames, r));
    }
    out.base_respelled = !respell(base, &base_renames).is_empty();
    for (side, renames, r) in decided {
        let tree = &mut trees[side as usize];
        for (on_disk, name) in respell(tree, &renames) {
            // Renamed on disk where that changes what the root lists: not for a
            // spelling it would list anyway (it would be renamed again every run).
            let rename = !r.may_list_as(name.name(), on_disk.name());
            out.respelled.push(Respelled {
                side,
                name,
                on_disk,
                rename,
            });
        }
    }
    // Both sides of a bidi run may find the same names colliding: reported once.
    let mut seen = HashSet::new();
    out.collisions.retain(|c| seen.insert(c.names.clone()));
    for c in &out.collisions {
        for name in &c.names {
            trees[c.side as usize]
                .problems
                .insert(name.clone(), COLLIDES.into());
        }
    }
    out.respelled
        .sort_by(|a, b| (a.side, &a.name).cmp(&(b.side, &b.name)));
    out
}

/// One group of paths that are one name on the folding side: each path with whether the
/// folding side (`own`), the other side and the baseline have it.
struct Group {
    paths: Vec<(RelPath, [bool; 3])>,
}

impl Group {
    fn having(&self, k: usize) -> Vec<&RelPath> {
        self.paths
            .iter()
            .filter(|(_, has)| has[k])
            .map(|(p, _)| p)
            .collect()
    }
}

/// Every group of two or more paths (of the three trees) with one key under `rules`.
fn groups(base: &Tree, own: &Tree, other: &Tree, rules: NameRules) -> Vec<Group> {
    // Hashes of the keys first, sorted: a million paths cost a million small records,
    // not a million keys kept; only paths sharing a hash get their keys compared.
    let mut hashed: Vec<(u64, &RelPath, [bool; 3])> =
        merge([&own.entries, &other.entries, &base.entries])
            .map(|(p, row)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                rules.key(p.as_bytes()).hash(&mut h);
                (h.finish(), p, row.map(|e| e.is_some()))
            })
            .collect();
    hashed.sort_by_key(|(h, p, _)| (*h, (*p).clone()));
    let mut out = Vec::new();
    for run in hashed.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
        let mut by_key: HashMap<Cow<'_, [u8]>, Group> = HashMap::new();
        for (_, p, has) in run {
            by_key
                .entry(rules.key(p.as_bytes()))
                .or_insert_with(|| Group { paths: Vec::new() })
                .paths
                .push(((*p).clone(), *has));
        }
        out.extend(by_key.into_values().filter(|g| g.paths.len() > 1));
    }
    out.sort_by(|a, b| a.paths[0].0.cmp(&b.paths[0].0));
    out
}

/// Decides one group for the folding side `side`: a collision (added to `collisions`), a
/// respelling (returned as spelling on disk and agreed spelling), or nothing.
fn decide_group(
    side: Side,
    rules: NameRules,
    direction: Direction,
    group: &Group,
    collisions: &mut Vec<Collision>,
) -> Option<(RelPath, RelPath)> {
    let (own, other, base) = (group.having(0), group.having(1), group.having(2));
    let mut names: Vec<RelPath> = own.iter().chain(&other).map(|p| (*p).clone()).collect();
    names.sort();
    names.dedup();
    let quoted = || {
        let q: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        q.join(" and ")
    };
    if other.len() > 1 || own.len() > 1 {
        let holder = if other.len() > 1 { side.other() } else { side };
        collisions.push(Collision {
            side,
            why: format!(
                "{} on {} are one name on {} (it {}): neither is written there; \
                 rename all but one of them",
                quoted(),
                holder.word(),
                side.word(),
                rules.words()
            ),
            names,
        });
        return None;
    }
    let base = (base.len() == 1).then(|| base[0]);
    match (own.first(), other.first()) {
        (Some(&s), Some(&o)) if s != o => {
            let bidi = direction == Direction::Bidi;
            // A side that keeps spellings and now spells the name otherwise than the
            // baseline renamed it (case only): its spelling wins, unless the other
            // side renamed it too.
            let renamed_here =
                bidi && base.is_some_and(|b| !rules.may_list_as(b.as_bytes(), s.as_bytes()));
            let renamed_there = base.is_some_and(|b| b != o);
            match (renamed_here, renamed_there) {
                (true, true) => collisions.push(Collision {
                    side,
                    why: format!(
                        "{} are one entry renamed differently on each side \
                         (case or Unicode form only): left as they are; rename one \
                         side to the other's spelling",
                        quoted()
                    ),
                    names,
                }),
                (true, false) => {}
                (false, _) => return Some((s.clone(), o.clone())),
            }
            None
        }
        // The other side has none of the names, but the baseline knows the entry under
        // another spelling: a side whose listings respell it still has that entry.
        (Some(&s), None) if direction == Direction::Bidi => base
            .filter(|b| *b != s && rules.may_list_as(b.as_bytes(), s.as_bytes()))
            .map(|b| (s.clone(), b.clone())),
        _ => None,
    }
}

/// Renames the entries of `tree` named in `renames` (on disk → agreed), their descendants
/// with them, keeping tree order: each path's parent is where its parent went, its own
/// name is its agreed one. Returns the (on disk, agreed) pairs of the entries whose own
/// name changed.
fn respell(tree: &mut Tree, renames: &HashMap<RelPath, RelPath>) -> Vec<(RelPath, RelPath)> {
    if renames.is_empty() {
        return Vec::new();
    }
    let mut tops: Vec<&RelPath> = renames.keys().collect();
    tops.sort();
    let mut affected: Vec<RelPath> = Vec::new();
    for top in tops {
        affected.push(top.clone());
        affected.extend(tree.descendants(top).map(|(p, _)| p.clone()));
    }
    affected.sort();
    affected.dedup();
    let mut moved: HashMap<RelPath, RelPath> = HashMap::new();
    let mut own_changed = Vec::new();
    let mut entries = Vec::new();
    for p in affected {
        let parent = p.parent().map(|d| moved.get(&d).cloned().unwrap_or(d));
        let name = renames.get(&p).map_or(p.name(), |to| to.name());
        let Ok(new) = (match &parent {
            Some(d) => d.join(name),
            None => RelPath::from_name(name),
        }) else {
            continue;
        };
        if let Some(e) = tree.entries.remove(&p) {
            entries.push((new.clone(), e));
        }
        if name != p.name() {
            own_changed.push((p.clone(), new.clone()));
        }
        if new != p {
            moved.insert(p, new);
        }
    }
    for (p, e) in entries {
        tree.insert(p, e);
    }
    own_changed
}

/// Adds what an alignment means to a plan: a conflict per collision, and on sides that
/// keep spellings a rename of each respelled entry to its agreed spelling (run with the
/// moves, before anything is written there), unless the plan removes that entry there.
pub fn finish_plan(plan: &mut Plan, alignment: &Alignment, trees: &[Tree; 2]) {
    for c in &alignment.collisions {
        plan.conflicts.push(Conflict {
            path: c.names[0].clone(),
            reason: c.why.clone(),
            resolution: Resolution::Unresolved,
            attributes_only: false,
        });
    }
    let removed: HashSet<(Side, &RelPath)> = plan
        .actions
        .iter()
        .filter(|a| matches!(a.op, Op::Delete | Op::Rename { .. }))
        .map(|a| (a.side, &a.path))
        .collect();
    let mut renames = Vec::new();
    for r in alignment.respelled.iter().filter(|r| r.rename) {
        let Some(entry) = trees[r.side as usize].get(&r.name) else {
            continue;
        };
        if removed.contains(&(r.side, &r.name)) {
            continue;
        }
        renames.push(Action {
            side: r.side,
            path: r.on_disk.clone(),
            op: Op::Rename {
                to: r.name.clone(),
                source: None,
            },
            expect: Some(Box::new(entry.clone())),
            status: Status::Moved,
            reason: format!(
                "spelled '{}' on {} (case or Unicode form only): renamed to match",
                r.name,
                r.side.other().word()
            )
            .into(),
            conflict_copy: false,
            restores: false,
        });
    }
    if !renames.is_empty() {
        plan.actions.extend(renames);
        plan.sort();
    }
}

#[cfg(test)]
mod tests;
