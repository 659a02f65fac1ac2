//! `--scan-threads`: a directory's entries are looked up (`lstat`, a symlink's target) on
//! several threads at once. The walk itself stays on one thread and takes the results in
//! order, so the tree, its streaming order and the first name of each hard-linked file
//! are the same whatever the number of threads.

use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::core::tree::Entry;
use crate::disk::fsops::{scan_entry_at, LinkKey};

/// One name's lookup, as [`scan_entry_at`] gives it.
pub type Stat = std::io::Result<Option<(Entry, Option<LinkKey>)>>;

/// Below this many names a directory is looked up on the walking thread alone: handing
/// out the work would cost more than it saves.
const MIN_SPLIT: usize = 16;

/// A share of one directory's names for a helper, and where its answer goes (with the
/// share's number).
struct Job {
    dir: Arc<OwnedFd>,
    names: Arc<Vec<Vec<u8>>>,
    part: usize,
    range: Range<usize>,
    reply: Sender<(usize, Vec<Stat>)>,
}

/// Helper threads that look names up for the walk (the walking thread is one of the
/// `threads`).
pub struct StatPool {
    helpers: Vec<(Sender<Job>, JoinHandle<()>)>,
}

impl StatPool {
    /// A pool of `threads` in all (none started for 1 or 0).
    pub fn new(threads: usize) -> StatPool {
        // A thread the system refuses is one helper fewer, not a failed scan.
        let helpers = (1..threads)
            .map_while(|_| {
                let (tx, rx) = channel::<Job>();
                let helper = std::thread::Builder::new().name("scan".into());
                Some((tx, helper.spawn(move || serve(rx)).ok()?))
            })
            .collect();
        StatPool { helpers }
    }

    /// Looks up `these` names of `dir`, in order: a share each for the helpers and for the
    /// calling thread, which does its own while they do theirs.
    pub fn stat_all(
        &self,
        dir: &Arc<OwnedFd>,
        names: &Arc<Vec<Vec<u8>>>,
        these: Range<usize>,
    ) -> Vec<Stat> {
        let here = |range: Range<usize>| -> Vec<Stat> {
            names[range]
                .iter()
                .map(|n| scan_entry_at(&**dir, n))
                .collect()
        };
        if self.helpers.is_empty() || these.len() < MIN_SPLIT {
            return here(these);
        }
        let share = these.len().div_ceil(self.helpers.len() + 1);
        let at = |k: usize| (these.start + k * share).min(these.end);
        let range = |k: usize| at(k)..at(k + 1);
        let (reply, answers) = channel();
        for (k, (tx, _)) in self.helpers.iter().enumerate() {
            let job = Job {
                dir: dir.clone(),
                names: names.clone(),
                part: k + 1,
                range: range(k + 1),
                reply: reply.clone(),
            };
            // A helper gone (it cannot be, short of a panic) leaves its share to this thread.
            let _ = tx.send(job);
        }
        drop(reply);
        let mut parts: Vec<Option<Vec<Stat>>> = vec![Some(here(range(0)))];
        parts.resize_with(self.helpers.len() + 1, || None);
        for (k, part) in answers.iter() {
            parts[k] = Some(part);
        }
        let mut stats = Vec::with_capacity(these.len());
        for (k, part) in parts.into_iter().enumerate() {
            stats.extend(part.unwrap_or_else(|| here(range(k))));
        }
        stats
    }
}

impl Drop for StatPool {
    fn drop(&mut self) {
        for (tx, worker) in std::mem::take(&mut self.helpers) {
            drop(tx);
            let _ = worker.join();
        }
    }
}

/// A helper's life: look up what it is given until the pool is dropped.
fn serve(jobs: Receiver<Job>) {
    for job in jobs {
        let stats = job.names[job.range.clone()]
            .iter()
            .map(|n| scan_entry_at(&*job.dir, n))
            .collect();
        let _ = job.reply.send((job.part, stats));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every share comes back in its place: a directory of files of distinct sizes, a
    /// symlink and a name that is gone, looked up by several threads in blocks of every
    /// alignment, reads as the walking thread alone reads it.
    #[test]
    fn shares_come_back_in_order_whatever_the_threads() {
        let tmp = tempfile::tempdir().unwrap();
        let mut names: Vec<Vec<u8>> = (0..101)
            .map(|i| {
                let name = format!("f{i:03}");
                std::fs::write(tmp.path().join(&name), vec![b'x'; i]).unwrap();
                name.into_bytes()
            })
            .collect();
        std::os::unix::fs::symlink("f007", tmp.path().join("link")).unwrap();
        names.push(b"link".to_vec());
        names.push(b"gone".to_vec());
        let fd = std::os::fd::OwnedFd::from(std::fs::File::open(tmp.path()).unwrap());
        let (dir, names) = (Arc::new(fd), Arc::new(names));
        let seen = |stats: Vec<Stat>| -> Vec<Option<(u64, Vec<u8>)>> {
            stats
                .into_iter()
                .map(|s| s.unwrap().map(|(e, _)| (e.size, e.target().to_vec())))
                .collect()
        };
        let alone = seen(StatPool::new(1).stat_all(&dir, &names, 0..names.len()));
        assert_eq!(alone[5], Some((5, vec![])));
        assert_eq!(alone[101], Some((0, b"f007".to_vec())));
        assert_eq!(alone[102], None);
        for threads in [2, 3, 4, 7] {
            let pool = StatPool::new(threads);
            assert_eq!(seen(pool.stat_all(&dir, &names, 0..names.len())), alone);
            for range in [3..40, 17..103, 0..16, 90..103] {
                let part = seen(pool.stat_all(&dir, &names, range.clone()));
                assert_eq!(part, alone[range.clone()], "{threads} threads, {range:?}");
            }
        }
    }
}
