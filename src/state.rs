//! What the client keeps between runs: the baseline (the last state both sides agreed
//! on), the hash cache, what a tree being built already holds (`known`), sessions with
//! their locks and last-run records, the filters, and filesync's rules file. Written
//! atomically; read by the run, never by the agent's disk work.

pub mod baseline;
pub mod hash_cache;
pub mod known;
pub mod packing;
pub mod rules;
pub mod session;
