//! The raw OS calls. The rest of tandem calls these, never the OS (rustix, libc,
//! `std::os::linux`) itself; `scripts/check-layout.sh` checks it, and that no
//! `cfg(target_os)` appears outside this folder either.
//!
//! What POSIX gives every Unix is in [`unix`] (and re-exported here): confined disk
//! operations ([`fsops`]), keep-directory links ([`keep`]), directory listing, stat. What
//! differs lives in one file per OS, each offering the same functions: `linux.rs` (statx,
//! `O_PATH`, FICLONE, `PR_SET_PDEATHSIG`, abstract sockets, the kernel tunings) and
//! `macos.rs` (`st_birthtime`, a kqueue watch of the parent, `sync_volume_np`, sockets in
//! a private directory; what macOS cannot do says so where it is asked). Extended
//! attributes ([`xattr`]) are one file per OS below each.

mod unix;
pub use unix::*;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;
#[cfg(target_os = "macos")]
pub use macos::*;
