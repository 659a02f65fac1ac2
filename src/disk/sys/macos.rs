//! macOS: what differs from the other Unixes ([`super::unix`] has the rest), over rustix
//! (and libc where rustix has no name for a flag). Linked against libSystem only: no
//! framework. Extended attributes are a file of their own below.
//!
//! What macOS does not do here, and says so when asked: create special files (no
//! `mknodat` before macOS 13, and a path-based `mknod` could leave the root), share
//! blocks into an already open copy ([`clone_file`]), keep POSIX ACLs natively
//! ([`xattr`]). The Linux tunings (pipe size, transparent huge pages, quick ACKs) have
//! no macOS counterpart and do nothing.

pub mod xattr;

use std::ffi::{c_char, c_int};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use rustix::event::kqueue::{kevent, kqueue, Event, EventFilter, EventFlags, ProcessEvents};
use rustix::fs::{OFlags, Stat};

/// Has this process killed when its parent dies (the pipe transport's agent); fails if
/// the parent is already gone. macOS has no `PR_SET_PDEATHSIG`: a thread waits on a
/// kqueue for the parent's exit (`EVFILT_PROC`, `NOTE_EXIT`) and then kills the process.
pub fn die_with_parent() -> Result<(), String> {
    let gone = || "the client is already gone".to_string();
    let parent = rustix::process::getppid().ok_or_else(gone)?;
    let queue = kqueue().map_err(|e| format!("cannot follow the parent process: {e}"))?;
    let watch = Event::new(
        EventFilter::Proc {
            pid: parent,
            flags: ProcessEvents::EXIT,
        },
        EventFlags::ADD | EventFlags::ONESHOT,
        std::ptr::null_mut(),
    );
    match wait_on(&queue, &[watch], &mut []) {
        Ok(_) => {}
        Err(rustix::io::Errno::SRCH) => return Err(gone()),
        Err(e) => return Err(format!("cannot follow the parent process: {e}")),
    }
    // The parent may have died, and this process been adopted, before the watch was set.
    if rustix::process::getppid() != Some(parent) {
        return Err(gone());
    }
    std::thread::spawn(move || loop {
        let mut fired = [MaybeUninit::<Event>::uninit()];
        match wait_on(&queue, &[], &mut fired) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            // The parent exited, or the watch broke: either way nobody follows us now.
            _ => {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::KILL,
                );
            }
        }
    });
    Ok(())
}

/// `kevent` with no timeout: registers `changes`, then waits for up to `fired.len()` events.
#[allow(unsafe_code)]
fn wait_on(
    queue: &impl AsFd,
    changes: &[Event],
    fired: &mut [MaybeUninit<Event>],
) -> rustix::io::Result<usize> {
    // SAFETY: the events name a process, not a descriptor, and carry a null user pointer
    // that is never read: no descriptor must outlive anything.
    unsafe { kevent(queue, changes, fired, None) }.map(|(got, _)| got.len())
}

/// Puts this process behind everything else (nice 10; macOS has no I/O class to set
/// from here without its private calls).
pub fn lower_priority() {
    let _ = rustix::process::nice(10);
}

/// Would widen a pipe; macOS pipes have no settable size (they grow to 64 KiB by
/// themselves), so nothing changes.
pub fn widen_pipe(_fd: impl AsFd, _bytes: usize) {}

/// Would turn transparent huge pages off; macOS has none to turn off.
pub fn disable_transparent_huge_pages() {}

/// Whether transparent huge pages are off: not a macOS notion.
pub fn transparent_huge_pages_disabled() -> Option<bool> {
    None
}

/// Whether this OS has quick ACKs: macOS has no `TCP_QUICKACK`.
pub const QUICK_ACK: bool = false;

/// Would ask a TCP socket to acknowledge at once; macOS has no such option.
pub fn quick_ack(_socket: impl AsFd) {}

/// Whether a TCP socket acknowledges at once: never, on macOS.
pub fn quick_ack_is_on(_socket: impl AsFd) -> bool {
    false
}

/// A device number's major and minor parts (macOS's `dev_t` is 32 bits: 8 and 24).
pub fn device_numbers(rdev: u64) -> (u32, u32) {
    let dev = rdev as u32 as rustix::fs::Dev;
    (rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// Flushes the volume that holds `fd` to stable storage: `sync_volume_np` with
/// `SYNC_VOLUME_FULLSYNC | SYNC_VOLUME_WAIT`, macOS's `syncfs` (plain `sync` returns
/// before the data is written). It names the volume by path (`F_GETPATH`): a directory
/// moved to another volume meanwhile has that one flushed instead.
#[allow(unsafe_code)]
pub fn syncfs(fd: impl AsFd) -> io::Result<()> {
    unsafe extern "C" {
        // <unistd.h>, macOS 10.8 and later; returns 0 or an errno value.
        fn sync_volume_np(path: *const c_char, flags: c_int) -> c_int;
    }
    const SYNC_VOLUME_FULLSYNC: c_int = 0x01;
    const SYNC_VOLUME_WAIT: c_int = 0x02;
    let path = rustix::fs::getpath(fd)?;
    // SAFETY: `path` is a NUL-terminated string alive across the call, which only reads it.
    let err = unsafe { sync_volume_np(path.as_ptr(), SYNC_VOLUME_FULLSYNC | SYNC_VOLUME_WAIT) };
    match err {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Would make `dst` share `src`'s blocks: macOS clones only into a new name
/// (`fclonefileat`), not into an open file, so this says it cannot and the caller copies.
pub fn clone_file(_dst: impl AsFd, _src: impl AsFd) -> bool {
    false
}

/// This process's own executable, by the path the system reports for it.
pub fn own_executable() -> io::Result<Vec<u8>> {
    std::fs::read(std::env::current_exe()?)
}

/// A Unix socket the extra streams of one agent join. macOS has no abstract sockets: it
/// is a file in a directory only this user may enter (`/tmp/tandem-UID`, checked on each
/// use), removed when the listener goes. An agent killed before then leaves the file.
pub struct LocalListener {
    socket: UnixListener,
    address: String,
    path: PathBuf,
}

impl LocalListener {
    /// What a relay passes to [`connect_local`] (the socket's name in that directory).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Waits for the next stream.
    pub fn accept(&self) -> io::Result<UnixStream> {
        Ok(self.socket.accept()?.0)
    }
}

impl Drop for LocalListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on the socket `name` in this user's private socket directory.
pub fn listen_local(name: &str) -> io::Result<LocalListener> {
    let path = socket_dir()?.join(name);
    Ok(LocalListener {
        socket: UnixListener::bind(&path)?,
        address: name.to_string(),
        path,
    })
}

/// Connects to the socket a [`LocalListener`] listens on, by its address.
pub fn connect_local(address: &[u8]) -> io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;
    UnixStream::connect(socket_dir()?.join(std::ffi::OsStr::from_bytes(address)))
}

/// `/tmp/tandem-UID`, created if missing, and refused unless it is a directory (not a
/// symlink) of this user that nobody else may enter: another user's socket there would
/// be handed the streams' secret.
fn socket_dir() -> io::Result<PathBuf> {
    let uid = rustix::process::getuid();
    let dir = PathBuf::from(format!("/tmp/tandem-{}", uid.as_raw()));
    match rustix::fs::mkdir(&dir, super::mode_bits(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let st = rustix::fs::lstat(&dir)?;
    let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir();
    if !is_dir || st.st_uid != uid.as_raw() || stat_mode(&st) & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "'{}' is not a directory only this user may enter",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

/// Opens directories only to look names up in them. macOS has no `O_PATH`: they are
/// opened for reading, so a directory this user may enter but not list cannot be walked.
pub(super) const LOOKUP: OFlags = OFlags::RDONLY;

/// File type and permission bits of a stat (16 bits on macOS).
pub(super) fn stat_mode(st: &Stat) -> u32 {
    u32::from(st.st_mode)
}

/// The device a file is on (a 32-bit `dev_t`, as its bits).
pub(super) fn stat_dev(st: &Stat) -> u64 {
    u64::from(st.st_dev as u32)
}

/// The device a device node stands for (as its bits).
pub(super) fn stat_rdev(st: &Stat) -> u64 {
    u64::from(st.st_rdev as u32)
}

/// How many names a file has.
pub(super) fn stat_nlink(st: &Stat) -> u64 {
    u64::from(st.st_nlink)
}

/// The birth time of a file, which macOS's `stat` carries.
pub(super) fn birth_time_ns(_fd: &impl AsFd, st: &Stat) -> Option<(i64, i64)> {
    Some((st.st_birthtime, st.st_birthtime_nsec))
}

/// Refuses to create a special file: macOS before 13 has no `mknodat`, and `mknod` by a
/// path could be led outside the root by a directory swapped meanwhile.
pub(super) fn make_node(
    _dir: &impl AsFd,
    _name: &std::ffi::OsStr,
    _format: u32,
    _mode: u32,
    _rdev: u64,
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "special files (fifos, devices, sockets) are not created on macOS",
    ))
}

/// True when a rename's refusal to replace (`RENAME_EXCL`) failed only because the
/// filesystem does not offer it.
pub(super) fn noreplace_unsupported(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    e == Errno::INVAL || e == Errno::NOTSUP || e == Errno::NOSYS
}
