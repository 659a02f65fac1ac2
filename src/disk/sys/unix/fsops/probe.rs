//! The probe of a root: how it treats names and what attributes it keeps, learned by
//! trying with a temp file at scan time (never guessed from the OS).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, Timespec, Timestamps};

use super::{os, ts_ns, Root, PART_PREFIX};
use crate::core::names::{Holds, NameRules};
use crate::disk::sys::open_dir_at;

impl Root {
    /// How this root treats names, found by trying (never guessed from the OS): a probe
    /// file named `Ab` + `é` (NFC) in a directory of its own, looked up in another case
    /// and in NFD, then listed to see how it is spelled; removed again. A root where the
    /// probe cannot be made (read-only) gets the default: names kept apart as written.
    /// The same probe file tells what attributes the root keeps ([`Holds`]).
    pub fn probe_names(&self) -> (NameRules, Holds) {
        static PROBES: AtomicU32 = AtomicU32::new(0);
        let dir = format!(
            "{}names-probe-{}-{}",
            String::from_utf8_lossy(PART_PREFIX),
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        // The probe comes and goes inside the root and the root's times are put back, so a
        // source is left as it was found. Probes of one root take turns: one that began
        // while another's directory stood would put back that directory's time.
        let _turn = ProbeTurn::take(&self.fd);
        let before = rustix::fs::fstat(&self.fd).ok();
        if rustix::fs::mkdirat(&self.fd, os(dir.as_bytes()), Mode::from_raw_mode(0o700)).is_err() {
            return Default::default();
        }
        let rules = open_dir_at(&self.fd, dir.as_bytes()).map(|d| probe_in(&d));
        let _ = rustix::fs::unlinkat(&self.fd, os(dir.as_bytes()), AtFlags::REMOVEDIR);
        if let Some(st) = before {
            let times = Timestamps {
                last_access: Timespec {
                    tv_sec: st.st_atime as _,
                    tv_nsec: st.st_atime_nsec as _,
                },
                last_modification: Timespec {
                    tv_sec: st.st_mtime as _,
                    tv_nsec: st.st_mtime_nsec as _,
                },
            };
            let _ = rustix::fs::futimens(&self.fd, &times);
        }
        rules.unwrap_or_default()
    }
}

/// A probe's turn at its root: an `flock` on the root directory itself (which writes
/// nothing, so the root's times stay as they are), released when dropped or when the
/// process dies. A turn not had within [`ProbeTurn::PATIENCE`] (a stopped process holding
/// it) is gone without: the probe still runs, and at worst the root's mtime moves.
struct ProbeTurn<'a>(Option<&'a OwnedFd>);

impl<'a> ProbeTurn<'a> {
    const PATIENCE: Duration = Duration::from_secs(5);

    fn take(root: &'a OwnedFd) -> ProbeTurn<'a> {
        let deadline = Instant::now() + Self::PATIENCE;
        loop {
            match rustix::fs::flock(root, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return ProbeTurn(Some(root)),
                Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                // Not lockable here (some network filesystems), or waited long enough.
                Err(_) => return ProbeTurn(None),
            }
        }
    }
}

impl Drop for ProbeTurn<'_> {
    fn drop(&mut self) {
        if let Some(fd) = self.0 {
            let _ = rustix::fs::flock(fd, FlockOperation::Unlock);
        }
    }
}

/// The probe of [`Root::probe_names`] in its empty directory `dir`, which it leaves empty.
fn probe_in(dir: &OwnedFd) -> (NameRules, Holds) {
    const WRITTEN: &str = "Ab\u{e9}";
    const OTHER_CASE: &str = "aB\u{e9}";
    const OTHER_FORM: &str = "Abe\u{301}";
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(file) = rustix::fs::openat(dir, WRITTEN, flags, Mode::from_raw_mode(0o600)) else {
        return Default::default();
    };
    let holds = probe_holds(&file);
    drop(file);
    let found = |n: &str| rustix::fs::statat(dir, n, AtFlags::SYMLINK_NOFOLLOW).is_ok();
    let mut listed = Vec::new();
    if let Ok(mut d) = rustix::fs::Dir::read_from(dir) {
        while let Some(Ok(item)) = d.read() {
            let name = item.file_name().to_bytes();
            if name != b"." && name != b".." {
                listed.push(name.to_vec());
            }
        }
    }
    let respells = listed != [WRITTEN.as_bytes()];
    // Listed once, in another form but the case written (HFS+ lists NFD).
    let form = NameRules {
        folds_form: true,
        ..NameRules::default()
    };
    let only_form =
        respells && matches!(&listed[..], [n] if form.key(n) == form.key(WRITTEN.as_bytes()));
    let rules = NameRules {
        folds_case: found(OTHER_CASE),
        folds_form: found(OTHER_FORM),
        respells,
        respells_only_form: only_form,
    };
    for name in listed {
        let _ = rustix::fs::unlinkat(dir, os(&name), AtFlags::empty());
    }
    let _ = rustix::fs::unlinkat(dir, WRITTEN, AtFlags::empty());
    (rules, holds)
}

/// What the probe file keeps: a mode set, an owner set (as root only: others cannot give
/// a file away, so their owners are not in question), a time with every nanosecond digit.
fn probe_holds(file: &OwnedFd) -> Holds {
    let mut holds = Holds::default();
    let stat = || rustix::fs::fstat(file).ok();
    if rustix::fs::fchmod(file, Mode::from_raw_mode(0o640)).is_ok() {
        holds.modes = stat().is_some_and(|st| st.st_mode & 0o7777 == 0o640);
    }
    if rustix::process::geteuid().is_root() {
        let (uid, gid) = (
            rustix::fs::Uid::from_raw(4242),
            rustix::fs::Gid::from_raw(4242),
        );
        let kept = rustix::fs::fchown(file, Some(uid), Some(gid)).is_ok()
            && stat().is_some_and(|st| (st.st_uid, st.st_gid) == (4242, 4242));
        holds.owners = kept;
    }
    let written = Timespec {
        tv_sec: 1_600_000_000,
        tv_nsec: 123_456_789,
    };
    let times = Timestamps {
        last_access: written,
        last_modification: written,
    };
    if rustix::fs::futimens(file, &times).is_ok() {
        if let Some(st) = stat() {
            let ns = ts_ns(st.st_mtime, st.st_mtime_nsec) - 1_600_000_000 * 1_000_000_000;
            // The step is the largest power of ten the time kept is a multiple of.
            let mut step = 1u32;
            while step < 1_000_000_000 && ns % (i64::from(step) * 10) == 0 {
                step *= 10;
            }
            if ns != 123_456_789 {
                holds.mtime_step_ns = step;
            }
        }
    }
    holds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(path: &std::path::Path) -> (i64, i64) {
        let st = rustix::fs::stat(path).unwrap();
        (
            ts_ns(st.st_mtime, st.st_mtime_nsec),
            ts_ns(st.st_atime, st.st_atime_nsec),
        )
    }

    /// Two first runs from one source probe it at once: each must leave the root's times as
    /// they were before either began (each alone restoring what it saw would put back the
    /// other's probe directory's time).
    #[test]
    fn probes_at_once_leave_the_roots_times() {
        let dir = tempfile::tempdir().unwrap();
        let old = Timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 5,
        };
        let set = Timestamps {
            last_access: old,
            last_modification: old,
        };
        rustix::fs::utimensat(rustix::fs::CWD, dir.path(), &set, AtFlags::empty()).unwrap();
        let before = times(dir.path());
        for round in 0..30 {
            std::thread::scope(|s| {
                for _ in 0..6 {
                    let root = Root::open(dir.path()).unwrap();
                    s.spawn(move || root.probe_names());
                }
            });
            assert_eq!(times(dir.path()), before, "round {round}");
        }
        // Listed last: listing moves the root's atime.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
