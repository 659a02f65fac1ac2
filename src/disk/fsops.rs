//! Disk operations confined to one root directory: the contract every OS layer keeps.
//!
//! Every path is resolved component by component from the root's descriptor, never
//! following a symlink, and the final name is acted on without following one either, so
//! nothing here can reach outside the root — not through `..` (which a
//! [`RelPath`](crate::core::path::RelPath) cannot hold) and not through a symlink swapped
//! in after the scan. Temp files are named with [`TEMP_PREFIX`], resumable partial
//! transfers with [`PART_PREFIX`]; a commit renames into place only what is still as
//! scanned. The implementation is the OS's ([`crate::disk::sys`]): on Linux `openat2`,
//! `statx` and the `*at` calls.

pub use crate::disk::sys::fsops::*;
