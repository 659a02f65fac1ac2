//! zstd for frames on the wire: a fast level by default, skipped where it does not pay.

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

/// Frames smaller than this are not worth compressing.
const MIN_SIZE: usize = 512;

/// Compresses `data` if that saves at least 5%; `None` means send it raw.
pub fn compress(data: &[u8], how: Compression) -> Option<Vec<u8>> {
    let Compression::Zstd(level) = how else {
        return None;
    };
    if data.len() < MIN_SIZE {
        return None;
    }
    let run = |data: &[u8]| {
        COMPRESSOR.with_borrow_mut(|c| {
            if c.as_ref().is_none_or(|(l, _)| *l != level) {
                *c = Some((level, zstd::bulk::Compressor::new(level).ok()?));
            }
            c.as_mut()?.1.compress(data).ok()
        })
    };
    let pays = |out: &[u8], input: usize| out.len() < input - input / 20;
    // A large frame of incompressible data (media, archives) would cost a full zstd pass
    // for nothing: try three samples first.
    if data.len() >= PROBE_MIN {
        let n = data.len();
        let mut sample = Vec::with_capacity(3 * PROBE_SAMPLE);
        for at in [0, n / 2 - PROBE_SAMPLE / 2, n - PROBE_SAMPLE] {
            sample.extend_from_slice(&data[at..at + PROBE_SAMPLE]);
        }
        if !pays(&run(&sample)?, sample.len()) {
            return None;
        }
    }
    let out = run(data)?;
    pays(&out, data.len()).then_some(out)
}

/// Frames from this size on are probed before they are compressed whole.
const PROBE_MIN: usize = 256 << 10;
/// Bytes per probe sample.
const PROBE_SAMPLE: usize = 16 << 10;

/// Decompresses a frame, refusing output larger than `limit` (a hostile peer's zip bomb).
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    DECOMPRESSOR.with_borrow_mut(|d| {
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
        }
        let d = d.as_mut().expect("just set");
        d.decompress(data, limit)
            .map_err(|e| format!("bad compressed frame: {e}"))
    })
}

type Cached<T> = std::cell::RefCell<Option<T>>;

// One context per thread: creating a zstd context per frame cost a tenth of a small-file run.
thread_local! {
    static COMPRESSOR: Cached<(i32, zstd::bulk::Compressor<'static>)> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: Cached<zstd::bulk::Decompressor<'static>> = const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_text_skips_noise_and_bounds_output() {
        let text = "the quick brown fox ".repeat(1000);
        let c = compress(text.as_bytes(), Compression::default()).unwrap();
        assert!(c.len() < text.len() / 10);
        assert_eq!(decompress(&c, 1 << 20).unwrap(), text.as_bytes());
        assert!(decompress(&c, 100).is_err(), "limit not enforced");
        let mut x = 88_172_645_463_325_252u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect()
        };
        assert!(compress(&noise(100_000), Compression::default()).is_none());
        // Large noise is refused by the probe; large text still compresses.
        let large = noise(1 << 20);
        assert!(compress(&large, Compression::default()).is_none());
        let large_text = text.repeat(60);
        assert!(compress(large_text.as_bytes(), Compression::default()).is_some());
        assert!(compress(text.as_bytes(), Compression::None).is_none());
        assert_eq!(Compression::parse("zstd:9"), Ok(Compression::Zstd(9)));
        assert!(Compression::parse("gzip").is_err());
    }
}
