//! Linux: the calls behind [`super`], over rustix. Confined disk operations, extended
//! attributes and keep-directory links are files of their own below.

pub mod fsops;
pub mod keep;
pub mod xattr;

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{Mode, OFlags};

/// A directory being listed.
pub type Dir = rustix::fs::Dir;

/// Opens the directory `name` in `dir` for listing, never through a symlink.
pub fn open_dir_at(dir: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        flags,
        Mode::empty(),
    )?)
}

/// Opens a directory by path (a root, a keep directory: the user named it, so a symlink
/// in its path is followed).
pub fn open_dir(path: &std::path::Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

/// Lists an open directory.
pub fn read_dir(dir: &OwnedFd) -> io::Result<Dir> {
    Ok(Dir::read_from(dir)?)
}

/// A file's status as the kernel reports it (`fstat`, `statat`).
pub type Stat = rustix::fs::Stat;

/// Whether this process runs as root (and so may set owners).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The real user id (`%i` in ssh_config, the passwd lookup of the login name).
pub fn user_id() -> u32 {
    rustix::process::getuid().as_raw()
}

/// This machine's name, as `uname -n` prints it.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Asks the kernel to kill this process when its parent dies (the pipe transport's agent);
/// fails if the parent is already gone.
pub fn die_with_parent() -> Result<(), String> {
    let parent = rustix::process::getppid();
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| format!("cannot follow the parent process: {e}"))?;
    // The parent may have died before the request took effect.
    if rustix::process::getppid() != parent || parent.is_none() {
        return Err("the client is already gone".into());
    }
    Ok(())
}

/// Makes a pipe hold `bytes` (stdin from sshd: a larger pipe gets more window sooner).
/// Not a pipe, or not allowed: nothing changes.
pub fn widen_pipe(fd: impl AsFd, bytes: usize) {
    let _ = rustix::pipe::fcntl_setpipe_size(fd, bytes);
}

/// Turns transparent huge pages off for this process and what it starts; a kernel
/// without the setting runs as before.
pub fn disable_transparent_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// Whether transparent huge pages are off for this process (`None`: not known).
pub fn transparent_huge_pages_disabled() -> Option<bool> {
    rustix::thread::transparent_huge_pages_are_disabled().ok()
}

/// Asks a TCP socket to acknowledge at once (quick ACKs are reset by the kernel, so this
/// is repeated after reads).
pub fn quick_ack(socket: impl AsFd) {
    let _ = rustix::net::sockopt::set_tcp_quickack(socket, true);
}

/// Whether a TCP socket acknowledges at once right now.
pub fn quick_ack_is_on(socket: impl AsFd) -> bool {
    rustix::net::sockopt::tcp_quickack(socket).unwrap_or(false)
}

/// A device number's major and minor parts.
pub fn device_numbers(rdev: u64) -> (u32, u32) {
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

/// Flushes the filesystem that holds `fd` to stable storage.
pub fn syncfs(fd: impl AsFd) -> io::Result<()> {
    rustix::fs::syncfs(fd).map_err(io::Error::from)
}

/// Makes `dst` share `src`'s blocks (FICLONE: a copy without copying, where the
/// filesystem can); false where it cannot.
pub fn clone_file(dst: impl AsFd, src: impl AsFd) -> bool {
    rustix::fs::ioctl_ficlone(dst, src).is_ok()
}

/// The status of an open file.
pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    rustix::fs::fstat(fd).map_err(io::Error::from)
}

/// Listens on an abstract Unix socket (no file: gone with the process).
pub fn listen_abstract(name: &[u8]) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    std::os::unix::net::UnixListener::bind_addr(&addr)
}

/// Connects to an abstract Unix socket.
pub fn connect_abstract(name: &[u8]) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    std::os::unix::net::UnixStream::connect_addr(&addr)
}

/// Sets the mode bits of an open file.
pub fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(mode)).map_err(io::Error::from)
}
