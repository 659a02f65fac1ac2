//! Signatures of old versions (one level or two), and on the sender the basis ranges a
//! coarse signature missed.

use std::fs::File;

use crate::disk::delta::{self, refine, Basis};
use crate::endpoint::{GapRequest, Sign, SignRequest};

use super::LocalEndpoint;

impl LocalEndpoint {
    /// Signs the old version (or partial) `req` names, as it asks.
    pub(super) fn sign_one(&self, req: &SignRequest) -> Result<Vec<u8>, String> {
        let path = &req.path;
        let (mut f, size) = self.basis(req)?;
        let cannot = |e: std::io::Error| format!("cannot read '{path}': {e}");
        match &req.sign {
            Sign::Whole => delta::signature(&mut f, size).map_err(cannot),
            Sign::Coarse => {
                delta::signature_with(&mut f, size, delta::coarse_options(size)).map_err(cannot)
            }
            Sign::Ranges(ranges) => refine::range_signature(&f, size, ranges).map_err(cannot),
        }
    }

    /// The file a signature is taken of, and its size.
    fn basis(&self, req: &SignRequest) -> Result<(File, u64), String> {
        match &req.expect {
            Some(e) => Ok((
                self.open_source(&req.path, e).map_err(|e| e.to_string())?.0,
                e.size,
            )),
            None => {
                let (f, size, _) = self
                    .root
                    .peek_partial(&req.path)
                    .map_err(|e| format!("no partial transfer of '{}': {e}", req.path))?;
                Ok((f, size))
            }
        }
    }

    /// Diffs the source `req` names against its coarse signature, for the ranges missed.
    pub(super) fn gaps_of(&self, req: &GapRequest) -> Result<Vec<(u64, u64)>, String> {
        let basis = Basis::parse(req.signature.to_vec())
            .map_err(|why| format!("signature for '{}': {why}", req.path))?;
        let (mut file, _) = self
            .open_source(&req.path, &req.expect)
            .map_err(|e| e.to_string())?;
        let index = basis.index();
        let mut gaps = refine::Gaps::default();
        let mut buf = vec![0u8; (req.expect.size as usize).min(delta::WINDOW)];
        let mut left = req.expect.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = delta::read_full(&mut file, &mut buf[..want])
                .map_err(|e| format!("cannot read '{}': {e}", req.path))?;
            if n == 0 {
                break;
            }
            left -= n as u64;
            let mut ops = Vec::new();
            delta::diff_window(&index, &buf[..n], &mut ops)?;
            gaps.take(&ops);
        }
        Ok(gaps.finish(req.basis_len))
    }
}
