//! What changed on one side and is waiting to be looked at (continuous mode), with when it
//! last changed: a path is rescanned only once it has stopped changing for the cooloff.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::core::path::RelPath;

/// One waiting path.
#[derive(Clone, Copy, Debug)]
struct Heat {
    /// Everything below it changed too.
    deep: bool,
    /// The first change not yet looked at.
    first: Instant,
    /// The latest change.
    last: Instant,
    /// Reported as not settling.
    told: bool,
}

/// The changes waiting on one side.
#[derive(Debug, Default)]
pub struct Dirty {
    paths: BTreeMap<RelPath, Heat>,
    /// The whole tree must be scanned again.
    pub full: bool,
}

impl Dirty {
    /// Notes a change of `path` at `now`.
    pub fn touch(&mut self, path: RelPath, deep: bool, now: Instant) {
        let h = self.paths.entry(path).or_insert(Heat {
            deep,
            first: now,
            last: now,
            told: false,
        });
        h.deep |= deep;
        h.last = now;
    }

    /// Forgets everything (a full scan is about to look at it all).
    pub fn clear(&mut self) {
        self.paths.clear();
        self.full = false;
    }

    /// True if something can be looked at now.
    pub fn ready(&self, now: Instant, cooloff: Duration) -> bool {
        self.full || self.paths.values().any(|h| now >= h.last + cooloff)
    }

    /// Takes the paths that have been quiet for the cooloff.
    pub fn take_settled(&mut self, now: Instant, cooloff: Duration) -> Vec<(RelPath, bool)> {
        let settled: Vec<RelPath> = self
            .paths
            .iter()
            .filter(|(_, h)| now >= h.last + cooloff)
            .map(|(p, _)| p.clone())
            .collect();
        settled
            .into_iter()
            .map(|p| {
                let deep = self.paths.remove(&p).is_some_and(|h| h.deep);
                (p, deep)
            })
            .collect()
    }

    /// Paths still changing.
    pub fn hot(&self) -> impl Iterator<Item = &RelPath> {
        self.paths.keys()
    }

    /// Paths that have kept changing for longer than `patience`, not yet reported; marks
    /// them reported.
    pub fn unsettled(&mut self, now: Instant, patience: Duration) -> Vec<RelPath> {
        self.paths
            .iter_mut()
            .filter(|(_, h)| !h.told && now >= h.first + patience)
            .map(|(p, h)| {
                h.told = true;
                p.clone()
            })
            .collect()
    }

    /// When something next becomes ready (or due to be reported as unsettled).
    pub fn next_due(&self, cooloff: Duration, patience: Duration) -> Option<Instant> {
        self.paths
            .values()
            .map(|h| {
                let settle = h.last + cooloff;
                if h.told {
                    settle
                } else {
                    settle.min(h.first + patience)
                }
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn a_path_waits_for_the_cooloff_after_its_last_change() {
        let t0 = Instant::now();
        let cool = Duration::from_secs(3);
        let mut d = Dirty::default();
        d.touch(p("a"), false, t0);
        d.touch(p("b"), true, t0);
        d.touch(p("a"), false, t0 + Duration::from_secs(2));
        assert!(!d.ready(t0 + Duration::from_secs(2), cool));
        assert_eq!(
            d.take_settled(t0 + Duration::from_secs(3), cool),
            vec![(p("b"), true)]
        );
        assert_eq!(d.hot().cloned().collect::<Vec<_>>(), vec![p("a")]);
        assert_eq!(
            d.next_due(cool, Duration::from_secs(60)),
            Some(t0 + Duration::from_secs(5))
        );
        assert_eq!(
            d.take_settled(t0 + Duration::from_secs(5), cool),
            vec![(p("a"), false)]
        );
    }

    #[test]
    fn a_path_that_never_settles_is_reported_once() {
        let t0 = Instant::now();
        let mut d = Dirty::default();
        let patience = Duration::from_secs(10);
        for i in 0..30 {
            d.touch(p("log"), false, t0 + Duration::from_secs(i));
        }
        let now = t0 + Duration::from_secs(29);
        assert_eq!(d.unsettled(now, patience), vec![p("log")]);
        assert!(d.unsettled(now, patience).is_empty());
    }
}
