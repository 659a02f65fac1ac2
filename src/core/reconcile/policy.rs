//! `Policy`: everything reconciliation needs to know about the user's wishes, passed in as
//! a plain value (never read from globals mid-run).

use serde::{Deserialize, Serialize};

use crate::core::plan::Side;

/// Which way changes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// The remote becomes a replica of the local side.
    Push,
    /// The local side becomes a replica of the remote.
    Pull,
    /// Two-way, with the baseline deciding who changed what.
    Bidi,
}

impl Direction {
    /// The word for it on the command line.
    pub fn word(self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Pull => "pull",
            Direction::Bidi => "bidi",
        }
    }

    /// The direction with the two sides swapped.
    pub fn mirrored(self) -> Direction {
        match self {
            Direction::Push => Direction::Pull,
            Direction::Pull => Direction::Push,
            Direction::Bidi => Direction::Bidi,
        }
    }
}

/// `-f`: which version wins a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Favor {
    /// This side's version (`src` = local, `dst` = remote).
    Side(Side),
    /// The version with the older modification time.
    Old,
    /// The version with the newer modification time.
    New,
}

/// The inputs to reconciliation besides the three trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Push, pull or bidi.
    pub direction: Direction,
    /// Conflict winner, if chosen.
    pub favor: Option<Favor>,
    /// Keep both versions of a conflict, renaming the loser.
    pub keep_both: bool,
    /// `-e`: owner and group count as differences.
    pub everything: bool,
    /// Suffix for keep-both copies of the local version, e.g. `.conflict-laptop-20261123-101500`.
    pub local_conflict_suffix: String,
    /// Suffix for keep-both copies of the remote version.
    pub remote_conflict_suffix: String,
}

impl Policy {
    /// A policy with no conflict resolution, for the given direction.
    pub fn new(direction: Direction) -> Policy {
        Policy {
            direction,
            favor: None,
            keep_both: false,
            everything: false,
            local_conflict_suffix: ".conflict-local".into(),
            remote_conflict_suffix: ".conflict-remote".into(),
        }
    }

    /// The same policy seen from the other side (for the mirror property).
    pub fn mirrored(&self) -> Policy {
        Policy {
            direction: self.direction.mirrored(),
            favor: self.favor.map(|f| match f {
                Favor::Side(s) => Favor::Side(s.other()),
                other => other,
            }),
            keep_both: self.keep_both,
            everything: self.everything,
            local_conflict_suffix: self.remote_conflict_suffix.clone(),
            remote_conflict_suffix: self.local_conflict_suffix.clone(),
        }
    }

    /// The keep-both suffix for a version from `side`.
    pub fn conflict_suffix(&self, side: Side) -> &str {
        match side {
            Side::Local => &self.local_conflict_suffix,
            Side::Remote => &self.remote_conflict_suffix,
        }
    }
}
