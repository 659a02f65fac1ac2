//! Sessions: a name, a state directory (`$FILESYNC` or the platform data dir), and a lock
//! so two runs of one session never overlap. The lock is an `flock`, released by the
//! kernel when the process dies, so a killed run never leaves it stuck.

pub mod last_run;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A named session and where its state lives.
#[derive(Clone, Debug)]
pub struct Session {
    /// The session name (`-N`).
    pub name: String,
    /// The state directory holding `<name>.baseline` and `<name>.lock`.
    pub dir: PathBuf,
}

/// Held while a run owns its session.
#[derive(Debug)]
pub struct SessionLock {
    _file: File,
}

/// The state directory: `$FILESYNC` if set, else `<data dir>/tandem`.
pub fn state_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FILESYNC").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::data_dir().map(|d| d.join("tandem")).ok_or_else(|| {
        Error::State(
            "cannot find a data directory for the session state: set $FILESYNC or $HOME".into(),
        )
    })
}

/// Checks a session name: 1–100 characters of letters, digits, `.`, `_`, `-`, not starting with `.`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid session name '{name}': use 1-100 letters, digits, '.', '_' or '-' (not starting with '.')"
        )))
    }
}

/// A session name derived from the two roots: readable prefix plus a hash of both.
pub fn default_name(local: &Path, remote: &str) -> String {
    let slug = |s: &str| -> String {
        let base = s
            .trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or("");
        let cleaned: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(24)
            .collect();
        if cleaned.is_empty() {
            "root".into()
        } else {
            cleaned
        }
    };
    let local_s = local.to_string_lossy();
    let mut h = blake3::Hasher::new();
    h.update(local_s.as_bytes());
    h.update(b"\0");
    h.update(remote.as_bytes());
    let hex = h.finalize().to_hex();
    format!("{}-{}-{}", slug(&local_s), slug(remote), &hex[..10])
}

impl Session {
    /// A session in the default state directory.
    pub fn new(name: String) -> Result<Session> {
        validate_name(&name)?;
        Ok(Session {
            name,
            dir: state_dir()?,
        })
    }

    /// Path of the baseline file.
    pub fn baseline_path(&self) -> PathBuf {
        self.dir.join(format!("{}.baseline", self.name))
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.name))
    }

    /// Takes the session lock, or fails at once if another run holds it.
    pub fn lock(&self) -> Result<SessionLock> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            Error::State(format!(
                "cannot create the state directory '{}': {e}",
                self.dir.display()
            ))
        })?;
        let path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                Error::State(format!(
                    "cannot open the lock file '{}': {e}",
                    path.display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => Ok(SessionLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::State(format!(
                "session '{}' is in use by another tandem run (lock '{}'); wait for it to finish",
                self.name,
                path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(Error::State(format!(
                "cannot lock '{}': {e}",
                path.display()
            ))),
        }
    }

    /// Names of the sessions in the state directory: those with a baseline, and those
    /// whose runs all failed before they could write one.
    pub fn list(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                name.strip_suffix(".baseline")
                    .or_else(|| name.strip_suffix(".lastrun"))
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
