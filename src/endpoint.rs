//! `Endpoint`: everything the engine asks of one side. `LocalEndpoint` does the disk work;
//! `RemoteEndpoint` speaks the protocol to an agent that serves a `LocalEndpoint`, so both
//! behave the same. Blocking, one caller at a time; an `Err` from a method fails the run,
//! while per-file failures come back as per-file results.
//!
//! Files move in the shape of Mutagen's stage/supply: the receiver hands out signatures of
//! its old versions, the sender streams [`Chunk`]s (begin, delta ops, end with the
//! BLAKE3 of the whole file), and the receiver reports each file's outcome when it is
//! committed — so many files can be in flight at once.

pub mod local;
pub mod mapped;
pub mod remote;

use serde::{Deserialize, Serialize};

use crate::core::path::RelPath;
use crate::core::tree::{Digest, Entry, Tree};
use crate::disk::delta::refine::Ranges;
use crate::disk::delta::DeltaOp;
use crate::disk::fsops::RootId;
use crate::error::{Result, WireError};
use crate::state::known::Known;
use crate::state::rules::FilterSpec;

pub use local::LocalEndpoint;
pub use remote::RemoteEndpoint;

/// One side's scan result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scan {
    /// Everything below the root (digests unknown unless cached).
    pub tree: Tree,
    /// Device and inode of the root.
    pub root_id: RootId,
    /// Partial transfers an interrupted run left, by target path and size.
    pub partials: crate::disk::scan::Partials,
    /// This side's user and group names, when owners are kept: they travel with the
    /// scan, so mapping owners by name costs no round trip of its own.
    pub owners: Option<crate::disk::owners::Database>,
    /// How the root treats names (case, Unicode form), probed before the scan.
    pub names: crate::core::names::NameRules,
    /// What attributes the root keeps as written, probed before the scan.
    pub holds: crate::core::names::Holds,
}

/// What a rescan found.
#[derive(Clone, Debug)]
pub struct Rescan {
    /// The entries at and below the rescanned paths (the whole tree if `whole`).
    pub tree: Tree,
    /// The side scanned everything instead (hard links or side files made a partial
    /// rescan unsafe): `tree` replaces the old one.
    pub whole: bool,
}

/// One file the sender must send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    /// Transfer id, unique within a run.
    pub id: u64,
    /// The source path on the sender.
    pub path: RelPath,
    /// What the source must still be (re-checked before and after reading).
    pub expect: Entry,
    /// Where the receiver writes it.
    pub target: RelPath,
    /// What the target must still be when it is replaced.
    pub target_expect: Option<Entry>,
    /// The receiver's signature of its old version; `None` sends the file whole.
    pub signature: Option<serde_bytes::ByteBuf>,
    /// The second level of a two-level signature: the basis ranges the first missed.
    pub refined: Option<Refined>,
}

/// The fine signature of the basis ranges a coarse signature missed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refined {
    /// Basis ranges (start, end), sorted and apart.
    pub ranges: Vec<(u64, u64)>,
    /// Their concatenation's signature, in fine blocks.
    pub signature: serde_bytes::ByteBuf,
}

/// An old version (or a new file's partial) the receiver is to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// Its path.
    pub path: RelPath,
    /// The entry it must still be; `None`: the partial transfer of a new file.
    pub expect: Option<Entry>,
    /// What to sign.
    pub sign: Sign,
}

/// What of a basis to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sign {
    /// All of it, in blocks sized for it.
    Whole,
    /// All of it, in blocks four times that: the first level of two.
    Coarse,
    /// These ranges (as [`crate::disk::delta::refine::Gaps`] gives them), in fine blocks.
    Ranges(Vec<(u64, u64)>),
}

/// A source file the sender is to diff against a coarse signature, to find what of the
/// basis it missed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapRequest {
    /// The source path on the sender.
    pub path: RelPath,
    /// What the source must still be.
    pub expect: Entry,
    /// The receiver's coarse signature of its basis.
    pub signature: serde_bytes::ByteBuf,
    /// The basis's size.
    pub basis_len: u64,
}

/// A piece of a file on its way from sender to receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Chunk {
    /// A file starts.
    Begin {
        /// Transfer id.
        id: u64,
        /// Target path on the receiver.
        path: RelPath,
        /// What the target must still be.
        expect: Option<Entry>,
        /// The source entry: size, mode, mtime to apply.
        meta: Entry,
        /// True if `Copy` ops refer to the receiver's old version: the target itself, or
        /// for a new file the partial left by an interrupted transfer.
        delta: bool,
    },
    /// The next ops of the file.
    Data {
        /// Transfer id.
        id: u64,
        /// Ops in order.
        ops: Vec<DeltaOp>,
    },
    /// The file is complete; the receiver checks the BLAKE3 and commits.
    End {
        /// Transfer id.
        id: u64,
        /// BLAKE3 of the whole file as the sender read it.
        digest: Digest,
    },
    /// The sender could not send the file (changed while read, unreadable).
    Abort {
        /// Transfer id.
        id: u64,
        /// Why.
        error: WireError,
    },
}

impl Chunk {
    /// The transfer id.
    pub fn id(&self) -> u64 {
        match self {
            Chunk::Begin { id, .. }
            | Chunk::Data { id, .. }
            | Chunk::End { id, .. }
            | Chunk::Abort { id, .. } => *id,
        }
    }

    /// Roughly the bytes it takes in a message (to size frames and their buffers).
    pub fn encoded_size(&self) -> usize {
        match self {
            Chunk::Data { ops, .. } => ops
                .iter()
                .map(|o| match o {
                    DeltaOp::Literal(b) => b.len() + 8,
                    DeltaOp::Copy { .. } | DeltaOp::Hole(_) => 20,
                })
                .sum(),
            _ => 200,
        }
    }
}

/// A change other than writing file contents, each with the state it expects to find.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Create a symlink or special file like `source` (replacing `expect`).
    MakeNode {
        /// Where.
        path: RelPath,
        /// What must be there now.
        expect: Option<Entry>,
        /// What to create.
        source: Entry,
    },
    /// Create a directory with `source`'s mode.
    Mkdir {
        /// Where.
        path: RelPath,
        /// Its attributes.
        source: Entry,
    },
    /// Delete an entry that is still `expect` (a directory must be empty).
    Delete {
        /// What.
        path: RelPath,
        /// What it must still be.
        expect: Entry,
    },
    /// Rename within the root, then apply `meta` if given.
    Rename {
        /// From.
        from: RelPath,
        /// To.
        to: RelPath,
        /// What `from` must still be.
        expect: Entry,
        /// Attributes to apply after.
        meta: Option<Entry>,
    },
    /// Apply `source`'s mode, mtime (and owner where allowed).
    SetMeta {
        /// What.
        path: RelPath,
        /// What it must still be.
        expect: Entry,
        /// The attributes.
        source: Entry,
    },
    /// Make `path` another name of the file at `first` (a hard link), replacing `expect`.
    Link {
        /// The new name.
        path: RelPath,
        /// What must be there now.
        expect: Option<Entry>,
        /// The name it links to, which must hold the file `source` describes.
        first: RelPath,
        /// The file as the other side has it.
        source: Entry,
    },
    /// Give `path` a file of its own (a copy with `source`'s attributes), if it is still
    /// `expect`.
    Unlink {
        /// What.
        path: RelPath,
        /// What it must still be.
        expect: Entry,
        /// The attributes to give the copy.
        source: Entry,
    },
    /// Make `path` from `from`, a file on this side with the content `source` describes
    /// (`--dedup`): a copy checked against the digest, or a hard link.
    Dedup {
        /// Where.
        path: RelPath,
        /// What must be there now.
        expect: Option<Entry>,
        /// The file with the content.
        from: RelPath,
        /// What `from` must still be.
        from_expect: Entry,
        /// The source file (digest and attributes).
        source: Entry,
        /// Hard-link instead of copying.
        hardlink: bool,
    },
    /// Set a directory's mtime (it must still be a directory).
    Restamp {
        /// What.
        path: RelPath,
        /// The mtime in nanoseconds.
        mtime_ns: i64,
    },
    /// Report the root directory's own entry, after setting its mtime to `set` and its
    /// permission bits to `mode` when given and different (a replica's root keeps its
    /// source's, as rsync's does).
    RootTime {
        /// The mtime to set, in nanoseconds.
        set: Option<i64>,
        /// The permission bits to set (with setgid and sticky).
        mode: Option<u32>,
    },
}

/// Bytes over a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Written to the connection.
    pub sent: u64,
    /// Read from the connection.
    pub received: u64,
    /// Both ways, before compression.
    pub raw: u64,
}

/// Outcome of one received file: the new entry, or why it was not written.
pub type Received = (u64, Result<Entry>);

/// One side of a sync.
pub trait Endpoint: Send {
    /// Which side this is, for messages: `local '/data'`, `remote 'host:/srv'`.
    fn place(&self) -> &str;
    /// Scans the tree below the root; what it has in common with `known` (what the caller
    /// holds, such as the baseline) is held once, and digests are filled from its cache.
    fn scan(&mut self, filter: &FilterSpec, known: Known<'_>) -> Result<Scan>;
    /// Scans `paths` again (with everything below those flagged `true`); may scan the
    /// whole tree instead and say so.
    fn rescan(&mut self, filter: &FilterSpec, paths: &[(RelPath, bool)]) -> Result<Rescan> {
        let _ = paths;
        Ok(Rescan {
            tree: self.scan(filter, Known::none())?.tree,
            whole: true,
        })
    }
    /// Starts reporting changes below the root to `sink`, until the endpoint is dropped.
    fn watch(&mut self, sink: crate::disk::watch::Sink) -> Result<()> {
        drop(sink);
        Err(crate::error::Error::Unreachable(format!(
            "{} cannot be watched",
            self.place()
        )))
    }
    /// Hashes files; a file that cannot be read gets an error message instead of a digest.
    fn digests(&mut self, paths: &[RelPath]) -> Result<Vec<(RelPath, Result<Digest, String>)>>;
    /// Signatures of old versions about to be replaced, or of the partial transfers of
    /// new files, in order.
    fn signatures(&mut self, files: &[SignRequest]) -> Result<Vec<Result<Vec<u8>, String>>>;
    /// On the sender: the basis ranges that each file's coarse signature missed, to be
    /// signed again finely; in order.
    fn gaps(&mut self, files: &[GapRequest]) -> Result<Vec<Result<Ranges, String>>>;
    /// Streams the requested files into `sink`, chunk by chunk.
    fn send(
        &mut self,
        files: &[SendRequest],
        sink: &mut dyn FnMut(Chunk) -> Result<()>,
    ) -> Result<()>;
    /// Takes the next chunk of an incoming file.
    fn receive(&mut self, chunk: Chunk) -> Result<()>;
    /// Outcomes of files committed since the last call; with `wait`, commits every file
    /// received so far first (files are committed in batches, after one shared flush).
    fn received(&mut self, wait: bool) -> Result<Vec<Received>>;
    /// Makes everything written so far durable (before the baseline records it).
    fn sync(&mut self) -> Result<()>;
    /// Makes the changes in order; one result per change. Each re-checks its target first.
    fn apply(&mut self, changes: &[Change]) -> Result<Vec<Result<Option<Entry>>>>;
    /// Bytes moved over the connection so far (zero for in-process sides).
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
    /// Bytes sent on each stream of the connection (empty for in-process sides).
    fn streams(&self) -> Vec<u64> {
        Vec::new()
    }
    /// Things the user should hear about the connection since the last call (a stream
    /// that could not be opened).
    fn notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}
