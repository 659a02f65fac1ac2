//! Two-level signatures: the receiver signs its old version in coarse blocks, the sender
//! finds the basis ranges those missed ([`Gaps`]), the receiver signs just those ranges
//! in fine blocks, and the sender diffs what the coarse pass left literal against them.
//!
//! On a source tree's release most of a changed file is unchanged, so the fine blocks
//! where edits are cost less than signing the whole file finely: on OpenSSL 3.3.2 → 3.4.0
//! the signatures shrink by about half, for the same literal bytes and one more round
//! trip per batch. Either level's false match is caught by the BLAKE3 check of the result.

use std::fs::File;
use std::io;

use fast_rsync::{IndexedSignature, Signature};

use super::{diff_into, options, read_full, DeltaOp, WINDOW};

/// Basis ranges (start, end), sorted and apart.
pub type Ranges = Vec<(u64, u64)>;

/// Old versions from this size on are signed in two levels.
pub const TWO_LEVEL_MIN: u64 = 16 << 10;
/// ... up to this size: a larger file is read once more by the sender to find the gaps,
/// which costs more time than its signature's bytes save on a fast link, and its fine
/// ranges could exceed a window.
pub const TWO_LEVEL_MAX: u64 = WINDOW as u64;

/// Whether a basis of `len` bytes is signed in two levels.
pub fn two_levels(len: u64) -> bool {
    (TWO_LEVEL_MIN..=TWO_LEVEL_MAX).contains(&len)
}

/// Collects, from a coarse delta's ops in file order, the basis ranges its literals
/// replaced.
#[derive(Debug, Default)]
pub struct Gaps {
    /// Where the basis data after the last copy starts.
    after_copy: u64,
    /// Literal bytes since the last copy.
    literal: u64,
    gaps: Vec<(u64, u64)>,
}

impl Gaps {
    /// Takes the next ops of the delta.
    pub fn take(&mut self, ops: &[DeltaOp]) {
        for op in ops {
            match op {
                DeltaOp::Copy { offset, len } => {
                    self.close(*offset);
                    self.after_copy = offset + len;
                }
                DeltaOp::Literal(_) | DeltaOp::Hole(_) => self.literal += op.len(),
            }
        }
    }

    /// A copy from `next` ends the literal run: the basis between the last copy and this
    /// one is what it replaced (or, when the copies go backwards, as much as the run).
    fn close(&mut self, next: u64) {
        if self.literal > 0 {
            let end = if next > self.after_copy {
                next
            } else {
                self.after_copy + self.literal
            };
            self.gaps.push((self.after_copy, end));
        }
        self.literal = 0;
    }

    /// The ranges to sign finely for a basis of `basis_len` bytes, as [`normalise`]d.
    pub fn finish(mut self, basis_len: u64) -> Vec<(u64, u64)> {
        self.close(basis_len);
        normalise(self.gaps, options(basis_len).block_size.into(), basis_len)
    }
}

/// Sorted, merged, clamped to the basis and each a whole number of `block`s long (only a
/// range ending at the end of the basis may be shorter), so that their concatenation is
/// signed as one; at most a window's worth in all.
fn normalise(mut gaps: Vec<(u64, u64)>, block: u64, basis_len: u64) -> Vec<(u64, u64)> {
    let whole = |(start, end): (u64, u64)| {
        let len = (end - start).div_ceil(block) * block;
        (start, (start + len).min(basis_len))
    };
    gaps.retain(|&(s, e)| s < e && s < basis_len);
    gaps.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(gaps.len());
    for gap in gaps {
        let gap = whole((gap.0, gap.1.min(basis_len)));
        match out.last_mut() {
            Some(last) if gap.0 <= last.1 => *last = whole((last.0, last.1.max(gap.1))),
            _ => out.push(gap),
        }
    }
    let mut total = 0;
    out.retain(|&(s, e)| {
        total += e - s;
        total <= WINDOW as u64
    });
    out
}

/// Checks ranges from the other side: what [`normalise`] makes, within a basis of `len`.
pub fn check_ranges(ranges: &[(u64, u64)], block: u64, len: u64) -> Result<(), String> {
    let mut at = 0;
    let mut total = 0u64;
    for &(start, end) in ranges {
        let whole = (end - start.min(end)) % block == 0 || end == len;
        if start < at || end <= start || end > len || !whole {
            return Err(format!(
                "bad range {start}..{end} to sign (basis of {len} bytes)"
            ));
        }
        at = end;
        total += end - start;
    }
    if total > WINDOW as u64 {
        return Err(format!(
            "ranges to sign cover {total} bytes, more than a window"
        ));
    }
    Ok(())
}

/// The fine signature of `ranges` of a basis of `len` bytes, read at their offsets.
pub fn range_signature(file: &File, len: u64, ranges: &[(u64, u64)]) -> io::Result<Vec<u8>> {
    let opts = options(len);
    check_ranges(ranges, opts.block_size.into(), len)
        .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
    let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    let mut buf = vec![0u8; total as usize];
    let mut at = 0;
    for &(start, end) in ranges {
        let piece = &mut buf[at..at + (end - start) as usize];
        let mut reader = ReadAt { file, pos: start };
        if read_full(&mut reader, piece)? < piece.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the old version got shorter",
            ));
        }
        at += piece.len();
    }
    Ok(Signature::calculate(&buf, opts).serialized().to_vec())
}

/// Positioned reads as a reader.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Checks a fine signature against the ranges it claims to sign (sorted, apart, and one
/// block for each block of their concatenation).
pub fn check_fine(fine: &Signature, ranges: &[(u64, u64)]) -> Result<(), String> {
    let bytes = fine.serialized();
    let field =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let (block, hash) = (u64::from(field(4)), field(8) as usize);
    let mut at = 0;
    for &(start, end) in ranges {
        if start < at || end <= start {
            return Err("bad ranges in a two-level signature".into());
        }
        at = end;
    }
    let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    let blocks = (bytes.len() - 12) / (4 + hash);
    if blocks as u64 != total.div_ceil(block) {
        return Err("a fine signature that does not match its ranges".into());
    }
    Ok(())
}

/// Replaces each run of literals in `coarse` by its delta against the fine signature of
/// `ranges` (copy offsets mapped back from the ranges' concatenation to the basis).
pub fn diff_literals(
    coarse: Vec<DeltaOp>,
    fine: &IndexedSignature<'_>,
    ranges: &[(u64, u64)],
    ops: &mut Vec<DeltaOp>,
) -> Result<(), String> {
    let mut run: Vec<u8> = Vec::new();
    let flush = |run: &mut Vec<u8>, ops: &mut Vec<DeltaOp>| -> Result<(), String> {
        if run.is_empty() {
            return Ok(());
        }
        let mut found = Vec::new();
        diff_into(fine, run, &mut found)?;
        run.clear();
        for op in found {
            match op {
                DeltaOp::Copy { offset, len } => map_copy(offset, len, ranges, ops)?,
                other => ops.push(other),
            }
        }
        Ok(())
    };
    for op in coarse {
        match op {
            DeltaOp::Literal(b) => run.extend_from_slice(&b),
            other => {
                flush(&mut run, ops)?;
                ops.push(other);
            }
        }
    }
    flush(&mut run, ops)
}

/// Pushes the copy of `len` bytes at `virt` in the ranges' concatenation as copies from
/// the basis, one per range it spans.
fn map_copy(
    mut virt: u64,
    mut len: u64,
    ranges: &[(u64, u64)],
    ops: &mut Vec<DeltaOp>,
) -> Result<(), String> {
    let mut base = 0;
    for &(start, end) in ranges {
        let size = end - start;
        if len > 0 && virt < base + size {
            let take = len.min(base + size - virt);
            let offset = start + (virt - base);
            match ops.last_mut() {
                Some(DeltaOp::Copy { offset: o, len: l }) if *o + *l == offset => *l += take,
                _ => ops.push(DeltaOp::Copy { offset, len: take }),
            }
            virt += take;
            len -= take;
        }
        base += size;
    }
    if len > 0 {
        return Err("a fine copy beyond the signed ranges".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{edited, pseudo_random, rebuild};
    use super::super::{coarse_options, signature, signature_with, Basis};
    use super::*;
    use proptest::prelude::*;

    /// The delta of `new` against `old` the way a run takes it in two levels (windows of
    /// `window` bytes), and the bytes both signatures cost.
    fn two_level(old: &[u8], new: &[u8], window: usize) -> (Vec<DeltaOp>, usize) {
        let len = old.len() as u64;
        let coarse = signature_with(&mut &old[..], len, coarse_options(len)).unwrap();
        let mut gaps = Gaps::default();
        let basis = Basis::parse(coarse.clone()).unwrap();
        for w in new.chunks(window) {
            let mut ops = Vec::new();
            super::super::diff_window(&basis.index(), w, &mut ops).unwrap();
            gaps.take(&ops);
        }
        let ranges = gaps.finish(len);
        let file = tempfile::tempfile().unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, old, 0).unwrap();
        let mut cost = coarse.len();
        let basis = if ranges.is_empty() {
            basis
        } else {
            let fine = range_signature(&file, len, &ranges).unwrap();
            cost += fine.len();
            basis.refine(ranges, fine).unwrap()
        };
        let mut ops = Vec::new();
        for w in new.chunks(window) {
            super::super::diff_window(&basis.index(), w, &mut ops).unwrap();
        }
        (ops, cost)
    }

    fn literal(ops: &[DeltaOp]) -> usize {
        ops.iter()
            .filter(|o| matches!(o, DeltaOp::Literal(_)))
            .map(|o| o.len() as usize)
            .sum()
    }

    #[test]
    fn scattered_line_edits_cost_half_the_signature_for_the_same_literal() {
        // A 64 KiB source-like file with a line changed in six places.
        let line = |k: usize| format!("    int value_{k} = compute({k}, &ctx); /* step {k} */\n");
        let old: Vec<u8> = (0..1200).flat_map(|k| line(k).into_bytes()).collect();
        let mut new = old.clone();
        for at in [900, 11_000, 23_456, 40_000, 52_000, 63_000] {
            let at = at.min(new.len() - 10);
            new.splice(at..at + 5, b"EDITED-LINE".iter().copied());
        }
        let (ops, cost) = two_level(&old, &new, WINDOW);
        assert!(rebuild(&old, &ops) == new);
        let flat = signature(&mut &old[..], old.len() as u64).unwrap();
        let basis = Basis::parse(flat.clone()).unwrap();
        let mut flat_ops = Vec::new();
        super::super::diff_window(&basis.index(), &new, &mut flat_ops).unwrap();
        assert!(cost * 2 <= flat.len(), "{cost} against {}", flat.len());
        assert!(
            literal(&ops) <= literal(&flat_ops) + 6 * 512,
            "{} against {}",
            literal(&ops),
            literal(&flat_ops)
        );
    }

    #[test]
    fn ranges_are_merged_whole_blocks_and_clamped_to_the_basis() {
        let r = normalise(
            vec![(5000, 5100), (0, 10), (4000, 5001), (9990, 20_000)],
            512,
            10_000,
        );
        assert_eq!(r, vec![(0, 512), (4000, 5536), (9990, 10_000)]);
        check_ranges(&r, 512, 10_000).unwrap();
        assert!(normalise(vec![(10, 10), (20_000, 30_000)], 512, 10_000).is_empty());
    }

    #[test]
    fn ranges_from_a_confused_peer_are_refused() {
        let big = WINDOW as u64 * 4;
        for (bad, len) in [
            (vec![(0, 100)], 10_000),              // not whole blocks, not at the end
            (vec![(0, 512), (256, 768)], 10_000),  // overlapping
            (vec![(512, 1024), (0, 512)], 10_000), // out of order
            (vec![(9000, 11_000)], 10_000),        // past the end
            (vec![(700, 700)], 10_000),            // empty
            (vec![(0, 2 * WINDOW as u64)], big),   // more than a window
        ] {
            assert!(check_ranges(&bad, 512, len).is_err(), "{bad:?}");
        }
        let file = tempfile::tempfile().unwrap();
        assert!(range_signature(&file, 10_000, &[(0, 100)]).is_err());
        // A fine signature that does not cover its ranges.
        let sig = signature(&mut &[7u8; 2048][..], 2048).unwrap();
        let basis = Basis::parse(sig.clone()).unwrap();
        assert!(basis.refine(vec![(0, 4096)], sig).is_err());
    }

    proptest! {
        #[test]
        fn two_level_deltas_round_trip(
            seed in any::<u64>(),
            len in 0usize..200_000,
            edits in prop::collection::vec((any::<usize>(), 0usize..3000, 0u8..3), 0..12),
            window in 1000usize..300_000,
        ) {
            let old = pseudo_random(len, seed);
            let new = edited(&old, edits, seed);
            let (ops, _) = two_level(&old, &new, window);
            prop_assert!(rebuild(&old, &ops) == new);
        }
    }
}
