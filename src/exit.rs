//! The exit status: an OR of filesync's bits (SPEC §6).

use std::ops::{BitOr, BitOrAssign};

/// A set of exit bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitStatus(pub u8);

impl ExitStatus {
    /// All up to date.
    pub const OK: ExitStatus = ExitStatus(0);
    /// Resolvable conflicts (reported by a dry run).
    pub const RESOLVABLE: ExitStatus = ExitStatus(1);
    /// Conflicts needing manual resolution.
    pub const CONFLICTS: ExitStatus = ExitStatus(2);
    /// Named files do not exist.
    pub const MISSING_FILES: ExitStatus = ExitStatus(4);
    /// Permission problems.
    pub const PERMISSION: ExitStatus = ExitStatus(8);
    /// State (baseline, lock) or rules file problems.
    pub const STATE: ExitStatus = ExitStatus(16);
    /// Invalid arguments.
    pub const USAGE: ExitStatus = ExitStatus(32);
    /// A root or the remote cannot be reached.
    pub const UNREACHABLE: ExitStatus = ExitStatus(64);
    /// Anything else.
    pub const OTHER: ExitStatus = ExitStatus(128);

    /// What the bits mean, in words.
    pub fn meaning(self) -> String {
        if self.0 == 0 {
            return "success: everything up to date".into();
        }
        const WORDS: [(u8, &str); 8] = [
            (1, "resolvable conflicts"),
            (2, "unresolved conflicts"),
            (4, "named files missing"),
            (8, "permission problems"),
            (16, "state or rules file problem"),
            (32, "invalid arguments"),
            (64, "a root or the remote unreachable"),
            (128, "other errors"),
        ];
        let words: Vec<&str> = WORDS
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, w)| *w)
            .collect();
        words.join(", ")
    }

    /// True if every bit of `bit` is set.
    pub fn contains(self, bit: ExitStatus) -> bool {
        self.0 & bit.0 == bit.0
    }
}

impl BitOr for ExitStatus {
    type Output = ExitStatus;
    fn bitor(self, rhs: ExitStatus) -> ExitStatus {
        ExitStatus(self.0 | rhs.0)
    }
}

impl BitOrAssign for ExitStatus {
    fn bitor_assign(&mut self, rhs: ExitStatus) {
        self.0 |= rhs.0;
    }
}
