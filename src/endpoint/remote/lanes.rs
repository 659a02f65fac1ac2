//! The writing side of a remote endpoint: one lane per stream to the agent, each a thread
//! that compresses and writes its frames, so a stream that waits for its window never
//! holds up the others.
//!
//! With one stream, frames go out as they are. Once the agent has invited extra streams
//! (`--transfer-threads`), every frame carries a sequence number and goes to the lane with
//! the least waiting, so one large file's windows spread over all of them; the agent
//! merges them back in order.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::FromAgent;
use crate::disk::compress::{Class, Compression, Compressor};
use crate::wire::protocol::frame::{write_frame, write_seq_frame, Kind};

/// Frames queued on the first lane (it carries every request while there is one lane).
const FIRST_QUEUE: usize = 32;
/// Frames queued on an extra lane.
const EXTRA_QUEUE: usize = 8;

/// How frames are spread over the streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamPlan {
    /// With `--transfer-threads N:SIZE`: data of files above SIZE goes on the extra
    /// streams only, everything else on the first, so small files never queue behind
    /// large ones. `None`: every frame takes the least busy stream.
    pub large_above: Option<u64>,
}

/// Frame buffers the lanes have written, handed back for the next frames to be encoded
/// into. A megabyte freed on a lane thread and allocated again on the main thread comes
/// back as fresh pages, each zeroed by the kernel as it is first touched: on a copy of
/// `/usr/share` that was a third of the client's main thread.
#[derive(Clone, Default)]
pub(super) struct Spares(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spares {
    /// Buffers kept at most: the queues refill as the lanes drain them.
    const KEEP: usize = 4;
    /// Smaller buffers come from the allocator's reused pages anyway.
    const MIN: usize = 64 << 10;
    /// Larger ones are rare (a frame of file data is about a megabyte), and kept they
    /// would hold their memory for the rest of the run.
    const MAX: usize = 4 << 20;

    /// A written frame's buffer, kept if it is worth keeping.
    fn put(&self, mut buf: Vec<u8>) {
        if (Self::MIN..=Self::MAX).contains(&buf.capacity()) {
            buf.clear();
            let mut spares = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if spares.len() < Self::KEEP {
                spares.push(buf);
            }
        }
    }

    /// A buffer to encode a frame of about `size` bytes into (empty if none is kept, or
    /// the frame is small).
    pub(super) fn take(&self, size: usize) -> Vec<u8> {
        if size < Self::MIN {
            return Vec::new();
        }
        let mut spares = self.0.lock().unwrap_or_else(|e| e.into_inner());
        spares.pop().unwrap_or_default()
    }
}

struct Packet {
    seq: Option<u64>,
    kind: Kind,
    class: Class,
    raw: Vec<u8>,
}

struct Lane {
    queue: Option<SyncSender<Packet>>,
    /// Bytes handed to this lane and not yet written.
    backlog: Arc<AtomicUsize>,
    /// Bytes this lane wrote to its stream.
    written: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// The streams to the agent.
pub struct Lanes {
    lanes: Vec<Lane>,
    next_seq: Option<u64>,
    plan: StreamPlan,
    shared: Shared,
    turn: usize,
}

/// Where an extra lane reports that its stream broke: the agent would wait forever for
/// the frames it lost, so the run must stop.
type Alarm = Option<(usize, SyncSender<FromAgent>)>;

/// What every lane shares: how to compress, and where bytes written and spent buffers go.
#[derive(Clone)]
struct Shared {
    compression: Compression,
    sent: Arc<AtomicU64>,
    spares: Spares,
}

fn spawn_lane(
    mut w: Box<dyn Write + Send>,
    queue_len: usize,
    shared: Shared,
    alarm: Alarm,
) -> Lane {
    let (queue, packets): (SyncSender<Packet>, Receiver<Packet>) = mpsc::sync_channel(queue_len);
    let backlog = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (left, out) = (backlog.clone(), written.clone());
    // Compression happens here, beside the main thread's reading and hashing.
    let thread = std::thread::spawn(move || {
        let Shared {
            compression,
            sent,
            spares,
        } = shared;
        // This stream's context: each frame is compressed knowing the ones before it.
        let mut context = Compressor::new(compression);
        let mut next = packets.recv().ok();
        while let Some(Packet {
            seq,
            kind,
            class,
            raw,
        }) = next
        {
            let size = raw.len();
            // Only messages are compressed: what the context took in, the frame must carry.
            let compressed = (kind == Kind::Message).then(|| context.compress(&raw, class));
            let (kind, payload, spent) = match (compressed.flatten(), class) {
                (Some(c), Class::Fine) => (Kind::Compressed, c, Some(raw)),
                (Some(c), Class::Bulk) => (Kind::CompressedBulk, c, Some(raw)),
                (None, _) => (kind, raw, None),
            };
            let n = match seq {
                Some(seq) => write_seq_frame(&mut w, seq, kind, &payload),
                None => write_frame(&mut w, kind, &payload),
            };
            spares.put(spent.unwrap_or(payload));
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    if let Some((i, to)) = alarm {
                        let why = format!("transfer stream {} to the agent broke: {e}", i + 1);
                        let _ = to.send(FromAgent::Gone(why, 64));
                    }
                    return;
                }
            };
            sent.fetch_add(n as u64, Ordering::Relaxed);
            out.fetch_add(n as u64, Ordering::Relaxed);
            left.fetch_sub(size, Ordering::Relaxed);
            next = match packets.try_recv() {
                Ok(p) => Some(p),
                // Flush only when the queue runs dry: batches go out together, and a lone
                // request is never held back.
                Err(TryRecvError::Empty) => {
                    if w.flush().is_err() {
                        return;
                    }
                    packets.recv().ok()
                }
                Err(TryRecvError::Disconnected) => None,
            };
        }
        let _ = w.flush();
    });
    Lane {
        queue: Some(queue),
        backlog,
        written,
        thread: Some(thread),
    }
}

impl Lanes {
    /// One lane on the stream the agent was started with. `sent` counts bytes written.
    pub fn new(w: Box<dyn Write + Send>, compression: Compression, sent: Arc<AtomicU64>) -> Lanes {
        let shared = Shared {
            compression,
            sent,
            spares: Spares::default(),
        };
        Lanes {
            lanes: vec![spawn_lane(w, FIRST_QUEUE, shared.clone(), None)],
            next_seq: None,
            plan: StreamPlan::default(),
            shared,
            turn: 0,
        }
    }

    /// Where the lanes hand back the buffers of frames written.
    pub(super) fn spares(&self) -> &Spares {
        &self.shared.spares
    }

    /// From now on every frame carries a sequence number (the agent has said yes to
    /// extra streams), spread as `plan` says.
    pub fn sequence(&mut self, plan: StreamPlan) {
        self.next_seq.get_or_insert(0);
        self.plan = plan;
    }

    /// Adds an extra stream (after [`Lanes::sequence`]); `alarm` hears if it breaks.
    pub(super) fn add(&mut self, w: Box<dyn Write + Send>, alarm: SyncSender<FromAgent>) {
        let w = Box::new(BufWriter::with_capacity(1 << 20, w));
        let alarm = Some((self.lanes.len(), alarm));
        let lane = spawn_lane(w, EXTRA_QUEUE, self.shared.clone(), alarm);
        self.lanes.push(lane);
    }

    /// Bytes written on each stream so far.
    pub fn per_stream(&self) -> Vec<u64> {
        self.lanes
            .iter()
            .map(|l| l.written.load(Ordering::Relaxed))
            .collect()
    }

    fn pick(&self, large: bool) -> usize {
        let candidates = match (self.next_seq, self.plan.large_above, self.lanes.len()) {
            (None, _, _) | (_, _, 1) => 0..1,
            (Some(_), Some(_), n) if large => 1..n,
            (Some(_), Some(_), _) => 0..1,
            (Some(_), None, n) => 0..n,
        };
        // Ties go round, starting after the last lane used: a stream's own buffers hide
        // its backlog at first, and the first lane must not take everything meanwhile.
        let (start, len) = (candidates.start, candidates.len());
        (0..len)
            .map(|k| start + (self.turn + k) % len)
            .min_by_key(|&i| self.lanes[i].backlog.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Queues a frame (`large`: it carries data of a file above the plan's size), to be
    /// compressed in the context of `class`. `Err` when the stream it was meant for has
    /// closed.
    pub(super) fn send(
        &mut self,
        kind: Kind,
        raw: Vec<u8>,
        large: bool,
        class: Class,
    ) -> Result<(), ()> {
        let chosen = self.pick(large);
        self.turn = self.turn.wrapping_add(1);
        let lane = &self.lanes[chosen];
        let seq = self.next_seq;
        if let Some(s) = &mut self.next_seq {
            *s += 1;
        }
        lane.backlog.fetch_add(raw.len(), Ordering::Relaxed);
        let queue = lane.queue.as_ref().ok_or(())?;
        queue
            .send(Packet {
                seq,
                kind,
                class,
                raw,
            })
            .map_err(|_| ())
    }
}

impl Drop for Lanes {
    /// Closing the queues closes the streams (each lane flushes first): the agent exits.
    fn drop(&mut self) {
        for lane in &mut self.lanes {
            lane.queue = None;
        }
        for lane in &mut self.lanes {
            if let Some(t) = lane.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A stream whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_written_frames_buffer_comes_back_for_the_next_one() {
        let sink = Sink::default();
        let sent = Arc::new(AtomicU64::new(0));
        let mut lanes = Lanes::new(Box::new(sink.clone()), Compression::None, sent.clone());
        let frame = vec![7u8; 1 << 20];
        let address = frame.as_ptr();
        lanes
            .send(Kind::Message, frame, false, Class::Fine)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let spare = loop {
            let spare = lanes.spares().take(1 << 20);
            if spare.capacity() > 0 || Instant::now() > deadline {
                break spare;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(spare.as_ptr(), address, "the same buffer, not a new one");
        assert!(spare.is_empty() && spare.capacity() >= 1 << 20);
        assert!(
            lanes.spares().take(100).capacity() == 0,
            "small frames take none"
        );
        lanes
            .send(Kind::Message, vec![0; 8 << 20], false, Class::Bulk)
            .unwrap();
        lanes
            .send(Kind::Message, vec![7; 1 << 20], false, Class::Fine)
            .unwrap();
        // A lane counts a frame as sent once it has handed back its buffer.
        let all = (10 << 20) as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while sent.load(Ordering::Relaxed) < all && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let kept: Vec<usize> = (lanes.shared.spares.0.lock().unwrap().iter())
            .map(Vec::capacity)
            .collect();
        assert!(
            kept.len() == 1 && kept[0] < 2 << 20,
            "only the megabyte is kept, not the 8 MiB: {kept:?}"
        );
        drop(lanes);
        let written = sink.0.lock().unwrap();
        assert_eq!(written.len() as u64, sent.load(Ordering::Relaxed));
        assert!(written.len() > 1 << 20 && written[written.len() - 1] == 7);
    }
}
