//! Status lines for people: async's words per file on stdout, problems on stderr.

use std::io::Write;

use crate::core::plan::{Resolution, Status};
use crate::output::{human_bytes, Event, Reporter, Summary};

/// Prints per-file lines (unless quiet), conflicts, errors and the summary.
pub struct Human {
    /// `-q`: only errors and unresolved conflicts (on stderr).
    pub quiet: bool,
    /// `-v`: say why for every line.
    pub verbose: bool,
    /// Progress bars to print around, on a terminal.
    #[cfg(feature = "client")]
    pub bars: Option<crate::output::progress::Bars>,
}

impl Reporter for Human {
    fn event(&mut self, event: &Event<'_>) {
        #[cfg(feature = "client")]
        if let Some(bars) = self.bars.clone() {
            return bars.print(|| self.print(event));
        }
        self.print(event);
    }
}

impl Human {
    fn print(&mut self, event: &Event<'_>) {
        let out = &mut std::io::stdout().lock();
        let err = &mut std::io::stderr();
        // A closed pipe (`tandem ... | head`) must not turn into a panic.
        let _ = match event {
            Event::File {
                path,
                status,
                side,
                reason,
                restored,
                ..
            } => {
                let path = path.to_string();
                // A repair's verify line says it, with where the corrupt copy went.
                if self.quiet || (*status == Status::Repaired && !self.verbose) {
                    Ok(())
                } else if *restored && !self.verbose {
                    // Someone deleted this on purpose: say why it came back.
                    writeln!(out, "/{path:<38} {} ({reason})", status.word())
                } else if self.verbose {
                    let on = side
                        .map(|s| format!(" [applied on {}]", s.word()))
                        .unwrap_or_default();
                    writeln!(out, "/{path:<38} {:<18} {reason}{on}", status.word())
                } else {
                    writeln!(out, "/{path:<38} {}", status.word())
                }
            }
            Event::Conflict {
                path,
                reason,
                resolution,
            } => self.conflict(out, &path.to_string(), reason, resolution),
            Event::Verify {
                path,
                status,
                detail,
                exit_bit,
                ..
            } => {
                let path = path.to_string();
                if *exit_bit != 0 && self.quiet {
                    // Quiet (cron): a finding to act on still gets a line, on stderr.
                    writeln!(err, "tandem: /{path} {status}: {detail}")
                } else if *exit_bit != 0 || self.verbose || status.starts_with("REPAIRED") {
                    writeln!(out, "/{path:<38} {status:<18} {detail}")
                } else if self.quiet {
                    Ok(())
                } else {
                    writeln!(out, "/{path:<38} {status}")
                }
            }
            Event::Error { message, .. } => writeln!(err, "tandem: {message}"),
            // Quiet means nothing at all on a run without problems (cron mails output).
            Event::Notice { .. } | Event::Summary(_) if self.quiet => Ok(()),
            Event::Notice { message } => writeln!(err, "tandem: {message}"),
            Event::Watching { message } if !self.quiet => writeln!(err, "tandem: {message}"),
            Event::Watching { .. } => Ok(()),
            Event::Reconnecting {
                attempt,
                delay_s,
                message,
            } => writeln!(
                err,
                "tandem: {message}; reconnecting in {delay_s:.0}s (attempt {attempt})"
            ),
            Event::Command { line, .. } => writeln!(out, "{line}"),
            Event::Summary(s) => summary(out, s),
        };
    }

    /// A conflict's line: an unresolved one is printed even when quiet (on stderr).
    fn conflict(
        &self,
        out: &mut impl Write,
        path: &str,
        reason: &str,
        resolution: &Resolution,
    ) -> std::io::Result<()> {
        match resolution {
            // Quiet (cron): a problem still gets a line, on stderr.
            Resolution::Unresolved if self.quiet => writeln!(
                std::io::stderr(),
                "tandem: /{path} CONFLICT ({reason}): left untouched on both sides"
            ),
            Resolution::Unresolved => writeln!(
                out,
                "/{path:<38} CONFLICT ({reason}): left untouched on both sides"
            ),
            Resolution::Favored(side) if !self.quiet => writeln!(
                out,
                "/{path:<38} conflict ({reason}): {} version kept",
                side.word()
            ),
            Resolution::KeptBoth { loser_path, .. } if !self.quiet => writeln!(
                out,
                "/{path:<38} conflict ({reason}): both kept, other version as '{loser_path}'"
            ),
            _ => Ok(()),
        }
    }
}

/// The summary at the end: what was done, and what went over the wire.
fn summary(out: &mut impl Write, s: &Summary) -> std::io::Result<()> {
    if let Some(v) = &s.verify {
        return verify_summary(out, s, v);
    }
    let verb = if s.dry_run { "dry run" } else { "done" };
    let rate = if s.elapsed_s > 0.0 {
        s.bytes_total as f64 / s.elapsed_s
    } else {
        0.0
    };
    let resolved = if s.conflicts_resolved > 0 {
        format!(" ({} resolved)", s.conflicts_resolved)
    } else {
        String::new()
    };
    writeln!(
        out,
        "{verb}: {} transferred ({}), {} deleted, {} dirs created, {} moved/attributes, {} conflicts{resolved}, {} errors in {:.2}s ({}/s)",
        s.files_transferred,
        human_bytes(s.bytes_total),
        s.files_deleted,
        s.dirs_created,
        s.moved,
        s.conflicts,
        s.errors,
        s.elapsed_s,
        human_bytes(rate as u64),
    )?;
    if s.bytes_sent + s.bytes_received == 0 {
        return Ok(());
    }
    let streams = match s.bytes_sent_per_stream.len() {
        0 | 1 => String::new(),
        n => format!(
            " over {n} streams ({})",
            s.bytes_sent_per_stream
                .iter()
                .map(|b| human_bytes(*b))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
    };
    writeln!(
        out,
        "wire: {} sent{streams}, {} received; {} saved by deltas; compression {:.2}x",
        human_bytes(s.bytes_sent),
        human_bytes(s.bytes_received),
        human_bytes(s.bytes_saved_by_delta),
        s.compression_ratio
    )
}

/// `tandem verify`'s summary: what was read, what was found, what was done about it.
fn verify_summary(
    out: &mut impl Write,
    s: &Summary,
    v: &crate::output::VerifyCounts,
) -> std::io::Result<()> {
    let rate = if s.elapsed_s > 0.0 {
        v.bytes_read as f64 / s.elapsed_s
    } else {
        0.0
    };
    let recorded = if v.digests_recorded > 0 {
        format!(" ({} digests recorded)", v.digests_recorded)
    } else {
        String::new()
    };
    writeln!(
        out,
        "verified: {} files match{recorded}, {} corrupt ({} repaired), {} unreadable, {} edited since the last sync (not verified); {} read in {:.2}s ({}/s)",
        v.files_verified,
        v.files_corrupt,
        v.files_repaired,
        v.files_unreadable,
        v.files_edited,
        human_bytes(v.bytes_read),
        s.elapsed_s,
        human_bytes(rate as u64),
    )
}
