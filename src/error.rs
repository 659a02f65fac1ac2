//! Errors with context: what failed, where, and (in the message) what to do.

use std::io;

use crate::exit::ExitStatus;

/// Anything that stops a run or an action.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem call failed.
    #[error("cannot {op} '{path}' on {place}: {source}")]
    Io {
        /// What we tried, e.g. "read" or "rename".
        op: &'static str,
        /// The path, escaped.
        path: String,
        /// Which side, e.g. "local /home/me/data".
        place: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A root directory is missing or unusable.
    #[error("{0}")]
    Unreachable(String),
    /// The baseline, lock or rules file is unusable.
    #[error("{0}")]
    State(String),
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The target changed since it was scanned: a conflict, never an overwrite.
    #[error("'{path}' on {place} changed since it was scanned; left untouched (run again to reconcile it)")]
    Changed {
        /// The path, escaped.
        path: String,
        /// Which side.
        place: String,
    },
    /// The source changed while it was being read; it will be sent on a later run.
    #[error(
        "'{path}' on {place} changed while it was being read; skipped, it will be sent next run"
    )]
    SourceChanged {
        /// The path, escaped.
        path: String,
        /// Which side.
        place: String,
    },
    /// A peer or file violated the protocol or the data failed verification.
    #[error("{0}")]
    Protocol(String),
    /// The user or a safety check stopped the run.
    #[error("{0}")]
    Refused(String),
}

impl Error {
    /// Builds an `Io` error.
    pub fn io(
        op: &'static str,
        path: impl std::fmt::Display,
        place: &str,
        source: io::Error,
    ) -> Error {
        Error::Io {
            op,
            path: path.to_string(),
            place: place.to_string(),
            source,
        }
    }

    /// The exit bit this error sets.
    pub fn exit_bit(&self) -> ExitStatus {
        match self {
            Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                ExitStatus::PERMISSION
            }
            Error::Io { source, .. } if source.raw_os_error() == Some(1) => ExitStatus::PERMISSION,
            Error::Io { .. } => ExitStatus::OTHER,
            Error::Unreachable(_) => ExitStatus::UNREACHABLE,
            Error::State(_) => ExitStatus::STATE,
            Error::Usage(_) => ExitStatus::USAGE,
            Error::Changed { .. } => ExitStatus::CONFLICTS,
            Error::SourceChanged { .. } => ExitStatus::OK,
            Error::Protocol(_) | Error::Refused(_) => ExitStatus::OTHER,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
