//! `--dedup copy|hardlink`: a file about to be sent whose content the receiving side
//! already holds (same size, same BLAKE3: a copy, or the file under another name) is made
//! there from that file instead — copied (a reflink where the filesystem can), or
//! hard-linked when mode, owner and mtime match too.

use std::collections::{HashMap, HashSet};

use super::Sides;
use crate::core::path::RelPath;
use crate::core::plan::{Op, Plan, Side, Status};
use crate::core::tree::{Digest, Entry};
use crate::error::Result;

/// What `--dedup` does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dedup {
    /// Send every file (the default).
    #[default]
    None,
    /// Copy the content from the file that has it.
    Copy,
    /// Hard-link to it when its attributes match, copy otherwise.
    Hardlink,
}

impl Dedup {
    /// Parses `none`, `copy` or `hardlink`.
    pub fn parse(s: &str) -> std::result::Result<Dedup, String> {
        match s {
            "none" => Ok(Dedup::None),
            "copy" => Ok(Dedup::Copy),
            "hardlink" => Ok(Dedup::Hardlink),
            _ => Err(format!("bad --dedup '{s}': give none, copy or hardlink")),
        }
    }
}

/// Empty files have nothing to save.
const MIN_SIZE: u64 = 1;

/// Turns file copies into local ones where the receiving side has the content.
pub(super) fn find(mode: Dedup, plan: &mut Plan, sides: &mut Sides) -> Result<()> {
    if mode == Dedup::None {
        return Ok(());
    }
    for side in [Side::Local, Side::Remote] {
        let copies: Vec<usize> = (0..plan.actions.len())
            .filter(|&i| {
                let a = &plan.actions[i];
                a.side == side
                    && matches!(&a.op, Op::Copy { source, .. } if source.is_file() && source.size >= MIN_SIZE)
            })
            .collect();
        if copies.is_empty() {
            continue;
        }
        let candidates = candidates(plan, sides, side, &copies);
        if candidates.is_empty() {
            continue;
        }
        // Both ends of each pair must be hashed: the sources on the other side, the
        // candidates here.
        let need_src = unhashed(
            &sides.trees[side.other() as usize],
            copies.iter().map(|&i| copy_from(&plan.actions[i].op)),
        );
        let need_dst = unhashed(&sides.trees[side as usize], candidates.values().flatten());
        fill(sides, side.other(), &need_src)?;
        fill(sides, side, &need_dst)?;
        let tree = &sides.trees[side as usize];
        let by_digest: HashMap<Digest, &RelPath> = candidates
            .values()
            .flatten()
            .filter_map(|p| tree.get(p).and_then(|e| e.digest.as_ref()).map(|d| (*d, p)))
            .collect();
        for &i in &copies {
            let a = &mut plan.actions[i];
            let Op::Copy { from, source } = &a.op else {
                continue;
            };
            let src = sides.trees[side.other() as usize].get(from);
            let Some(digest) = src.and_then(|e| e.digest) else {
                continue;
            };
            let Some(found) = by_digest.get(&digest) else {
                continue;
            };
            let found_entry = tree.get(found).expect("candidate in the tree").clone();
            let mut source = source.clone();
            source.digest = Some(digest);
            let hardlink = mode == Dedup::Hardlink && same_attributes(&found_entry, &source);
            a.op = Op::Dedup {
                from: (*found).clone(),
                from_expect: Box::new(found_entry),
                source: Box::new(source),
                hardlink,
            };
            a.status = Status::Dedup;
            a.reason = format!("{}; content already here as '{found}'", a.reason).into();
        }
    }
    Ok(())
}

/// The path on the other side a copy reads.
fn copy_from(op: &Op) -> &RelPath {
    match op {
        Op::Copy { from, .. } => from,
        _ => unreachable!("only copies are looked at"),
    }
}

/// Files on `side` with a size some copy needs, that this plan leaves alone, by size.
fn candidates(
    plan: &Plan,
    sides: &Sides,
    side: Side,
    copies: &[usize],
) -> HashMap<u64, Vec<RelPath>> {
    let sizes: HashSet<u64> = copies
        .iter()
        .filter_map(|&i| plan.actions[i].result().map(|e| e.size))
        .collect();
    let touched: HashSet<&RelPath> = plan
        .actions
        .iter()
        .filter(|a| a.side == side)
        .flat_map(|a| [&a.path, a.target()])
        .collect();
    let mut by_size: HashMap<u64, Vec<RelPath>> = HashMap::new();
    for (p, e) in &sides.trees[side as usize].entries {
        if e.is_file() && sizes.contains(&e.size) && !touched.contains(p) {
            by_size.entry(e.size).or_default().push(p.clone());
        }
    }
    by_size
}

/// Of `paths`, the files in `tree` whose digest is unknown.
fn unhashed<'a>(
    tree: &crate::core::tree::Tree,
    paths: impl Iterator<Item = &'a RelPath>,
) -> Vec<RelPath> {
    let mut v: Vec<RelPath> = paths
        .filter(|p| {
            tree.get(p)
                .is_some_and(|e| e.is_file() && e.digest.is_none())
        })
        .cloned()
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Hashes `paths` on `side` into its tree; a file that cannot be hashed is just not a
/// candidate (it is reported when it is read for real).
fn fill(sides: &mut Sides, side: Side, paths: &[RelPath]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let found = sides.endpoint(side).digests(paths)?;
    let tree = &mut sides.trees[side as usize];
    for (p, d) in found {
        if let (Ok(d), Some(e)) = (d, tree.entries.get_mut(&p)) {
            e.digest = Some(d);
        }
    }
    Ok(())
}

/// A hard link shares attributes: only when they are what the target must have anyway.
fn same_attributes(have: &Entry, want: &Entry) -> bool {
    have.mode == want.mode
        && have.uid == want.uid
        && have.gid == want.gid
        && have.mtime_ns == want.mtime_ns
}
