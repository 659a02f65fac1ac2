//! The agent: serves a [`LocalEndpoint`] over a stream. It speaks only when spoken to,
//! treats every message as untrusted, and stops at the first malformed one.

pub mod streams;

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::disk::compress::Compression;
use crate::endpoint::{Chunk, Endpoint, LocalEndpoint, Received, SendRequest};
use crate::error::{Error, WireError};
use crate::wire::protocol::frame::{read_frame, write_frame, Kind};
use crate::wire::protocol::handshake::{read_hello, send_hello, HandshakeError};
use crate::wire::protocol::{decode, encode, Request, Response, SCAN_BATCH};

/// How the agent was started.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The root it serves.
    pub root: PathBuf,
    /// How errors name this side, e.g. `remote 'host:/srv'`.
    pub label: String,
    /// Preserve owner and group.
    pub owner: bool,
    /// Compression of its frames.
    pub compression: Compression,
    /// Keep hard links (scan names of one inode as links).
    pub hard_links: bool,
    /// Where this side keeps ACLs and xattrs (`--preserve-acls`).
    pub acls: crate::disk::xattrs::AclMode,
    /// Threads that look entries up while scanning (`--scan-threads`).
    pub scan_threads: usize,
    /// The client's cap on the wire in bits per second (`-l`); not the agent's business.
    pub rate: Option<u64>,
    /// `--keep-dir`: where deleted and replaced entries are kept (relative to the root, or
    /// absolute).
    pub keep_dir: Option<PathBuf>,
    /// `--log DIR[:MB]` (the client's `-R`): this side's log.
    pub log: Option<crate::output::log::LogSpec>,
}

impl AgentOptions {
    /// Parses the agent's command line (`--root DIR [--label TEXT] [--preserve-owner]
    /// [--compress zstd[:N]|none]`).
    pub fn parse(args: &[String]) -> Result<AgentOptions, String> {
        let mut root = None;
        let mut label = None;
        let mut owner = false;
        let mut hard_links = true;
        let mut scan_threads = 1;
        let mut acls = crate::disk::xattrs::AclMode::None;
        let mut compression = Compression::default();
        let mut keep_dir = None;
        let mut log = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--root" => root = Some(PathBuf::from(value()?)),
                "--label" => label = Some(value()?),
                "--preserve-owner" => owner = true,
                "--no-hard-links" => hard_links = false,
                "--acls" => acls = crate::disk::xattrs::AclMode::parse(&value()?)?,
                "--scan-threads" => scan_threads = parse_threads(&value()?)?,
                "--die-with-parent" => die_with_parent()?,
                "--compress" => compression = Compression::parse(&value()?)?,
                "--keep-dir" => keep_dir = Some(PathBuf::from(value()?)),
                "--log" => log = Some(crate::output::log::LogSpec::parse(&value()?)?),
                other => return Err(format!("unknown argument '{other}'")),
            }
        }
        let root = root.ok_or("missing --root DIR")?;
        let label = label.unwrap_or_else(|| format!("remote '{}'", root.display()));
        Ok(AgentOptions {
            root,
            label,
            owner,
            compression,
            hard_links,
            acls,
            scan_threads,
            rate: None,
            keep_dir,
            log,
        })
    }

    /// How the client talks to this agent.
    pub fn link(&self) -> crate::endpoint::remote::Link {
        crate::endpoint::remote::Link {
            compression: self.compression,
            rate: self.rate,
        }
    }

    /// The command line that [`AgentOptions::parse`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--root".to_string(),
            self.root.to_string_lossy().into_owned(),
            "--label".to_string(),
            self.label.clone(),
        ];
        if self.owner {
            args.push("--preserve-owner".into());
        }
        if !self.hard_links {
            args.push("--no-hard-links".into());
        }
        // Only when asked for: an agent from before the option still serves the rest.
        if self.scan_threads > 1 {
            args.push("--scan-threads".into());
            args.push(self.scan_threads.to_string());
        }
        if self.acls != crate::disk::xattrs::AclMode::None {
            args.push("--acls".into());
            args.push(self.acls.word().into());
        }
        if let Some(k) = &self.keep_dir {
            args.push("--keep-dir".into());
            args.push(k.to_string_lossy().into_owned());
        }
        if let Some(l) = &self.log {
            args.push("--log".into());
            args.push(l.to_arg());
        }
        args.push("--compress".into());
        args.push(match self.compression {
            Compression::None => "none".to_string(),
            Compression::Zstd(l) => format!("zstd:{l}"),
        });
        args
    }
}

/// `--scan-threads N`: a count from 1 to [`MAX_SCAN_THREADS`].
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=MAX_SCAN_THREADS) => Ok(n),
        _ => Err(format!(
            "--scan-threads takes a count from 1 to {MAX_SCAN_THREADS}, not '{s}'"
        )),
    }
}

/// Most threads a scan may use.
pub const MAX_SCAN_THREADS: usize = 64;

/// The way to the client. Shared with the watcher thread, so every frame is written
/// whole under the lock.
#[derive(Clone)]
struct Out {
    w: Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>,
    compression: Compression,
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
        let (kind, payload) = encode(r, self.compression, size)?;
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
    One(BufReader<Box<dyn Read + Send>>),
    Merged(Arc<streams::Merge>),
}

impl Source {
    fn next(&mut self) -> Result<Option<streams::Frame>, String> {
        match self {
            Source::One(r) => read_frame(r).map_err(|e| e.to_string()),
            Source::Merged(m) => m.pop(),
        }
    }

    /// Switches to sequenced frames (the first stream included) and listens for extra
    /// streams; `Err` says why none can join (the first stream is sequenced all the same).
    fn merge(&mut self, count: u32) -> Result<streams::Invitation, String> {
        let merge = Arc::new(streams::Merge::default());
        let invitation = streams::listen(count, &merge);
        let one = std::mem::replace(self, Source::Merged(merge.clone()));
        if let Source::One(r) = one {
            merge.feed(r);
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
        compression: opts.compression,
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
    let mut source = Source::One(input);
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
            Request::Streams { count } if matches!(source, Source::One(_)) => {
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
        } => scan_to(ep, &filter, skip_file_xattrs, out),
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
    out.send(&Response::Received(
        done.into_iter().map(|(id, r)| (id, wire(r))).collect(),
    ))
}

/// Answers a scan: each batch of entries goes out as it is found, so the client receives
/// while the scan runs and the agent never holds the whole tree.
fn scan_to(
    ep: &mut LocalEndpoint,
    filter: &crate::state::rules::FilterSpec,
    skip_file_xattrs: bool,
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
    let scanned = ep.scan_streamed(filter, skip_file_xattrs, SCAN_BATCH, &mut sink);
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

/// Asks the kernel to kill this agent when the client that started it dies, so a killed
/// run leaves no agent behind still writing into the tree (pipe transport).
fn die_with_parent() -> Result<(), String> {
    crate::disk::sys::die_with_parent()
}

/// The line `tandem-agent --version` prints; the SSH bootstrap looks for exactly this.
pub fn version_line() -> String {
    format!(
        "tandem-agent {} (protocol {})",
        env!("CARGO_PKG_VERSION"),
        crate::wire::protocol::handshake::PROTOCOL_VERSION
    )
}

/// `--check-self HASH`: true if this executable's BLAKE3 is HASH (an uploaded agent
/// verifies itself before it is renamed into the cache).
fn check_self(expected: &str) -> Result<(), String> {
    let exe = std::fs::read("/proc/self/exe").map_err(|e| format!("cannot read myself: {e}"))?;
    let actual = blake3::hash(&exe).to_hex();
    if actual.as_str() == expected {
        Ok(())
    } else {
        Err(format!(
            "corrupt upload: BLAKE3 {actual}, expected {expected}"
        ))
    }
}

/// Makes stdin's pipe (from sshd) hold a megabyte instead of 64 KiB: sshd hands out more
/// window only as it writes into the pipe, so a small one slows a long link. Not a pipe,
/// or not allowed: nothing changes.
fn widen_input_pipe() {
    crate::disk::sys::widen_pipe(std::io::stdin(), 1 << 20);
}

/// Ctrl-C at a terminal interrupts the whole process group, this agent included: the client
/// then finishes its cycle and closes the connection, which is how the agent stops.
fn ignore_interrupts() {
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, seen);
}

/// `tandem-agent`'s main: parses arguments, serves stdin/stdout, returns the exit code.
pub fn main_with_args(args: &[String]) -> u8 {
    let small_job = |r: Result<(), String>| match r {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("tandem-agent: {why}");
            128
        }
    };
    match args {
        [v] if v == "--version" || v == "-V" => {
            println!("{}", version_line());
            return 0;
        }
        [flag] if flag == "--source-id" => {
            println!("{}", crate::SOURCE_ID);
            return 0;
        }
        [flag] if flag == "--join" => return small_job(streams::join()),
        [flag, hash] if flag == "--check-self" => return small_job(check_self(hash)),
        _ => {}
    }
    let opts = match AgentOptions::parse(args) {
        Ok(o) => o,
        Err(why) => {
            eprintln!("tandem-agent: {why}\nusage: tandem-agent --root DIR [--label TEXT] [--preserve-owner] [--no-hard-links] [--acls none|native|metafile] [--keep-dir DIR] [--log DIR[:MB]] [--compress zstd[:LEVEL]|none]");
            return 32;
        }
    };
    widen_input_pipe();
    ignore_interrupts();
    match serve(std::io::stdin(), std::io::stdout(), &opts) {
        Ok(()) => 0,
        Err(Stopped { error, told_client }) => {
            if !told_client {
                eprintln!("tandem-agent: {error}");
            }
            error.exit_bit().0.max(1)
        }
    }
}
