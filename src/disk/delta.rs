//! Rolling-checksum deltas on bounded memory, over fast_rsync.
//!
//! fast_rsync works on whole slices, so: the receiver's signature is computed chunk by
//! chunk (a multiple of the block size, so the concatenation equals the whole-file
//! signature); the sender diffs its file window by window against the whole basis index
//! (copy offsets are absolute, so every window's delta applies to the full basis); and the
//! receiver applies copies with positioned reads from the basis file instead of holding
//! it. MD4 matches are only hints: the result is always checked with BLAKE3.

use std::io::{self, Read};

use fast_rsync::{IndexedSignature, Signature, SignatureOptions};
use serde::{Deserialize, Serialize};

pub mod refine;

/// How much of a file is held in memory at once, on either side.
pub const WINDOW: usize = 16 << 20;
/// Bytes per literal op; keeps messages small and pipelined.
pub const LITERAL_CHUNK: usize = 256 << 10;
/// The most MD4 bytes a signature may keep per block.
const HASH_SIZE: u32 = 16;

/// One step of rebuilding a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeltaOp {
    /// Copy `len` bytes from the receiver's old version at `offset`.
    Copy {
        /// Offset in the basis.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// New bytes.
    Literal(#[serde(with = "serde_bytes")] Vec<u8>),
    /// This many zero bytes: a hole in a sparse file, neither read nor sent.
    Hole(u64),
}

impl DeltaOp {
    /// Bytes this op adds to the output.
    pub fn len(&self) -> u64 {
        match self {
            DeltaOp::Copy { len, .. } | DeltaOp::Hole(len) => *len,
            DeltaOp::Literal(b) => b.len() as u64,
        }
    }

    /// True for an op that adds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Feeds `len` zero bytes to a hasher (a hole reads as zeros).
pub fn hash_zeros(hasher: &mut blake3::Hasher, mut len: u64) {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..n]);
        len -= n as u64;
    }
}

/// Writes `data` at `offset`, leaving every all-zero piece of a 4 KiB block (aligned in the
/// file) unwritten: in a new file written front to back it stays a hole, so sparse files
/// stay sparse and runs of zeros cost no disk. A piece shorter than a block counts too: a
/// delta's copies come in blocks of 1 KiB and up, and a zero block that arrives in two
/// halves must stay a hole as well. Returns where the last byte written ends, if any was:
/// the caller sets the file's length at the end when that falls short of it.
pub fn write_sparse(file: &std::fs::File, offset: u64, data: &[u8]) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    const BLOCK: u64 = 4096;
    let mut run: Option<usize> = None; // start of the pending non-zero run in `data`
    let mut end_written = None;
    let mut i = 0usize;
    while i < data.len() {
        let at = offset + i as u64;
        let next = ((at / BLOCK + 1) * BLOCK - offset) as usize;
        let end = next.min(data.len());
        let zero = data[i..end].iter().all(|&b| b == 0);
        match (zero, run) {
            (true, Some(start)) => {
                file.write_all_at(&data[start..i], offset + start as u64)?;
                end_written = Some(offset + i as u64);
                run = None;
            }
            (false, None) => run = Some(i),
            _ => {}
        }
        i = end;
    }
    if let Some(start) = run {
        file.write_all_at(&data[start..], offset + start as u64)?;
        end_written = Some(offset + data.len() as u64);
    }
    Ok(end_written)
}

/// The signature's shape for a basis of `len` bytes: blocks of about √len / 2 bytes,
/// rounded to a power of two (512 B to 128 KiB), so scattered page-sized edits cost a
/// block each instead of rsync's √len, and a line edited in a small source file costs
/// half a KiB; and the strong hash length that costs the fewest bytes on the wire.
///
/// A false match is caught by the BLAKE3 check of the result and costs sending the file
/// whole once more; so each byte of strong hash is worth keeping only while it saves more
/// in expected resends than it costs in signature. The block pairs to tell apart number
/// about len² / block, and the rolling sum is counted as 24 of its 32 bits (it is weak on
/// text). The odds are kept below one in a thousand whatever the bytes say. An 8 KiB source
/// file gets one byte (a resend about once in 30,000 such files), a 4 GiB one five.
pub fn options(len: u64) -> SignatureOptions {
    let half_root = ((len as f64).sqrt() / 2.0).max(1.0);
    shape(len, (half_root.log2().round() as u32).clamp(9, 17))
}

/// The first of a two-level signature ([`refine`]): blocks four times [`options`]'s, for a
/// quarter of its bytes; the ranges they miss are signed again at the fine size.
pub fn coarse_options(len: u64) -> SignatureOptions {
    shape(len, options(len).block_size.trailing_zeros() + 2)
}

/// Blocks of `1 << block_bits` bytes over `len`, with the strong hash length that costs
/// the fewest bytes on the wire (see [`options`]).
fn shape(len: u64, block_bits: u32) -> SignatureOptions {
    let (len_f, block_f) = (len.max(1) as f64, f64::from(1u32 << block_bits));
    let blocks = (len_f / block_f).ceil();
    let pair_bits = (len_f * len_f / block_f).log2();
    let odds = |hash: u32| pair_bits - f64::from(ROLLING_BITS + 8 * hash);
    let cost = |hash: u32| blocks * f64::from(hash) + odds(hash).exp2().min(1.0) * len_f;
    let hash = (1..=HASH_SIZE)
        .filter(|h| odds(*h) <= -10.0 || *h == HASH_SIZE)
        .min_by(|a, b| cost(*a).total_cmp(&cost(*b)))
        .unwrap_or(HASH_SIZE);
    SignatureOptions {
        block_size: 1 << block_bits,
        crypto_hash_size: hash,
    }
}

/// What the 32-bit rolling sum is counted as in telling blocks apart.
const ROLLING_BITS: u32 = 24;

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The signature of a basis of `len` bytes, computed a window at a time.
pub fn signature(basis: &mut impl Read, len: u64) -> io::Result<Vec<u8>> {
    signature_with(basis, len, options(len))
}

/// The signature of `len` bytes read from `basis`, in blocks of `opts`.
pub fn signature_with(
    basis: &mut impl Read,
    len: u64,
    opts: SignatureOptions,
) -> io::Result<Vec<u8>> {
    let bs = opts.block_size as usize;
    // Sized for the file (a byte over, so its end is seen in one read): a window's
    // worth of zeroed memory for each small file cost more than its signature.
    let window = (WINDOW / bs).max(1) * bs;
    let fits = usize::try_from(len).map_or(window, |l| (l / bs + 1) * bs);
    let mut buf = vec![0u8; fits.min(window)];
    let mut out: Vec<u8> = Vec::new();
    loop {
        let n = read_full(basis, &mut buf)?;
        if n == 0 && !out.is_empty() {
            break;
        }
        let sig = Signature::calculate(&buf[..n], opts);
        let bytes = sig.serialized();
        // Every chunk's signature starts with the same 12-byte header.
        out.extend_from_slice(if out.is_empty() { bytes } else { &bytes[12..] });
        if n < buf.len() {
            break;
        }
    }
    Ok(out)
}

/// A parsed signature ready to diff against: one level, or two ([`refine`]).
pub struct Basis {
    sig: Signature,
    fine: Option<(Signature, Vec<(u64, u64)>)>,
}

impl Basis {
    /// Parses signature bytes from the receiver (untrusted: a bad one is an error).
    pub fn parse(bytes: Vec<u8>) -> Result<Basis, String> {
        // fast_rsync accepts any block size and hash length; a block size of 0 or a
        // gigantic one from a hostile peer must not reach `diff`.
        let field = |at: usize| {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match (field(4), field(8)) {
            (Some(block), Some(hash))
                if (1..=(1 << 24)).contains(&block) && (1..=HASH_SIZE).contains(&hash) => {}
            _ => return Err("malformed signature (block size or hash length out of range)".into()),
        }
        let sig = Signature::deserialize(bytes).map_err(|_| "malformed signature".to_string())?;
        Ok(Basis { sig, fine: None })
    }

    /// Adds the second level: the fine signature of the basis `ranges` the first missed.
    pub fn refine(mut self, ranges: Vec<(u64, u64)>, fine: Vec<u8>) -> Result<Basis, String> {
        let fine = Basis::parse(fine)?.sig;
        refine::check_fine(&fine, &ranges)?;
        self.fine = Some((fine, ranges));
        Ok(self)
    }

    /// The index fast_rsync diffs against.
    pub fn index(&self) -> Index<'_> {
        Index {
            coarse: self.sig.index(),
            fine: self.fine.as_ref().map(|(s, r)| (s.index(), &r[..])),
        }
    }
}

/// A [`Basis`] indexed for diffing.
pub struct Index<'a> {
    coarse: IndexedSignature<'a>,
    fine: Option<(IndexedSignature<'a>, &'a [(u64, u64)])>,
}

/// Appends the ops that rebuild `window` from the basis behind `index`.
pub fn diff_window(index: &Index<'_>, window: &[u8], ops: &mut Vec<DeltaOp>) -> Result<(), String> {
    match &index.fine {
        None => diff_into(&index.coarse, window, ops),
        Some((fine, ranges)) => {
            let mut coarse = Vec::new();
            diff_into(&index.coarse, window, &mut coarse)?;
            refine::diff_literals(coarse, fine, ranges, ops)
        }
    }
}

/// Appends fast_rsync's delta of `data` against `index`, as ops.
fn diff_into(
    index: &IndexedSignature<'_>,
    data: &[u8],
    ops: &mut Vec<DeltaOp>,
) -> Result<(), String> {
    let mut delta = Vec::with_capacity(data.len() / 8 + 64);
    fast_rsync::diff(index, data, &mut delta).map_err(|e| format!("delta failed: {e}"))?;
    parse_delta(&delta, ops)
}

/// Splits literal data into ops of at most [`LITERAL_CHUNK`] bytes.
pub fn literal_ops(data: &[u8], ops: &mut Vec<DeltaOp>) {
    for c in data.chunks(LITERAL_CHUNK) {
        ops.push(DeltaOp::Literal(c.to_vec()));
    }
}

const DELTA_MAGIC: u32 = 0x7273_0236;

/// Parses fast_rsync's (librsync's) delta format into ops, merging adjacent copies.
pub fn parse_delta(mut d: &[u8], ops: &mut Vec<DeltaOp>) -> Result<(), String> {
    fn take<'a>(d: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if d.len() < n {
            return Err("truncated delta".into());
        }
        let (a, b) = d.split_at(n);
        *d = b;
        Ok(a)
    }
    fn int(d: &mut &[u8], n: usize) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b[8 - n..].copy_from_slice(take(d, n)?);
        Ok(u64::from_be_bytes(b))
    }
    if int(&mut d, 4)? as u32 != DELTA_MAGIC {
        return Err("bad delta magic".into());
    }
    let mut literal: Vec<u8> = Vec::new();
    let flush = |literal: &mut Vec<u8>, ops: &mut Vec<DeltaOp>| {
        if !literal.is_empty() {
            literal_ops(literal, ops);
            literal.clear();
        }
    };
    loop {
        let cmd = take(&mut d, 1)?[0];
        match cmd {
            0 => break,
            0x01..=0x40 => literal.extend_from_slice(take(&mut d, cmd as usize)?),
            0x41..=0x44 => {
                let n = int(&mut d, 1 << (cmd - 0x41))? as usize;
                literal.extend_from_slice(take(&mut d, n)?);
            }
            0x45..=0x54 => {
                let mode = cmd - 0x45;
                let offset = int(&mut d, 1 << (mode / 4))?;
                let len = int(&mut d, 1 << (mode % 4))?;
                flush(&mut literal, ops);
                match ops.last_mut() {
                    Some(DeltaOp::Copy { offset: o, len: l })
                        if o.checked_add(*l) == Some(offset) && l.checked_add(len).is_some() =>
                    {
                        *l += len
                    }
                    _ => ops.push(DeltaOp::Copy { offset, len }),
                }
            }
            _ => return Err(format!("unknown delta command 0x{cmd:02x}")),
        }
    }
    flush(&mut literal, ops);
    if d.is_empty() {
        Ok(())
    } else {
        Err("trailing data after delta".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sparse_writes_keep_every_byte_and_skip_zero_blocks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        // Data, a long zero run (holes), data not aligned to blocks, trailing zeros.
        let mut want = pseudo_random(5000, 1);
        want.extend(vec![0u8; 3 << 20]);
        want.extend(pseudo_random(777, 2));
        want.extend(vec![0u8; 100_000]);
        let (mut at, mut extent) = (0, 0);
        for piece in want.chunks(300_001) {
            extent = write_sparse(&file, at, piece).unwrap().unwrap_or(extent);
            at += piece.len() as u64;
        }
        assert_eq!(extent, file.metadata().unwrap().len());
        file.set_len(at).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
        assert!(
            file.metadata().unwrap().blocks() * 512 < 1 << 20,
            "zeros were written"
        );
    }

    /// A growing sparse file was filled on update: the delta's copies of its zero blocks
    /// arrived in 2 KiB pieces, never a whole 4 KiB block.
    #[test]
    fn zero_blocks_written_in_pieces_smaller_than_a_block_stay_holes() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let mut want = vec![0u8; 1 << 20];
        want[300_000..301_000].copy_from_slice(&pseudo_random(1000, 3));
        let (mut at, mut extent) = (0, 0);
        for piece in want.chunks(2048) {
            extent = write_sparse(&file, at, piece).unwrap().unwrap_or(extent);
            at += piece.len() as u64;
        }
        file.set_len(at.max(extent)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
        assert!(
            file.metadata().unwrap().blocks() * 512 <= 64 << 10,
            "zeros were written: {} blocks",
            file.metadata().unwrap().blocks()
        );
    }

    #[test]
    fn write_sparse_says_where_its_writes_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        let mut data = vec![7u8; 10];
        data.resize(3 * 4096, 0);
        // Only the first block holds data: the two zero blocks after it are holes, so the
        // file is short until its length is set.
        assert_eq!(write_sparse(&file, 0, &data).unwrap(), Some(4096));
        assert_eq!(file.metadata().unwrap().len(), 4096);
        assert_eq!(write_sparse(&file, 3 * 4096, &[0; 4096]).unwrap(), None);
        assert_eq!(
            write_sparse(&file, 4 * 4096, &[1; 5]).unwrap(),
            Some(4 * 4096 + 5)
        );
    }

    pub(super) fn rebuild(basis: &[u8], ops: &[DeltaOp]) -> Vec<u8> {
        let mut out = Vec::new();
        for op in ops {
            match op {
                DeltaOp::Copy { offset, len } => {
                    out.extend_from_slice(&basis[*offset as usize..(*offset + *len) as usize])
                }
                DeltaOp::Literal(b) => out.extend_from_slice(b),
                DeltaOp::Hole(n) => out.resize(out.len() + *n as usize, 0),
            }
        }
        out
    }

    pub(super) fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// `old` with each edit (at, length, how) applied: 0 deletes, 1 inserts random bytes,
    /// 2 reverses a run (a move of sorts).
    pub(super) fn edited(old: &[u8], edits: Vec<(usize, usize, u8)>, seed: u64) -> Vec<u8> {
        let mut new = old.to_vec();
        for (at, n, how) in edits {
            let at = if new.is_empty() { 0 } else { at % new.len() };
            let end = (at + n).min(new.len());
            match how {
                0 => {
                    new.drain(at..end);
                }
                1 => {
                    new.splice(at..at, pseudo_random(n, seed ^ at as u64));
                }
                _ => new[at..end].reverse(),
            }
        }
        new
    }

    #[test]
    fn chunked_signature_equals_whole_file_signature() {
        let data = pseudo_random(WINDOW * 2 + 12345, 7);
        let whole = Signature::calculate(&data, options(data.len() as u64));
        let chunked = signature(&mut &data[..], data.len() as u64).unwrap();
        assert_eq!(whole.serialized(), &chunked[..]);
    }

    #[test]
    fn small_edit_in_a_big_file_sends_little() {
        let old = pseudo_random(3 << 20, 1);
        let mut new = old.clone();
        for i in (0..new.len()).step_by(1 << 20) {
            new[i..i + 100].copy_from_slice(&[0xAB; 100]);
        }
        let sig = signature(&mut &old[..], old.len() as u64).unwrap();
        let basis = Basis::parse(sig).unwrap();
        let mut ops = Vec::new();
        for w in new.chunks(1 << 20) {
            diff_window(&basis.index(), w, &mut ops).unwrap();
        }
        assert_eq!(rebuild(&old, &ops), new);
        let literal: u64 = ops
            .iter()
            .filter(|o| matches!(o, DeltaOp::Literal(_)))
            .map(DeltaOp::len)
            .sum();
        assert!(
            literal < 64 << 10,
            "sent {literal} literal bytes for 300 changed"
        );
    }

    #[test]
    fn hostile_signatures_are_rejected() {
        let mut sig = signature(&mut &b"some basis data"[..], 15).unwrap();
        sig[4..8].copy_from_slice(&0u32.to_be_bytes());
        assert!(Basis::parse(sig.clone()).is_err());
        sig[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Basis::parse(sig.clone()).is_err());
        sig[4..8].copy_from_slice(&704u32.to_be_bytes());
        sig[8..12].copy_from_slice(&200u32.to_be_bytes());
        assert!(Basis::parse(sig).is_err());
        assert!(Basis::parse(vec![1, 2, 3]).is_err());
    }

    #[test]
    fn signature_shape_follows_the_file_size() {
        let o = options(64 << 20);
        assert_eq!((o.block_size, o.crypto_hash_size), (4096, 4));
        let o = options(4 << 30);
        assert_eq!((o.block_size, o.crypto_hash_size), (32768, 5));
        let o = options(1 << 20);
        assert_eq!((o.block_size, o.crypto_hash_size), (512, 3));
        assert_eq!(options(0).block_size, 512);
        // A small source file: half-KiB blocks, each signed in 5 bytes.
        let o = options(8 << 10);
        assert_eq!((o.block_size, o.crypto_hash_size), (512, 1));
        assert_eq!(options(u64::MAX).block_size, 128 << 10);
        assert!(options(u64::MAX).crypto_hash_size <= HASH_SIZE);
    }

    /// Signature plus literal bytes for `new` against `old` with signature shape `opts`,
    /// and the rebuilt file.
    fn wire_cost(old: &[u8], new: &[u8], opts: SignatureOptions) -> (usize, Vec<u8>) {
        let mut sig = Vec::new();
        for (k, chunk) in old.chunks(opts.block_size as usize * 1024).enumerate() {
            let part = Signature::calculate(chunk, opts);
            sig.extend_from_slice(if k == 0 {
                part.serialized()
            } else {
                &part.serialized()[12..]
            });
        }
        if old.is_empty() {
            sig = Signature::calculate(old, opts).serialized().to_vec();
        }
        let sig_len = sig.len();
        let basis = Basis::parse(sig).unwrap();
        let mut ops = Vec::new();
        for w in new.chunks(WINDOW) {
            diff_window(&basis.index(), w, &mut ops).unwrap();
        }
        let literal: usize = ops
            .iter()
            .filter(|o| matches!(o, DeltaOp::Literal(_)))
            .map(|o| o.len() as usize)
            .sum();
        (sig_len + literal, rebuild(old, &ops))
    }

    #[test]
    fn scattered_page_edits_cost_a_quarter_less_than_rsync() {
        // 1% of a 64 MiB file changed in scattered, aligned 4 KiB pages.
        let len = 64 << 20;
        let old = pseudo_random(len, 3);
        let mut new = old.clone();
        let pages = len / 4096;
        for k in 0..pages / 100 {
            let at = (k * 7919 % pages) * 4096;
            new[at..at + 4096].copy_from_slice(&pseudo_random(4096, k as u64 + 10));
        }
        let (cost, rebuilt) = wire_cost(&old, &new, options(len as u64));
        assert!(rebuilt == new);
        // rsync 3: √size blocks (8 KiB here) and 7 bytes of strong sum for this size.
        let rsync = SignatureOptions {
            block_size: 8192,
            crypto_hash_size: 7,
        };
        let (rsync_cost, _) = wire_cost(&old, &new, rsync);
        assert!(
            cost * 4 <= rsync_cost * 3,
            "{cost} bytes against rsync's {rsync_cost}"
        );
    }

    proptest! {
        #[test]
        fn delta_round_trips(old in prop::collection::vec(any::<u8>(), 0..5000), edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..20), extra in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut new = old.clone();
            for (i, b) in edits {
                if !new.is_empty() { let k = i % new.len(); new[k] = b; }
            }
            new.extend_from_slice(&extra);
            let basis = Basis::parse(signature(&mut &old[..], old.len() as u64).unwrap()).unwrap();
            let mut ops = Vec::new();
            diff_window(&basis.index(), &new, &mut ops).unwrap();
            prop_assert_eq!(rebuild(&old, &ops), new);
        }

        #[test]
        fn delta_round_trips_with_moves_inserts_and_deletes(
            seed in any::<u64>(),
            len in 0usize..300_000,
            edits in prop::collection::vec((any::<usize>(), 0usize..3000, 0u8..3), 0..12),
        ) {
            let old = pseudo_random(len, seed);
            let new = edited(&old, edits, seed);
            // The signature as the receiver computes it, a window at a time.
            let basis = Basis::parse(signature(&mut &old[..], len as u64).unwrap()).unwrap();
            let mut ops = Vec::new();
            for w in new.chunks(100_000) {
                diff_window(&basis.index(), w, &mut ops).unwrap();
            }
            prop_assert!(rebuild(&old, &ops) == new);
        }

        #[test]
        fn parse_delta_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut ops = Vec::new();
            let mut with_magic = DELTA_MAGIC.to_be_bytes().to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = parse_delta(&bytes, &mut ops);
            let _ = parse_delta(&with_magic, &mut ops);
        }
    }
}
