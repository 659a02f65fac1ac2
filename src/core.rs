//! The pure core: paths, trees, sorted merges, plans and reconciliation. Data in, plan
//! out: no disk, no network, no processes, no clock, no async. Everything here is
//! table-tested; it may use nothing of tandem outside `core/` but the shared vocabulary
//! (`error`), which `scripts/check-layout.sh` checks.

pub mod merge;
pub mod names;
pub mod path;
pub mod plan;
pub mod reconcile;
pub mod tree;
pub mod verify;
