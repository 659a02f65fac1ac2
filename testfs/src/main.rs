//! `tandem-foldfs MOUNTPOINT`: mounts an empty in-memory filesystem that treats names as
//! macOS (HFS+, APFS) does — case-insensitive, case-preserving, names stored and listed in
//! NFD — and serves it in the foreground until it is unmounted (`umount MOUNTPOINT`,
//! `fusermount3 -u MOUNTPOINT`) or gets SIGTERM or SIGINT, when it unmounts itself.
//!
//! A test tool for tandem's roots that fold names: Linux has no such filesystem here.
//! Needs /dev/fuse, and root or the fusermount3 binary to mount.

mod fs;
mod names;
mod tree;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use fuser::{Config, MountOption, Session, SessionACL};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [mnt] = &args[..] else {
        eprintln!("usage: tandem-foldfs MOUNTPOINT");
        return ExitCode::from(2);
    };
    let mnt = PathBuf::from(mnt);
    // The root belongs to whoever owns the mount point, as a fresh filesystem's root
    // belongs to whoever made it.
    let (uid, gid) = match std::fs::metadata(&mnt) {
        Ok(md) => (md.uid(), md.gid()),
        Err(e) => {
            eprintln!("tandem-foldfs: {}: {e}", mnt.display());
            return ExitCode::FAILURE;
        }
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("tandem-foldfs".into()),
        MountOption::Subtype("tandem-foldfs".into()),
        // The kernel checks modes and owners, so chmod and chown mean what they do on
        // a disk filesystem.
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
    ];
    // Other users too (tests run tandem under other uids).
    config.acl = SessionACL::All;
    let mut session = match Session::new(fs::FoldFs::new(uid, gid), &mnt, &config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tandem-foldfs: mounting {}: {e}", mnt.display());
            return ExitCode::FAILURE;
        }
    };
    let mut unmounter = session.unmount_callable();
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tandem-foldfs: signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let at = mnt.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            // Unmounting ends the session loop below. A busy mount is detached instead,
            // so a signal always ends the process.
            if let Err(e) = unmounter.unmount() {
                eprintln!("tandem-foldfs: unmounting: {e}; detaching");
                let _ = Command::new("umount").arg("-l").arg(&at).status();
            }
        }
    });
    match session.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-foldfs: {e}");
            ExitCode::FAILURE
        }
    }
}
