//! Log files (`-L DIR[:MB]` for the client, `-R DIR[:MB]` for the agent): one timestamped
//! line per file status, conflict, error and notice, rotated when the file reaches MB
//! megabytes, keeping the last few (file-rotate does the rotating).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use file_rotate::{compression::Compression, suffix::AppendCount, ContentLimit, FileRotate};

use crate::core::plan::Resolution;
use crate::output::{Event, Reporter};

/// Rotated files kept beside the current one.
const KEEP: usize = 5;
/// Megabytes per file when `:MB` is not given.
const DEFAULT_MB: u64 = 10;

/// Where logs go and when they rotate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSpec {
    /// The directory (created if missing).
    pub dir: PathBuf,
    /// Rotate past this many bytes.
    pub max_bytes: u64,
}

impl LogSpec {
    /// Parses `DIR[:MB]`.
    pub fn parse(s: &str) -> Result<LogSpec, String> {
        let bad = |why: &str| format!("bad log directory '{s}': {why}; give DIR or DIR:MB");
        let (dir, mb) = match s.rsplit_once(':') {
            Some((d, mb)) if !mb.is_empty() && mb.bytes().all(|b| b.is_ascii_digit()) => {
                let mb: u64 = mb.parse().map_err(|_| bad("MB is not a number"))?;
                (d, mb)
            }
            _ => (s, DEFAULT_MB),
        };
        if dir.is_empty() {
            return Err(bad("no directory"));
        }
        if mb == 0 || mb > 1 << 20 {
            return Err(bad("MB must be 1 or more"));
        }
        Ok(LogSpec {
            dir: PathBuf::from(dir),
            max_bytes: mb << 20,
        })
    }

    /// As [`LogSpec::parse`] reads it back.
    pub fn to_arg(&self) -> String {
        format!("{}:{}", self.dir.display(), self.max_bytes >> 20)
    }
}

/// An open log; clones write to the same file.
#[derive(Clone)]
pub struct Log {
    file: Arc<Mutex<FileRotate<AppendCount>>>,
}

impl Log {
    /// Opens `NAME.log` in the spec's directory, creating the directory.
    pub fn open(spec: &LogSpec, name: &str) -> Result<Log, String> {
        let path = spec.dir.join(format!("{name}.log"));
        let fail = |e: std::io::Error| format!("cannot write the log '{}': {e}", path.display());
        std::fs::create_dir_all(&spec.dir).map_err(fail)?;
        // file-rotate opens lazily and quietly: try first, for a clear error now.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(fail)?;
        let file = FileRotate::new(
            &path,
            AppendCount::new(KEEP),
            ContentLimit::BytesSurpassed(spec.max_bytes as usize),
            Compression::None,
            None,
        );
        Ok(Log {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Writes one line with the time in front.
    pub fn line(&self, text: &str) {
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        for l in text.lines() {
            // One write per line: the file rotates between writes, never inside a line.
            let _ = f.write_all(format!("{now} {l}\n").as_bytes());
        }
        let _ = f.flush();
    }
}

/// One event as a log line (`None` for what is not worth keeping: dry-run commands).
pub fn event_line(event: &Event<'_>) -> Option<String> {
    Some(match event {
        Event::File {
            path,
            status,
            side,
            reason,
            ..
        } => {
            let on = side.map(|s| format!(" on {}", s.word())).unwrap_or_default();
            format!("/{path} {}{on} ({reason})", status.word())
        }
        Event::Conflict {
            path,
            reason,
            resolution,
        } => match resolution {
            Resolution::Unresolved => format!("/{path} CONFLICT ({reason}): left untouched"),
            Resolution::Favored(s) => format!("/{path} conflict ({reason}): {} kept", s.word()),
            Resolution::KeptBoth { loser_path, .. } => {
                format!("/{path} conflict ({reason}): both kept, other as '{loser_path}'")
            }
        },
        Event::Verify {
            path,
            status,
            detail,
            ..
        } => format!("/{path} {status} ({detail})"),
        Event::Error { message, .. } => format!("error: {message}"),
        Event::Notice { message } | Event::Watching { message } => format!("note: {message}"),
        Event::Reconnecting {
            attempt,
            delay_s,
            message,
        } => format!("{message}; reconnecting in {delay_s:.0}s (attempt {attempt})"),
        Event::Summary(s) => format!(
            "done: exit {}, {} transferred ({} B), {} deleted, {} dirs created, {} moved/attributes, {} conflicts, {} errors in {:.2}s; wire {} B sent, {} B received",
            s.exit,
            s.files_transferred,
            s.bytes_total,
            s.files_deleted,
            s.dirs_created,
            s.moved,
            s.conflicts,
            s.errors,
            s.elapsed_s,
            s.bytes_sent,
            s.bytes_received
        ),
        Event::Command { .. } => return None,
    })
}

/// A reporter that also writes every event to a log.
pub struct Logged {
    /// The reporter for the terminal or the script.
    pub inner: Box<dyn Reporter>,
    /// The log.
    pub log: Log,
}

impl Reporter for Logged {
    fn event(&mut self, event: &Event<'_>) {
        if let Some(line) = event_line(event) {
            self.log.line(&line);
        }
        self.inner.event(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn log_specs_with_and_without_a_size() {
        let s = LogSpec::parse("/var/log/tandem:1").unwrap();
        assert_eq!(
            (s.dir.as_path(), s.max_bytes),
            (Path::new("/var/log/tandem"), 1 << 20)
        );
        let s = LogSpec::parse("logs").unwrap();
        assert_eq!(s.max_bytes, 10 << 20);
        assert_eq!(LogSpec::parse(&s.to_arg()).unwrap(), s);
        for bad in ["", ":5", "logs:0"] {
            assert!(LogSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_log_rotates_past_its_size_and_keeps_a_few() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = LogSpec {
            dir: tmp.path().join("logs"),
            max_bytes: 4096,
        };
        let log = Log::open(&spec, "tandem").unwrap();
        for i in 0..2000 {
            log.line(&format!("/file{i} SYNCHRONIZED"));
        }
        let mut names: Vec<String> = std::fs::read_dir(&spec.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), KEEP + 1, "{names:?}");
        let current = std::fs::read_to_string(spec.dir.join("tandem.log")).unwrap();
        assert!(current
            .lines()
            .last()
            .unwrap()
            .ends_with("/file1999 SYNCHRONIZED"));
        assert!(current.starts_with("20"), "timestamp first: {current}");
    }
}
