//! tandem keeps two directory trees identical: push, pull or bidirectional.
//!
//! One run: open two [`endpoint::Endpoint`]s, scan both trees, load the client-side
//! [`baseline`], [`reconcile::reconcile`] them into a [`plan::Plan`] (pure: no IO),
//! check [`reconcile::safety`], execute the plan action by action (temp file, verify,
//! re-check the target, rename), then commit the new baseline from what succeeded.
//! Every step is reported as an [`output::Event`].

/// A fingerprint of the sources this library was built from (see `build.rs`): the client
/// and an agent built from one checkout carry the same one.
pub const SOURCE_ID: &str = env!("TANDEM_SOURCE_ID");

pub mod agent;
pub mod allocator;
pub mod baseline;
#[cfg(feature = "client")]
pub mod cli;
pub mod compress;
pub mod delta;
pub mod endpoint;
pub mod error;
pub mod exit;
pub mod fsops;
pub mod hash_cache;
pub mod keep;
pub mod known;
pub mod log;
pub mod merge;
pub mod output;
pub mod owners;
pub mod packing;
pub mod path;
pub mod plan;
pub mod protocol;
pub mod reconcile;
pub mod rules;
pub mod scan;
pub mod secret;
pub mod session;
pub mod sync;
pub mod transport;
pub mod tree;
pub mod watch;
pub mod xattrs;
