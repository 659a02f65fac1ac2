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
        op: String,
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
    /// A peer or file violated the protocol.
    #[error("{0}")]
    Protocol(String),
    /// Rebuilt data did not match the sender's BLAKE3; nothing was committed.
    #[error("'{path}' on {place}: received data does not match the sender's hash; not committed")]
    Verify {
        /// The path.
        path: String,
        /// Which side.
        place: String,
    },
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
            op: op.to_string(),
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
            Error::Protocol(_) | Error::Refused(_) | Error::Verify { .. } => ExitStatus::OTHER,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An [`Error`] as it crosses the wire: enough to rebuild the same message and exit bit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WireError {
    /// `Error::Io`, with the OS error number when there was one.
    Io {
        /// What was tried.
        op: String,
        /// The path, escaped.
        path: String,
        /// Which side.
        place: String,
        /// errno, if any.
        errno: Option<i32>,
        /// The OS message.
        message: String,
    },
    /// `Error::Changed`.
    Changed {
        /// The path.
        path: String,
        /// Which side.
        place: String,
    },
    /// `Error::Verify`.
    Verify {
        /// The path.
        path: String,
        /// Which side.
        place: String,
    },
    /// `Error::SourceChanged`.
    SourceChanged {
        /// The path.
        path: String,
        /// Which side.
        place: String,
    },
    /// Any other error: its message and exit bit.
    Other {
        /// The message.
        message: String,
        /// The exit bit.
        bit: u8,
    },
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> WireError {
        match e {
            Error::Io {
                op,
                path,
                place,
                source,
            } => WireError::Io {
                op: op.clone(),
                path: path.clone(),
                place: place.clone(),
                errno: source.raw_os_error(),
                message: source.to_string(),
            },
            Error::Changed { path, place } => WireError::Changed {
                path: path.clone(),
                place: place.clone(),
            },
            Error::SourceChanged { path, place } => WireError::SourceChanged {
                path: path.clone(),
                place: place.clone(),
            },
            Error::Verify { path, place } => WireError::Verify {
                path: path.clone(),
                place: place.clone(),
            },
            other => WireError::Other {
                message: other.to_string(),
                bit: other.exit_bit().0,
            },
        }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Error {
        match w {
            WireError::Io {
                op,
                path,
                place,
                errno,
                message,
            } => {
                let source = match errno {
                    Some(n) => io::Error::from_raw_os_error(n),
                    None => io::Error::other(message),
                };
                Error::Io {
                    op,
                    path,
                    place,
                    source,
                }
            }
            WireError::Changed { path, place } => Error::Changed { path, place },
            WireError::SourceChanged { path, place } => Error::SourceChanged { path, place },
            WireError::Verify { path, place } => Error::Verify { path, place },
            WireError::Other { message, bit } => match ExitStatus(bit) {
                ExitStatus::STATE => Error::State(message),
                ExitStatus::USAGE => Error::Usage(message),
                ExitStatus::UNREACHABLE => Error::Unreachable(message),
                _ => Error::Protocol(message),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_their_verb_and_exit_bit_across_the_wire() {
        let e = Error::io(
            "create directory",
            "d/x",
            "remote 'h:/srv'",
            io::Error::from_raw_os_error(13),
        );
        let back = Error::from(WireError::from(&e));
        assert_eq!(back.to_string(), e.to_string());
        assert!(
            back.to_string()
                .starts_with("cannot create directory 'd/x' on remote 'h:/srv'"),
            "{back}"
        );
        assert_eq!(back.exit_bit(), ExitStatus::PERMISSION);
    }
}
