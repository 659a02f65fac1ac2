//! `Endpoint`: everything the engine asks of one side. `LocalEndpoint` does the disk work;
//! a remote endpoint speaks the protocol to an agent that serves a `LocalEndpoint`, so both
//! behave the same. Blocking, one caller at a time; any `Err` from `scan` or `digests`
//! fails the run, an `Err` from an action fails only that action.

pub mod local;

use std::io::Read;

use crate::error::Result;
use crate::fsops::RootId;
use crate::path::RelPath;
use crate::rules::FilterSpec;
use crate::tree::{Digest, Entry, Tree};

pub use local::LocalEndpoint;

/// One side's scan result.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Scan {
    /// Everything below the root (digests unknown unless cached).
    pub tree: Tree,
    /// Device and inode of the root.
    pub root_id: RootId,
}

/// A file's contents on their way out of an endpoint. `finish` is called after the last
/// read: it re-checks that the source did not change while it was read and returns the
/// BLAKE3 of what was read.
pub trait Source: Read {
    /// Confirms the source is unchanged and returns the digest of the bytes read.
    fn finish(&mut self) -> Result<Digest>;
}

/// One side of a sync.
pub trait Endpoint: Send {
    /// Which side this is, for messages: `local '/data'`, `remote 'host:/srv'`.
    fn place(&self) -> &str;
    /// Scans the tree below the root.
    fn scan(&mut self, filter: &FilterSpec) -> Result<Scan>;
    /// Hashes files; a file that cannot be read gets an error message instead of a digest.
    fn digests(&mut self, paths: &[RelPath]) -> Result<Vec<(RelPath, Result<Digest, String>)>>;
    /// Opens a file to send, checking it is still the scanned `expect`.
    fn open_source<'a>(
        &'a mut self,
        path: &RelPath,
        expect: &Entry,
    ) -> Result<Box<dyn Source + 'a>>;
    /// Writes `src` to a temp file next to `path`, verifies it, applies `meta`, and renames
    /// it over `path` only if `path` is still `expect`. Returns the new entry.
    fn write_file(
        &mut self,
        path: &RelPath,
        expect: Option<&Entry>,
        meta: &Entry,
        src: &mut dyn Source,
    ) -> Result<Entry>;
    /// Creates a symlink or special file like `source` at `path` (replacing `expect`).
    fn make_node(
        &mut self,
        path: &RelPath,
        expect: Option<&Entry>,
        source: &Entry,
    ) -> Result<Entry>;
    /// Creates a directory with `source`'s mode.
    fn mkdir(&mut self, path: &RelPath, source: &Entry) -> Result<Entry>;
    /// Deletes `path` if it is still `expect` (a directory must be empty).
    fn delete(&mut self, path: &RelPath, expect: &Entry) -> Result<()>;
    /// Renames `from` to `to` if `from` is still `expect`; then applies `meta` if given.
    fn rename(
        &mut self,
        from: &RelPath,
        to: &RelPath,
        expect: &Entry,
        meta: Option<&Entry>,
    ) -> Result<Entry>;
    /// Applies `source`'s mode, mtime (and owner where allowed) if `path` is still `expect`.
    fn set_meta(&mut self, path: &RelPath, expect: &Entry, source: &Entry) -> Result<Entry>;
}
