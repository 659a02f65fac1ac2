//! Moving file contents: batches of up to `--pending-max` files per direction, one
//! signature round trip per batch (new and small files are sent whole without one), all
//! chunks streamed from sender to receiver without waiting, outcomes collected at the end
//! of the batch. A delta that fails verification is sent again whole, once.

use std::collections::HashMap;

use crate::delta::DeltaOp;
use crate::endpoint::{Chunk, Endpoint, SendRequest};
use crate::error::{Error, Result};
use crate::plan::{Action, Op, Side};
use crate::tree::{Entry, Tree};

/// Files smaller than this are sent whole: a signature round trip would cost more.
pub const DELTA_MIN: u64 = 16 << 10;

/// What the transfers moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// File bytes sent as literal data.
    pub literal: u64,
    /// File bytes rebuilt from the receiver's old version (saved by deltas).
    pub matched: u64,
    /// Files resent whole after a failed delta.
    pub resent: u64,
}

/// Watches bytes go by (for progress bars).
pub trait Watch {
    /// A file starts (`size` bytes).
    fn begin(&mut self, path: &str, size: u64);
    /// `bytes` more of the current file are done.
    fn advance(&mut self, bytes: u64);
}

/// Ignores progress.
pub struct NoWatch;

impl Watch for NoWatch {
    fn begin(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
}

/// Copies the files of `actions[i]` for every `i` in `copies` (all `Op::Copy` of regular
/// files); returns each one's outcome by action index. `Err` means a side failed as a
/// whole (the connection broke): the caller stops.
#[allow(clippy::too_many_arguments)]
pub fn copy_files<'e>(
    actions: &[Action],
    copies: &[usize],
    local: &'e mut dyn Endpoint,
    remote: &'e mut dyn Endpoint,
    trees: [&Tree; 2],
    pending_max: usize,
    stats: &mut Stats,
    watch: &mut dyn Watch,
) -> Result<Vec<(usize, Result<Entry>)>> {
    let mut results = Vec::with_capacity(copies.len());
    for dst_side in [Side::Remote, Side::Local] {
        let (dst, src, src_tree) = match dst_side {
            Side::Remote => (&mut *remote, &mut *local, trees[0]),
            Side::Local => (&mut *local, &mut *remote, trees[1]),
        };
        let mine: Vec<usize> = copies
            .iter()
            .copied()
            .filter(|&i| actions[i].side == dst_side)
            .collect();
        for batch in mine.chunks(pending_max.max(1)) {
            let mut todo: Vec<(usize, bool)> = batch.iter().map(|&i| (i, true)).collect();
            for attempt in 0..2 {
                let outcomes = transfer(actions, &todo, dst, src, src_tree, stats, watch)?;
                let mut again = Vec::new();
                for (i, delta_used, r) in outcomes {
                    if attempt == 0 && delta_used && matches!(r, Err(Error::Verify { .. })) {
                        stats.resent += 1;
                        again.push((i, false));
                    } else {
                        results.push((i, r));
                    }
                }
                if again.is_empty() {
                    break;
                }
                todo = again;
            }
        }
    }
    Ok(results)
}

/// One pass over a batch: signatures, send, collect. Returns (action, delta used, outcome).
fn transfer(
    actions: &[Action],
    todo: &[(usize, bool)],
    dst: &mut dyn Endpoint,
    src: &mut dyn Endpoint,
    src_tree: &Tree,
    stats: &mut Stats,
    watch: &mut dyn Watch,
) -> Result<Vec<(usize, bool, Result<Entry>)>> {
    let source_of = |i: usize| -> (&crate::path::RelPath, &Entry) {
        let Op::Copy { from, source } = &actions[i].op else {
            unreachable!("copy_files takes copies only")
        };
        // A keep-both rename earlier in the run changed the source's ctime: check against
        // the tree as it is now, not as it was scanned.
        (
            from,
            src_tree.get(from).filter(|e| e.is_file()).unwrap_or(source),
        )
    };
    let wants_delta = |&(i, allowed): &(usize, bool)| {
        let old = actions[i].expect.as_ref().filter(|e| e.is_file());
        allowed && old.is_some_and(|o| o.size >= DELTA_MIN) && source_of(i).1.size >= DELTA_MIN
    };
    let basis: Vec<usize> = todo
        .iter()
        .filter(|t| wants_delta(t))
        .map(|t| t.0)
        .collect();
    let files: Vec<_> = basis
        .iter()
        .map(|&i| {
            (
                actions[i].path.clone(),
                actions[i].expect.clone().expect("checked above"),
            )
        })
        .collect();
    let mut signatures: HashMap<usize, Vec<u8>> = HashMap::new();
    if !files.is_empty() {
        for (&i, sig) in basis.iter().zip(dst.signatures(&files)?) {
            // An unreadable old version just means sending the file whole.
            if let Ok(sig) = sig {
                signatures.insert(i, sig);
            }
        }
    }
    let requests: Vec<SendRequest> = todo
        .iter()
        .map(|&(i, _)| {
            let (from, expect) = source_of(i);
            SendRequest {
                id: i as u64,
                path: from.clone(),
                expect: expect.clone(),
                target: actions[i].path.clone(),
                target_expect: actions[i].expect.clone(),
                signature: signatures.remove(&i).map(serde_bytes::ByteBuf::from),
            }
        })
        .collect();
    let delta_used: HashMap<u64, bool> = requests
        .iter()
        .map(|r| (r.id, r.signature.is_some()))
        .collect();
    src.send(&requests, &mut |chunk| {
        match &chunk {
            Chunk::Begin { path, meta, .. } => watch.begin(&path.to_string(), meta.size),
            Chunk::Data { ops, .. } => {
                for op in ops {
                    match op {
                        DeltaOp::Literal(b) => stats.literal += b.len() as u64,
                        DeltaOp::Copy { len, .. } => stats.matched += len,
                    }
                    watch.advance(op.len());
                }
            }
            _ => {}
        }
        dst.receive(chunk)
    })?;
    let mut outcomes: HashMap<u64, Result<Entry>> = dst.received(true)?.into_iter().collect();
    Ok(todo
        .iter()
        .map(|&(i, _)| {
            let id = i as u64;
            let r = outcomes.remove(&id).unwrap_or_else(|| {
                Err(Error::Protocol(format!(
                    "'{}' on {}: the transfer never completed",
                    actions[i].path,
                    dst.place()
                )))
            });
            (i, delta_used[&id], r)
        })
        .collect())
}
