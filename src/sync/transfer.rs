//! Moving file contents: batches of up to `--pending-max` files per direction, one
//! signature round trip per batch (three for two-level signatures) (new and small files are sent whole without one), all
//! chunks streamed from sender to receiver without waiting, outcomes collected at the end
//! of the batch. A delta that fails verification is sent again whole, once.

use std::collections::HashMap;

use crate::core::path::RelPath;
use crate::core::plan::{Action, Op, Side};
use crate::core::tree::{Entry, Tree};
use crate::disk::delta::refine::two_levels;
use crate::disk::delta::DeltaOp;
use crate::disk::scan::Partials;
use crate::endpoint::{Chunk, Endpoint, GapRequest, Refined, SendRequest, Sign, SignRequest};
use crate::error::{Error, Result};

/// Files smaller than this are sent whole: their signature and delta would not be much
/// smaller than the file compressed in the stream's context. Above it a delta wins on a
/// line edited in a source file (on OpenSSL's releases, 4 KiB sent 22% fewer bytes than
/// 16 KiB, in the same time; 2 KiB saved 1% more and cost a quarter more time, the
/// signature round trip being in the way).
pub const DELTA_MIN: u64 = 4 << 10;

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

/// Both sides as the transfers see them, and how many files may be in flight.
pub struct Transfers<'e> {
    /// The local endpoint.
    pub local: &'e mut dyn Endpoint,
    /// The remote endpoint.
    pub remote: &'e mut dyn Endpoint,
    /// Each side's tree (`[local, remote]`): a committed copy's source learns its digest.
    pub trees: [&'e mut Tree; 2],
    /// The partial transfers each side holds (`[local, remote]`), bases for deltas.
    pub partials: [&'e Partials; 2],
    /// Most files in flight at once (`--pending-max`).
    pub in_flight: usize,
    /// What has moved so far.
    pub stats: Stats,
}

/// One direction of the transfers.
struct Route<'a> {
    dst: &'a mut dyn Endpoint,
    src: &'a mut dyn Endpoint,
    /// The sending side's tree.
    src_tree: &'a mut Tree,
    /// The receiving side's partial transfers.
    dst_partials: &'a Partials,
}

impl Transfers<'_> {
    /// Copies the files of the actions `is_copy` picks (`Op::Copy` of regular files),
    /// calling `done` with each one's outcome as soon as it is committed; once `done`
    /// returns false, no further batch starts. `Err` means a side failed as a whole (the
    /// connection broke): the caller stops.
    ///
    /// A copy committed has hashed its source: the source's entry in `trees` learns the
    /// digest, and the action holds the entry it placed instead of the source as scanned.
    pub fn copy(
        &mut self,
        actions: &mut [Action],
        is_copy: fn(&Action) -> bool,
        watch: &mut dyn Watch,
        done: &mut dyn FnMut(&Action, Result<Entry>) -> bool,
    ) -> Result<()> {
        let [lt, rt] = &mut self.trees;
        let [lp, rp] = self.partials;
        let mut go_on = true;
        for dst_side in [Side::Remote, Side::Local] {
            let mut route = match dst_side {
                Side::Remote => Route {
                    dst: &mut *self.remote,
                    src: &mut *self.local,
                    src_tree: lt,
                    dst_partials: rp,
                },
                Side::Local => Route {
                    dst: &mut *self.local,
                    src: &mut *self.remote,
                    src_tree: rt,
                    dst_partials: lp,
                },
            };
            // Batches are picked as they are reached: a list of every copy's index would
            // hold 8 bytes a file through the transfers, the run's peak.
            let mut next = 0;
            while go_on {
                let todo: Vec<(usize, bool)> = (next..actions.len())
                    .filter(|&i| is_copy(&actions[i]) && actions[i].side == dst_side)
                    .take(self.in_flight.max(1))
                    .map(|i| (i, true))
                    .collect();
                let Some(&(last, _)) = todo.last() else {
                    break;
                };
                next = last + 1;
                let stats = &mut self.stats;
                batch(actions, todo, &mut route, stats, watch, &mut |a, r| {
                    go_on &= done(a, r);
                })?;
            }
        }
        Ok(())
    }
}

/// Copies one batch; a file whose delta failed verification is sent again whole, once.
fn batch(
    actions: &mut [Action],
    mut todo: Vec<(usize, bool)>,
    route: &mut Route<'_>,
    stats: &mut Stats,
    watch: &mut dyn Watch,
    done: &mut dyn FnMut(&Action, Result<Entry>),
) -> Result<()> {
    for attempt in 0..2 {
        let mut again = Vec::new();
        let mut resent = 0;
        let mut settle = |a: &Action, i: usize, delta_used: bool, r: Result<Entry>| {
            if attempt == 0 && delta_used && matches!(r, Err(Error::Verify { .. })) {
                resent += 1;
                again.push((i, false));
            } else {
                done(a, r);
            }
        };
        transfer(actions, &todo, route, stats, watch, &mut settle)?;
        stats.resent += resent;
        if again.is_empty() {
            break;
        }
        todo = again;
    }
    Ok(())
}

/// Takes one file's outcome as it arrives: its action, the action's index, whether a
/// delta was sent, and the result.
type Settle<'a> = dyn FnMut(&Action, usize, bool, Result<Entry>) + 'a;

/// The file a copy sends, and its entry: as the tree holds it now (a keep-both rename
/// earlier in the run changed the source's ctime), else as it was scanned.
fn source_of<'a>(actions: &'a [Action], src_tree: &'a Tree, i: usize) -> (&'a RelPath, &'a Entry) {
    let Op::Copy { from, source } = &actions[i].op else {
        unreachable!("the transfers take copies only")
    };
    (
        from,
        src_tree.get(from).filter(|e| e.is_file()).unwrap_or(source),
    )
}

/// The requests for a batch, with the signatures of the old versions that deltas need:
/// one round trip to the receiver, and two more where signatures come in two levels.
fn requests(
    actions: &[Action],
    todo: &[(usize, bool)],
    route: &mut Route<'_>,
) -> Result<Vec<SendRequest>> {
    // A delta needs a basis on the receiver: the old version of the file, or for a new
    // file the partial an interrupted run left. New files without one go whole, without
    // a signature round trip.
    let basis_size = |i: usize| match actions[i].expect.as_ref() {
        Some(old) if old.is_file() => old.size,
        Some(_) => 0,
        None => route
            .dst_partials
            .get(&actions[i].path)
            .copied()
            .unwrap_or(0),
    };
    let basis: Vec<(usize, u64)> = todo
        .iter()
        .filter(|&&(i, allowed)| {
            allowed
                && basis_size(i) >= DELTA_MIN
                && source_of(actions, route.src_tree, i).1.size >= DELTA_MIN
        })
        .map(|&(i, _)| (i, basis_size(i)))
        .collect();
    let mut signed = sign(actions, &basis, route)?;
    refine(actions, &basis, &mut signed, route)?;
    Ok(todo
        .iter()
        .map(|&(i, _)| {
            let (from, expect) = source_of(actions, route.src_tree, i);
            let (signature, refined) = signed.remove(&i).unzip();
            SendRequest {
                id: i as u64,
                path: from.clone(),
                expect: expect.clone(),
                target: actions[i].path.clone(),
                target_expect: actions[i].expect.as_deref().cloned(),
                signature: signature.map(serde_bytes::ByteBuf::from),
                refined: refined.flatten(),
            }
        })
        .collect())
}

/// Each basis's signature by action index (with its second level, once refined).
type Signed = HashMap<usize, (Vec<u8>, Option<Refined>)>;

/// The first level: each basis (action index, size) signed whole, or in coarse blocks
/// where two levels pay. An unreadable old version just means sending the file whole.
fn sign(actions: &[Action], basis: &[(usize, u64)], route: &mut Route<'_>) -> Result<Signed> {
    if basis.is_empty() {
        return Ok(Signed::new());
    }
    let files: Vec<_> = basis
        .iter()
        .map(|&(i, size)| SignRequest {
            path: actions[i].path.clone(),
            expect: actions[i].expect.as_deref().cloned(),
            sign: if two_levels(size) {
                Sign::Coarse
            } else {
                Sign::Whole
            },
        })
        .collect();
    let sigs = route.dst.signatures(&files)?;
    Ok(basis
        .iter()
        .zip(sigs)
        .filter_map(|(&(i, _), sig)| Some((i, (sig.ok()?, None))))
        .collect())
}

/// The second level: the sender finds the basis ranges each coarse signature missed, and
/// the receiver signs just those in fine blocks. A step that fails for a file leaves it
/// its coarse signature: a correct delta, with more literal data.
fn refine(
    actions: &[Action],
    basis: &[(usize, u64)],
    signed: &mut Signed,
    route: &mut Route<'_>,
) -> Result<()> {
    let coarse: Vec<(usize, u64)> = basis
        .iter()
        .copied()
        .filter(|&(i, size)| two_levels(size) && signed.contains_key(&i))
        .collect();
    if coarse.is_empty() {
        return Ok(());
    }
    let asks: Vec<GapRequest> = coarse
        .iter()
        .map(|&(i, basis_len)| {
            let (from, expect) = source_of(actions, route.src_tree, i);
            GapRequest {
                path: from.clone(),
                expect: expect.clone(),
                signature: serde_bytes::ByteBuf::from(signed[&i].0.clone()),
                basis_len,
            }
        })
        .collect();
    let gaps = route.src.gaps(&asks)?;
    let missed: Vec<(usize, Vec<(u64, u64)>)> = coarse
        .iter()
        .zip(gaps)
        .filter_map(|(&(i, _), g)| g.ok().filter(|g| !g.is_empty()).map(|g| (i, g)))
        .collect();
    if missed.is_empty() {
        return Ok(());
    }
    let files: Vec<_> = missed
        .iter()
        .map(|(i, ranges)| SignRequest {
            path: actions[*i].path.clone(),
            expect: actions[*i].expect.as_deref().cloned(),
            sign: Sign::Ranges(ranges.clone()),
        })
        .collect();
    let fine = route.dst.signatures(&files)?;
    for ((i, ranges), sig) in missed.into_iter().zip(fine) {
        if let (Ok(sig), Some(entry)) = (sig, signed.get_mut(&i)) {
            entry.1 = Some(Refined {
                ranges,
                signature: serde_bytes::ByteBuf::from(sig),
            });
        }
    }
    Ok(())
}

/// One pass over a batch: signatures, send, and each outcome to `settle` as it arrives.
fn transfer(
    actions: &mut [Action],
    todo: &[(usize, bool)],
    route: &mut Route<'_>,
    stats: &mut Stats,
    watch: &mut dyn Watch,
    settle: &mut Settle<'_>,
) -> Result<()> {
    let requests = requests(actions, todo, route)?;
    let Route {
        dst, src, src_tree, ..
    } = route;
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
        let data = matches!(chunk, Chunk::Data { .. });
        watch_chunk(&chunk, stats, watch);
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

/// Counts a chunk on its way to the receiver and shows its progress.
fn watch_chunk(chunk: &Chunk, stats: &mut Stats, watch: &mut dyn Watch) {
    match chunk {
        Chunk::Begin { path, meta, .. } => watch.begin(&path.to_string(), meta.size),
        Chunk::Data { ops, .. } => {
            for op in ops {
                match op {
                    DeltaOp::Literal(b) => stats.literal += b.len() as u64,
                    DeltaOp::Copy { len, .. } => stats.matched += len,
                    DeltaOp::Hole(_) => {}
                }
                watch.advance(op.len());
            }
        }
        Chunk::End { .. } | Chunk::Abort { .. } => watch.end(),
    }
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
