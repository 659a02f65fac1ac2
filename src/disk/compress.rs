//! zstd for frames on the wire: two contexts per stream and direction, one at a level
//! that pays on links for messages and small files' data, one at a fast level for the
//! bulk data of large files; skipped where it does not pay.

use serde::{Deserialize, Serialize};

/// `--compress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// Send frames as they are.
    None,
    /// zstd: `fine` for messages, deltas and small files, `bulk` for large files' data.
    Zstd {
        /// Level of the context for everything but bulk data.
        fine: i32,
        /// Level of the context for large files sent whole.
        bulk: i32,
    },
}

/// The default level for messages and small files: on a source tree's release it takes a
/// quarter off the bytes level 1 sends, at about 100 MB/s (small files cost more per file
/// than per byte, so the CPU goes unnoticed).
const FINE: i32 = 6;
/// The default level for bulk data: on two cores level 1 keeps up with a LAN.
const BULK: i32 = 1;

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd {
            fine: FINE,
            bulk: BULK,
        }
    }
}

impl Compression {
    /// Parses `zstd`, `zstd:LEVEL` (both contexts), `zstd:FINE,BULK` or `none`.
    pub fn parse(s: &str) -> Result<Compression, String> {
        let bad = || {
            format!("bad --compress '{s}': use zstd, zstd:LEVEL (-7..22), zstd:FINE,BULK or none")
        };
        let level = |l: &str| {
            l.parse::<i32>()
                .ok()
                .filter(|l| (-7..=22).contains(l))
                .ok_or_else(bad)
        };
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::default()),
            _ => {
                let levels = s.strip_prefix("zstd:").ok_or_else(bad)?;
                let (fine, bulk) = levels.split_once(',').unwrap_or((levels, levels));
                Ok(Compression::Zstd {
                    fine: level(fine)?,
                    bulk: level(bulk)?,
                })
            }
        }
    }

    /// The form [`Compression::parse`] reads back.
    pub fn to_arg(self) -> String {
        match self {
            Compression::None => "none".into(),
            how if how == Compression::default() => "zstd".into(),
            Compression::Zstd { fine, bulk } if fine == bulk => format!("zstd:{fine}"),
            Compression::Zstd { fine, bulk } => format!("zstd:{fine},{bulk}"),
        }
    }

    fn level(self, class: Class) -> Option<i32> {
        match (self, class) {
            (Compression::None, _) => None,
            (Compression::Zstd { fine, .. }, Class::Fine) => Some(fine),
            (Compression::Zstd { bulk, .. }, Class::Bulk) => Some(bulk),
        }
    }
}

/// Which of a stream's two contexts a frame goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Messages, deltas and small files: worth a slower level.
    Fine,
    /// Large files sent whole: a fast level, or the link waits on the CPU.
    Bulk,
}

/// Frames smaller than this go raw: in context a short message compresses well, but the
/// few bytes a flush costs would eat what a tiny one saves.
const MIN_SIZE: usize = 64;
/// Frames from this size on are probed before they are compressed whole.
const PROBE_MIN: usize = 256 << 10;
/// Bytes per probe sample.
const PROBE_SAMPLE: usize = 16 << 10;
/// The context a stream keeps: the last 4 MiB it carried (about what a release of a source
/// tree repeats across its files), which each side holds once per stream.
const WINDOW_LOG: u32 = 22;

/// Compresses the frames of one stream, each in the context of those before it (as rsync's
/// `-z` keeps one stream for a run), so what one file's frame taught it helps the next's.
/// Every frame is flushed whole: the peer's [`Decompressor`] decodes it on arrival.
pub struct Compressor {
    how: Compression,
    fine: Option<zstd::stream::raw::Encoder<'static>>,
    bulk: Option<zstd::stream::raw::Encoder<'static>>,
}

impl Compressor {
    /// A stream's compressor for `--compress`.
    pub fn new(how: Compression) -> Compressor {
        Compressor {
            how,
            fine: None,
            bulk: None,
        }
    }

    /// `data` compressed in the stream's context for `class`, or `None`: send it raw
    /// (compression is off, the frame is tiny, or a sample of it does not compress), and the
    /// context is left as it was, so the peer's stays in step.
    pub fn compress(&mut self, data: &[u8], class: Class) -> Option<Vec<u8>> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let level = self.how.level(class)?;
        if data.len() < MIN_SIZE || (data.len() >= PROBE_MIN && !samples_compress(data)) {
            return None;
        }
        let slot = match class {
            Class::Fine => &mut self.fine,
            Class::Bulk => &mut self.bulk,
        };
        if slot.is_none() {
            let mut e = zstd::stream::raw::Encoder::new(level).ok()?;
            e.set_parameter(zstd::stream::raw::CParameter::WindowLog(WINDOW_LOG))
                .ok()?;
            *slot = Some(e);
        }
        let encoder = slot.as_mut()?;
        // Enough for any input and a flush at once; the loops are for safety only.
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()) + 64);
        let mut input = InBuffer::around(data);
        let mut run = || -> std::io::Result<()> {
            while input.pos() < data.len() {
                reserve_more(&mut out);
                let pos = out.len();
                encoder.run(&mut input, &mut OutBuffer::around_pos(&mut out, pos))?;
            }
            loop {
                reserve_more(&mut out);
                let pos = out.len();
                if encoder.flush(&mut OutBuffer::around_pos(&mut out, pos))? == 0 {
                    return Ok(());
                }
            }
        };
        if run().is_err() {
            // A context that failed halfway is out of step with the peer's: the rest of
            // the stream goes raw.
            self.how = Compression::None;
            (self.fine, self.bulk) = (None, None);
            return None;
        }
        Some(out)
    }
}

/// Room for at least a block more at the end of `out`.
fn reserve_more(out: &mut Vec<u8>) {
    if out.capacity() - out.len() < 1024 {
        out.reserve(out.len().max(64 << 10));
    }
}

/// Decodes the compressed frames of one stream, in the order its [`Compressor`] made them.
#[derive(Default)]
pub struct Decompressor {
    fine: Option<zstd::stream::raw::Decoder<'static>>,
    bulk: Option<zstd::stream::raw::Decoder<'static>>,
}

impl Decompressor {
    /// Decompresses the stream's next compressed frame of `class`, refusing output larger
    /// than `limit` (a hostile peer's zip bomb) and a context larger than tandem's own (its
    /// memory).
    pub fn decompress(
        &mut self,
        data: &[u8],
        class: Class,
        limit: usize,
    ) -> Result<Vec<u8>, String> {
        use zstd::stream::raw::{DParameter, InBuffer, Operation, OutBuffer};
        let bad = |e: std::io::Error| format!("bad compressed frame: {e}");
        let slot = match class {
            Class::Fine => &mut self.fine,
            Class::Bulk => &mut self.bulk,
        };
        if slot.is_none() {
            let mut d = zstd::stream::raw::Decoder::new().map_err(bad)?;
            d.set_parameter(DParameter::WindowLogMax(WINDOW_LOG))
                .map_err(bad)?;
            *slot = Some(d);
        }
        let decoder = slot.as_mut().expect("just set");
        let start = data.len().saturating_mul(3).max(4096);
        let mut out = Vec::with_capacity(start.min(limit.saturating_add(1)));
        let mut input = InBuffer::around(data);
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.len());
            }
            let pos = out.len();
            decoder
                .run(&mut input, &mut OutBuffer::around_pos(&mut out, pos))
                .map_err(bad)?;
            if out.len() > limit {
                return Err(format!("compressed frame exceeds the {limit}-byte limit"));
            }
            // All input taken and room left over: the flushed frame is out whole.
            if input.pos() == data.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Whether three samples of a large frame compress by 5% at a fast level (media,
/// archives do not: a full zstd pass over them would be spent for nothing).
fn samples_compress(data: &[u8]) -> bool {
    let n = data.len();
    let mut sample = Vec::with_capacity(3 * PROBE_SAMPLE);
    for at in [0, n / 2 - PROBE_SAMPLE / 2, n - PROBE_SAMPLE] {
        sample.extend_from_slice(&data[at..at + PROBE_SAMPLE]);
    }
    PROBE.with_borrow_mut(|c| {
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(1).ok();
        }
        let out = c.as_mut().and_then(|z| z.compress(&sample).ok());
        out.is_some_and(|out| out.len() < sample.len() - sample.len() / 20)
    })
}

// One probe context per thread: creating a zstd context per frame costs more than a probe.
thread_local! {
    static PROBE: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    /// Sends `frames` through one stream: each compressed in context or raw, decoded in
    /// order; returns the bytes on the wire.
    fn through_stream(frames: &[Vec<u8>], how: Compression) -> usize {
        let classed: Vec<_> = frames.iter().map(|f| (f.clone(), Class::Fine)).collect();
        through_classes(&classed, how)
    }

    /// [`through_stream`], each frame through the context of its class.
    fn through_classes(frames: &[(Vec<u8>, Class)], how: Compression) -> usize {
        let (mut c, mut d) = (Compressor::new(how), Decompressor::default());
        let mut wire = 0;
        for (f, class) in frames {
            match c.compress(f, *class) {
                Some(z) => {
                    wire += z.len();
                    assert_eq!(&d.decompress(&z, *class, 1 << 24).unwrap(), f);
                }
                None => wire += f.len(),
            }
        }
        wire
    }

    #[test]
    fn a_stream_learns_from_its_earlier_frames() {
        // Ten "files" that share most of their text, as a source tree's do.
        let base = noise(3000, 7);
        let frames: Vec<Vec<u8>> = (0..10u8)
            .map(|i| {
                let mut f = base.clone();
                f[100 * i as usize] ^= 0xff;
                f
            })
            .collect();
        let in_context = through_stream(&frames, Compression::default());
        let alone: usize = frames
            .iter()
            .map(|f| through_stream(std::slice::from_ref(f), Compression::default()))
            .sum();
        // The first frame is noise and goes nearly whole; the nine others are mostly copies.
        assert!(in_context < 3000 + 9 * 300, "{in_context}");
        assert!(
            alone > 9 * 2900,
            "frames alone should not compress: {alone}"
        );
    }

    #[test]
    fn noise_goes_raw_text_compresses_and_limits_hold() {
        let text = "the quick brown fox ".repeat(1000);
        let mut c = Compressor::new(Compression::default());
        let z = c.compress(text.as_bytes(), Class::Fine).unwrap();
        assert!(z.len() < text.len() / 10);
        let mut d = Decompressor::default();
        assert!(
            d.decompress(&z, Class::Fine, 100).is_err(),
            "limit not enforced"
        );
        // Large noise is refused by the probe, and the stream goes on in step.
        assert!(c.compress(&noise(1 << 20, 3), Class::Fine).is_none());
        assert!(c.compress(&noise(1 << 20, 4), Class::Bulk).is_none());
        let again = c.compress(text.as_bytes(), Class::Fine).unwrap();
        assert!(
            again.len() < 64,
            "the second copy is a reference: {}",
            again.len()
        );
        let mut d = Decompressor::default();
        assert_eq!(
            d.decompress(&z, Class::Fine, 1 << 20).unwrap(),
            text.as_bytes()
        );
        assert_eq!(
            d.decompress(&again, Class::Fine, 1 << 20).unwrap(),
            text.as_bytes()
        );
        assert!(Compressor::new(Compression::None)
            .compress(text.as_bytes(), Class::Fine)
            .is_none());
        assert!(Compressor::new(Compression::default())
            .compress(b"tiny", Class::Bulk)
            .is_none());
    }

    #[test]
    fn levels_parse_and_print_back() {
        let z = |fine, bulk| Ok(Compression::Zstd { fine, bulk });
        assert_eq!(Compression::parse("zstd:9"), z(9, 9));
        assert_eq!(Compression::parse("zstd:12,-1"), z(12, -1));
        assert_eq!(Compression::parse("zstd"), z(FINE, BULK));
        assert_eq!(Compression::parse("none"), Ok(Compression::None));
        for bad in [
            "gzip",
            "zstd:",
            "zstd:23",
            "zstd:3,",
            "zstd:,3",
            "zstd:1,2,3",
            "zstd:x",
        ] {
            let e = Compression::parse(bad).unwrap_err();
            assert!(
                e.contains(bad) && e.contains("zstd:FINE,BULK"),
                "{bad}: {e}"
            );
        }
        for how in [
            Compression::None,
            Compression::default(),
            Compression::Zstd { fine: 4, bulk: 4 },
        ] {
            assert_eq!(Compression::parse(&how.to_arg()), Ok(how));
        }
    }

    #[test]
    fn the_fine_context_pays_on_small_files_and_each_class_keeps_its_own() {
        // A source tree's worth of small text files, with a large file's data between.
        let words = [
            "fn ", "let ", "match ", "return ", "impl ", "struct ", "self", "{", "}", ";\n",
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut text = |n: usize| -> Vec<u8> {
            let mut out = Vec::new();
            while out.len() < n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                out.extend_from_slice(words[(x % 10) as usize].as_bytes());
                out.extend_from_slice(format!("v{} ", x % 500).as_bytes());
            }
            out
        };
        let mut frames = Vec::new();
        for i in 0..40 {
            frames.push((text(3000), Class::Fine));
            if i % 10 == 0 {
                frames.push((text(300 << 10), Class::Bulk));
            }
        }
        let fine_only: Vec<_> = frames
            .iter()
            .filter(|(_, c)| *c == Class::Fine)
            .cloned()
            .collect();
        let default = through_classes(&fine_only, Compression::default());
        let fast = through_classes(&fine_only, Compression::Zstd { fine: 1, bulk: 1 });
        assert!(
            default < fast,
            "the default's fine level beats level 1: {default} vs {fast}"
        );
        // Interleaved, every frame still comes back exactly (checked inside).
        through_classes(&frames, Compression::default());
    }

    #[test]
    fn a_context_larger_than_ours_is_refused() {
        let mut big = zstd::stream::raw::Encoder::new(1).unwrap();
        use zstd::stream::raw::{CParameter, InBuffer, Operation, OutBuffer};
        big.set_parameter(CParameter::WindowLog(WINDOW_LOG + 4))
            .unwrap();
        let data = noise(1 << 20, 9).repeat(3);
        let mut out = Vec::with_capacity(8 << 20);
        let mut input = InBuffer::around(&data);
        while input.pos() < data.len() {
            let pos = out.len();
            big.run(&mut input, &mut OutBuffer::around_pos(&mut out, pos))
                .unwrap();
        }
        loop {
            let pos = out.len();
            if big
                .flush(&mut OutBuffer::around_pos(&mut out, pos))
                .unwrap()
                == 0
            {
                break;
            }
        }
        assert!(Decompressor::default()
            .decompress(&out, Class::Bulk, 8 << 20)
            .is_err());
    }

    proptest! {
        /// Small files edited at random, sent in one stream with raw frames between:
        /// every frame comes back exactly.
        #[test]
        fn random_edits_of_small_files_round_trip_in_context(
            seed in any::<u64>(),
            edits in proptest::collection::vec((0usize..4000, 0usize..200, any::<u8>(), any::<bool>()), 1..40),
            fine in -3i32..8,
            bulk in -3i32..4,
        ) {
            let mut file = noise(4000, seed | 1);
            let mut frames = Vec::new();
            for (at, len, b, bulk) in edits {
                let at = at.min(file.len());
                let end = (at + len).min(file.len());
                file.splice(at..end, std::iter::repeat_n(b, len / 2));
                let class = if bulk { Class::Bulk } else { Class::Fine };
                frames.push((file.clone(), class));
                frames.push((vec![b; len], Class::Fine));
            }
            through_classes(&frames, Compression::Zstd { fine, bulk });
        }
    }
}
