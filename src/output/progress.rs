//! Progress bars for a terminal: one for the whole run (bytes and files of the planned
//! total, rate, an ETA that only counts down), one for the current file, and with
//! `--transfer-threads` one per SSH channel (bytes sent, rate). Status lines are printed
//! through [`Bars::print`] so they never tear.

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sync::transfer::Watch;

/// The bars of one run.
#[derive(Clone)]
pub struct Bars {
    mp: MultiProgress,
    total: ProgressBar,
    stream: ProgressBar,
    channels: Vec<ProgressBar>,
    eta: Eta,
}

/// More channel bars than this would garble a small terminal; the rest are not shown.
const MAX_CHANNEL_BARS: usize = 8;

#[derive(Clone)]
struct Eta {
    started: Instant,
    files_total: u64,
    files_done: u64,
    shown: Option<(Instant, f64)>,
}

impl Eta {
    /// Remaining time from the average rate so far; shown only counting down (a new
    /// estimate replaces it only when lower, or when it is off by half).
    fn update(&mut self, done: u64, total: u64) -> Option<f64> {
        let elapsed = self.started.elapsed().as_secs_f64();
        if done == 0 || elapsed < 0.5 {
            return None;
        }
        let estimate = (total.saturating_sub(done)) as f64 / (done as f64 / elapsed);
        let now = Instant::now();
        let shown = match self.shown {
            Some((at, eta)) => {
                let counted = (eta - now.duration_since(at).as_secs_f64()).max(0.0);
                if estimate < counted || estimate > counted * 1.5 + 2.0 {
                    estimate
                } else {
                    counted
                }
            }
            None => estimate,
        };
        self.shown = Some((now, shown));
        Some(shown)
    }
}

fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

impl Bars {
    /// Bars drawn on stderr (call only when stderr is a terminal).
    pub fn new() -> Bars {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        // Hidden until added to `mp`: a bar on its own would draw itself on stderr at once.
        let total = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()).with_style(
            ProgressStyle::with_template("{prefix:>5} [{bar:30.green/black}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12}  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        total.set_prefix("total");
        let stream = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
            .with_style(
                ProgressStyle::with_template(
                    "{prefix:>5} [{bar:30.cyan/black}] {bytes:>10}/{total_bytes:<10} {wide_msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
        stream.set_prefix("file");
        Bars {
            mp,
            total,
            stream,
            channels: Vec::new(),
            eta: Eta {
                started: Instant::now(),
                files_total: 0,
                files_done: 0,
                shown: None,
            },
        }
    }

    /// Prints a line to stdout without tearing the bars.
    pub fn print(&self, f: impl FnOnce()) {
        self.mp.suspend(f);
    }

    fn refresh_message(&mut self) {
        let eta = self
            .eta
            .update(self.total.position(), self.total.length().unwrap_or(0));
        let eta = eta
            .map(|s| format!("  ETA {}", clock(s)))
            .unwrap_or_default();
        self.total.set_message(format!(
            "files {}/{}{eta}",
            self.eta.files_done, self.eta.files_total
        ));
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Watch for Bars {
    fn start(&mut self, files: u64, bytes: u64) {
        // Added only now: nothing is drawn during the scan or over a safety prompt.
        self.total = self.mp.add(self.total.clone());
        self.stream = self.mp.add(self.stream.clone());
        self.total.enable_steady_tick(Duration::from_millis(250));
        self.eta = Eta {
            started: Instant::now(),
            files_total: files,
            files_done: 0,
            shown: None,
        };
        self.total.set_length(bytes);
        self.total.set_position(0);
        self.refresh_message();
    }

    fn begin(&mut self, path: &str, size: u64) {
        self.stream.set_length(size);
        self.stream.set_position(0);
        self.stream.set_message(path.to_string());
    }

    fn advance(&mut self, bytes: u64) {
        self.stream.inc(bytes);
        self.total.inc(bytes);
        self.refresh_message();
    }

    fn end(&mut self) {
        self.eta.files_done += 1;
        self.refresh_message();
    }

    fn streams(&mut self, sent: &[u64]) {
        if sent.len() < 2 {
            return;
        }
        while self.channels.len() < sent.len().min(MAX_CHANNEL_BARS) {
            let style = ProgressStyle::with_template(
                "{prefix:>5} {bytes:>10} sent {binary_bytes_per_sec:>12}",
            )
            .expect("valid template");
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
                .with_style(style)
                .with_prefix(format!("ch{}", self.channels.len() + 1));
            self.channels.push(self.mp.add(bar));
        }
        for (bar, &n) in self.channels.iter().zip(sent) {
            bar.set_position(n);
        }
    }

    fn finish(&mut self) {
        for bar in &self.channels {
            bar.finish_and_clear();
        }
        self.stream.finish_and_clear();
        self.total.finish_and_clear();
        let _ = self.mp.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_counts_down_and_tolerates_small_slowdowns() {
        let mut e = Eta {
            started: Instant::now() - Duration::from_secs(10),
            files_total: 1,
            files_done: 0,
            shown: None,
        };
        let first = e.update(100, 200).unwrap();
        assert!((first - 10.0).abs() < 0.5, "{first}");
        // Slightly slower now: the shown ETA does not go up.
        e.started -= Duration::from_secs(2);
        let second = e.update(100, 200).unwrap();
        assert!(second <= first, "{second} > {first}");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(65.0), "1:05");
    }
}
