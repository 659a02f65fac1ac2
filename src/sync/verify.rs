//! `tandem verify`: both sides read every file the baseline agreed on and hash it where it
//! is (over SSH the agent hashes; only digests cross), and each file is judged against
//! the baseline's digest ([`crate::core::verify`]). With `--repair`, a corrupt copy is
//! replaced by the good one as a sync would replace it (a delta, checked, renamed into
//! place), the corrupt one kept first. Both sides read behind everything else on their
//! host (nice, idle I/O class).
//!
//! The steps: lock and load, scan both sides, choose what to read, read both sides at
//! once, judge, repair, record.

use std::collections::HashMap;
use std::sync::mpsc;

use super::*;
use crate::core::plan::{Action, Reason};
use crate::core::tree::Digest;
use crate::core::verify::{judge, looks_unchanged, Finding, Seen};
use crate::output::VerifyCounts;

/// What `tandem verify` is asked to do besides reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// `--repair`: copy the good version over a corrupt one.
    pub repair: bool,
    /// Report only what is wrong (continuous mode's background passes).
    pub problems_only: bool,
}

/// Most bytes, and files, one request for digests reads (progress moves per request).
const BATCH_BYTES: u64 = 32 << 20;
const BATCH_FILES: usize = 4096;

/// A file of the baseline to check, and on which sides it still looks unchanged.
struct Wanted {
    path: RelPath,
    digest: Option<Digest>,
    read: [bool; 2],
    size: u64,
}

/// What the reads found, per side.
type Found = [HashMap<RelPath, Result<Digest, String>>; 2];

/// Verifies a session's two trees against its baseline; returns the exit status.
pub fn verify(
    job: &Job,
    opts: VerifyOptions,
    reporter: &mut dyn Reporter,
    watch: &mut dyn Watch,
) -> ExitStatus {
    let mut run = Run::new(reporter, job);
    run.summary.verify = Some(VerifyCounts::default());
    if let Err(e) = verify_inner(job, opts, &mut run, watch) {
        run.error(None, None, &e);
    }
    watch.finish();
    run.finish()
}

fn verify_inner(
    job: &Job,
    opts: VerifyOptions,
    run: &mut Run<'_>,
    watch: &mut dyn Watch,
) -> Result<()> {
    if job.background {
        crate::disk::sys::lower_priority();
    }
    let (_lock, mut old) = prepare(job)?;
    if old.local_root.is_empty() {
        return Err(Error::State(format!(
            "session '{}' has no baseline yet: verify checks what a sync agreed on; run a sync first",
            job.session.name
        )));
    }
    run.phase("lock");
    let opened = open_endpoints(job)?;
    run.phase("connect");
    let mut sides = first_scan(job, opened, &mut old, run)?;
    sides.alignment = names::align(
        &mut old.tree,
        &mut sides.trees,
        sides.names,
        job.policy.direction,
    );
    run.phase("scan");
    let wanted = choose(old.tree.entries.iter(), &sides.trees);
    let found = read_both(&mut sides, &wanted, run, watch)?;
    run.phase("hash");
    let mut judged = judge_all(&wanted, &sides.trees, found);
    confirm(job, &mut sides, &old.tree, &mut judged)?;
    let findings: Vec<(RelPath, Finding)> =
        judged.into_iter().map(|j| (j.path, j.finding)).collect();
    let repaired = if opts.repair {
        repair(job, &mut sides, &findings, run)?
    } else {
        Vec::new()
    };
    run.phase("transfer");
    report(&findings, &repaired, opts, run);
    count_traffic(
        &mut run.summary,
        sides.local.as_ref(),
        sides.remote.as_ref(),
    );
    record(job, &mut sides, &mut old, &findings, &repaired)?;
    run.phase("commit");
    Ok(())
}

/// Every file of the baseline, with the sides on which it still has the baseline's size
/// and mtime (and could be read when scanned): those are read.
fn choose<'a>(
    base: impl Iterator<Item = (&'a RelPath, &'a Entry)>,
    trees: &[Tree; 2],
) -> Vec<Wanted> {
    base.filter(|(_, e)| e.is_file())
        .map(|(p, e)| Wanted {
            path: p.clone(),
            digest: e.digest,
            read: [0, 1].map(|i| {
                looks_unchanged(e, trees[i].get(p)) && !trees[i].has_problem_at_or_above(p)
            }),
            size: e.size,
        })
        .collect()
}

/// Reads what `wanted` names on both sides at once, in batches, moving the progress bar
/// as each batch is done.
fn read_both(
    sides: &mut Sides,
    wanted: &[Wanted],
    run: &mut Run<'_>,
    watch: &mut dyn Watch,
) -> Result<Found> {
    let lists = [0, 1].map(|i| {
        wanted
            .iter()
            .filter(|w| w.read[i])
            .map(|w| (w.path.clone(), w.size))
            .collect::<Vec<_>>()
    });
    let files = (lists[0].len() + lists[1].len()) as u64;
    let bytes: u64 = lists.iter().flatten().map(|(_, s)| s).sum();
    watch.start(files, bytes);
    let (tx, rx) = mpsc::channel::<(String, u64, u64)>();
    let [ll, rl] = &lists;
    let (local, remote) = (&mut sides.local, &mut sides.remote);
    let (l, r) = std::thread::scope(|s| {
        let ltx = tx.clone();
        let l = s.spawn(move || read_side(local.as_mut(), ll, &ltx));
        let r = s.spawn(move || read_side(remote.as_mut(), rl, &tx));
        // Progress from both sides until both are done (their senders dropped).
        for (first, n, b) in rx {
            watch.begin(&first, b);
            watch.advance(b);
            for _ in 0..n {
                watch.end();
            }
        }
        (
            l.join().expect("reader thread"),
            r.join().expect("reader thread"),
        )
    });
    let found = [l?, r?];
    run.summary.files_hashed += files;
    if let Some(v) = &mut run.summary.verify {
        v.bytes_read = bytes;
    }
    Ok(found)
}

/// Hashes `files` on one side, batch by batch, telling `progress` (first path, files,
/// bytes) after each.
fn read_side(
    ep: &mut dyn Endpoint,
    files: &[(RelPath, u64)],
    progress: &mpsc::Sender<(String, u64, u64)>,
) -> Result<HashMap<RelPath, Result<Digest, String>>> {
    let mut out = HashMap::with_capacity(files.len());
    let mut rest = files;
    while !rest.is_empty() {
        let mut n = 0;
        let mut bytes = 0;
        while n < rest.len() && n < BATCH_FILES && (n == 0 || bytes + rest[n].1 <= BATCH_BYTES) {
            bytes += rest[n].1;
            n += 1;
        }
        let (batch, more) = rest.split_at(n);
        rest = more;
        let paths: Vec<RelPath> = batch.iter().map(|(p, _)| p.clone()).collect();
        out.extend(ep.digests(&paths)?);
        let _ = progress.send((batch[0].0.to_string(), n as u64, bytes));
    }
    Ok(out)
}

/// One file judged: what each side's copy was found to be, and the verdict.
struct Judged {
    path: RelPath,
    digest: Option<Digest>,
    seen: [Seen; 2],
    finding: Finding,
}

/// Each file's finding, in tree order.
fn judge_all(wanted: &[Wanted], trees: &[Tree; 2], mut found: Found) -> Vec<Judged> {
    wanted
        .iter()
        .map(|w| {
            let seen = [0, 1].map(|i| {
                if !w.read[i] {
                    return match trees[i].problems.get(&w.path) {
                        Some(why) => Seen::Unreadable(why.clone()),
                        None => Seen::Changed,
                    };
                }
                match found[i].remove(&w.path) {
                    Some(Ok(d)) => Seen::Hashed(d),
                    // Edited while verify read it: the next sync's business.
                    Some(Err(why)) if why.starts_with("changed") => Seen::Changed,
                    Some(Err(why)) => Seen::Unreadable(why),
                    None => Seen::Changed,
                }
            });
            Judged {
                path: w.path.clone(),
                digest: w.digest,
                finding: judge(w.digest, &seen[0], &seen[1]),
                seen,
            }
        })
        .collect()
}

/// Looks again at every copy found wrong: one edited since the scan (its size or mtime
/// moved meanwhile) was read as it is now, not as the scan saw it, and is an edit, not
/// corruption. Rescans just those paths, once per side.
fn confirm(job: &Job, sides: &mut Sides, base: &Tree, judged: &mut [Judged]) -> Result<()> {
    let suspect = |f: &Finding| f.is_problem() && !matches!(f, Finding::Unreadable { .. });
    let paths: Vec<(RelPath, bool)> = judged
        .iter()
        .filter(|j| suspect(&j.finding))
        .map(|j| (j.path.clone(), false))
        .collect();
    if paths.is_empty() {
        return Ok(());
    }
    let mut now = Vec::new();
    for side in [Side::Local, Side::Remote] {
        now.push(sides.endpoint(side).rescan(&job.filter, &paths)?.tree);
    }
    for j in judged.iter_mut().filter(|j| suspect(&j.finding)) {
        let Some(base) = base.get(&j.path) else {
            continue;
        };
        for (i, tree) in now.iter().enumerate() {
            if !looks_unchanged(base, tree.get(&j.path)) {
                j.seen[i] = Seen::Changed;
            }
        }
        j.finding = judge(j.digest, &j.seen[0], &j.seen[1]);
    }
    Ok(())
}

/// A repair that was carried out: the file, the side fixed, and where the corrupt copy
/// was kept.
struct Repaired {
    path: RelPath,
    kept: String,
}

/// Copies the good version over every corrupt copy that has one, keeping the corrupt copy
/// first (in the side's keep directory, else beside it as `NAME.corrupt-<time>`).
fn repair(
    job: &Job,
    sides: &mut Sides,
    findings: &[(RelPath, Finding)],
    run: &mut Run<'_>,
) -> Result<Vec<Repaired>> {
    if !findings.iter().any(|(_, f)| f.repair().is_some()) {
        return Ok(Vec::new());
    }
    // Before anything is written in them: the roots' times to give back.
    let roots = root_entries(sides, run)?;
    let mut actions = Vec::new();
    let mut kept = HashMap::new();
    for (path, finding) in findings {
        let Some((bad, good)) = finding.repair() else {
            continue;
        };
        let (Some(now), Some(source)) = (
            sides.trees[bad as usize].get(path).cloned(),
            sides.trees[good as usize].get(path).cloned(),
        ) else {
            continue;
        };
        let Some(now) = keep_aside(job, sides, bad, path, now, run)? else {
            continue;
        };
        kept.insert(path.clone(), now.1);
        actions.push(Action {
            side: bad,
            path: path.clone(),
            op: Op::Copy {
                from: path.clone(),
                source,
            },
            expect: Some(Box::new(now.0)),
            status: Status::Repaired,
            reason: Reason::from("corrupt: repaired from the good copy".to_string()),
            conflict_copy: false,
            restores: false,
        });
    }
    if actions.is_empty() {
        return Ok(Vec::new());
    }
    let mut plan = Plan {
        actions,
        conflicts: Vec::new(),
        identical: Vec::new(),
    };
    // Repairs are few and small next to the reading: no second set of bars.
    let pending = execute(&mut plan, job, sides, run, &mut transfer::NoWatch);
    restamp_parents(sides, &plan.actions, &roots, run)?;
    sides.local.sync()?;
    sides.remote.sync()?;
    Ok(plan
        .actions
        .iter()
        .filter(|a| !pending.contains(&a.path))
        .map(|a| Repaired {
            path: a.path.clone(),
            kept: kept.remove(&a.path).unwrap_or_default(),
        })
        .collect())
}

/// Gives the directories a repair wrote in (its temporary file, the corrupt copy kept
/// beside) back the mtimes they had: the two trees agreed on them, and still do.
fn restamp_parents(
    sides: &mut Sides,
    actions: &[Action],
    roots: &RootEntries,
    run: &mut Run<'_>,
) -> Result<()> {
    for side in [Side::Local, Side::Remote] {
        let mut dirs: Vec<RelPath> = actions
            .iter()
            .filter(|a| a.side == side)
            .filter_map(|a| a.path.parent())
            .collect();
        dirs.sort();
        dirs.dedup();
        let tree = &sides.trees[side as usize];
        let mut changes: Vec<Change> = dirs
            .into_iter()
            .filter_map(|d| {
                let mtime_ns = tree.get(&d).filter(|e| e.is_dir())?.mtime_ns;
                Some(Change::Restamp { path: d, mtime_ns })
            })
            .collect();
        if actions.iter().any(|a| a.side == side) {
            if let Some(root) = &roots[side as usize] {
                changes.push(Change::RootTime {
                    set: Some(root.mtime_ns),
                    mode: None,
                });
            }
        }
        if changes.is_empty() {
            continue;
        }
        for r in sides.endpoint(side).apply(&changes)? {
            if let Err(e) = r {
                run.error(None, Some(side), &e);
            }
        }
    }
    Ok(())
}

/// Keeps the corrupt copy at `path` on `bad` before it is replaced: the side's keep
/// directory does that as the copy commits; without one, a hard link beside it. Returns
/// the copy as it is now (linking moves its ctime) and where it is kept, or `None` (the
/// error reported) if it could not be kept.
fn keep_aside(
    job: &Job,
    sides: &mut Sides,
    bad: Side,
    path: &RelPath,
    now: Entry,
    run: &mut Run<'_>,
) -> Result<Option<(Entry, String)>> {
    if let Some(dir) = &job.keep_dirs[bad as usize] {
        return Ok(Some((
            now,
            format!("in the keep directory '{}'", dir.display()),
        )));
    }
    let aside = match path.with_suffix(&corrupt_suffix()) {
        Ok(p) => p,
        Err(e) => {
            run.error(Some(path), Some(bad), &Error::Usage(e.to_string()));
            return Ok(None);
        }
    };
    let mut source = now.clone();
    // The link's content is the corrupt copy's; the digest only labels it.
    source.digest = Some(source.digest.unwrap_or(Digest([0; 32])));
    let change = Change::Dedup {
        path: aside.clone(),
        expect: None,
        from: path.clone(),
        from_expect: now.clone(),
        source,
        hardlink: true,
    };
    match sides.endpoint(bad).apply(&[change])?.pop() {
        Some(Ok(Some(linked))) => {
            let mut now = now;
            now.stamp = linked.stamp;
            Ok(Some((now, format!("as '{aside}'"))))
        }
        Some(Err(e)) => {
            run.error(Some(path), Some(bad), &e);
            Ok(None)
        }
        _ => Err(Error::Protocol(
            "no answer to keeping a corrupt copy".into(),
        )),
    }
}

/// `.corrupt-YYYYMMDD-HHMMSS`, the name a corrupt copy is kept under beside the file.
fn corrupt_suffix() -> String {
    format!(".corrupt-{}", crate::output::name_stamp())
}

/// One event per file, the counts, and the exit bits: 2 for corruption left in place, 8
/// for a file that could not be read.
fn report(
    findings: &[(RelPath, Finding)],
    repaired: &[Repaired],
    opts: VerifyOptions,
    run: &mut Run<'_>,
) {
    let fixed: HashMap<&RelPath, &str> = repaired
        .iter()
        .map(|r| (&r.path, r.kept.as_str()))
        .collect();
    let mut counts = run.summary.verify.take().unwrap_or_default();
    for (path, finding) in findings {
        let side = match finding {
            Finding::Corrupt { bad, .. } => Some(*bad),
            Finding::Unreadable { side, .. } => Some(*side),
            _ => None,
        };
        let mut detail = finding.detail();
        let mut status = finding.word().to_string();
        let mut bit = match finding {
            Finding::Unreadable { .. } => ExitStatus::PERMISSION,
            f if f.is_problem() => ExitStatus::CONFLICTS,
            _ => ExitStatus::OK,
        };
        match finding {
            Finding::Verified => counts.files_verified += 1,
            Finding::Recorded(_) => {
                counts.files_verified += 1;
                counts.digests_recorded += 1;
            }
            Finding::Changed => counts.files_edited += 1,
            Finding::Unreadable { .. } => counts.files_unreadable += 1,
            _ => counts.files_corrupt += 1,
        }
        if let (Some(kept), Some((bad, good))) = (fixed.get(path), finding.repair()) {
            counts.files_repaired += 1;
            status = format!("REPAIRED({})", bad.word());
            detail = format!(
                "the {} copy had changed though its size and mtime had not; replaced by the \
                 {} copy, the corrupt one kept {kept}",
                bad.word(),
                good.word()
            );
            bit = ExitStatus::OK;
        } else if opts.repair && finding.repair().is_some() {
            detail.push_str("; the repair failed (see above)");
        }
        run.exit |= bit;
        if opts.problems_only && bit == ExitStatus::OK {
            continue;
        }
        run.reporter.event(&Event::Verify {
            path,
            status: &status,
            side,
            detail: &detail,
            exit_bit: bit.0,
        });
    }
    if counts.digests_recorded > 0 && !opts.problems_only {
        let message = format!(
            "the baseline had no digest for {} files: recorded now, checked from the next verify on",
            counts.digests_recorded
        );
        run.reporter.event(&Event::Notice { message: &message });
    }
    run.summary.verify = Some(counts);
}

/// Records what verify learned: digests the baseline lacked, and repaired copies' new
/// stamps. Nothing learned: the baseline is left alone.
fn record(
    job: &Job,
    sides: &mut Sides,
    old: &mut Baseline,
    findings: &[(RelPath, Finding)],
    repaired: &[Repaired],
) -> Result<()> {
    let mut learned = !repaired.is_empty();
    let mut pending = Vec::new();
    for (path, finding) in findings {
        let digest = match finding {
            Finding::Recorded(d) => {
                learned = true;
                *d
            }
            Finding::Verified => match old.tree.get(path).and_then(|e| e.digest) {
                Some(d) => d,
                None => continue,
            },
            f if f.is_problem() && !repaired.iter().any(|r| r.path == *path) => {
                // What is wrong stays as the baseline had it, to be found again.
                pending.push(path.clone());
                continue;
            }
            _ => continue,
        };
        for tree in &mut sides.trees {
            if let Some(e) = tree.entries.get_mut(path) {
                if e.digest != Some(digest) {
                    e.digest = Some(digest);
                }
            }
        }
    }
    if !learned {
        return Ok(());
    }
    commit(job, sides, old, false, &pending)
}

/// A verify pass spread over a continuous run (`--verify-interval`): the baseline's files
/// in tree order, a slice at a time, with syncing going on in between. Only what is wrong
/// is reported; nothing is repaired or recorded (`tandem verify --repair` does that).
pub(super) struct Pass {
    /// The last path the previous slice checked.
    after: Option<RelPath>,
    /// What the pass has found so far.
    pub(super) counts: VerifyCounts,
    /// Exit bits of what it found.
    pub(super) exit: ExitStatus,
    /// When it began.
    pub(super) started: std::time::Instant,
}

impl Pass {
    /// A pass from the first file.
    pub(super) fn new() -> Pass {
        Pass {
            after: None,
            counts: VerifyCounts::default(),
            exit: ExitStatus::OK,
            started: std::time::Instant::now(),
        }
    }

    /// Verifies the next files, about `budget` bytes of them, against `base` (the
    /// trees in `sides` as the last cycle left them); returns the bytes read on both
    /// sides and whether the pass is through.
    pub(super) fn slice(
        &mut self,
        job: &Job,
        sides: &mut Sides,
        base: &Tree,
        budget: u64,
        reporter: &mut dyn Reporter,
    ) -> Result<(u64, bool)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let rest = match &self.after {
            Some(p) => base.entries.range((Excluded(p.clone()), Unbounded)),
            None => base.entries.range::<RelPath, _>(..),
        };
        let mut taken = 0u64;
        let mut through = true;
        let slice = rest.take_while(|(_, e)| {
            if taken >= budget {
                through = false;
                return false;
            }
            taken += if e.is_file() { e.size.max(1) } else { 0 };
            true
        });
        let mut last = None;
        let wanted = choose(
            slice.inspect(|(p, _)| last = Some((*p).clone())),
            &sides.trees,
        );
        if let Some(p) = last {
            self.after = Some(p);
        }
        let mut run = Run::new(reporter, job);
        run.summary.verify = Some(VerifyCounts::default());
        let found = read_both(sides, &wanted, &mut run, &mut transfer::NoWatch)?;
        let mut judged = judge_all(&wanted, &sides.trees, found);
        confirm(job, sides, base, &mut judged)?;
        let findings: Vec<(RelPath, Finding)> =
            judged.into_iter().map(|j| (j.path, j.finding)).collect();
        let opts = VerifyOptions {
            repair: false,
            problems_only: true,
        };
        report(&findings, &[], opts, &mut run);
        let got = run.summary.verify.take().unwrap_or_default();
        let c = &mut self.counts;
        c.files_verified += got.files_verified;
        c.files_corrupt += got.files_corrupt;
        c.files_unreadable += got.files_unreadable;
        c.files_edited += got.files_edited;
        c.bytes_read += got.bytes_read;
        self.exit |= run.exit;
        Ok((got.bytes_read, through))
    }
}
