//! Safety checks before anything is changed (pure): mass deletions and roots that are no
//! longer the directories the baseline was made with (filesync's "wrong file system").

use std::fmt;

use crate::core::plan::{Plan, Side};

/// A limit on deletions from `--max-delete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteLimit {
    /// At most this many entries per side.
    Count(u64),
    /// At most this percentage of a side's entries.
    Percent(u32),
}

/// Something that needs confirmation before the plan runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Concern {
    /// The plan deletes many entries on one side.
    MassDeletion {
        /// The side losing entries.
        side: Side,
        /// Entries to delete.
        count: usize,
        /// Entries on that side now.
        total: usize,
    },
    /// A root's device/inode differs from the one recorded in the baseline.
    RootChanged {
        /// Which root.
        side: Side,
    },
    /// `--max-delete` would be exceeded (never overridden by `-y`).
    OverLimit {
        /// The side losing entries.
        side: Side,
        /// Entries to delete.
        count: usize,
        /// The limit as typed.
        limit: DeleteLimit,
    },
}

impl Concern {
    /// True if `-y` or a "yes" at the prompt may override it.
    pub fn confirmable(&self) -> bool {
        !matches!(self, Concern::OverLimit { .. })
    }
}

impl fmt::Display for Concern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Concern::MassDeletion { side, count, total } => write!(
                f,
                "this run would delete {count} of {total} entries on the {} side",
                side.word()
            ),
            Concern::RootChanged { side } => write!(
                f,
                "the {} root is not the directory this session last synchronized (its device/inode changed): is the right disk mounted?",
                side.word()
            ),
            Concern::OverLimit { side, count, limit } => {
                let l = match limit {
                    DeleteLimit::Count(n) => n.to_string(),
                    DeleteLimit::Percent(p) => format!("{p}%"),
                };
                write!(f, "this run would delete {count} entries on the {} side, more than --max-delete {l}", side.word())
            }
        }
    }
}

/// Deletions above both of these trigger the default check (SPEC §6).
const MASS_DELETE_COUNT: usize = 50;
const MASS_DELETE_PERCENT: usize = 25;

/// Lists what needs confirmation: `sizes` are the entry counts per side (`[local, remote]`),
/// `root_changed` whether each root's identity differs from the baseline's.
pub fn check(
    plan: &Plan,
    sizes: [usize; 2],
    root_changed: [bool; 2],
    limit: Option<DeleteLimit>,
) -> Vec<Concern> {
    let mut out = Vec::new();
    for (k, side) in [Side::Local, Side::Remote].into_iter().enumerate() {
        let count = plan.deletions(side);
        let total = sizes[k];
        match limit {
            Some(limit) => {
                let over = match limit {
                    DeleteLimit::Count(n) => count as u64 > n,
                    DeleteLimit::Percent(p) => count * 100 > total * p as usize,
                };
                if over {
                    out.push(Concern::OverLimit { side, count, limit });
                }
            }
            None => {
                if count > MASS_DELETE_COUNT && count * 100 > total * MASS_DELETE_PERCENT {
                    out.push(Concern::MassDeletion { side, count, total });
                }
            }
        }
        if root_changed[k] {
            out.push(Concern::RootChanged { side });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::{Action, Op, Status};
    use crate::core::tree::{Entry, EntryKind, Meta, Stamp};

    fn deletes(side: Side, n: usize) -> Plan {
        let e = Entry::of(
            Meta {
                kind: EntryKind::File,
                size: 1,
                mtime_ns: 0,
                mode: 0o644,
                uid: 0,
                gid: 0,
                digest: None,
                extra: None,
            },
            Stamp::default(),
        );
        let actions = (0..n)
            .map(|i| Action {
                side,
                path: crate::core::path::RelPath::new(format!("f{i}").into_bytes()).unwrap(),
                op: Op::Delete,
                expect: Some(Box::new(e.clone())),
                status: Status::Deleted,
                reason: "".into(),
                conflict_copy: false,
                restores: false,
            })
            .collect();
        Plan {
            actions,
            ..Plan::default()
        }
    }

    #[test]
    fn thresholds() {
        assert!(
            check(&deletes(Side::Remote, 51), [0, 100], [false; 2], None).contains(
                &Concern::MassDeletion {
                    side: Side::Remote,
                    count: 51,
                    total: 100
                }
            )
        );
        assert!(
            check(&deletes(Side::Remote, 50), [0, 100], [false; 2], None)
                .iter()
                .all(|c| !matches!(c, Concern::MassDeletion { .. }))
        );
        assert!(
            check(&deletes(Side::Remote, 60), [0, 1000], [false; 2], None)
                .iter()
                .all(|c| !matches!(c, Concern::MassDeletion { .. }))
        );
        assert!(
            check(&deletes(Side::Local, 1), [1, 0], [false; 2], None).is_empty(),
            "a small deletion needs no confirmation"
        );
        assert_eq!(
            check(&Plan::default(), [0, 0], [false, true], None),
            vec![Concern::RootChanged { side: Side::Remote }]
        );
        let over = check(
            &deletes(Side::Local, 3),
            [10, 10],
            [false; 2],
            Some(DeleteLimit::Count(2)),
        );
        assert!(!over[0].confirmable());
        assert!(check(
            &deletes(Side::Local, 3),
            [10, 10],
            [false; 2],
            Some(DeleteLimit::Percent(30))
        )
        .is_empty());
    }
}
