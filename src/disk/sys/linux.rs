//! Linux: what differs from the other Unixes ([`super::unix`] has the rest), over rustix.
//! Extended attributes (ACLs included) are a file of their own below.

pub mod xattr;

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};

use rustix::fs::{AtFlags, OFlags, Stat};

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

/// Puts this process behind everything else: nice 10 for the CPU, and the idle I/O class,
/// which reads only when no one else wants the disk (`tandem verify` reads whole trees).
/// Refused (a container, an old kernel): it runs as it was.
#[allow(unsafe_code)]
pub fn lower_priority() {
    let _ = rustix::process::nice(10);
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        );
    }
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

/// Whether this OS has quick ACKs ([`quick_ack`] does something).
pub const QUICK_ACK: bool = true;

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

/// This process's own executable, read through `/proc/self/exe` (the file that runs,
/// even if its name was replaced since).
pub fn own_executable() -> io::Result<Vec<u8>> {
    std::fs::read("/proc/self/exe")
}

/// A Unix socket the extra streams of one agent join; an abstract one on Linux (no file:
/// gone with the process).
pub struct LocalListener {
    socket: UnixListener,
    address: String,
}

impl LocalListener {
    /// What a relay passes to [`connect_local`].
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Waits for the next stream.
    pub fn accept(&self) -> io::Result<UnixStream> {
        Ok(self.socket.accept()?.0)
    }
}

/// Listens on the abstract Unix socket `name`.
pub fn listen_local(name: &str) -> io::Result<LocalListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    Ok(LocalListener {
        socket: UnixListener::bind_addr(&addr)?,
        address: name.to_string(),
    })
}

/// Connects to the socket a [`LocalListener`] listens on, by its address.
pub fn connect_local(address: &[u8]) -> io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(address)?;
    UnixStream::connect_addr(&addr)
}

/// Opens directories only to look names up in them (`O_PATH`: no read permission needed,
/// nothing read).
pub(super) const LOOKUP: OFlags = OFlags::PATH;

/// File type and permission bits of a stat.
pub(super) fn stat_mode(st: &Stat) -> u32 {
    st.st_mode
}

/// The device a file is on.
pub(super) fn stat_dev(st: &Stat) -> u64 {
    st.st_dev
}

/// The device a device node stands for.
pub(super) fn stat_rdev(st: &Stat) -> u64 {
    st.st_rdev
}

/// How many names a file has.
#[allow(clippy::unnecessary_cast)] // 32-bit on 32-bit ARM
pub(super) fn stat_nlink(st: &Stat) -> u64 {
    st.st_nlink as u64
}

/// The birth time of an open file, in nanoseconds, where the filesystem records one
/// (statx: `stat` has no field for it).
pub(super) fn birth_time_ns(fd: &impl AsFd, _st: &Stat) -> Option<(i64, i64)> {
    rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, rustix::fs::StatxFlags::BTIME)
        .ok()
        .filter(|x| x.stx_mask & rustix::fs::StatxFlags::BTIME.bits() != 0)
        .map(|x| (x.stx_btime.tv_sec, i64::from(x.stx_btime.tv_nsec)))
}

/// Creates the special file `name` in `dir` (a fifo, socket or device node).
pub(super) fn make_node(
    dir: &impl AsFd,
    name: &std::ffi::OsStr,
    format: u32,
    mode: u32,
    rdev: u64,
) -> io::Result<()> {
    let ft = rustix::fs::FileType::from_raw_mode(format);
    rustix::fs::mknodat(dir, name, ft, super::mode_bits(mode), rdev)?;
    Ok(())
}

/// True when a rename's refusal to replace (`RENAME_NOREPLACE`) failed only because the
/// filesystem does not offer it.
pub(super) fn noreplace_unsupported(e: rustix::io::Errno) -> bool {
    e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS
}
