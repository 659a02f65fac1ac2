//! zstd for frames on the wire: one context per stream and direction, a fast level by
//! default, skipped where it does not pay.

use serde::{Deserialize, Serialize};

/// `--compress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    /// Send frames as they are.
    None,
    /// zstd at this level.
    Zstd(i32),
}

impl Default for Compression {
    fn default() -> Self {
        // Level 3 compresses well; on two cores level 1 keeps up with a LAN better.
        Compression::Zstd(1)
    }
}

impl Compression {
    /// Parses `zstd`, `zstd:LEVEL` or `none`.
    pub fn parse(s: &str) -> Result<Compression, String> {
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::default()),
            _ => {
                let level = s
                    .strip_prefix("zstd:")
                    .and_then(|l| l.parse::<i32>().ok())
                    .filter(|l| (-7..=22).contains(l))
                    .ok_or_else(|| {
                        format!("bad --compress '{s}': use zstd, zstd:LEVEL (-7..22) or none")
                    })?;
                Ok(Compression::Zstd(level))
            }
        }
    }
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
    encoder: Option<zstd::stream::raw::Encoder<'static>>,
}

impl Compressor {
    /// A stream's compressor for `--compress`.
    pub fn new(how: Compression) -> Compressor {
        Compressor { how, encoder: None }
    }

    /// `data` compressed in the stream's context, or `None`: send it raw (compression is
    /// off, the frame is tiny, or a sample of it does not compress), and the context is left
    /// as it was, so the peer's stays in step.
    pub fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let Compression::Zstd(level) = self.how else {
            return None;
        };
        if data.len() < MIN_SIZE || (data.len() >= PROBE_MIN && !samples_compress(data, level)) {
            return None;
        }
        if self.encoder.is_none() {
            let mut e = zstd::stream::raw::Encoder::new(level).ok()?;
            e.set_parameter(zstd::stream::raw::CParameter::WindowLog(WINDOW_LOG))
                .ok()?;
            self.encoder = Some(e);
        }
        let encoder = self.encoder.as_mut()?;
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
            self.encoder = None;
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
    decoder: Option<zstd::stream::raw::Decoder<'static>>,
}

impl Decompressor {
    /// Decompresses the stream's next compressed frame, refusing output larger than `limit`
    /// (a hostile peer's zip bomb) and a context larger than tandem's own (its memory).
    pub fn decompress(&mut self, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        use zstd::stream::raw::{DParameter, InBuffer, Operation, OutBuffer};
        let bad = |e: std::io::Error| format!("bad compressed frame: {e}");
        if self.decoder.is_none() {
            let mut d = zstd::stream::raw::Decoder::new().map_err(bad)?;
            d.set_parameter(DParameter::WindowLogMax(WINDOW_LOG))
                .map_err(bad)?;
            self.decoder = Some(d);
        }
        let decoder = self.decoder.as_mut().expect("just set");
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

/// Whether three samples of a large frame compress by 5% (media, archives do not: a full
/// zstd pass over them would be spent for nothing).
fn samples_compress(data: &[u8], level: i32) -> bool {
    let n = data.len();
    let mut sample = Vec::with_capacity(3 * PROBE_SAMPLE);
    for at in [0, n / 2 - PROBE_SAMPLE / 2, n - PROBE_SAMPLE] {
        sample.extend_from_slice(&data[at..at + PROBE_SAMPLE]);
    }
    PROBE.with_borrow_mut(|c| {
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = zstd::bulk::Compressor::new(level).ok().map(|z| (level, z));
        }
        let out = c.as_mut().and_then(|(_, z)| z.compress(&sample).ok());
        out.is_some_and(|out| out.len() < sample.len() - sample.len() / 20)
    })
}

// One probe context per thread: creating a zstd context per frame costs more than a probe.
thread_local! {
    static PROBE: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
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
        let (mut c, mut d) = (Compressor::new(how), Decompressor::default());
        let mut wire = 0;
        for f in frames {
            match c.compress(f) {
                Some(z) => {
                    wire += z.len();
                    assert_eq!(&d.decompress(&z, 1 << 24).unwrap(), f);
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
        let z = c.compress(text.as_bytes()).unwrap();
        assert!(z.len() < text.len() / 10);
        let mut d = Decompressor::default();
        assert!(d.decompress(&z, 100).is_err(), "limit not enforced");
        // Large noise is refused by the probe, and the stream goes on in step.
        assert!(c.compress(&noise(1 << 20, 3)).is_none());
        let again = c.compress(text.as_bytes()).unwrap();
        assert!(
            again.len() < 64,
            "the second copy is a reference: {}",
            again.len()
        );
        let mut d = Decompressor::default();
        assert_eq!(d.decompress(&z, 1 << 20).unwrap(), text.as_bytes());
        assert_eq!(d.decompress(&again, 1 << 20).unwrap(), text.as_bytes());
        assert!(Compressor::new(Compression::None)
            .compress(text.as_bytes())
            .is_none());
        assert!(Compressor::new(Compression::default())
            .compress(b"tiny")
            .is_none());
        assert_eq!(Compression::parse("zstd:9"), Ok(Compression::Zstd(9)));
        assert!(Compression::parse("gzip").is_err());
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
        assert!(Decompressor::default().decompress(&out, 8 << 20).is_err());
    }

    proptest! {
        /// Small files edited at random, sent in one stream with raw frames between:
        /// every frame comes back exactly.
        #[test]
        fn random_edits_of_small_files_round_trip_in_context(
            seed in any::<u64>(),
            edits in proptest::collection::vec((0usize..4000, 0usize..200, any::<u8>()), 1..40),
            level in -3i32..6,
        ) {
            let mut file = noise(4000, seed | 1);
            let mut frames = Vec::new();
            for (at, len, b) in edits {
                let at = at.min(file.len());
                let end = (at + len).min(file.len());
                file.splice(at..end, std::iter::repeat_n(b, len / 2));
                frames.push(file.clone());
                frames.push(vec![b; len]);
            }
            through_stream(&frames, Compression::Zstd(level));
        }
    }
}
