//! `-l/--target-rate`: a cap on the bytes on the wire (after compression), both ways
//! together. Reads and writes go in slices of at most [`SLICE`] bytes, each paid for
//! against one clock, so the stream is smooth: it never runs ahead by more than [`BURST`].

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest piece read or written at once.
const SLICE: usize = 16 << 10;
/// How far ahead of the rate an idle link may start.
const BURST: usize = 128 << 10;

/// The shared budget of one connection.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: f64,
    /// When everything paid for so far may have gone out.
    paid_until: Mutex<Instant>,
}

impl Throttle {
    /// A budget of `bits_per_sec`.
    pub fn new(bits_per_sec: u64) -> Arc<Throttle> {
        Arc::new(Throttle {
            bytes_per_sec: (bits_per_sec as f64 / 8.0).max(1.0),
            paid_until: Mutex::new(Instant::now()),
        })
    }

    /// Waits until `n` more bytes fit the rate.
    pub fn take(&self, n: usize) {
        let wait = {
            let mut paid = self.paid_until.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slack = Duration::from_secs_f64(BURST as f64 / self.bytes_per_sec);
            // An idle link banks at most one burst.
            if *paid + slack < now {
                *paid = now - slack;
            }
            *paid += Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
            paid.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// A reader or writer that pays for every byte.
pub struct Throttled<T> {
    inner: T,
    throttle: Option<Arc<Throttle>>,
}

impl<T> Throttled<T> {
    /// `inner`, capped by `throttle` if any.
    pub fn new(inner: T, throttle: Option<Arc<Throttle>>) -> Throttled<T> {
        Throttled { inner, throttle }
    }
}

impl<T: Read> Read for Throttled<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(t) = &self.throttle else {
            return self.inner.read(buf);
        };
        let len = buf.len().min(SLICE);
        let n = self.inner.read(&mut buf[..len])?;
        t.take(n);
        Ok(n)
    }
}

impl<T: Write> Write for Throttled<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(t) = &self.throttle else {
            return self.inner.write(buf);
        };
        let len = buf.len().min(SLICE);
        t.take(len);
        self.inner.write(&buf[..len])
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_writer_keeps_to_the_rate_after_one_burst() {
        // 8 Mbit/s = 1 MB/s: 512 KiB beyond the burst takes about half a second.
        let t = Throttle::new(8_000_000);
        let mut w = Throttled::new(Vec::new(), Some(t));
        let start = Instant::now();
        w.write_all(&vec![0u8; BURST + (512 << 10)]).unwrap();
        let took = start.elapsed().as_secs_f64();
        assert!((0.45..1.0).contains(&took), "{took}");
        assert_eq!(w.inner.len(), BURST + (512 << 10));
    }
}
