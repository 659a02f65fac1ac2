//! An endpoint whose owners are numbered as on this side: entries coming from it are
//! translated in, entries going to it (attributes to apply) translated out, by name.

use crate::core::path::RelPath;
use crate::core::tree::{Digest, Entry};
use crate::disk::delta::refine::Ranges;
use crate::disk::owners::IdMap;
use crate::endpoint::{
    Change, Chunk, Endpoint, GapRequest, Received, Rescan, Scan, SendRequest, SignRequest, Traffic,
};
use crate::error::Result;
use crate::state::known::Known;
use crate::state::rules::FilterSpec;

/// Another endpoint, seen through an [`IdMap`].
pub struct OwnerMapped {
    /// The endpoint on the other side.
    pub inner: Box<dyn Endpoint>,
    /// How its owner numbers translate.
    pub map: IdMap,
}

impl OwnerMapped {
    fn outward(&self, mut e: Entry) -> Entry {
        self.map.outward(&mut e);
        e
    }

    fn inward(&self, r: Result<Option<Entry>>) -> Result<Option<Entry>> {
        r.map(|e| {
            e.map(|mut e| {
                self.map.inward(&mut e);
                e
            })
        })
    }

    fn change_out(&self, c: &Change) -> Change {
        let mut c = c.clone();
        match &mut c {
            Change::MakeNode { source, .. }
            | Change::Mkdir { source, .. }
            | Change::SetMeta { source, .. }
            | Change::Link { source, .. }
            | Change::Unlink { source, .. }
            | Change::Dedup { source, .. } => *source = self.outward(source.clone()),
            Change::Rename { meta: Some(m), .. } => *m = self.outward(m.clone()),
            Change::Rename { meta: None, .. }
            | Change::Delete { .. }
            | Change::Restamp { .. }
            | Change::RootTime { .. } => {}
        }
        c
    }
}

impl Endpoint for OwnerMapped {
    fn place(&self) -> &str {
        self.inner.place()
    }

    fn scan(&mut self, filter: &FilterSpec, known: Known<'_>) -> Result<Scan> {
        let mut scan = self.inner.scan(filter, known)?;
        for e in scan.tree.entries.values_mut() {
            self.map.inward(e);
        }
        Ok(scan)
    }

    fn rescan(&mut self, filter: &FilterSpec, paths: &[(RelPath, bool)]) -> Result<Rescan> {
        let mut r = self.inner.rescan(filter, paths)?;
        for e in r.tree.entries.values_mut() {
            self.map.inward(e);
        }
        Ok(r)
    }

    fn watch(&mut self, sink: crate::disk::watch::Sink) -> Result<()> {
        self.inner.watch(sink)
    }

    fn digests(&mut self, paths: &[RelPath]) -> Result<Vec<(RelPath, Result<Digest, String>)>> {
        self.inner.digests(paths)
    }

    fn signatures(&mut self, files: &[SignRequest]) -> Result<Vec<Result<Vec<u8>, String>>> {
        self.inner.signatures(files)
    }

    fn gaps(&mut self, files: &[GapRequest]) -> Result<Vec<Result<Ranges, String>>> {
        self.inner.gaps(files)
    }

    fn send(
        &mut self,
        files: &[SendRequest],
        sink: &mut dyn FnMut(Chunk) -> Result<()>,
    ) -> Result<()> {
        self.inner.send(files, sink)
    }

    fn receive(&mut self, chunk: Chunk) -> Result<()> {
        let chunk = match chunk {
            Chunk::Begin {
                id,
                path,
                expect,
                meta,
                delta,
            } => Chunk::Begin {
                id,
                path,
                expect,
                meta: self.outward(meta),
                delta,
            },
            other => other,
        };
        self.inner.receive(chunk)
    }

    fn received(&mut self, wait: bool) -> Result<Vec<Received>> {
        let done = self.inner.received(wait)?;
        Ok(done
            .into_iter()
            .map(|(id, r)| {
                let r = self.inward(r.map(Some)).map(|e| e.expect("an entry"));
                (id, r)
            })
            .collect())
    }

    fn sync(&mut self) -> Result<()> {
        self.inner.sync()
    }

    fn apply(&mut self, changes: &[Change]) -> Result<Vec<Result<Option<Entry>>>> {
        let out: Vec<Change> = changes.iter().map(|c| self.change_out(c)).collect();
        let results = self.inner.apply(&out)?;
        Ok(results.into_iter().map(|r| self.inward(r)).collect())
    }

    fn traffic(&self) -> Traffic {
        self.inner.traffic()
    }

    fn streams(&self) -> Vec<u64> {
        self.inner.streams()
    }

    fn notes(&mut self) -> Vec<String> {
        self.inner.notes()
    }
}
