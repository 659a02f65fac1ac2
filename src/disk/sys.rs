//! The raw OS calls: one file per OS (`linux.rs` now; `macos.rs` and `windows.rs` have
//! their place here), each offering the same functions. The rest of tandem calls these,
//! never the OS (rustix, libc, `std::os::linux`) itself; `scripts/check-layout.sh` checks
//! it. Linux's confined disk operations ([`fsops`]), extended attributes ([`xattr`]) and
//! keep-directory links ([`keep`]) are files of their own below `linux/`.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;
