//! The wire protocol between the client and the agent: one request/response pair per
//! [`Endpoint`](crate::endpoint::Endpoint) method, plus streamed file chunks.
//!
//! Messages are MessagePack (rmp-serde) in length-prefixed frames, zstd-compressed when it
//! pays, each in the context of the frames before it on its stream ([`compress`]). Everything that arrives is untrusted: frames are bounded, paths are validated as
//! they are decoded (`RelPath`), and [`Validate`] checks the rest before any disk is touched.

pub mod frame;
pub mod handshake;

use serde::{Deserialize, Serialize};

use crate::core::path::RelPath;
use crate::core::tree::{Digest, Entry};
use crate::disk::compress::{Class, Decompressor};
use crate::disk::delta::refine::Ranges;
use crate::disk::delta::{DeltaOp, LITERAL_CHUNK};
use crate::disk::fsops::RootId;
use crate::endpoint::{Change, Chunk, GapRequest, SendRequest, SignRequest};
use crate::error::{Error, WireError};
use crate::state::rules::FilterSpec;
use frame::{Frame, Kind, MAX_FRAME};

/// Entries per scan message, so a huge tree never needs one huge frame.
pub const SCAN_BATCH: usize = 20_000;
/// Paths per digest or signature request.
pub const PATH_BATCH: usize = 10_000;

/// Client to agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Scan the tree (answered by `ScanPart`s then `ScanDone`).
    Scan {
        /// Patterns to leave out.
        filter: FilterSpec,
        /// Files' ACLs and xattrs are left unread ([`crate::disk::xattrs::unread`]): the client
        /// knows those of the files unchanged since the baseline, and asks for the rest.
        #[serde(default)]
        skip_file_xattrs: bool,
        /// What an earlier probe of the root found: not probed again while it is that root.
        #[serde(default)]
        probed: Option<crate::state::known::Probed>,
    },
    /// Scan these paths again, each with everything below it if flagged (answered by
    /// `ScanPart`s then `Rescanned`).
    Rescan {
        /// Patterns to leave out.
        filter: FilterSpec,
        /// The paths.
        paths: Vec<(RelPath, bool)>,
    },
    /// Report changes below the root from now on, in `Changed` messages that may come at
    /// any time (answered by `Done`).
    Watch,
    /// Hash these files.
    Digests {
        /// Paths to hash.
        paths: Vec<RelPath>,
    },
    /// Signatures of these files (the receiver's old versions).
    Signatures {
        /// What to sign of which file.
        files: Vec<SignRequest>,
    },
    /// On the sender: the basis ranges these files' coarse signatures missed.
    Gaps {
        /// The files, with their coarse signatures.
        files: Vec<GapRequest>,
    },
    /// Send these files as chunks (answered by `Chunks` then `SendDone`).
    Send {
        /// What to send.
        files: Vec<SendRequest>,
    },
    /// Chunks of files to write (answered by `Received` when files complete).
    Receive {
        /// The chunks, in order.
        chunks: Vec<Chunk>,
    },
    /// Commit every file received so far (answered by `Received` if any were pending).
    Commit,
    /// Make everything written durable (answered by `Done`).
    Sync,
    /// Make these changes in order (answered by `Applied`).
    Apply {
        /// The changes.
        changes: Vec<Change>,
    },
    /// Accept this many extra input streams (answered by `Streams` or `NoStreams`, which
    /// may come among other answers). Every client frame after this one, on any stream,
    /// carries a sequence number.
    Streams {
        /// How many extra streams will join.
        count: u32,
    },
}

/// Agent to client.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    /// Part of a scan.
    ScanPart {
        /// Entries in tree order.
        entries: Vec<(RelPath, Entry)>,
        /// Unreadable paths.
        problems: Vec<(RelPath, String)>,
    },
    /// The scan is complete.
    ScanDone {
        /// The root's identity.
        root_id: RootId,
        /// Partial transfers left by an interrupted run (target, bytes).
        partials: Vec<(RelPath, u64)>,
        /// The agent's user and group names, when it keeps owners.
        owners: Option<crate::disk::owners::Database>,
        /// How the agent's root treats names (case, Unicode form).
        names: crate::core::names::NameRules,
        /// What attributes the agent's root keeps as written.
        holds: crate::core::names::Holds,
    },
    /// The end of a rescan; `whole` if the agent scanned the whole tree instead.
    Rescanned {
        /// The parts were the whole tree.
        whole: bool,
    },
    /// Unasked: something changed below the root (after `Watch`).
    Changed(crate::disk::watch::Hint),
    /// Answer to `Digests`.
    Digests(Vec<(RelPath, Result<Digest, String>)>),
    /// Answer to `Signatures`, in request order.
    Signatures(Vec<Result<serde_bytes::ByteBuf, String>>),
    /// Answer to `Gaps`, in request order.
    Gaps(Vec<Result<Ranges, String>>),
    /// Streamed file chunks.
    Chunks(Vec<Chunk>),
    /// Everything asked by `Send` was sent.
    SendDone,
    /// Files the agent finished receiving.
    Received(Vec<(u64, Result<Entry, WireError>)>),
    /// Answer to `Apply`: one result per change, in order.
    Applied(Vec<Result<Option<Entry>, WireError>>),
    /// Answer to `Sync`.
    Done(Result<Option<Entry>, WireError>),
    /// Answer to `Streams`: how extra streams join.
    Streams {
        /// The agent's socket name.
        name: String,
        /// The secret each joining stream sends first.
        token: serde_bytes::ByteBuf,
    },
    /// Answer to `Streams` when the agent cannot take extra ones (why); the first stream
    /// stays sequenced.
    NoStreams(String),
    /// The request failed as a whole.
    Failed(WireError),
}

/// Most extra streams one agent accepts.
pub const MAX_STREAMS: u32 = 64;

/// Checks what serde cannot: sizes and invariants of decoded messages.
pub trait Validate {
    /// `Err` with a description if the message must be rejected.
    fn validate(&self) -> Result<(), String>;
}

fn entry_ok(e: &Entry) -> Result<(), String> {
    if let Some(x) = e.xattrs() {
        crate::disk::xattrs::valid(x)?;
    }
    if e.is_symlink() {
        let t = e.target();
        if t.is_empty() || t.len() > crate::core::path::MAX_PATH || t.contains(&0) {
            return Err("invalid symlink target".into());
        }
    }
    if e.mode > 0o7777 {
        return Err(format!("invalid mode {:o}", e.mode));
    }
    if !e.is_file() && e.size != 0 {
        return Err("size on a non-file entry".into());
    }
    Ok(())
}

fn change_ok(c: &Change) -> Result<(), String> {
    match c {
        Change::MakeNode { expect, source, .. } => {
            entry_ok(source)?;
            if source.is_file() || source.is_dir() {
                return Err("make-node for a file or directory".into());
            }
            expect.as_ref().map_or(Ok(()), entry_ok)
        }
        Change::Mkdir { source, .. } => entry_ok(source),
        Change::Delete { expect, .. } => entry_ok(expect),
        Change::Rename { expect, meta, .. } => {
            entry_ok(expect)?;
            meta.as_ref().map_or(Ok(()), entry_ok)
        }
        Change::SetMeta { expect, source, .. } => entry_ok(expect).and_then(|_| entry_ok(source)),
        Change::Restamp { .. } | Change::RootTime { .. } => Ok(()),
        Change::Unlink { expect, source, .. } => entry_ok(expect).and_then(|_| entry_ok(source)),
        Change::Link { expect, source, .. } => {
            entry_ok(source)?;
            if !source.is_file() {
                return Err("hard link to a non-file".into());
            }
            expect.as_ref().map_or(Ok(()), entry_ok)
        }
        Change::Dedup {
            expect,
            from_expect,
            source,
            ..
        } => {
            entry_ok(source)?;
            entry_ok(from_expect)?;
            if !source.is_file() || !from_expect.is_file() || source.digest.is_none() {
                return Err("dedup of a non-file or without a digest".into());
            }
            expect.as_ref().map_or(Ok(()), entry_ok)
        }
    }
}

fn chunk_ok(c: &Chunk) -> Result<(), String> {
    match c {
        Chunk::Begin { expect, meta, .. } => {
            entry_ok(meta)?;
            if !meta.is_file() {
                return Err("file chunk for a non-file".into());
            }
            expect.as_ref().map_or(Ok(()), entry_ok)
        }
        Chunk::Data { ops, .. } => {
            if ops.iter().any(DeltaOp::is_empty) {
                return Err("empty delta op".into());
            }
            Ok(())
        }
        Chunk::End { .. } | Chunk::Abort { .. } => Ok(()),
    }
}

impl Validate for Request {
    fn validate(&self) -> Result<(), String> {
        match self {
            Request::Scan { .. }
            | Request::Rescan { .. }
            | Request::Watch
            | Request::Digests { .. }
            | Request::Commit
            | Request::Sync => Ok(()),
            Request::Signatures { files } => files
                .iter()
                .try_for_each(|f| f.expect.as_ref().map_or(Ok(()), entry_ok)),
            Request::Gaps { files } => files.iter().try_for_each(|f| {
                entry_ok(&f.expect)?;
                if !f.expect.is_file() {
                    return Err("gaps request for a non-file".into());
                }
                Ok(())
            }),
            Request::Send { files } => files.iter().try_for_each(|f| {
                entry_ok(&f.expect)?;
                if !f.expect.is_file() {
                    return Err("send request for a non-file".into());
                }
                f.target_expect.as_ref().map_or(Ok(()), entry_ok)
            }),
            Request::Receive { chunks } => chunks.iter().try_for_each(chunk_ok),
            Request::Apply { changes } => changes.iter().try_for_each(change_ok),
            Request::Streams { count } if *count == 0 || *count > MAX_STREAMS => {
                Err(format!("bad stream count {count}"))
            }
            Request::Streams { .. } => Ok(()),
        }
    }
}

impl Validate for Response {
    fn validate(&self) -> Result<(), String> {
        match self {
            Response::ScanPart { entries, .. } => entries.iter().try_for_each(|(_, e)| entry_ok(e)),
            Response::Chunks(chunks) => chunks.iter().try_for_each(chunk_ok),
            Response::Received(r) => r
                .iter()
                .try_for_each(|(_, r)| r.as_ref().map_or(Ok(()), entry_ok)),
            Response::Done(Ok(Some(e))) => entry_ok(e),
            Response::Streams { name, token } => {
                let name_ok = !name.is_empty()
                    && name.len() <= 100
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !name_ok || token.len() != crate::wire::agent::streams::TOKEN_LEN {
                    return Err("malformed stream invitation".into());
                }
                Ok(())
            }
            Response::Applied(r) => r.iter().try_for_each(|r| match r {
                Ok(Some(e)) => entry_ok(e),
                _ => Ok(()),
            }),
            _ => Ok(()),
        }
    }
}

/// Encodes a message into a frame's kind and payload (uncompressed: the stream's writer
/// compresses it in its context).
pub fn encode<T: Serialize>(msg: &T, size_hint: usize) -> Result<(Kind, Vec<u8>), Error> {
    encode_into(msg, Vec::new(), size_hint)
}

/// [`encode`], into `buf` (emptied first): a buffer that held an earlier frame has its
/// pages in place, where a new one of a megabyte is zeroed by the kernel page by page.
pub fn encode_into<T: Serialize>(
    msg: &T,
    mut buf: Vec<u8>,
    size_hint: usize,
) -> Result<(Kind, Vec<u8>), Error> {
    // Sized up front when the caller knows about how large it is: a megabyte of file data
    // encoded into a list that doubles its way up is copied twice over, into fresh pages.
    // The hint is rough (it leaves out the names and headers of what carries the data), so
    // a little is added: falling short by one byte would double the list.
    buf.clear();
    let want = size_hint.clamp(128, MAX_FRAME);
    buf.reserve(want + want / 32 + 256);
    rmp_serde::encode::write(&mut buf, msg)
        .map_err(|e| Error::Protocol(format!("cannot encode message: {e}")))?;
    if buf.len() > MAX_FRAME {
        return Err(Error::Protocol(format!(
            "message of {} bytes exceeds the frame limit",
            buf.len()
        )));
    }
    Ok((Kind::Message, buf))
}

/// The context a message carrying `chunks` is compressed in: bulk when it carries a
/// whole piece of a large file's literal data (whole files are read in pieces of
/// [`LITERAL_CHUNK`]), fine for everything else, deltas and small files included.
pub fn class_of(chunks: &[Chunk]) -> Class {
    let bulk = chunks.iter().any(|c| match c {
        Chunk::Data { ops, .. } => ops
            .iter()
            .any(|o| matches!(o, DeltaOp::Literal(b) if b.len() >= LITERAL_CHUNK)),
        _ => false,
    });
    if bulk {
        Class::Bulk
    } else {
        Class::Fine
    }
}

/// A frame as read from a stream, a compressed one decompressed in that stream's context
/// (`ctx`, which sees every compressed frame of the stream, in order).
pub fn inflate(frame: Frame, ctx: &mut Decompressor) -> Result<Frame, String> {
    match frame {
        (Kind::Compressed, payload) => Ok((
            Kind::Message,
            ctx.decompress(&payload, Class::Fine, MAX_FRAME)?,
        )),
        (Kind::CompressedBulk, payload) => Ok((
            Kind::Message,
            ctx.decompress(&payload, Class::Bulk, MAX_FRAME)?,
        )),
        frame => Ok(frame),
    }
}

/// Decodes and validates a message frame.
pub fn decode<T: for<'de> Deserialize<'de> + Validate>(
    kind: Kind,
    payload: &[u8],
) -> Result<T, String> {
    let bytes = match kind {
        Kind::Message => payload,
        Kind::Compressed | Kind::CompressedBulk => {
            return Err("a compressed frame not inflated in its stream".into())
        }
        Kind::Log | Kind::Fatal => return Err("not a message frame".into()),
    };
    let msg: T = rmp_serde::from_slice(bytes).map_err(|e| format!("malformed message: {e}"))?;
    msg.validate()?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(req: &Request) -> Request {
        let (_, payload) = encode(req, 0).unwrap();
        let mut c = crate::disk::compress::Compressor::new(Default::default());
        let z = c
            .compress(&payload, Class::Fine)
            .expect("a thousand paths compress");
        let (kind, raw) = inflate((Kind::Compressed, z), &mut Decompressor::default()).unwrap();
        assert_eq!((kind, &raw), (Kind::Message, &payload));
        decode(kind, &raw).unwrap()
    }

    #[test]
    fn messages_round_trip_compressed_or_not() {
        let path = RelPath::new(b"dir/\xffname\n".to_vec()).unwrap();
        let req = Request::Digests {
            paths: vec![path.clone(); 1000],
        };
        let Request::Digests { paths } = round_trip(&req) else {
            panic!()
        };
        assert_eq!(paths, vec![path; 1000]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        // The fuzz target: arbitrary bytes through the frame reader and both decoders.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), kind in 0u8..3) {
            let kind = [Kind::Message, Kind::Compressed, Kind::CompressedBulk][kind as usize];
            if let Ok((kind, raw)) = inflate((kind, bytes.clone()), &mut Decompressor::default()) {
                let _ = decode::<Request>(kind, &raw);
                let _ = decode::<Response>(kind, &raw);
            }
            let mut r = &bytes[..];
            while let Ok(Some(_)) = frame::read_frame(&mut r) {}
        }

        // Mutations of valid messages: closer to what a fuzzer finds.
        #[test]
        fn decoding_mutated_messages_never_panics(flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut e = Entry::new(crate::core::tree::EntryKind::Symlink, 0, 1, 0o777);
            e.set_target(b"target".to_vec());
            let change = Change::Rename { from: RelPath::new(b"a/b".to_vec()).unwrap(), to: RelPath::new(b"c".to_vec()).unwrap(), expect: e.clone(), meta: Some(e) };
            let req = Request::Apply { changes: vec![change] };
            let (_, mut payload) = encode(&req, 0).unwrap();
            for (i, b) in flips {
                let n = payload.len();
                payload[i % n] = b;
            }
            if let Ok(Request::Apply { changes }) = decode::<Request>(Kind::Message, &payload) {
                // Whatever decodes is still a valid relative path.
                for c in changes {
                    if let Change::Rename { from, to, .. } = c {
                        prop_assert!(!from.as_bytes().starts_with(b"/") && !to.as_bytes().contains(&0));
                    }
                }
            }
        }
    }
}
