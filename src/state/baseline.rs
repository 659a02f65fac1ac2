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

use crate::core::tree::Tree;
use crate::disk::fsops::RootId;
use crate::error::{Error, Result};
use crate::state::hash_cache::{CacheV1, HashCache};

/// Hashes what it passes on (written out, or read in).
struct Hashing<W> {
    out: W,
    hasher: blake3::Hasher,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.out.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
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

/// Current format version (2: hash caches relative to the tree; 1 is still read).
pub const FORMAT_VERSION: u32 = 2;
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
    /// How each side's ACLs and xattrs were read for `tree` (`--preserve-acls`): a run
    /// that reads them as the last one did may take an unchanged file's from the tree.
    #[serde(default)]
    pub acls: [crate::disk::xattrs::AclMode; 2],
    /// What each root's probe found (`[local, remote]`), reused while it is that root.
    #[serde(default)]
    pub probed: [Option<crate::state::known::Probed>; 2],
}

/// A baseline as format version 1 stored it (hash caches with a path per file).
#[derive(Deserialize)]
struct BaselineV1 {
    local_root: String,
    remote_root: String,
    root_ids: [Option<RootId>; 2],
    tree: Tree,
    caches: [CacheV1; 2],
}

impl BaselineV1 {
    fn upgrade(self) -> Baseline {
        let [local, remote] = self.caches;
        let caches = [local.upgrade(&self.tree), remote.upgrade(&self.tree)];
        Baseline {
            local_root: self.local_root,
            remote_root: self.remote_root,
            root_ids: self.root_ids,
            tree: self.tree,
            caches,
            acls: Default::default(),
            probed: Default::default(),
        }
    }
}

impl Baseline {
    /// Rebuilds the hash caches a run spent filling `trees` (`[local, remote]`): a
    /// continuous sync fills its rescans from them again.
    pub fn renew_caches(&mut self, trees: &[Tree; 2]) {
        for (cache, tree) in self.caches.iter_mut().zip(trees) {
            cache.renew(&self.tree, tree);
        }
    }

    /// Reads a baseline; `Ok(None)` if there is none yet.
    pub fn load(path: &Path) -> Result<Option<Baseline>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::State(format!(
                    "cannot read baseline '{}': {e}",
                    path.display()
                )))
            }
        };
        // Read as a stream: a large baseline is never held a second time as bytes.
        let input = std::io::BufReader::with_capacity(1 << 16, file);
        Baseline::decode(input).map(Some).map_err(|why| {
            Error::State(format!(
                "baseline '{}' is unusable: {why}. Nothing was changed. Restore it from a backup, or run \
                 'tandem forget -N <name>' to start this session over (the next bidi run then treats every \
                 difference as new and propagates no deletions)",
                path.display()
            ))
        })
    }

    /// Reads a baseline from its header on. The payload is decoded as it streams through
    /// a hasher, and what was decoded is used only if the whole payload then matches the
    /// header's checksum.
    fn decode(mut input: impl std::io::BufRead) -> std::result::Result<Baseline, String> {
        use std::io::{BufRead, Read};
        let mut line = || -> std::result::Result<Vec<u8>, String> {
            let mut l = Vec::new();
            input
                .by_ref()
                .take(256)
                .read_until(b'\n', &mut l)
                .map_err(|e| format!("cannot read: {e}"))?;
            match l.pop() {
                Some(b'\n') => Ok(l),
                _ => Err("malformed header".into()),
            }
        };
        if line()? != MAGIC.as_bytes() {
            return Err("not a tandem baseline (bad header)".into());
        }
        let version = std::str::from_utf8(&line()?)
            .ok()
            .and_then(|l| l.strip_prefix("version ")?.parse::<u32>().ok())
            .ok_or("missing version line")?;
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(format!(
                "format version {version}, this tandem reads versions 1 to {FORMAT_VERSION}"
            ));
        }
        let sum = String::from_utf8(line()?)
            .ok()
            .and_then(|l| l.strip_prefix("blake3 ").map(str::to_string))
            .ok_or("missing checksum line")?;
        if !line()?.is_empty() {
            return Err("malformed header".into());
        }
        // Hashed in the buffer's large reads, not in the decoder's small ones.
        let hashing = Hashing {
            out: input,
            hasher: blake3::Hasher::new(),
        };
        let mut payload = std::io::BufReader::with_capacity(1 << 16, hashing);
        let decoded = if version == 1 {
            rmp_serde::from_read::<_, BaselineV1>(&mut payload).map(BaselineV1::upgrade)
        } else {
            rmp_serde::from_read(&mut payload)
        };
        // Whatever the decoder left unread counts too.
        std::io::copy(&mut payload, &mut std::io::sink())
            .map_err(|e| format!("cannot read: {e}"))?;
        if payload.into_inner().hasher.finalize().to_hex().as_str() != sum {
            return Err("checksum mismatch (the file is corrupt or truncated)".into());
        }
        decoded.map_err(|e| format!("cannot decode: {e}"))
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
        // A spent cache holds only a fingerprint: written, it would forget every digest.
        debug_assert!(
            self.caches.iter().all(|c| !c.is_spent()),
            "a spent hash cache is committed"
        );
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
    fn a_version_1_baseline_still_loads_and_its_cache_still_fills() {
        use crate::core::path::RelPath;
        use crate::core::tree::{Digest, Entry, EntryKind, Meta, Stamp};
        // Version 1's layout, field for field (MessagePack is positional).
        #[derive(Serialize)]
        struct Cached {
            size: u64,
            mtime_ns: i64,
            stamp: Stamp,
            digest: Digest,
        }
        #[derive(Serialize)]
        struct Cache {
            files: std::collections::BTreeMap<RelPath, Cached>,
        }
        #[derive(Serialize)]
        struct V1 {
            local_root: String,
            remote_root: String,
            root_ids: [Option<RootId>; 2],
            tree: Tree,
            caches: [Cache; 2],
        }
        let path = RelPath::new(b"f".to_vec()).unwrap();
        let stamp = Stamp {
            ino: 5,
            ctime_ns: 6,
        };
        let entry = Entry::of(
            Meta {
                kind: EntryKind::File,
                size: 3,
                mtime_ns: 4,
                mode: 0o644,
                uid: 0,
                gid: 0,
                digest: Some(Digest([9; 32])),
                extra: None,
            },
            Stamp::default(),
        );
        let tree = Tree::from_entries(vec![(path.clone(), entry.clone())]);
        let cache = |stamp| Cache {
            files: [(
                path.clone(),
                Cached {
                    size: 3,
                    mtime_ns: 4,
                    stamp,
                    digest: Digest([9; 32]),
                },
            )]
            .into(),
        };
        let v1 = V1 {
            local_root: "/a".into(),
            remote_root: "/b".into(),
            root_ids: [None, None],
            tree,
            caches: [
                cache(stamp),
                cache(Stamp {
                    ino: 7,
                    ctime_ns: 8,
                }),
            ],
        };
        let payload = rmp_serde::to_vec(&v1).unwrap();
        let mut bytes = format!(
            "{MAGIC}\nversion 1\nblake3 {}\n\n",
            blake3::hash(&payload).to_hex()
        )
        .into_bytes();
        bytes.extend_from_slice(&payload);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("old.baseline");
        std::fs::write(&file, &bytes).unwrap();
        let b = Baseline::load(&file).unwrap().unwrap();
        assert_eq!(b.local_root, "/a");
        let mut unhashed = entry.clone();
        unhashed.stamp = stamp;
        unhashed.digest = None;
        let mut now = Tree::from_entries(vec![(path.clone(), unhashed)]);
        assert_eq!(b.caches[0].clone().fill(&b.tree, &mut now), 1);
        assert_eq!(now.get(&path).unwrap().digest, Some(Digest([9; 32])));
        // Written back, it is version 2 and says the same.
        b.commit(&file).unwrap();
        assert!(std::fs::read(&file)
            .unwrap()
            .starts_with(format!("{MAGIC}\nversion 2\n").as_bytes()));
        assert_eq!(Baseline::load(&file).unwrap().unwrap(), b);
    }

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
    fn every_cut_and_every_damaged_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.baseline");
        let entry = crate::core::tree::Entry::new(crate::core::tree::EntryKind::File, 3, 4, 0o644);
        let b = Baseline {
            local_root: "/a".into(),
            tree: Tree::from_entries(
                ["a", "a/b", "c"]
                    .map(|p| (crate::core::path::RelPath::new(p).unwrap(), entry.clone())),
            ),
            ..Default::default()
        };
        b.commit(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let refused = |bytes: &[u8], what: &str| {
            std::fs::write(&path, bytes).unwrap();
            let err = Baseline::load(&path).expect_err(what);
            assert_eq!(err.exit_bit(), crate::exit::ExitStatus::STATE, "{what}");
        };
        for cut in 0..good.len() {
            refused(&good[..cut], &format!("cut at {cut}"));
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x41;
            refused(&bad, &format!("byte {at} damaged"));
        }
        refused(&[&good[..], b"more"].concat(), "bytes appended");
        std::fs::write(&path, &good).unwrap();
        assert_eq!(Baseline::load(&path).unwrap(), Some(b));
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
