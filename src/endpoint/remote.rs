//! `RemoteEndpoint`: the same [`Endpoint`] over a byte stream to an agent.
//!
//! Two threads do the IO so neither side can block the other: a writer drains a bounded
//! queue of frames into the stream, a reader decodes frames from it into a bounded queue.
//! File chunks are batched into frames of about a megabyte and are not waited for: the
//! agent reports each file when it is committed, so many files are in flight at once.
//!
//! Over 600 lines for a reason: one type whose request pipeline, credit-based flow control
//! and reader thread work together; split, each half would need the other to be read.

mod lanes;
mod throttle;

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::core::path::RelPath;
use crate::core::tree::{Digest, Entry, MapBuilder, Tree};
use crate::disk::compress::{Class, Compression, Decompressor};
use crate::disk::delta::refine::Ranges;
use crate::endpoint::{
    Change, Chunk, Endpoint, GapRequest, Received, Rescan, Scan, SendRequest, SignRequest, Traffic,
};
use crate::error::{Error, Result};
use crate::state::known::Known;
use crate::state::rules::FilterSpec;
use crate::wire::protocol::frame::{read_frame, FrameError, Kind};
use crate::wire::protocol::handshake::{read_hello, send_hello};
use crate::wire::protocol::{
    class_of, decode, encode_into, inflate, Request, Response, PATH_BATCH,
};

use lanes::Lanes;
pub use lanes::StreamPlan;
pub use throttle::Throttle;

/// How the client talks to an agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// Compression of the client's frames.
    pub compression: Compression,
    /// `-l`: most bits per second on the wire, both ways together.
    pub rate: Option<u64>,
}

impl From<Compression> for Link {
    fn from(compression: Compression) -> Link {
        Link {
            compression,
            rate: None,
        }
    }
}

/// Opens the extra streams of an invitation (socket name, secret): each a writer, or why
/// it could not be opened.
pub type Joiner = Box<
    dyn FnOnce(String, Vec<u8>) -> Vec<std::result::Result<Box<dyn Write + Send>, String>> + Send,
>;

type Joined = std::result::Result<Box<dyn Write + Send>, String>;

/// Frames queued from the reader (each at most about a megabyte of file data).
const QUEUE: usize = 32;
/// Longest wait for extra streams still joining before file data goes out without them.
const JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Changes per `Apply` message.
const APPLY_BATCH: usize = 1000;
/// Requests sent ahead of their answers: enough that the agent always has the next one
/// waiting, few enough that sending never blocks while answers wait unread (all sent
/// first, both ends stalled writing, each waiting for the other to read). Fewer than the
/// messages the first lane queues and the reader holds.
const AHEAD: usize = 4;
/// Chunk bytes gathered before a `Receive` frame goes out.
const BATCH_BYTES: usize = 1 << 20;

enum FromAgent {
    Msg(Response),
    Log(String),
    Gone(String, u8),
}

/// An endpoint served by an agent at the other end of a stream.
pub struct RemoteEndpoint {
    place: String,
    to_agent: Option<Lanes>,
    from_agent: Receiver<FromAgent>,
    alarm: mpsc::SyncSender<FromAgent>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    raw: Arc<AtomicU64>,
    batch: Vec<Chunk>,
    batch_bytes: usize,
    batch_large: bool,
    large: HashSet<u64>,
    plan: StreamPlan,
    joiner: Option<Joiner>,
    joined: (mpsc::Sender<Joined>, Receiver<Joined>),
    pending_joins: u32,
    notes: Vec<String>,
    in_flight: HashMap<u64, Option<Digest>>,
    outcomes: Vec<Received>,
    reader: Option<JoinHandle<()>>,
    guard: Option<Box<dyn Send>>,
    broken: Option<Error>,
    watchers: Watchers,
    throttle: Option<Arc<Throttle>>,
}

/// Where the agent's unasked change reports go, once the client watches.
type Watchers = Arc<Mutex<Option<crate::disk::watch::Sink>>>;

/// The reader thread: decodes frames from the agent until it stops or the stream breaks.
/// Change reports go straight to the watcher (the engine may be idle, waiting for them).
fn read_loop(
    reader: &mut impl Read,
    deliver: &mpsc::SyncSender<FromAgent>,
    counter: &AtomicU64,
    raw_in: &AtomicU64,
    place: &str,
    watchers: &Watchers,
) {
    let tell = |hint: crate::disk::watch::Hint| {
        if let Some(sink) = watchers.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            sink(hint);
        }
    };
    let mut context = Decompressor::default();
    loop {
        let frame = read_frame(reader).map(|f| {
            f.map(|f| {
                counter.fetch_add(f.1.len() as u64 + 5, Ordering::Relaxed);
                inflate(f, &mut context)
            })
        });
        let msg = match frame {
            Ok(None) => FromAgent::Gone("the agent closed the connection".into(), 128),
            // The transport lost the connection under the agent (SSH): the remote is gone.
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionAborted => {
                FromAgent::Gone(format!("{place}: {e}"), 64)
            }
            Err(e) => FromAgent::Gone(format!("broken connection to the agent: {e}"), 128),
            Ok(Some(Err(why))) => {
                FromAgent::Gone(format!("the agent sent an invalid frame: {why}"), 128)
            }
            Ok(Some(Ok((kind, payload)))) => {
                match kind {
                    Kind::Log => FromAgent::Log(String::from_utf8_lossy(&payload).into_owned()),
                    // A fatal frame is the exit bit, then the message.
                    Kind::Fatal => match payload.split_first() {
                        Some((bit, msg)) => {
                            FromAgent::Gone(String::from_utf8_lossy(msg).into_owned(), *bit)
                        }
                        None => FromAgent::Gone("the agent stopped".into(), 128),
                    },
                    _ => match decode::<Response>(kind, &payload) {
                        Ok(Response::Changed(hint)) => {
                            tell(hint);
                            continue;
                        }
                        Ok(r) => {
                            // Its size before compression, header included: the ratio's.
                            raw_in.fetch_add(payload.len() as u64 + 5, Ordering::Relaxed);
                            FromAgent::Msg(r)
                        }
                        Err(why) => FromAgent::Gone(
                            format!("the agent sent an invalid message: {why}"),
                            128,
                        ),
                    },
                }
            }
        };
        let last = matches!(msg, FromAgent::Gone(..));
        if let FromAgent::Gone(why, _) = &msg {
            tell(crate::disk::watch::Hint::Gone(why.clone()));
        }
        if deliver.send(msg).is_err() || last {
            return;
        }
    }
}

impl RemoteEndpoint {
    /// Greets the agent on `reader`/`writer` and starts the IO threads. `guard` (the agent
    /// process, an SSH session) is dropped after the streams are closed.
    pub fn new(
        reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
        place: String,
        link: Link,
        guard: Option<Box<dyn Send>>,
    ) -> Result<RemoteEndpoint> {
        let throttle = link.rate.map(Throttle::new);
        let reader = throttle::Throttled::new(reader, throttle.clone());
        let writer = throttle::Throttled::new(writer, throttle.clone());
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, writer);
        let compression = link.compression;
        let unreachable = |e: &dyn std::fmt::Display| {
            Error::Unreachable(format!("cannot start the agent for {place}: {e}"))
        };
        read_hello(&mut reader).map_err(|e| unreachable(&e))?;
        send_hello(&mut writer).map_err(|e| unreachable(&e))?;
        let (sent, received) = (Arc::new(AtomicU64::new(12)), Arc::new(AtomicU64::new(12)));
        let raw = Arc::new(AtomicU64::new(24));
        let (deliver, from_agent) = mpsc::sync_channel::<FromAgent>(QUEUE);
        let lanes = Lanes::new(Box::new(writer), compression, sent.clone());
        let watchers: Watchers = Arc::default();
        let reader = std::thread::spawn({
            let (deliver, counter, raw_in, place, watchers) = (
                deliver.clone(),
                received.clone(),
                raw.clone(),
                place.clone(),
                watchers.clone(),
            );
            move || read_loop(&mut reader, &deliver, &counter, &raw_in, &place, &watchers)
        });
        Ok(RemoteEndpoint {
            place,
            to_agent: Some(lanes),
            from_agent,
            alarm: deliver,
            sent,
            received,
            raw,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_large: false,
            large: HashSet::new(),
            plan: StreamPlan::default(),
            joiner: None,
            joined: mpsc::channel(),
            pending_joins: 0,
            notes: Vec::new(),
            in_flight: HashMap::new(),
            outcomes: Vec::new(),
            reader: Some(reader),
            guard,
            broken: None,
            watchers,
            throttle,
        })
    }

    /// Asks the agent to accept `count` extra streams, spread as `plan` says, and returns
    /// at once: when the agent's invitation arrives, `joiner` opens the streams on a thread
    /// of its own, and each is used from the next frame on.
    pub fn invite_streams(&mut self, count: u32, plan: StreamPlan, joiner: Joiner) -> Result<()> {
        self.flush_batch()?;
        self.send_msg(&Request::Streams { count })?;
        if let Some(lanes) = &mut self.to_agent {
            lanes.sequence(plan);
        }
        self.plan = plan;
        self.joiner = Some(joiner);
        self.pending_joins = count;
        Ok(())
    }

    /// Starts joining streams once the agent has said how.
    fn joining(&mut self, name: String, token: Vec<u8>) {
        if let Some(join) = self.joiner.take() {
            let joined = self.joined.0.clone();
            std::thread::spawn(move || {
                for stream in join(name, token) {
                    if joined.send(stream).is_err() {
                        return;
                    }
                }
            });
        }
    }

    /// Puts streams that have joined into service. With `wait`, first waits (a little) for
    /// those still joining: file data queued on the first stream alone would have to drain
    /// through its window alone.
    fn take_joined(&mut self, wait: bool) {
        // Joining has started once the invitation arrived (before any scan answer).
        let deadline = std::time::Instant::now() + JOIN_WAIT;
        loop {
            let stream = if wait && self.joiner.is_none() && self.pending_joins > 0 {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match self.joined.1.recv_timeout(left) {
                    Ok(s) => s,
                    Err(_) => {
                        self.pending_joins = 0;
                        break;
                    }
                }
            } else {
                match self.joined.1.try_recv() {
                    Ok(s) => s,
                    Err(_) => break,
                }
            };
            self.pending_joins = self.pending_joins.saturating_sub(1);
            match (stream, &mut self.to_agent) {
                (Ok(w), Some(lanes)) => {
                    let w = Box::new(throttle::Throttled::new(w, self.throttle.clone()));
                    lanes.add(w, self.alarm.clone())
                }
                (Ok(_), None) => {}
                (Err(why), _) => self
                    .notes
                    .push(format!("{why}; going on with fewer streams")),
            }
        }
    }

    /// Bytes written on each stream to the agent so far.
    pub fn per_stream(&self) -> Vec<u64> {
        self.to_agent
            .as_ref()
            .map(Lanes::per_stream)
            .unwrap_or_default()
    }

    fn lost(&self, why: &str) -> Error {
        Error::Protocol(format!("{}: {why}", self.place))
    }

    fn failure(&self) -> Option<Error> {
        self.broken.as_ref().map(|e| match e {
            Error::Unreachable(m) => Error::Unreachable(m.clone()),
            Error::State(m) => Error::State(m.clone()),
            other => Error::Protocol(other.to_string()),
        })
    }

    fn send_msg(&mut self, req: &Request) -> Result<()> {
        self.send_frame(req, false, 0, Class::Fine)
    }

    /// Sends the requests for `batches` from `*sent` on, until [`AHEAD`] of them are
    /// unanswered (`answered` have been answered).
    fn send_ahead<T>(
        &mut self,
        batches: &[&[T]],
        sent: &mut usize,
        answered: usize,
        request: impl Fn(&[T]) -> Request,
    ) -> Result<()> {
        while *sent < batches.len() && *sent < answered + AHEAD {
            self.send_msg(&request(batches[*sent]))?;
            *sent += 1;
        }
        Ok(())
    }

    /// Queues a message; `large`: it carries data of files above the stream plan's size;
    /// `size`: about how many bytes it encodes to, if known.
    fn send_frame(&mut self, req: &Request, large: bool, size: usize, class: Class) -> Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        self.take_joined(large || matches!(req, Request::Receive { .. }));
        // Encoded raw here; the lane threads compress.
        let buf = (self.to_agent.as_ref()).map_or_else(Vec::new, |q| q.spares().take(size));
        let (kind, payload) = encode_into(req, buf, size)?;
        self.raw
            .fetch_add(payload.len() as u64 + 5, Ordering::Relaxed);
        let ok = self
            .to_agent
            .as_mut()
            .is_some_and(|q| q.send(kind, payload, large, class).is_ok());
        if ok {
            Ok(())
        } else {
            self.explain_loss();
            Err(self.failure().expect("the loss is recorded"))
        }
    }

    /// The stream to the agent closed: the reader usually knows why (a fatal frame, the
    /// connection lost), so wait a moment for its word before settling on a vaguer one.
    fn explain_loss(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.broken.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.from_agent.recv_timeout(left) {
                Ok(FromAgent::Gone(why, bit)) => self.gone(why, bit),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if self.broken.is_none() {
            self.broken = Some(self.lost("the connection to the agent is closed"));
        }
    }

    fn gone(&mut self, why: String, bit: u8) {
        let w = crate::error::WireError::Other {
            message: why.clone(),
            bit,
        };
        self.broken = Some(match Error::from(w) {
            Error::Protocol(_) => self.lost(&why),
            e => e,
        });
    }

    /// The next response that is not a file outcome (those are collected on the way).
    fn next(&mut self, block: bool) -> Result<Option<Response>> {
        loop {
            if let Some(e) = self.failure() {
                return Err(e);
            }
            let msg = if block {
                self.from_agent.recv().map_err(|RecvError| ())
            } else {
                match self.from_agent.try_recv() {
                    Ok(m) => Ok(m),
                    Err(TryRecvError::Empty) => return Ok(None),
                    Err(TryRecvError::Disconnected) => Err(()),
                }
            };
            match msg {
                Err(()) => self.broken = Some(self.lost("the agent is gone")),
                Ok(FromAgent::Gone(why, bit)) => self.gone(why, bit),
                // Endpoints never print: the agent's words reach the user as notes (events).
                Ok(FromAgent::Log(line)) => self.notes.push(format!("{}: {line}", self.place)),
                Ok(FromAgent::Msg(Response::Streams { name, token })) => {
                    self.joining(name, token.into_vec())
                }
                Ok(FromAgent::Msg(Response::NoStreams(why))) => {
                    self.joiner = None;
                    self.pending_joins = 0;
                    self.notes
                        .push(format!("{}: {why}; using one stream", self.place));
                }
                Ok(FromAgent::Msg(Response::Received(done))) => {
                    for (id, mut r) in done {
                        let Some(sent) = self.in_flight.remove(&id) else {
                            continue;
                        };
                        // The agent leaves out the digest it checked against ours.
                        if let (Ok(e), Some(d)) = (&mut r, sent) {
                            if e.is_file() && e.digest.is_none() {
                                e.digest = Some(d);
                            }
                        }
                        self.outcomes.push((id, r.map_err(Error::from)));
                    }
                    if !block {
                        continue;
                    }
                    return Ok(None);
                }
                Ok(FromAgent::Msg(r)) => return Ok(Some(r)),
            }
        }
    }

    /// Sends a request and waits for its (non-outcome) response.
    /// Times one round trip to the agent (a request that does nothing).
    pub fn round_trip(&mut self) -> Result<std::time::Duration> {
        let start = std::time::Instant::now();
        match self.call(&Request::Digests { paths: Vec::new() })? {
            Response::Digests(_) => Ok(start.elapsed()),
            _ => Err(self.unexpected("digests")),
        }
    }

    fn call(&mut self, req: &Request) -> Result<Response> {
        self.flush_batch()?;
        self.send_msg(req)?;
        self.reply()
    }

    fn reply(&mut self) -> Result<Response> {
        loop {
            match self.next(true)? {
                Some(Response::Failed(e)) => return Err(e.into()),
                Some(r) => return Ok(r),
                None => continue,
            }
        }
    }

    fn unexpected(&self, what: &str) -> Error {
        self.lost(&format!("unexpected reply from the agent to {what}"))
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.batch);
        let size = std::mem::take(&mut self.batch_bytes);
        let class = class_of(&chunks);
        self.send_frame(&Request::Receive { chunks }, self.batch_large, size, class)
    }

    /// Sends a scan request and gathers its `ScanPart`s (sharing what `known` has);
    /// returns the tree and the closing message.
    fn tree_parts(&mut self, req: &Request, mut known: Known<'_>) -> Result<(Tree, Response)> {
        let (mut all, mut problems) = (MapBuilder::default(), Vec::new());
        let mut r = self.call(req)?;
        while let Response::ScanPart {
            entries,
            problems: p,
        } = r
        {
            all.extend(entries.into_iter().map(|(p, e)| known.share(p, e)));
            problems.extend(p);
            r = self.reply()?;
        }
        let tree = Tree {
            entries: all.finish(),
            problems: problems.into_iter().collect(),
        };
        Ok((tree, r))
    }

    fn done(&mut self, req: &Request) -> Result<Option<Entry>> {
        match self.call(req)? {
            Response::Done(r) => r.map_err(Error::from),
            _ => Err(self.unexpected("a change")),
        }
    }
}

impl Endpoint for RemoteEndpoint {
    fn place(&self) -> &str {
        &self.place
    }

    fn scan(&mut self, filter: &FilterSpec, known: Known<'_>) -> Result<Scan> {
        let request = Request::Scan {
            filter: filter.clone(),
            skip_file_xattrs: known.knows_xattrs(),
            probed: known.probed(),
        };
        let (tree, end) = self.tree_parts(&request, known)?;
        match end {
            Response::ScanDone {
                root_id,
                partials,
                owners,
                names,
                holds,
            } => Ok(Scan {
                tree,
                root_id,
                partials: partials.into_iter().collect(),
                owners,
                names,
                holds,
            }),
            _ => Err(self.unexpected("scan")),
        }
    }

    fn rescan(&mut self, filter: &FilterSpec, paths: &[(RelPath, bool)]) -> Result<Rescan> {
        let request = Request::Rescan {
            filter: filter.clone(),
            paths: paths.to_vec(),
        };
        let (tree, end) = self.tree_parts(&request, Known::none())?;
        match end {
            Response::Rescanned { whole } => Ok(Rescan { tree, whole }),
            _ => Err(self.unexpected("rescan")),
        }
    }

    fn watch(&mut self, sink: crate::disk::watch::Sink) -> Result<()> {
        *self.watchers.lock().unwrap_or_else(|e| e.into_inner()) = Some(sink);
        match self.call(&Request::Watch)? {
            Response::Done(r) => r.map(|_| ()).map_err(Error::from),
            _ => Err(self.unexpected("watch")),
        }
    }

    fn digests(&mut self, paths: &[RelPath]) -> Result<Vec<(RelPath, Result<Digest, String>)>> {
        let mut out = Vec::with_capacity(paths.len());
        for batch in paths.chunks(PATH_BATCH) {
            match self.call(&Request::Digests {
                paths: batch.to_vec(),
            })? {
                Response::Digests(d) if d.len() == batch.len() => out.extend(d),
                _ => return Err(self.unexpected("digests")),
            }
        }
        Ok(out)
    }

    fn signatures(&mut self, files: &[SignRequest]) -> Result<Vec<Result<Vec<u8>, String>>> {
        let mut out = Vec::with_capacity(files.len());
        // Signatures are about 0.02% of a file: a few hundred per frame is safe.
        for batch in files.chunks(256) {
            // The check of the basis does not read its digest.
            let files = batch
                .iter()
                .map(|r| SignRequest {
                    expect: r.expect.as_ref().map(Entry::without_digest),
                    ..r.clone()
                })
                .collect();
            match self.call(&Request::Signatures { files })? {
                Response::Signatures(s) if s.len() == batch.len() => {
                    out.extend(s.into_iter().map(|r| r.map(|b| b.into_vec())))
                }
                _ => return Err(self.unexpected("signatures")),
            }
        }
        Ok(out)
    }

    fn gaps(&mut self, files: &[GapRequest]) -> Result<Vec<Result<Ranges, String>>> {
        let mut out = Vec::with_capacity(files.len());
        for batch in files.chunks(256) {
            let files = batch
                .iter()
                .map(|r| GapRequest {
                    expect: r.expect.without_digest(),
                    ..r.clone()
                })
                .collect();
            match self.call(&Request::Gaps { files })? {
                Response::Gaps(g) if g.len() == batch.len() => out.extend(g),
                _ => return Err(self.unexpected("gaps")),
            }
        }
        Ok(out)
    }

    fn send(
        &mut self,
        files: &[SendRequest],
        sink: &mut dyn FnMut(Chunk) -> Result<()>,
    ) -> Result<()> {
        self.flush_batch()?;
        let wanted: HashSet<u64> = files.iter().map(|f| f.id).collect();
        let batches: Vec<&[SendRequest]> = files.chunks(64).collect();
        let (mut sent, mut done) = (0, 0);
        while done < batches.len() {
            self.send_ahead(&batches, &mut sent, done, |files| Request::Send {
                files: files.to_vec(),
            })?;
            match self.reply()? {
                Response::Chunks(chunks) => {
                    for c in chunks {
                        if !wanted.contains(&c.id()) {
                            return Err(self.lost(&format!(
                                "the agent sent a file that was not asked for (id {})",
                                c.id()
                            )));
                        }
                        sink(c)?;
                    }
                }
                Response::SendDone => done += 1,
                _ => return Err(self.unexpected("send")),
            }
        }
        Ok(())
    }

    fn receive(&mut self, mut chunk: Chunk) -> Result<()> {
        // The check of the target does not read its digest.
        if let Chunk::Begin {
            expect: Some(e), ..
        } = &mut chunk
        {
            *e = e.without_digest();
        }
        // An abort can come without a begin (a source that could not even be opened): the
        // agent reports an outcome for it all the same.
        if let Chunk::Begin { id, .. } | Chunk::Abort { id, .. } = &chunk {
            self.in_flight.insert(*id, None);
        }
        if let Chunk::End { id, digest } = &chunk {
            if let Some(sent) = self.in_flight.get_mut(id) {
                *sent = Some(*digest);
            }
        }
        if let Chunk::Begin { id, meta, .. } = &chunk {
            if self.plan.large_above.is_some_and(|size| meta.size > size) {
                self.large.insert(*id);
            }
        }
        // Large and small files travel in separate frames, so each can take its lanes.
        let large = self.large.contains(&chunk.id());
        if large != self.batch_large {
            self.flush_batch()?;
            self.batch_large = large;
        }
        if let Chunk::End { id, .. } | Chunk::Abort { id, .. } = &chunk {
            self.large.remove(id);
        }
        self.batch_bytes += chunk.encoded_size();
        self.batch.push(chunk);
        if self.batch_bytes >= BATCH_BYTES || self.batch.len() >= 512 {
            self.flush_batch()?;
            // Collect finished files on the way, without waiting.
            self.next(false)?;
        }
        Ok(())
    }

    fn received(&mut self, wait: bool) -> Result<Vec<Received>> {
        // Without waiting, only collect what has arrived: small files keep sharing frames.
        if wait {
            self.flush_batch()?;
        }
        if wait && !self.in_flight.is_empty() {
            // The agent commits in batches: ask for the rest now.
            self.send_msg(&Request::Commit)?;
        }
        self.next(false)?;
        while wait && !self.in_flight.is_empty() {
            self.next(true)?;
        }
        Ok(std::mem::take(&mut self.outcomes))
    }

    fn sync(&mut self) -> Result<()> {
        self.done(&Request::Sync).map(|_| ())
    }

    fn apply(&mut self, changes: &[Change]) -> Result<Vec<Result<Option<Entry>>>> {
        let batches: Vec<&[Change]> = changes.chunks(APPLY_BATCH).collect();
        self.flush_batch()?;
        let mut out = Vec::with_capacity(changes.len());
        let mut sent = 0;
        for (answered, batch) in batches.iter().enumerate() {
            self.send_ahead(&batches, &mut sent, answered, |changes| Request::Apply {
                changes: changes.to_vec(),
            })?;
            match self.reply()? {
                Response::Applied(r) if r.len() == batch.len() => {
                    out.extend(r.into_iter().map(|r| r.map_err(Error::from)))
                }
                _ => return Err(self.unexpected("changes")),
            }
        }
        Ok(out)
    }

    fn streams(&self) -> Vec<u64> {
        self.per_stream()
    }

    fn notes(&mut self) -> Vec<String> {
        self.take_joined(false);
        std::mem::take(&mut self.notes)
    }

    fn traffic(&self) -> Traffic {
        Traffic {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            raw: self.raw.load(Ordering::Relaxed),
        }
    }
}

impl Drop for RemoteEndpoint {
    fn drop(&mut self) {
        let _ = self.flush_batch();
        // Closing the lanes closes the agent's input: it exits cleanly.
        self.to_agent = None;
        // The guard waits for the agent (a child process, an SSH session) to finish.
        self.guard = None;
        // With the connection gone, the reader has seen the end of its stream.
        if let Some(r) = self.reader.take() {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}
