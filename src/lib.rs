//! tandem keeps two directory trees identical: push, pull or bidirectional.
//!
//! One run is a pipeline. The command line ([`cli`]) becomes a [`sync::Job`]. The run
//! opens two [`endpoint`]s — the local disk, and an agent reached over a [`transport`]
//! (a pipe, the built-in SSH client, or the system ssh) that speaks the [`wire`] protocol
//! and serves its own disk. Each side scans its tree ([`disk`]); the client loads what it
//! kept from the last run ([`state`]: the baseline and hash cache); the pure [`core`]
//! reconciles baseline and trees into a plan; [`sync`] checks its safety and executes it
//! action by action (temp file, verify, re-check the target, rename), then commits the
//! new baseline from what succeeded. Every step is an [`output`] event.
//!
//! The parts, in the order data flows through them:
//! - [`cli`]: the command line, parsed into a job (the client only).
//! - [`sync`]: one run from start to finish, and continuous mode.
//! - [`state`]: what the client keeps between runs.
//! - [`core`]: the pure core — paths, trees, merges, plans, reconciliation.
//! - [`endpoint`]: one side of a sync, local or remote, behind one trait.
//! - [`wire`]: frames, handshake, messages, and the agent that serves them.
//! - [`transport`]: how the agent is reached — pipe, SSH, system ssh.
//! - [`disk`]: one side's filesystem, with the raw OS calls in [`disk::sys`].
//! - [`output`]: human, JSON and dry-run reporters, progress bars, log files.
//! - [`error`], [`exit`], [`secret`], [`allocator`]: the shared vocabulary and process
//!   settings.

/// A fingerprint of the sources this library was built from (see `build.rs`): the client
/// and an agent built from one checkout carry the same one.
pub const SOURCE_ID: &str = env!("TANDEM_SOURCE_ID");

#[cfg(feature = "client")]
pub mod cli;
pub mod sync;

pub mod core;
pub mod state;

pub mod endpoint;
pub mod transport;
pub mod wire;

pub mod disk;

pub mod output;

pub mod allocator;
pub mod error;
pub mod exit;
pub mod secret;
