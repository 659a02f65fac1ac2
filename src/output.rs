//! The engine reports, the printers format: every step is an [`Event`] handed to a
//! [`Reporter`]. Human lines, JSON lines and the dry-run script are reporters; tests
//! record events.

pub mod dryrun;
pub mod human;
pub mod json;
pub mod log;
#[cfg(feature = "client")]
pub mod progress;

use serde::Serialize;

use crate::core::path::RelPath;
use crate::core::plan::{Resolution, Side, Status};

/// Totals for the closing summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Files, symlinks and special files written.
    pub files_transferred: u64,
    /// Entries deleted.
    pub files_deleted: u64,
    /// Directories created.
    pub dirs_created: u64,
    /// Renames and attribute changes.
    pub moved: u64,
    /// Conflicts left unresolved.
    pub conflicts: u64,
    /// Conflicts settled by the policy.
    pub conflicts_resolved: u64,
    /// Errors reported.
    pub errors: u64,
    /// Files read to learn their digest (the hash cache spares the unchanged ones).
    pub files_hashed: u64,
    /// Size of the files brought up to date.
    pub bytes_total: u64,
    /// File bytes sent as literal data.
    pub bytes_literal: u64,
    /// File bytes rebuilt from the receiver's old version instead of being sent.
    pub bytes_saved_by_delta: u64,
    /// Bytes the client wrote to the connection (0 when both sides are in-process).
    pub bytes_sent: u64,
    /// Bytes the client read from the connection.
    pub bytes_received: u64,
    /// Of `bytes_sent`, what each transfer stream carried (`--transfer-threads`).
    pub bytes_sent_per_stream: Vec<u64>,
    /// Protocol bytes both ways before compression.
    pub bytes_uncompressed: u64,
    /// `bytes_uncompressed` over the bytes on the wire (1.0 when nothing was compressed).
    pub compression_ratio: f64,
    /// Wall-clock time of the run.
    pub elapsed_s: f64,
    /// Where that time went, step by step (`lock`, `connect`, `scan`, `hash`, `decide`,
    /// `transfer`, `commit`): seconds each, in the order they ran (a continuous run
    /// adds up its cycles).
    pub phases_s: Vec<(&'static str, f64)>,
    /// The exit status.
    pub exit: u8,
    /// True for a dry run (nothing was changed).
    pub dry_run: bool,
    /// What `tandem verify` found (absent for a sync).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyCounts>,
}

/// What `tandem verify` found, file by file, added up.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VerifyCounts {
    /// Files whose two copies match the baseline's digest.
    pub files_verified: u64,
    /// Files found corrupt on one or both sides (repaired or not).
    pub files_corrupt: u64,
    /// Corrupt copies replaced by the good one.
    pub files_repaired: u64,
    /// Files that could not be read on a side.
    pub files_unreadable: u64,
    /// Files edited since the last sync (size or mtime): not verified.
    pub files_edited: u64,
    /// Files the baseline had no digest for, now recorded.
    pub digests_recorded: u64,
    /// Bytes read on both sides together.
    pub bytes_read: u64,
}

/// Something that happened during a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// A path was brought up to date (or found identical) on `side`.
    File {
        /// The path.
        path: &'a RelPath,
        /// What was done.
        status: Status,
        /// Where it was done (`None` for agreement found on both sides).
        side: Option<Side>,
        /// Bytes of file content moved.
        bytes: u64,
        /// Why, for `-v`.
        reason: &'a str,
        /// It undid the other side's deletion (always said, not only with `-v`).
        restored: bool,
    },
    /// Both sides changed a path.
    Conflict {
        /// The path.
        path: &'a RelPath,
        /// What each side did.
        reason: &'a str,
        /// What the policy did with it.
        resolution: &'a Resolution,
    },
    /// Something failed.
    Error {
        /// The path, when the error is about one.
        path: Option<&'a RelPath>,
        /// The side, when known.
        side: Option<Side>,
        /// The full message.
        message: &'a str,
        /// The exit bit it sets.
        exit_bit: u8,
    },
    /// A dry-run step, as a shell command.
    Command {
        /// The path the step is about.
        path: &'a RelPath,
        /// The status it would report.
        status: Status,
        /// The command line.
        line: &'a str,
    },
    /// A warning or note that is not about one file.
    Notice {
        /// The text.
        message: &'a str,
    },
    /// Continuous mode: both trees are watched; the next cycle starts on a change.
    Watching {
        /// What is watched.
        message: &'a str,
    },
    /// Continuous mode: the connection is lost; the next attempt starts after `delay_s`.
    Reconnecting {
        /// Attempts so far.
        attempt: u32,
        /// Seconds until the next one.
        delay_s: f64,
        /// What went wrong.
        message: &'a str,
    },
    /// `tandem verify`'s finding about one file.
    Verify {
        /// The file.
        path: &'a RelPath,
        /// `VERIFIED`, `CORRUPT(remote)`, `REPAIRED(local)`, ...
        status: &'a str,
        /// The side found wrong, if one is.
        side: Option<Side>,
        /// What it means and what to do.
        detail: &'a str,
        /// The exit bit it sets (0: nothing wrong, or repaired).
        exit_bit: u8,
    },
    /// The end of the run (of each cycle, in continuous mode).
    Summary(&'a Summary),
}

/// Receives events.
pub trait Reporter {
    /// Handles one event.
    fn event(&mut self, event: &Event<'_>);
}

/// Keeps nothing; for callers that only want the exit status.
pub struct Silent;

impl Reporter for Silent {
    fn event(&mut self, _: &Event<'_>) {}
}

/// Now in UTC as `YYYYMMDD-HHMMSS`, for names that say when they were made
/// (`NAME.conflict-HOST-…`, `NAME.corrupt-…`).
pub fn name_stamp() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = now.chars().filter(char::is_ascii_digit).collect();
    let (day, time) = digits.split_at(8.min(digits.len()));
    format!("{day}-{time}")
}

/// Human-readable size: `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
