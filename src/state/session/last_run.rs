//! What a session's last run did (`<name>.lastrun`, JSON), for `tandem sessions` and
//! `tandem status`: a person checking that the nightly backup ran reads it there.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Session;
use crate::error::{Error, Result};

/// One run of a session, as it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// When it ended, in seconds since the epoch.
    pub ended: i64,
    /// `push`, `pull` or `bidi`.
    pub direction: String,
    /// Its exit status (an OR of the bits of SPEC §6).
    pub exit: u8,
    /// Entries written, deleted, created or changed.
    pub files: u64,
    /// Bytes of the files brought up to date.
    pub bytes: u64,
    /// The local root, as the baseline names it.
    pub local_root: String,
    /// The remote root, as the baseline names it.
    pub remote_root: String,
    /// When the last run that exited 0 ended (this one's time if it did), if any did.
    pub last_ok: Option<i64>,
}

impl Session {
    /// Path of the last run's record.
    pub fn last_run_path(&self) -> PathBuf {
        self.dir.join(format!("{}.lastrun", self.name))
    }

    /// The last run's record, if there is a readable one.
    pub fn last_run(&self) -> Option<LastRun> {
        let bytes = std::fs::read(self.last_run_path()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records `run` as the last one (atomically: temp file, rename), carrying over when
    /// the last run that exited 0 ended.
    pub fn record_run(&self, mut run: LastRun) -> Result<()> {
        run.last_ok = if run.exit == 0 {
            Some(run.ended)
        } else {
            self.last_run().and_then(|r| r.last_ok)
        };
        let path = self.last_run_path();
        let err = |what: &str, e: std::io::Error| {
            Error::State(format!("cannot {what} '{}': {e}", path.display()))
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| err("create the directory of", e))?;
        let tmp = path.with_extension("lastrun.tmp");
        let mut f =
            std::fs::File::create(&tmp).map_err(|e| err("create a temporary file for", e))?;
        let json = serde_json::to_vec_pretty(&run).map_err(std::io::Error::other);
        json.and_then(|j| f.write_all(&j))
            .and_then(|()| f.sync_all())
            .map_err(|e| err("write", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| err("rename into place", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_keeps_the_time_of_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Session {
            name: "nightly".into(),
            dir: dir.path().to_path_buf(),
        };
        assert_eq!(s.last_run(), None);
        let run = |ended, exit| LastRun {
            ended,
            direction: "push".into(),
            exit,
            files: 1,
            bytes: 2,
            local_root: "/a".into(),
            remote_root: "h:/b".into(),
            last_ok: None,
        };
        s.record_run(run(100, 64)).unwrap();
        assert_eq!(s.last_run().unwrap().last_ok, None);
        s.record_run(run(200, 0)).unwrap();
        s.record_run(run(300, 2)).unwrap();
        let last = s.last_run().unwrap();
        assert_eq!((last.ended, last.exit, last.last_ok), (300, 2, Some(200)));
        assert!(!s.dir.join("nightly.lastrun.tmp").exists());
    }
}
