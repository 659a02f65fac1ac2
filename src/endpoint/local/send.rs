//! The read side of a local endpoint: a file sent whole, sparse, or as a delta against
//! the other side's signature, window by window, checked against its scan first.

use super::*;

impl LocalEndpoint {
    /// Opens a source file and checks, on the open file, that it is still the scanned one;
    /// returns it with whether it is sparse.
    pub(super) fn open_source(&self, path: &RelPath, expect: &Entry) -> Result<(File, bool)> {
        let opened = self.root.open_read(path).and_then(|file| {
            let checked = still_scanned(&file, expect)?;
            Ok((file, checked))
        });
        match opened {
            Ok((_, (false, _))) => Err(self.source_changed(path)),
            // Holes: it occupies less disk than its size.
            Ok((file, (true, st))) => Ok((
                file,
                (st.st_blocks as u64).saturating_mul(512) < expect.size,
            )),
            // Gone, or no longer a file (a symlink will not open): changed since the scan.
            Err(err) => match self.root.entry(path) {
                Ok(now) if !still_expected(now.as_ref(), Some(expect)) => {
                    Err(self.source_changed(path))
                }
                _ => Err(self.io("read", path, err)),
            },
        }
    }

    /// Streams one file: whole, or as a delta against the receiver's signature.
    pub(super) fn send_one(
        &self,
        req: &SendRequest,
        sink: &mut dyn FnMut(Chunk) -> Result<()>,
    ) -> Result<()> {
        let id = req.id;
        let abort = |e: &Error| Chunk::Abort {
            id,
            error: WireError::from(e),
        };
        let basis = match req
            .signature
            .as_ref()
            .map(|s| {
                let coarse = Basis::parse(s.to_vec())?;
                match &req.refined {
                    Some(r) => coarse.refine(r.ranges.clone(), r.signature.to_vec()),
                    None => Ok(coarse),
                }
            })
            .transpose()
        {
            Ok(b) => b,
            Err(why) => {
                return sink(abort(&Error::Protocol(format!(
                    "signature for '{}': {why}",
                    req.target
                ))))
            }
        };
        let (mut file, sparse) = match self.open_source(&req.path, &req.expect) {
            Ok(opened) => opened,
            Err(e) => return sink(abort(&e)),
        };
        sink(Chunk::Begin {
            id,
            path: req.target.clone(),
            expect: req.target_expect.clone(),
            meta: req.expect.clone(),
            delta: basis.is_some(),
        })?;
        let index = basis.as_ref().map(Basis::index);
        let mut hasher = blake3::Hasher::new();
        let read = if index.is_none() && sparse {
            send_sparse(&file, req.expect.size, id, &mut hasher, sink)
        } else {
            send_windows(
                &mut file,
                req.expect.size,
                index.as_ref(),
                id,
                &mut hasher,
                sink,
            )
        };
        match read {
            Ok(()) => {}
            Err(SendError::Read(e)) => return sink(abort(&self.io("read", &req.path, e))),
            Err(SendError::Delta(why)) => {
                return sink(abort(&Error::Protocol(format!("'{}': {why}", req.path))))
            }
            Err(SendError::Sink(e)) => return Err(e),
        }
        // Re-stat after reading: a file written to while we read it would arrive torn. The
        // open file, not the name: what was read is that file's content, whatever the name
        // holds by now (a file renamed over it is new, for the next run).
        match still_scanned(&file, &req.expect) {
            Ok((true, _)) => sink(Chunk::End {
                id,
                digest: Digest(*hasher.finalize().as_bytes()),
            }),
            Ok((false, _)) => sink(abort(&self.source_changed(&req.path))),
            Err(e) => sink(abort(&self.io("stat", &req.path, e))),
        }
    }
}

/// Why reading a file for sending stopped.
pub(super) enum SendError {
    /// The source could not be read.
    Read(io::Error),
    /// The delta could not be computed.
    Delta(String),
    /// The receiving side failed: the run stops.
    Sink(Error),
}

/// Sends chunks of ops, about a megabyte of literal data per chunk.
pub(super) fn send_ops(
    id: u64,
    ops: Vec<DeltaOp>,
    sink: &mut dyn FnMut(Chunk) -> Result<()>,
) -> Result<(), SendError> {
    let mut batch = Vec::new();
    let mut size = 0;
    for op in ops {
        size += match &op {
            DeltaOp::Literal(b) => b.len(),
            DeltaOp::Copy { .. } | DeltaOp::Hole(_) => 16,
        };
        batch.push(op);
        if size >= 4 * LITERAL_CHUNK {
            let ops = std::mem::take(&mut batch);
            sink(Chunk::Data { id, ops }).map_err(SendError::Sink)?;
            size = 0;
        }
    }
    if !batch.is_empty() {
        sink(Chunk::Data { id, ops: batch }).map_err(SendError::Sink)?;
    }
    Ok(())
}

/// Whether the open `file` is still the scanned `expect` (by its own stat, whatever its
/// name holds by now), with that stat.
pub(super) fn still_scanned(file: &File, expect: &Entry) -> io::Result<(bool, sys::Stat)> {
    let st = sys::fstat(file)?;
    Ok((
        still_expected(Some(&entry_from_stat(&st, None)), Some(expect)),
        st,
    ))
}

/// Reads a file window by window: whole, or as a delta against `index`.
pub(super) fn send_windows(
    file: &mut File,
    size: u64,
    index: Option<&delta::Index<'_>>,
    id: u64,
    hasher: &mut blake3::Hasher,
    sink: &mut dyn FnMut(Chunk) -> Result<()>,
) -> Result<(), SendError> {
    let Some(index) = index else {
        return send_whole(file, size, id, hasher, sink);
    };
    // Small files get a small buffer: zeroing a megabyte per file showed in profiles.
    // Reading stops at the scanned size, without the read that would find the end: a file
    // that grew meanwhile is caught by the stat after reading.
    let mut buf = vec![0u8; (size as usize).min(WINDOW)];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = delta::read_full(file, &mut buf[..want]).map_err(SendError::Read)?;
        if n == 0 {
            return Ok(());
        }
        left -= n as u64;
        let window = &buf[..n];
        hasher.update(window);
        let mut ops = Vec::new();
        delta::diff_window(index, window, &mut ops).map_err(SendError::Delta)?;
        send_ops(id, ops, sink)?;
        if n < want {
            return Ok(());
        }
    }
    Ok(())
}

/// Sends a file whole, each piece read straight into the literal that carries it: no
/// buffer to zero, no copy out of one (on a copy of `/usr/share`, both showed).
pub(super) fn send_whole(
    file: &mut File,
    size: u64,
    id: u64,
    hasher: &mut blake3::Hasher,
    sink: &mut dyn FnMut(Chunk) -> Result<()>,
) -> Result<(), SendError> {
    use std::io::Read;
    let mut left = size;
    while left > 0 {
        let want = left.min(LITERAL_CHUNK as u64);
        let mut piece = Vec::with_capacity(want as usize);
        // Stops at the scanned size, as above.
        file.by_ref()
            .take(want)
            .read_to_end(&mut piece)
            .map_err(SendError::Read)?;
        let n = piece.len() as u64;
        if n == 0 {
            return Ok(());
        }
        left -= n;
        hasher.update(&piece);
        send_ops(id, vec![DeltaOp::Literal(piece)], sink)?;
        if n < want {
            return Ok(());
        }
    }
    Ok(())
}

/// Sends a sparse file whole: its data regions as literals, its holes as holes, found with
/// `SEEK_DATA`/`SEEK_HOLE` and never read.
pub(super) fn send_sparse(
    file: &File,
    size: u64,
    id: u64,
    hasher: &mut blake3::Hasher,
    sink: &mut dyn FnMut(Chunk) -> Result<()>,
) -> Result<(), SendError> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4 * LITERAL_CHUNK];
    let mut pos = 0;
    while pos < size {
        let (start, end) = crate::disk::fsops::data_region(file, pos)
            .map_err(SendError::Read)?
            .map_or((size, size), |(s, e)| (s.min(size), e.min(size)));
        if start > pos {
            delta::hash_zeros(hasher, start - pos);
            send_ops(id, vec![DeltaOp::Hole(start - pos)], sink)?;
        }
        pos = start;
        while pos < end {
            let n = (end - pos).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], pos)
                .map_err(SendError::Read)?;
            hasher.update(&buf[..n]);
            let mut ops = Vec::new();
            delta::literal_ops(&buf[..n], &mut ops);
            send_ops(id, ops, sink)?;
            pos += n as u64;
        }
    }
    Ok(())
}
