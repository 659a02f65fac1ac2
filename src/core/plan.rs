//! `Plan`: what reconciliation decided, as actions that each carry the state they expect to
//! replace (so the executor can refuse to overwrite what changed since the scan).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::path::RelPath;
use crate::core::tree::{Entry, Tree};

/// One of the two replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Side {
    /// The `-d` directory.
    Local,
    /// The `-r` side.
    Remote,
}

impl Side {
    /// The other replica.
    pub fn other(self) -> Side {
        match self {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }

    /// `local` or `remote`, as in JSON events.
    pub fn word(self) -> &'static str {
        match self {
            Side::Local => "local",
            Side::Remote => "remote",
        }
    }
}

/// The status words of async's per-file lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Transferred or created.
    Synchronized,
    /// Skipped (source changed while read, or excluded from this run).
    Skipped,
    /// Deleted.
    Deleted,
    /// Duplicate content reused at the destination.
    Dedup,
    /// Already identical on both sides.
    Exists,
    /// Renamed or moved, or only attributes changed.
    Moved,
    /// Left unresolved.
    Conflict,
    /// A corrupt copy replaced by the good one (`tandem verify --repair`).
    Repaired,
}

impl Status {
    /// The word printed on status lines and in JSON, e.g. `SYNCHRONIZED(del)`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Synchronized => "SYNCHRONIZED",
            Status::Skipped => "SYNCHRONIZED(skp)",
            Status::Deleted => "SYNCHRONIZED(del)",
            Status::Dedup => "SYNCHRONIZED(ddp)",
            Status::Exists => "SYNCHRONIZED(exs)",
            Status::Moved => "SYNCHRONIZED(mov)",
            Status::Conflict => "CONFLICT",
            Status::Repaired => "REPAIRED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// What to do at one path on one side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Bring the other side's non-directory entry at `from` here (file contents, symlink or
    /// special file), with its metadata.
    Copy {
        /// Path of the source on the other side (differs from the target for conflict copies).
        from: RelPath,
        /// The source as scanned; the sender re-checks it before and after reading.
        source: Entry,
    },
    /// Create a directory with the source's metadata.
    Mkdir {
        /// The directory on the other side.
        source: Entry,
    },
    /// Remove the entry (a directory is empty by the time this runs).
    Delete,
    /// Rename the entry within this side, then apply `source`'s metadata if given.
    Rename {
        /// New path on the same side.
        to: RelPath,
        /// Metadata to apply after the rename (a detected move of a file whose mode changed).
        source: Option<Entry>,
    },
    /// Change mode, owner or mtime to the source's.
    SetMeta {
        /// The entry whose metadata is copied.
        source: Entry,
    },
    /// Make this path another name of the file at `to` on the same side (a hard link),
    /// replacing what is there: the content is not sent again.
    Link {
        /// The name whose file this becomes.
        to: RelPath,
        /// The source file (what `to` must hold).
        source: Entry,
    },
    /// Give this path a file of its own (a copy made on this side, with the source's
    /// attributes) where it shares one with names it should not.
    Unlink {
        /// The source entry: attributes to apply.
        source: Entry,
    },
    /// Make the file from `from`, a file on this same side with the content the other side's
    /// file has (`--dedup`): copied there (or hard-linked), not sent.
    Dedup {
        /// The file on this side with that content.
        from: RelPath,
        /// What `from` must still be (boxed: a rare op must not make every action larger).
        from_expect: Box<Entry>,
        /// The source file: content digest and attributes to apply (boxed, as above).
        source: Box<Entry>,
        /// Hard-link rather than copy (attributes already match).
        hardlink: bool,
    },
    /// Set a directory's mtime, last of all: writing inside a directory resets it, so every
    /// directory whose contents the run changes (or whose mtime alone differs) gets the
    /// time it should have. Not reported: it is bookkeeping, not news.
    Restamp {
        /// The mtime in nanoseconds.
        mtime_ns: i64,
    },
}

/// The order in which kinds of action run, so each finds what it needs in place:
/// conflict copies out of the way, then non-directory deletions, directories created
/// parent first, moves, directories removed child first, contents, metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Keep-both renames of conflict losers.
    ConflictRename,
    /// Deleting files, symlinks and special files.
    DeleteLeaf,
    /// Creating directories, parents first.
    Mkdir,
    /// Replaying detected moves.
    Move,
    /// Removing directories, children first.
    DeleteDir,
    /// Writing files, symlinks and special files.
    Copy,
    /// Giving names their own file where they shared one they should not.
    Unlink,
    /// Making hard links to files now in place.
    Link,
    /// Attribute changes.
    Meta,
}

/// Why an action is taken, in words for `-v`. Shared: the actions of one subtree all give
/// the same reason, and a million of them would each carry a copy; behind one thin
/// pointer, as every action holds one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason(std::sync::Arc<String>);

impl Reason {
    /// True if both are one and the same copy (shared, not only equal).
    pub fn shares(&self, other: &Reason) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<String> for Reason {
    fn from(s: String) -> Reason {
        Reason(std::sync::Arc::new(s))
    }
}

impl From<&str> for Reason {
    fn from(s: &str) -> Reason {
        s.to_string().into()
    }
}

impl std::ops::Deref for Reason {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Where the change is made.
    pub side: Side,
    /// The path changed (the old path for renames).
    pub path: RelPath,
    /// The change.
    pub op: Op,
    /// What `path` on `side` must still be just before the change (`None`: absent).
    // Boxed: most actions create a path, and a million creations would each carry an
    // empty entry's worth of bytes.
    pub expect: Option<Box<Entry>>,
    /// Status word reported when it succeeds.
    pub status: Status,
    /// Why, for `-v`.
    pub reason: Reason,
    /// True for keep-both conflict renames (run before everything else).
    pub conflict_copy: bool,
    /// True when this brings back what the other side deleted, because this side changed
    /// it (a modification beats a deletion): said on the status line, not only with `-v`.
    pub restores: bool,
}

impl Action {
    /// When this action runs relative to the others.
    pub fn phase(&self) -> Phase {
        match &self.op {
            Op::Rename { .. } if self.conflict_copy => Phase::ConflictRename,
            Op::Rename { .. } => Phase::Move,
            Op::Delete if self.expect.as_deref().is_some_and(|e| e.is_dir()) => Phase::DeleteDir,
            Op::Delete => Phase::DeleteLeaf,
            Op::Mkdir { .. } => Phase::Mkdir,
            Op::Copy { .. } | Op::Dedup { .. } => Phase::Copy,
            Op::Unlink { .. } => Phase::Unlink,
            Op::Link { .. } => Phase::Link,
            Op::SetMeta { .. } | Op::Restamp { .. } => Phase::Meta,
        }
    }

    /// The entry this action leaves at its target path, if it succeeds as planned.
    pub fn result(&self) -> Option<&Entry> {
        match &self.op {
            Op::Copy { source, .. }
            | Op::Mkdir { source }
            | Op::SetMeta { source }
            | Op::Link { source, .. }
            | Op::Unlink { source } => Some(source),
            Op::Dedup { source, .. } => Some(source),
            Op::Rename { source, .. } => source.as_ref().or(self.expect.as_deref()),
            Op::Delete | Op::Restamp { .. } => None,
        }
    }

    /// The path this action leaves its result at (the new name for renames).
    pub fn target(&self) -> &RelPath {
        match &self.op {
            Op::Rename { to, .. } => to,
            _ => &self.path,
        }
    }

    /// Bytes to move for this action (file contents only).
    pub fn bytes(&self) -> u64 {
        match &self.op {
            Op::Copy { source, .. } if source.is_file() => source.size,
            _ => 0,
        }
    }
}

/// How a conflict was settled, if it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    /// Left untouched on both sides.
    Unresolved,
    /// The named side's version was propagated (by `-f`).
    Favored(Side),
    /// Both kept: the loser was renamed to this path on both sides.
    KeptBoth {
        /// The side whose version keeps the original name.
        winner: Side,
        /// The new name of the other version.
        loser_path: RelPath,
    },
}

/// Both sides changed one path differently.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The path (the top of the conflicting subtree).
    pub path: RelPath,
    /// What each side did, in words.
    pub reason: String,
    /// What the policy made of it.
    pub resolution: Resolution,
    /// Only the entry's own attributes conflict (a directory on both sides): what is below
    /// it is decided, and recorded, on its own.
    #[serde(default)]
    pub attributes_only: bool,
}

/// The output of reconciliation: actions in execution order, conflicts, and paths found
/// already identical.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Actions in the order they must run.
    pub actions: Vec<Action>,
    /// Every conflict, resolved or not.
    pub conflicts: Vec<Conflict>,
    /// Paths changed on both sides to the same state, or found identical on a first run.
    pub identical: Vec<RelPath>,
}

impl Plan {
    /// True when nothing is to be done and nothing conflicts.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.conflicts.is_empty()
    }

    /// Conflicts the policy did not settle.
    pub fn unresolved(&self) -> impl Iterator<Item = &Conflict> {
        self.conflicts
            .iter()
            .filter(|c| c.resolution == Resolution::Unresolved)
    }

    /// Puts the actions in execution order: by phase, tree order within a phase, and
    /// children before parents for directory removal.
    pub fn sort(&mut self) {
        let order = |a: &Action, b: &Action| {
            a.phase().cmp(&b.phase()).then_with(|| {
                if a.phase() == Phase::DeleteDir || a.phase() == Phase::Meta {
                    b.path.cmp(&a.path)
                } else {
                    a.path.cmp(&b.path)
                }
            })
        };
        // Sorted by index, then moved into place: a stable sort of the actions themselves
        // would take a scratch list of half of them (36 MB for a million-file push) at
        // the peak of a first run; one of indices takes a ninth of that.
        let actions = &mut self.actions;
        let mut by: Vec<u32> = (0..actions.len() as u32).collect();
        by.sort_by(|&i, &j| order(&actions[i as usize], &actions[j as usize]));
        permute(actions, by);
    }

    /// Deletions planned on one side.
    pub fn deletions(&self, side: Side) -> usize {
        self.actions
            .iter()
            .filter(|a| a.side == side && a.op == Op::Delete)
            .count()
    }
}

/// Rearranges `items` so that position `k` holds what was at `from[k]` (a permutation),
/// in place: each cycle of the permutation is walked once, carrying its first item along.
fn permute<T>(items: &mut [T], mut from: Vec<u32>) {
    for start in 0..items.len() {
        let mut at = start;
        loop {
            let next = from[at] as usize;
            // Marks the position as holding its final item.
            from[at] = at as u32;
            if next == start || next == at {
                break;
            }
            items.swap(at, next);
            at = next;
        }
    }
}

/// Updates one side's tree as `action` changed it; `result` is the entry now at the target
/// (the executor's re-stat after the change, or the plan's own prediction).
pub fn apply_to(tree: &mut Tree, action: &Action, result: Option<Entry>) {
    match &action.op {
        Op::Delete => tree.remove_subtree(&action.path),
        Op::Rename { to, .. } => {
            let moved: Vec<(RelPath, Entry)> = tree
                .descendants(&action.path)
                .map(|(p, e)| (p.rebase(&action.path, to), e.clone()))
                .collect();
            tree.remove_subtree(&action.path);
            tree.entries.extend(moved);
            if let Some(e) = result {
                tree.insert(to.clone(), e);
            }
        }
        Op::Copy { .. }
        | Op::Dedup { .. }
        | Op::Mkdir { .. }
        | Op::SetMeta { .. }
        | Op::Link { .. }
        | Op::Unlink { .. } => {
            if let Some(e) = result {
                tree.insert(action.path.clone(), e);
            }
        }
        Op::Restamp { mtime_ns } => match result {
            Some(e) => tree.insert(action.path.clone(), e),
            None => {
                if let Some(e) = tree.entries.get_mut(&action.path) {
                    e.mtime_ns = *mtime_ns;
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permutation_puts_each_item_where_it_is_asked_for() {
        // Identity, one long cycle, several cycles and fixed points, reversal.
        let orders: [&[u32]; 5] = [
            &[],
            &[0, 1, 2],
            &[1, 2, 3, 4, 0],
            &[2, 0, 1, 3, 5, 4, 6],
            &[6, 5, 4, 3, 2, 1, 0],
        ];
        for from in orders {
            let mut items: Vec<u32> = (100..100 + from.len() as u32).collect();
            permute(&mut items, from.to_vec());
            let want: Vec<u32> = from.iter().map(|&k| 100 + k).collect();
            assert_eq!(items, want, "from {from:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_permutation_is_applied_exactly(keys in proptest::collection::vec(0u32..50, 0..200)) {
            // The order that sorts random keys (stably) is a random permutation.
            let mut from: Vec<u32> = (0..keys.len() as u32).collect();
            from.sort_by_key(|&i| keys[i as usize]);
            let want: Vec<u32> = from.iter().map(|&i| keys[i as usize]).collect();
            let mut items = keys.clone();
            permute(&mut items, from);
            proptest::prop_assert_eq!(items, want);
        }
    }

    /// A plan holds one action per changed path: a million-file first run holds a million.
    #[test]
    fn actions_stay_small() {
        let (action, op, entry) = (
            std::mem::size_of::<Action>(),
            std::mem::size_of::<Op>(),
            std::mem::size_of::<Entry>(),
        );
        // An op is at most an entry, a path and its tag; an action adds its path, the
        // expected entry's box, the reason's pointer and a few flags.
        assert!(op <= entry + 16, "Op is {op} bytes, Entry {entry}");
        assert!(action <= op + 32, "Action is {action} bytes, Op {op}");
    }
}
