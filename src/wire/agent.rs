//! The agent: serves a [`LocalEndpoint`] over a stream. It speaks only when spoken to,
//! treats every message as untrusted, and stops at the first malformed one.

mod command;
mod options;
pub mod streams;
pub mod systems;
use command::*;
pub use command::{main_with_args, version_line};
pub use options::{AgentOptions, MAX_SCAN_THREADS};

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::disk::compress::{Class, Compressor, Decompressor};
use crate::endpoint::{Chunk, Endpoint, LocalEndpoint, Received, SendRequest};
use crate::error::{Error, WireError};
use crate::wire::protocol::frame::{read_frame, write_frame, Kind};
use crate::wire::protocol::handshake::{read_hello, send_hello, HandshakeError};
use crate::wire::protocol::{class_of, decode, encode, inflate, Request, Response, SCAN_BATCH};

/// The way to the client. Shared with the watcher thread, so every frame is written
/// whole under the lock.
#[derive(Clone)]
struct Out {
    w: Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>,
    /// The stream's compression context, locked from compressing a message until it is
    /// written: frames must leave in the order the context saw them.
    context: Arc<Mutex<Compressor>>,
}

impl Out {
    fn writer(&self) -> std::sync::MutexGuard<'_, BufWriter<Box<dyn Write + Send>>> {
        self.w.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, r: &Response) -> Result<(), Error> {
        let size = match r {
            Response::Chunks(chunks) => chunks.iter().map(Chunk::encoded_size).sum(),
            _ => 0,
        };
        let class = match r {
            Response::Chunks(chunks) => class_of(chunks),
            _ => Class::Fine,
        };
        let (kind, raw) = encode(r, size)?;
        let mut context = self.context.lock().unwrap_or_else(|e| e.into_inner());
        let (kind, payload) = match (context.compress(&raw, class), class) {
            (Some(c), Class::Fine) => (Kind::Compressed, c),
            (Some(c), Class::Bulk) => (Kind::CompressedBulk, c),
            (None, _) => (kind, raw),
        };
        write_frame(&mut *self.writer(), kind, &payload)
            .map_err(|e| Error::Protocol(format!("cannot write to the client: {e}")))?;
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        self.writer().flush()
    }

    fn stop(&self, error: Error) -> Stopped {
        self.fatal(&error);
        Stopped {
            error,
            told_client: true,
        }
    }

    /// Tells the client why the agent stops: the exit bit, then the message.
    fn fatal(&self, e: &Error) {
        let mut payload = vec![e.exit_bit().0.max(1)];
        payload.extend_from_slice(e.to_string().as_bytes());
        let mut w = self.writer();
        let _ = write_frame(&mut *w, Kind::Fatal, &payload);
        let _ = w.flush();
    }
}

/// Why the agent stopped early.
#[derive(Debug)]
pub struct Stopped {
    /// What went wrong.
    pub error: Error,
    /// True if the client was told (in a fatal frame), so it need not be printed.
    pub told_client: bool,
}

/// Where requests come from: the one stream, or (after `Streams`) several merged in order.
enum Source {
    /// The first stream, and its compression context.
    One(BufReader<Box<dyn Read + Send>>, Decompressor),
    Merged(Arc<streams::Merge>),
}

impl Source {
    fn next(&mut self) -> Result<Option<streams::Frame>, String> {
        match self {
            Source::One(r, context) => match read_frame(r).map_err(|e| e.to_string())? {
                Some(frame) => inflate(frame, context).map(Some),
                None => Ok(None),
            },
            Source::Merged(m) => m.pop(),
        }
    }

    /// Switches to sequenced frames (the first stream included) and listens for extra
    /// streams; `Err` says why none can join (the first stream is sequenced all the same).
    fn merge(&mut self, count: u32) -> Result<streams::Invitation, String> {
        let merge = Arc::new(streams::Merge::default());
        let invitation = streams::listen(count, &merge);
        let one = std::mem::replace(self, Source::Merged(merge.clone()));
        if let Source::One(r, context) = one {
            merge.feed(r, context);
        }
        invitation.map_err(|e| format!("cannot open extra streams: {e}"))
    }
}

/// Serves until the client closes the stream.
pub fn serve(
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
    opts: &AgentOptions,
) -> Result<(), Stopped> {
    let untold = |error| Stopped {
        error,
        told_client: false,
    };
    let mut input = BufReader::with_capacity(1 << 20, Box::new(input) as Box<dyn Read + Send>);
    let out = Out {
        w: Arc::new(Mutex::new(BufWriter::with_capacity(
            1 << 20,
            Box::new(output) as Box<dyn Write + Send>,
        ))),
        context: Arc::new(Mutex::new(Compressor::new(opts.compression))),
    };
    send_hello(&mut *out.writer())
        .map_err(|e| untold(Error::Protocol(format!("cannot greet the client: {e}"))))?;
    match read_hello(&mut input) {
        Ok(()) => {}
        // The client gave up before greeting (it reports why itself): leave quietly.
        Err(HandshakeError::Closed(noise)) if noise.is_empty() => {
            return Err(Stopped {
                error: Error::Protocol("the client left".into()),
                told_client: true,
            })
        }
        Err(e) => return Err(untold(Error::Protocol(e.to_string()))),
    }
    let mut log = match &opts.log {
        Some(spec) => Journal {
            log: Some(
                crate::output::log::Log::open(spec, "tandem-agent").map_err(|why| {
                    out.stop(Error::Unreachable(format!("{}: {why}", opts.label)))
                })?,
            ),
            names: Default::default(),
        },
        None => Journal::default(),
    };
    let mut ep = LocalEndpoint::open(&opts.root, opts.label.clone(), opts.owner)
        .map(|ep| {
            ep.with_hard_links(opts.hard_links)
                .with_acls(opts.acls)
                .with_scan_threads(opts.scan_threads)
        })
        .and_then(|ep| ep.with_keep_dir(opts.keep_dir.as_deref()))
        .map_err(|e| out.stop(e))?;
    let mut source = Source::One(input, Decompressor::default());
    loop {
        let frame = match source.next() {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(out.stop(Error::Protocol(format!("bad frame from the client: {e}"))))
            }
        };
        let req: Request = decode(frame.0, &frame.1).map_err(|why| {
            out.stop(Error::Protocol(format!(
                "rejected a message from the client: {why}"
            )))
        })?;
        match req {
            Request::Streams { count } if matches!(source, Source::One(..)) => {
                let reply = match source.merge(count) {
                    Ok(inv) => Response::Streams {
                        name: inv.name,
                        token: serde_bytes::ByteBuf::from(inv.token.to_vec()),
                    },
                    Err(why) => Response::NoStreams(why),
                };
                out.send(&reply).map_err(|e| out.stop(e))?;
            }
            req => handle(&mut ep, req, &out, &mut log).map_err(|e| out.stop(e))?,
        }
        out.flush()
            .map_err(|e| untold(Error::Protocol(format!("cannot write to the client: {e}"))))?;
    }
}

fn wire<T>(r: Result<T, Error>) -> Result<T, WireError> {
    r.map_err(|e| WireError::from(&e))
}

/// Runs one request; `Err` only for protocol violations (which end the session).
/// The agent's log (`-R`): what it changed, file by file.
#[derive(Default)]
struct Journal {
    log: Option<crate::output::log::Log>,
    /// Paths of the files being received, by transfer id.
    names: std::collections::HashMap<u64, crate::core::path::RelPath>,
}

impl Journal {
    fn receiving(&mut self, chunks: &[Chunk]) {
        if self.log.is_none() {
            return;
        }
        for c in chunks {
            if let Chunk::Begin { id, path, .. } = c {
                self.names.insert(*id, path.clone());
            }
        }
    }

    fn received(&mut self, done: &[crate::endpoint::Received]) {
        let Some(log) = &self.log else { return };
        for (id, r) in done {
            let path = self
                .names
                .remove(id)
                .map(|p| p.to_string())
                .unwrap_or_default();
            match r {
                Ok(e) => log.line(&format!("/{path} SYNCHRONIZED ({} bytes received)", e.size)),
                Err(e) => log.line(&format!("error: {e}")),
            }
        }
    }

    fn applied(
        &self,
        changes: &[crate::endpoint::Change],
        results: &[crate::error::Result<Option<crate::core::tree::Entry>>],
    ) {
        let Some(log) = &self.log else { return };
        for (c, r) in changes.iter().zip(results) {
            match r {
                Ok(_) => match change_path(c) {
                    Some(path) => log.line(&format!("/{path} {}", change_word(c))),
                    None => log.line(&format!("/ {}", change_word(c))),
                },
                Err(e) => log.line(&format!("error: {e}")),
            }
        }
    }

    fn sent(&self, files: &[crate::endpoint::SendRequest]) {
        let Some(log) = &self.log else { return };
        for f in files {
            log.line(&format!("/{} sent", f.path));
        }
    }
}

fn change_path(c: &crate::endpoint::Change) -> Option<&crate::core::path::RelPath> {
    use crate::endpoint::Change;
    Some(match c {
        Change::MakeNode { path, .. }
        | Change::Mkdir { path, .. }
        | Change::Delete { path, .. }
        | Change::SetMeta { path, .. }
        | Change::Link { path, .. }
        | Change::Unlink { path, .. }
        | Change::Restamp { path, .. }
        | Change::Dedup { path, .. } => path,
        Change::Rename { to, .. } => to,
        Change::RootTime { .. } => return None,
    })
}

fn change_word(c: &crate::endpoint::Change) -> &'static str {
    use crate::endpoint::Change;
    match c {
        Change::Delete { .. } => "SYNCHRONIZED(del)",
        Change::Rename { .. } | Change::SetMeta { .. } | Change::Unlink { .. } => {
            "SYNCHRONIZED(mov)"
        }
        Change::Dedup { .. } => "SYNCHRONIZED(ddp)",
        Change::Restamp { .. } | Change::RootTime { .. } => "restamped",
        Change::MakeNode { .. } | Change::Mkdir { .. } | Change::Link { .. } => "SYNCHRONIZED",
    }
}

fn handle(
    ep: &mut LocalEndpoint,
    req: Request,
    out: &Out,
    journal: &mut Journal,
) -> Result<(), Error> {
    match req {
        Request::Scan {
            filter,
            skip_file_xattrs,
            probed,
        } => scan_to(ep, &filter, skip_file_xattrs, probed, out),
        Request::Rescan { filter, paths } => match ep.rescan(&filter, &paths) {
            Ok(r) => {
                send_tree(r.tree, out)?;
                out.send(&Response::Rescanned { whole: r.whole })
            }
            Err(e) => out.send(&Response::Failed(WireError::from(&e))),
        },
        Request::Watch => {
            let events = out.clone();
            let r = ep.watch(Box::new(move |hint| {
                // A client that is gone is noticed by the main loop.
                if events.send(&Response::Changed(hint)).is_ok() {
                    let _ = events.flush();
                }
            }));
            out.send(&Response::Done(wire(r.map(|()| None))))
        }
        Request::Digests { paths } => {
            let r = ep.digests(&paths)?;
            out.send(&Response::Digests(r))
        }
        Request::Signatures { files } => {
            let r = ep.signatures(&files)?;
            out.send(&Response::Signatures(
                r.into_iter()
                    .map(|s| s.map(serde_bytes::ByteBuf::from))
                    .collect(),
            ))
        }
        Request::Gaps { files } => {
            let r = ep.gaps(&files)?;
            out.send(&Response::Gaps(r))
        }
        Request::Send { files } => {
            journal.sent(&files);
            send_to(ep, &files, out)
        }
        Request::Receive { chunks } => {
            journal.receiving(&chunks);
            for c in chunks {
                ep.receive(c)?;
            }
            let done = ep.received(false)?;
            report_received(done, out, journal)
        }
        Request::Commit => {
            let done = ep.received(true)?;
            report_received(done, out, journal)
        }
        Request::Sync => out.send(&Response::Done(wire(ep.sync().map(|()| None)))),
        Request::Apply { changes } => {
            let results = ep.apply(&changes)?;
            journal.applied(&changes, &results);
            out.send(&Response::Applied(results.into_iter().map(wire).collect()))
        }
        Request::Streams { .. } => Err(Error::Protocol("streams were already set up".into())),
    }
}

/// Answers a send: the chunks go out in messages of about 1 MiB, then `SendDone`.
fn send_to(ep: &mut LocalEndpoint, files: &[SendRequest], out: &Out) -> Result<(), Error> {
    let mut batch: Vec<Chunk> = Vec::new();
    let mut size = 0usize;
    let mut failed = None;
    ep.send(files, &mut |c| {
        size += match &c {
            Chunk::Data { ops, .. } => ops
                .iter()
                .map(|o| o.len().min(1 << 20) as usize)
                .sum::<usize>()
                .max(64),
            _ => 200,
        };
        batch.push(c);
        if size >= 1 << 20 {
            size = 0;
            if let Err(e) = out.send(&Response::Chunks(std::mem::take(&mut batch))) {
                failed = Some(e.to_string());
                return Err(e);
            }
        }
        Ok(())
    })?;
    if let Some(why) = failed {
        return Err(Error::Protocol(why));
    }
    if !batch.is_empty() {
        out.send(&Response::Chunks(batch))?;
    }
    out.send(&Response::SendDone)
}

/// Journals the files committed since the last answer and tells the client (nothing when
/// none was).
fn report_received(done: Vec<Received>, out: &Out, journal: &mut Journal) -> Result<(), Error> {
    journal.received(&done);
    if done.is_empty() {
        return Ok(());
    }
    // Without the digests: each is the one the client sent, checked before the commit.
    let acks = done
        .into_iter()
        .map(|(id, r)| (id, wire(r.map(|e| e.without_digest()))))
        .collect();
    out.send(&Response::Received(acks))
}

/// Answers a scan: each batch of entries goes out as it is found, so the client receives
/// while the scan runs and the agent never holds the whole tree.
fn scan_to(
    ep: &mut LocalEndpoint,
    filter: &crate::state::rules::FilterSpec,
    skip_file_xattrs: bool,
    probed: Option<crate::state::known::Probed>,
    out: &Out,
) -> Result<(), Error> {
    let mut broken = None;
    let mut sink = |entries: Vec<_>| {
        if broken.is_none() {
            let part = Response::ScanPart {
                entries,
                problems: vec![],
            };
            broken = out.send(&part).err();
        }
    };
    let scanned = ep.scan_streamed(filter, skip_file_xattrs, probed, SCAN_BATCH, &mut sink);
    if let Some(e) = broken {
        return Err(e);
    }
    match scanned {
        Ok(scan) => {
            send_tree(scan.tree, out)?;
            out.send(&Response::ScanDone {
                root_id: scan.root_id,
                partials: scan.partials.into_iter().collect(),
                owners: scan.owners,
                names: scan.names,
                holds: scan.holds,
            })
        }
        Err(e) => out.send(&Response::Failed(WireError::from(&e))),
    }
}

/// Sends a tree in parts of at most [`SCAN_BATCH`] entries.
fn send_tree(tree: crate::core::tree::Tree, out: &Out) -> Result<(), Error> {
    let entries: Vec<_> = tree.entries.into_iter().collect();
    let mut problems: Vec<_> = tree.problems.into_iter().collect();
    for part in entries.chunks(SCAN_BATCH) {
        out.send(&Response::ScanPart {
            entries: part.to_vec(),
            problems: std::mem::take(&mut problems),
        })?;
    }
    if !problems.is_empty() {
        out.send(&Response::ScanPart {
            entries: vec![],
            problems,
        })?;
    }
    Ok(())
}
