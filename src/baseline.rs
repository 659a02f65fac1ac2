//! The baseline: the last state both sides agreed on, per session, on the client only.
//!
//! Format: a text header (`tandem baseline`, `version N`, `blake3 <hex of payload>`, blank
//! line) followed by a MessagePack payload. Written to a temp file, fsynced, renamed over
//! the old one, and the directory fsynced: a crash leaves the old or the new baseline,
//! never half of one. A baseline that fails its checksum is an error, never a silent
//! fresh start (which could resurrect deleted files).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsops::RootId;
use crate::hash_cache::HashCache;
use crate::tree::Tree;

/// Hashes what it passes on.
struct Hashing<W> {
    out: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Current format version.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &str = "tandem baseline";

/// Everything a session remembers between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// The local root as given when the session was made.
    pub local_root: String,
    /// The remote root as given.
    pub remote_root: String,
    /// Device/inode of each root (`[local, remote]`) at the last run.
    pub root_ids: [Option<RootId>; 2],
    /// The agreed tree.
    pub tree: Tree,
    /// Digests per side (`[local, remote]`).
    pub caches: [HashCache; 2],
}

impl Baseline {
    /// Reads a baseline; `Ok(None)` if there is none yet.
    pub fn load(path: &Path) -> Result<Option<Baseline>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::State(format!(
                    "cannot read baseline '{}': {e}",
                    path.display()
                )))
            }
        };
        Baseline::decode(&bytes).map(Some).map_err(|why| {
            Error::State(format!(
                "baseline '{}' is unusable: {why}. Nothing was changed. Restore it from a backup, or run \
                 'tandem forget -N <name>' to start this session over (the next bidi run then treats every \
                 difference as new and propagates no deletions)",
                path.display()
            ))
        })
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Baseline, String> {
        let mut lines = bytes.splitn(5, |&b| b == b'\n');
        let magic = lines.next().unwrap_or_default();
        if magic != MAGIC.as_bytes() {
            return Err("not a tandem baseline (bad header)".into());
        }
        let version = lines
            .next()
            .and_then(|l| {
                std::str::from_utf8(l)
                    .ok()?
                    .strip_prefix("version ")?
                    .parse::<u32>()
                    .ok()
            })
            .ok_or("missing version line")?;
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version}, this tandem reads version {FORMAT_VERSION}"
            ));
        }
        let sum = lines
            .next()
            .and_then(|l| {
                std::str::from_utf8(l)
                    .ok()?
                    .strip_prefix("blake3 ")
                    .map(str::to_string)
            })
            .ok_or("missing checksum line")?;
        if lines.next() != Some(&b""[..]) {
            return Err("malformed header".into());
        }
        let payload = lines.next().unwrap_or_default();
        if blake3::hash(payload).to_hex().as_str() != sum {
            return Err("checksum mismatch (the file is corrupt or truncated)".into());
        }
        rmp_serde::from_slice(payload).map_err(|e| format!("cannot decode: {e}"))
    }

    /// The header for a payload with this BLAKE3 hash (always the same length).
    fn header(hash: &blake3::Hash) -> String {
        format!(
            "{MAGIC}\nversion {FORMAT_VERSION}\nblake3 {}\n\n",
            hash.to_hex()
        )
    }

    /// Writes the baseline to `out`: the payload streams through a hasher into the
    /// file after room for the header, which goes in last, so a large baseline is never
    /// held in memory a second time as bytes.
    fn write_to(&self, out: &mut File) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let room = Self::header(&blake3::hash(b"")).len() as u64;
        out.seek(SeekFrom::Start(room))?;
        let mut sink = Hashing {
            out: std::io::BufWriter::with_capacity(1 << 20, &mut *out),
            hasher: blake3::Hasher::new(),
        };
        rmp_serde::encode::write(&mut sink, self).map_err(std::io::Error::other)?;
        sink.out.flush()?;
        let hash = sink.hasher.finalize();
        drop(sink);
        out.seek(SeekFrom::Start(0))?;
        out.write_all(Self::header(&hash).as_bytes())
    }

    /// Writes atomically: temp file, fsync, rename, fsync of the directory.
    pub fn commit(&self, path: &Path) -> Result<()> {
        let err = |what: &str, e: std::io::Error| {
            Error::State(format!("cannot {what} baseline '{}': {e}", path.display()))
        };
        let dir = path
            .parent()
            .ok_or_else(|| err("place", std::io::ErrorKind::InvalidInput.into()))?;
        std::fs::create_dir_all(dir).map_err(|e| err("create the directory of", e))?;
        let tmp = path.with_extension("baseline.tmp");
        let mut f = File::create(&tmp).map_err(|e| err("create a temporary file for", e))?;
        self.write_to(&mut f).map_err(|e| err("write", e))?;
        f.sync_all().map_err(|e| err("flush", e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| err("rename into place", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| err("flush the directory of", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.baseline");
        assert!(Baseline::load(&path).unwrap().is_none());
        let b = Baseline {
            local_root: "/a".into(),
            remote_root: "/b".into(),
            ..Default::default()
        };
        b.commit(&path).unwrap();
        assert_eq!(Baseline::load(&path).unwrap(), Some(b));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = Baseline::load(&path).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert_eq!(err.exit_bit(), crate::exit::ExitStatus::STATE);
        std::fs::write(&path, b"garbage").unwrap();
        assert!(Baseline::load(&path).is_err());
    }

    #[test]
    fn commit_leaves_no_temp_file_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.baseline");
        Baseline::default().commit(&path).unwrap();
        let b = Baseline {
            local_root: "x".into(),
            ..Default::default()
        };
        b.commit(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("s.baseline")]);
        assert_eq!(Baseline::load(&path).unwrap().unwrap().local_root, "x");
    }
}
