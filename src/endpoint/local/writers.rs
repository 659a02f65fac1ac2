//! Small new files are put in place by a few threads. Creating, writing and renaming a file
//! costs the kernel far more than its few bytes do: one thread doing that for 100,000 tiny
//! files spends seconds in system calls while the other cores idle, and the kernel lets
//! two threads create files side by side, even in one directory.

use std::io;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use crate::disk::delta::{self, DeltaOp};
use crate::disk::fsops::{entry_at, DirFd, Root};
use crate::endpoint::Received;
use crate::error::{Error, Result};

use super::{commit_failed, finish_temp};
use crate::core::path::RelPath;
use crate::core::tree::{Digest, Entry};

/// A file no larger than this, new where it lands and sent whole, is gathered in memory and
/// placed by a writer.
pub(super) const SMALL: u64 = 64 << 10;
/// Gathered files go to the writers in batches of this many (or [`BATCH_BYTES`]): handing
/// each over alone would wake a writer per file, which costs more than writing it.
const BATCH_FILES: usize = 64;
/// ...or this many bytes.
const BATCH_BYTES: usize = 256 << 10;
/// Batches waiting for a writer; a full queue holds the receiver back, so what waits in
/// memory stays bounded.
const QUEUE: usize = 4;
/// Writers at most: past a few, more threads only queue on the filesystem's locks.
const MAX_WRITERS: usize = 4;

/// A small file being received: its bytes so far.
pub(super) struct Gathering {
    /// Where it goes.
    pub path: RelPath,
    /// Its attributes, size included.
    pub meta: Entry,
    /// The directory it goes into, opened when it began.
    pub dir: DirFd,
    /// Its bytes so far.
    pub data: Vec<u8>,
    /// Why it cannot be placed, once that is known.
    pub failed: Option<Error>,
}

impl Gathering {
    /// Adds the ops' bytes; a sender that sends more than it announced, or asks for an old
    /// version a new file does not have, fails the file.
    pub fn add(&mut self, ops: Vec<DeltaOp>, place: &str) {
        for op in ops {
            if self.failed.is_some() {
                return;
            }
            let fits = (self.data.len() as u64)
                .checked_add(op.len())
                .is_some_and(|total| total <= self.meta.size);
            let why = match op {
                _ if !fits => format!(
                    "sender sent more than the announced {} bytes",
                    self.meta.size
                ),
                DeltaOp::Literal(bytes) => {
                    self.data.extend_from_slice(&bytes);
                    continue;
                }
                DeltaOp::Hole(len) => {
                    self.data.resize(self.data.len() + len as usize, 0);
                    continue;
                }
                DeltaOp::Copy { .. } => "copy op without an old version".to_string(),
            };
            self.failed = Some(Error::Protocol(format!(
                "'{}' on {place}: {why}; not committed",
                self.path
            )));
        }
    }
}

/// A gathered file and the digest its sender announced.
struct Job {
    id: u64,
    file: Gathering,
    digest: Digest,
}

/// The writer threads, started on first use, and the outcomes they report.
pub(super) struct Writers {
    /// The endpoint's name in messages.
    place: String,
    /// Whether files get their owner and group.
    owner: bool,
    running: Option<Running>,
    /// The batch being filled.
    batch: Vec<Job>,
    batch_bytes: usize,
    /// Files handed over whose outcome is not yet collected.
    busy: usize,
}

struct Running {
    jobs: mpsc::SyncSender<Vec<Job>>,
    outcomes: mpsc::Receiver<Vec<Received>>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Writers for the endpoint named `place`; `owner` as [`Root::set_meta_fd`] takes it.
    pub fn new(place: &str, owner: bool) -> Writers {
        Writers {
            place: place.to_string(),
            owner,
            running: None,
            batch: Vec::new(),
            batch_bytes: 0,
            busy: 0,
        }
    }

    /// Adds a gathered file to the batch, handing the batch over once it is full.
    pub fn place(&mut self, id: u64, file: Gathering, digest: Digest) {
        self.batch_bytes += file.data.len();
        self.batch.push(Job { id, file, digest });
        if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
            self.hand_over();
        }
    }

    /// Hands the batch to the writers (waiting while their queue is full).
    fn hand_over(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.busy += batch.len();
        let running = self
            .running
            .get_or_insert_with(|| start(&self.place, self.owner));
        // The writers end only when this queue closes, so the send cannot fail.
        let _ = running.jobs.send(batch);
    }

    /// Moves the outcomes reported so far into `done`; with `wait`, first hands over the
    /// batch and waits until every file is placed or failed.
    pub fn collect(&mut self, done: &mut Vec<Received>, wait: bool) {
        if wait {
            self.hand_over();
        }
        let Some(running) = &self.running else { return };
        while self.busy > 0 {
            let next = if wait {
                running.outcomes.recv().ok()
            } else {
                running.outcomes.try_recv().ok()
            };
            let Some(outcomes) = next else { break };
            self.busy -= outcomes.len();
            done.extend(outcomes);
        }
    }
}

impl Drop for Writers {
    /// Files already handed over are verified and complete: they are placed, not dropped
    /// half-written, before the endpoint goes.
    fn drop(&mut self) {
        if let Some(Running { jobs, threads, .. }) = self.running.take() {
            drop(jobs);
            for t in threads {
                let _ = t.join();
            }
        }
    }
}

/// Starts the writers: as many as there are cores, two at least (one writes while the
/// other waits on the disk) and [`MAX_WRITERS`] at most.
fn start(place: &str, owner: bool) -> Running {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, MAX_WRITERS));
    let (jobs, queue) = mpsc::sync_channel::<Vec<Job>>(QUEUE);
    let queue = Arc::new(Mutex::new(queue));
    let (report, outcomes) = mpsc::channel();
    let threads = (0..n)
        .map(|_| {
            let (queue, report, place) = (queue.clone(), report.clone(), place.to_string());
            std::thread::spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(batch) = next else { return };
                let outcomes = batch
                    .iter()
                    .map(|job| (job.id, write_caught(job, &place, owner)))
                    .collect();
                if report.send(outcomes).is_err() {
                    return;
                }
            })
        })
        .collect();
    Running {
        jobs,
        outcomes,
        threads,
    }
}

/// [`write`], with a panic reported as this file's failure rather than lost (an outcome
/// never reported would leave the receiver waiting for ever).
fn write_caught(job: &Job, place: &str, owner: bool) -> Result<Entry> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        write(&job.file, job.digest, place, owner)
    }))
    .unwrap_or_else(|_| {
        Err(Error::Protocol(format!(
            "'{}' on {place}: writing it failed unexpectedly; not committed",
            job.file.path
        )))
    })
}

/// Checks a gathered file against its digest, writes it to a temp file with its
/// attributes, and renames that into place, refusing to replace anything that appeared
/// meanwhile; returns the file as it now is.
fn write(file: &Gathering, digest: Digest, place: &str, owner: bool) -> Result<Entry> {
    // A file that failed while gathered never reaches a writer.
    let Gathering {
        path,
        meta,
        dir,
        data,
        ..
    } = file;
    let io = |op: &'static str, e: io::Error| {
        Error::io(
            op,
            path,
            place,
            crate::disk::sys::fsops::explain_full(e, dir),
        )
    };
    if data.len() as u64 != meta.size || Digest(*blake3::hash(data).as_bytes()) != digest {
        return Err(Error::Verify {
            path: path.to_string(),
            place: place.to_string(),
        });
    }
    let (tmp, f) = Root::create_temp_in(dir, path.name(), meta.mode)
        .map_err(|e| io("create a temporary file for", e))?;
    let written = delta::write_sparse(&f, 0, data).map_err(|e| ("write", e));
    let placed = written
        .and_then(|end| finish_temp(&f, end.unwrap_or(0), meta, owner))
        .map_err(|(op, e)| io(op, e))
        .and_then(|()| {
            Root::commit_rename(dir, &tmp, path, None).map_err(|e| commit_failed(e, path, place))
        });
    if let Err(e) = placed {
        Root::remove_name(dir, &tmp);
        return Err(e);
    }
    match entry_at(dir, path.name()) {
        Ok(Some(mut now)) => {
            now.digest = Some(digest);
            Ok(now)
        }
        Ok(None) => Err(io("stat", io::ErrorKind::NotFound.into())),
        Err(e) => Err(io("stat", e)),
    }
}
