//! `--preserve-acls metafile`: the ACLs and xattrs of a directory's entries kept in a side
//! file in that directory, for a side that cannot (or should not) hold them natively. The
//! side file is never scanned or synced as an ordinary file; a later pull with `native`
//! puts every attribute back exactly.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};

use super::Xattrs;
use crate::core::path::RelPath;
use crate::disk::fsops::Root;

/// The side file's name in each directory.
pub const NAME: &[u8] = b".tandem-xattrs";
/// Largest side file read (a hostile or broken one must not exhaust memory).
const MAX_SIZE: u64 = 64 << 20;

/// One directory's side file: child name → attributes.
pub type Records = BTreeMap<Vec<u8>, Xattrs>;

/// Decodes a side file; a damaged one reads as empty (and is rewritten on the next change).
pub fn decode(bytes: &[u8]) -> Records {
    let records: Records = rmp_serde::from_slice(bytes).unwrap_or_default();
    records
        .into_iter()
        .filter(|(n, x)| !n.contains(&b'/') && super::valid(x).is_ok())
        .collect()
}

fn side_file(dir: Option<&RelPath>) -> RelPath {
    match dir {
        Some(d) => d.join(NAME).expect("a valid name"),
        None => RelPath::from_name(NAME).expect("a valid name"),
    }
}

/// Reads the side file of `dir` (the root for `None`).
pub fn load(root: &Root, dir: Option<&RelPath>) -> io::Result<Records> {
    let mut f = match root.open_read(&side_file(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Records::new()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    Read::by_ref(&mut f)
        .take(MAX_SIZE)
        .read_to_end(&mut bytes)?;
    Ok(decode(&bytes))
}

/// Side files being changed, written back by [`Store::flush`].
#[derive(Default)]
pub struct Store {
    dirs: HashMap<Option<RelPath>, (Records, bool)>,
}

impl Store {
    fn dir(&mut self, root: &Root, dir: Option<RelPath>) -> io::Result<&mut (Records, bool)> {
        if !self.dirs.contains_key(&dir) {
            let records = load(root, dir.as_ref())?;
            self.dirs.insert(dir.clone(), (records, false));
        }
        Ok(self.dirs.get_mut(&dir).expect("just loaded"))
    }

    /// A change to `path`'s record not yet written: `Some(record)` if there is one.
    pub fn get(&self, path: &RelPath) -> Option<Option<Xattrs>> {
        let (records, dirty) = self.dirs.get(&path.parent())?;
        dirty.then(|| records.get(path.name()).cloned())
    }

    /// Forgets a directory about to be removed, with its side file.
    pub fn drop_dir(&mut self, root: &Root, dir: &RelPath) -> io::Result<()> {
        self.dirs.remove(&Some(dir.clone()));
        match root.remove(&side_file(Some(dir)), false) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Records `path`'s attributes (`None`: it has none, or is gone).
    pub fn set(&mut self, root: &Root, path: &RelPath, x: Option<&Xattrs>) -> io::Result<()> {
        let (records, dirty) = self.dir(root, path.parent())?;
        let name = path.name().to_vec();
        let changed = match x {
            Some(x) => records.insert(name, x.clone()).as_ref() != Some(x),
            None => records.remove(&name).is_some(),
        };
        *dirty |= changed;
        Ok(())
    }

    /// Moves `from`'s record to `to`.
    pub fn rename(&mut self, root: &Root, from: &RelPath, to: &RelPath) -> io::Result<()> {
        let (records, dirty) = self.dir(root, from.parent())?;
        let x = records.remove(from.name());
        *dirty |= x.is_some();
        self.set(root, to, x.as_ref())
    }

    /// Writes every changed side file (temp file, then rename), leaving its directory's
    /// mtime as it was: the side file is tandem's bookkeeping, not a change the directory's
    /// time may show (it was restamped to its source's before the flush).
    pub fn flush(&mut self, root: &Root) -> io::Result<()> {
        for (dir, (records, dirty)) in self.dirs.iter_mut().filter(|(_, (_, d))| *d) {
            let path = side_file(dir.as_ref());
            let kept = root.parent_fd(&path).ok().and_then(|fd| {
                let t = crate::disk::fsops::entry_at(&fd, b".")
                    .ok()
                    .flatten()?
                    .mtime_ns;
                Some((fd, t))
            });
            if records.is_empty() {
                root.remove(&path, false).or_else(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
            } else {
                let bytes = rmp_serde::to_vec(records).map_err(io::Error::other)?;
                let (fd, tmp, mut file) = root.create_temp(&path, 0o600)?;
                file.write_all(&bytes)?;
                file.sync_data()?;
                Root::rename_in(&fd, &tmp, NAME)?;
            }
            // Only the directory's owner may set its time: elsewhere it shows the write,
            // as any other would, and the side file is written all the same.
            if let Some((fd, mtime_ns)) = kept {
                let _ = Root::set_mtime_at(&fd, b".", mtime_ns);
            }
            *dirty = false;
        }
        Ok(())
    }
}
