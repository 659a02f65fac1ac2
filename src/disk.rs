//! One side's filesystem: scanning, operations confined to a root, deltas, compression,
//! xattrs and ACLs, owners by name, keep directories, watching for changes. It knows no
//! network, no endpoint and no output (it returns values and errors; endpoints turn them
//! into events). Raw OS calls are in [`sys`], one file per OS.

pub mod compress;
pub mod delta;
pub mod fsops;
pub mod keep;
pub mod owners;
pub mod scan;
pub mod sys;
pub mod watch;
pub mod xattrs;
