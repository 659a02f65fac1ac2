//! Moving file contents: batches of up to `--pending-max` files per direction, one
//! signature round trip per batch (new and small files are sent whole without one), all
//! chunks streamed from sender to receiver without waiting, outcomes collected at the end
//! of the batch. A delta that fails verification is sent again whole, once.

use std::collections::HashMap;

use crate::delta::DeltaOp;
use crate::endpoint::{Chunk, Endpoint, SendRequest};
use crate::error::{Error, Result};
use crate::plan::{Action, Op, Side};
use crate::scan::Partials;
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
    /// Transfers start: this many files and bytes are planned.
    fn start(&mut self, _files: u64, _bytes: u64) {}
    /// A file starts (`size` bytes).
    fn begin(&mut self, _path: &str, _size: u64) {}
    /// `bytes` more of the current file are done.
    fn advance(&mut self, _bytes: u64) {}
    /// The current file is done (or given up).
    fn end(&mut self) {}
    /// Bytes sent so far on each stream of the connection (with several streams).
    fn streams(&mut self, _sent: &[u64]) {}
    /// The run is over: clear the display.
    fn finish(&mut self) {}
}

/// Ignores progress.
pub struct NoWatch;

impl Watch for NoWatch {}

/// Copies the files of the actions `is_copy` picks (`Op::Copy` of regular files), calling
/// `done` with each one's outcome as soon as it is committed; once `done` returns false, no
/// further batch starts. `Err` means a side failed as a whole (the connection broke): the
/// caller stops.
///
/// A copy committed has hashed its source: the source's entry in `trees` learns the
/// digest, and the action holds the entry it placed instead of the source as scanned.
#[allow(clippy::too_many_arguments)]
pub fn copy_files<'e>(
    actions: &mut [Action],
    is_copy: fn(&Action) -> bool,
    local: &'e mut dyn Endpoint,
    remote: &'e mut dyn Endpoint,
    [lt, rt]: [&mut Tree; 2],
    partials: [&Partials; 2],
    pending_max: usize,
    stats: &mut Stats,
    watch: &mut dyn Watch,
    done: &mut dyn FnMut(&Action, Result<Entry>) -> bool,
) -> Result<()> {
    let mut go_on = true;
    for dst_side in [Side::Remote, Side::Local] {
        let (dst, src, src_tree, dst_partials) = match dst_side {
            Side::Remote => (&mut *remote, &mut *local, &mut *lt, partials[1]),
            Side::Local => (&mut *local, &mut *remote, &mut *rt, partials[0]),
        };
        // Batches are picked as they are reached: a list of every copy's index would hold
        // 8 bytes a file through the transfers, the run's peak.
        let mut next = 0;
        loop {
            if !go_on {
                return Ok(());
            }
            let mut todo: Vec<(usize, bool)> = (next..actions.len())
                .filter(|&i| is_copy(&actions[i]) && actions[i].side == dst_side)
                .take(pending_max.max(1))
                .map(|i| (i, true))
                .collect();
            let Some(&(last, _)) = todo.last() else {
                break;
            };
            next = last + 1;
            for attempt in 0..2 {
                let mut again = Vec::new();
                let mut settle = |a: &Action, i: usize, delta_used: bool, r: Result<Entry>| {
                    if attempt == 0 && delta_used && matches!(r, Err(Error::Verify { .. })) {
                        stats.resent += 1;
                        again.push((i, false));
                    } else {
                        go_on &= done(a, r);
                    }
                };
                transfer(
                    actions,
                    &todo,
                    dst,
                    src,
                    &mut *src_tree,
                    dst_partials,
                    &mut stats.literal,
                    &mut stats.matched,
                    watch,
                    &mut settle,
                )?;
                if again.is_empty() {
                    break;
                }
                todo = again;
            }
        }
    }
    Ok(())
}

/// Takes one file's outcome as it arrives: its action, the action's index, whether a
/// delta was sent, and the result.
type Settle<'a> = dyn FnMut(&Action, usize, bool, Result<Entry>) + 'a;

/// One pass over a batch: signatures, send, and each outcome to `settle` as it arrives.
#[allow(clippy::too_many_arguments)]
fn transfer(
    actions: &mut [Action],
    todo: &[(usize, bool)],
    dst: &mut dyn Endpoint,
    src: &mut dyn Endpoint,
    src_tree: &mut Tree,
    dst_partials: &Partials,
    literal: &mut u64,
    matched: &mut u64,
    watch: &mut dyn Watch,
    settle: &mut Settle<'_>,
) -> Result<()> {
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
    // A delta needs a basis on the receiver: the old version of the file, or for a new
    // file the partial an interrupted run left. New files without one go whole, without
    // a signature round trip.
    let wants_delta = |&(i, allowed): &(usize, bool)| {
        let basis_size = match actions[i].expect.as_ref() {
            Some(old) if old.is_file() => old.size,
            Some(_) => 0,
            None => dst_partials.get(&actions[i].path).copied().unwrap_or(0),
        };
        allowed && basis_size >= DELTA_MIN && source_of(i).1.size >= DELTA_MIN
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
                actions[i].expect.as_deref().cloned(),
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
                target_expect: actions[i].expect.as_deref().cloned(),
                signature: signatures.remove(&i).map(serde_bytes::ByteBuf::from),
            }
        })
        .collect();
    let mut waiting: HashMap<u64, bool> = requests
        .iter()
        .map(|r| (r.id, r.signature.is_some()))
        .collect();
    let mut deliver = |outcomes: Vec<(u64, Result<Entry>)>, waiting: &mut HashMap<u64, bool>| {
        for (id, r) in outcomes {
            // An outcome for something not asked for (a confused peer) is ignored.
            if let Some(delta_used) = waiting.remove(&id) {
                let i = id as usize;
                if let Ok(written) = &r {
                    placed(&mut actions[i], written, src_tree);
                }
                settle(&actions[i], i, delta_used, r);
            }
        }
    };
    src.send(&requests, &mut |chunk| {
        let file_done = matches!(chunk, Chunk::End { .. } | Chunk::Abort { .. });
        match &chunk {
            Chunk::Begin { path, meta, .. } => watch.begin(&path.to_string(), meta.size),
            Chunk::Data { ops, .. } => {
                for op in ops {
                    match op {
                        DeltaOp::Literal(b) => *literal += b.len() as u64,
                        DeltaOp::Copy { len, .. } => *matched += len,
                        DeltaOp::Hole(_) => {}
                    }
                    watch.advance(op.len());
                }
            }
            Chunk::End { .. } | Chunk::Abort { .. } => watch.end(),
        }
        let data = matches!(chunk, Chunk::Data { .. });
        dst.receive(chunk)?;
        if data {
            watch.streams(&dst.streams());
        }
        if file_done {
            deliver(dst.received(false)?, &mut waiting);
        }
        Ok(())
    })?;
    deliver(dst.received(true)?, &mut waiting);
    let mut lost: Vec<(u64, bool)> = waiting.into_iter().collect();
    lost.sort_unstable();
    for (id, delta_used) in lost {
        let a = &actions[id as usize];
        let why = format!(
            "'{}' on {}: the transfer never completed",
            a.path,
            dst.place()
        );
        settle(a, id as usize, delta_used, Err(Error::Protocol(why)));
    }
    Ok(())
}

/// A copy is committed: its source learns the digest the sender computed, so both sides
/// agree, and the action holds the entry it placed. Let go by the action, the metadata
/// the source was scanned with is held by its tree alone, which changes it in place (or
/// shares the copy's): a million-file push holds each file's metadata once, not twice.
fn placed(action: &mut Action, written: &Entry, src_tree: &mut Tree) {
    let Op::Copy { from, source } = &mut action.op else {
        return;
    };
    *source = written.clone();
    if let Some(src) = src_tree.entries.get_mut(from).filter(|e| e.is_file()) {
        src.learn_digest(written);
    }
}
