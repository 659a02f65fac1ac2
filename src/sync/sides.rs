//! The sides of a run: the session locked and the baseline loaded, both trees scanned (what
//! the baseline already holds handed to the scans), the roots' own times, problems reported,
//! and the digests that reconciliation needs.

use super::*;

/// The roots' own entries (bidi reads them before the cycle writes inside them).
pub(super) type RootEntries = [Option<Entry>; 2];

/// Each root's own entry as found now, or `None` (reported) where it cannot be read.
pub(super) fn root_entries(sides: &mut Sides, run: &mut Run<'_>) -> Result<RootEntries> {
    let mut out = [None, None];
    for side in [Side::Local, Side::Remote] {
        match root_meta(sides, side, None, None)? {
            Ok(e) => out[side as usize] = Some(e),
            Err(e) => run.error(None, Some(side), &e),
        }
    }
    Ok(out)
}

/// Asks `side` for its root's entry after setting what is given.
pub(super) fn root_meta(
    sides: &mut Sides,
    side: Side,
    set: Option<i64>,
    mode: Option<u32>,
) -> Result<Result<Entry>> {
    let answer = sides
        .endpoint(side)
        .apply(&[Change::RootTime { set, mode }])?
        .pop();
    Ok(answer
        .unwrap_or_else(|| Err(Error::Protocol("no answer about the root".into())))
        .and_then(|e| e.ok_or_else(|| Error::Protocol("no root entry".into()))))
}

/// The roots end a cycle alike, as rsync leaves them: a one-way run gives the replica's
/// root its source's mtime and mode; bidi gives both the newer of the mtimes they had
/// before the cycle wrote inside them (the root is no entry of the trees, so no plan
/// restamps it).
pub(super) fn restamp_roots(
    job: &Job,
    sides: &mut Sides,
    before: RootEntries,
    run: &mut Run<'_>,
) -> Result<()> {
    let (targets, mtime_ns, mode) = match job.policy.direction {
        Direction::Push | Direction::Pull => {
            let source = if job.policy.direction == Direction::Push {
                Side::Local
            } else {
                Side::Remote
            };
            // One round trip each: the replica sets only what differs.
            let from = match root_meta(sides, source, None, None)? {
                Ok(from) => from,
                Err(e) => {
                    run.error(None, Some(source), &e);
                    return Ok(());
                }
            };
            (vec![source.other()], from.mtime_ns, Some(from.mode))
        }
        Direction::Bidi => {
            let [Some(l), Some(r)] = before else {
                return Ok(());
            };
            (
                vec![Side::Local, Side::Remote],
                l.mtime_ns.max(r.mtime_ns),
                None,
            )
        }
    };
    for side in targets {
        match root_meta(sides, side, Some(mtime_ns), mode)? {
            // Only the owner may set a directory's times: a root that belongs to someone
            // else keeps its own (rsync warns the same way).
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                let message = format!(
                    "the root on {} keeps its own time: {source}",
                    sides.endpoint(side).place()
                );
                run.reporter.event(&Event::Notice { message: &message });
            }
            Err(e) => run.error(None, Some(side), &e),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Checks the roots, takes the session lock and loads the baseline.
pub(super) fn prepare(job: &Job) -> Result<(crate::state::session::SessionLock, Baseline)> {
    roots_apart(&job.local_dir, &job.remote)?;
    let lock = job.session.lock()?;
    let old = Baseline::load(&job.session.baseline_path())?;
    let (local_root, remote_root) = roots(job);
    if let Some(b) = &old {
        if b.local_root != local_root || b.remote_root != remote_root {
            return Err(Error::State(format!(
                "session '{}' synchronizes '{}' with '{}', not '{}' with '{}'; choose another -N name",
                job.session.name, b.local_root, b.remote_root, local_root, remote_root
            )));
        }
    }
    Ok((lock, old.unwrap_or_default()))
}

/// The two roots as the user and the baseline name them.
pub(super) fn roots(job: &Job) -> (String, String) {
    (job.local_dir.display().to_string(), job.remote.display())
}

/// Both sides, open, with what the run knows of each tree.
pub(super) struct Sides {
    pub(super) local: Box<dyn Endpoint>,
    pub(super) remote: Box<dyn Endpoint>,
    /// Each side's tree as it is believed to be now (updated as the plan is carried out).
    pub(super) trees: [Tree; 2],
    /// Each root's identity.
    pub(super) ids: [crate::disk::fsops::RootId; 2],
    /// Partial transfers left on each side by an interrupted run.
    pub(super) partials: [crate::disk::scan::Partials; 2],
    /// How each root treats names, as probed by its first scan.
    pub(super) names: [NameRules; 2],
    /// What attributes each root keeps, as probed by its first scan.
    pub(super) holds: [names::Holds; 2],
    /// How this cycle's trees were aligned for roots that fold names.
    pub(super) alignment: Alignment,
}

impl Sides {
    /// What each root's probe found, for the baseline and later scans.
    pub(super) fn probed(&self) -> [Option<crate::state::known::Probed>; 2] {
        [0, 1].map(|i| {
            Some(crate::state::known::Probed {
                root: self.ids[i],
                names: self.names[i],
                holds: self.holds[i],
            })
        })
    }

    pub(super) fn endpoint(&mut self, side: Side) -> &mut dyn Endpoint {
        match side {
            Side::Local => self.local.as_mut(),
            Side::Remote => self.remote.as_mut(),
        }
    }
}

/// Scans both sides at once, reports what could not be read, and maps owners by name.
pub(super) fn first_scan(
    job: &Job,
    opened: Opened,
    old: &mut Baseline,
    run: &mut Run<'_>,
) -> Result<Sides> {
    let Opened {
        mut local,
        mut remote,
        notes,
    } = opened;
    for n in &notes {
        run.reporter.event(&Event::Notice { message: n });
    }
    // The baseline's attributes were read as this run reads them: an unchanged file's
    // are taken from it, not read again (the scans leave them unread).
    let knows = |side: Side| old.acls == job.acls && job.acls[side as usize] == AclMode::Native;
    let knows = [knows(Side::Local), knows(Side::Remote)];
    let Baseline {
        tree: base,
        caches: [local_cache, remote_cache],
        probed,
        ..
    } = old;
    let probed = *probed;
    let (ls, rs) = std::thread::scope(|s| {
        // Both trees fill their digests from the caches as entries come in, and hold what
        // they have in common with the baseline shared with it: paths, and the metadata
        // of every entry found as the baseline has it. Each side's cache, once its tree is
        // in, pairs the files that moved there and is let go, while the other side may
        // still be growing its tree.
        let l = s.spawn(|| {
            let known = Known::with_cache(base, local_cache)
                .with_xattrs(knows[0])
                .with_probed(probed[0]);
            let mut scan = local.scan(&job.filter, known)?;
            local_cache.spend_on(base, &mut scan.tree);
            Ok::<_, Error>(scan)
        });
        let known = Known::with_cache(base, remote_cache)
            .with_xattrs(knows[1])
            .with_probed(probed[1]);
        let mut r = remote.scan(&job.filter, known);
        if let Ok(r) = &mut r {
            remote_cache.spend_on(base, &mut r.tree);
        }
        (l.join().expect("scanner thread"), r)
    });
    let (mut ls, mut rs) = match (ls, rs) {
        (Ok(l), Ok(r)) => (l, r),
        (l, r) => {
            // The side that scanned has spent its cache: rebuilt, a retry fills again.
            if let Ok(l) = &l {
                local_cache.renew(base, &l.tree);
            }
            if let Ok(r) = &r {
                remote_cache.renew(base, &r.tree);
            }
            (l?, r?)
        }
    };
    read_unread_xattrs(job, local.as_mut(), &mut ls.tree)?;
    read_unread_xattrs(job, remote.as_mut(), &mut rs.tree)?;
    report_problems(run, Side::Local, local.place(), &ls.tree);
    report_problems(run, Side::Remote, remote.place(), &rs.tree);
    // Said once per run, not as a changed attribute of every file on every run.
    for (holds, place) in [(ls.holds, local.place()), (rs.holds, remote.place())] {
        if let Some(lacks) = holds.lacks() {
            let message = format!("{place} cannot keep {lacks}: not compared there");
            run.reporter.event(&Event::Notice { message: &message });
        }
    }
    let owners = [ls.owners.take(), rs.owners.take()];
    let remote = map_owners(job, remote, owners, &ls.tree, &mut rs.tree)?;
    Ok(Sides {
        local,
        remote,
        ids: [ls.root_id, rs.root_id],
        partials: [ls.partials, rs.partials],
        names: [ls.names, rs.names],
        holds: [ls.holds, rs.holds],
        alignment: Alignment::default(),
        trees: [ls.tree, rs.tree],
    })
}

/// Reads the ACLs and xattrs a scan left unread of files the baseline does not vouch for
/// (changed, moved or new since): one rescan of just those entries.
pub(super) fn read_unread_xattrs(job: &Job, ep: &mut dyn Endpoint, tree: &mut Tree) -> Result<()> {
    let unread: Vec<(RelPath, bool)> = tree
        .entries
        .iter()
        .filter(|(_, e)| crate::disk::xattrs::is_unread(e.xattrs()))
        .map(|(p, _)| (p.clone(), false))
        .collect();
    if unread.is_empty() {
        return Ok(());
    }
    let found = ep.rescan(&job.filter, &unread)?;
    for (p, _) in &unread {
        match found.tree.entries.get(p) {
            Some(e) => {
                let mut e = e.clone();
                // A moved file's digest came from the cache: still good for the same file.
                if let Some(was) = tree.entries.get(p) {
                    if (was.stamp, was.size, was.mtime_ns) == (e.stamp, e.size, e.mtime_ns) {
                        e.digest = e.digest.or(was.digest);
                    }
                }
                tree.entries.insert(p.clone(), e);
            }
            // Gone since the scan: as a rescan would find it.
            None => {
                tree.entries.remove(p);
            }
        }
        if let Some(why) = found.tree.problems.get(p) {
            tree.problems.insert(p.clone(), why.clone());
        }
    }
    Ok(())
}

/// Reports every path of `tree` that could not be read (exit bit 8 for permissions).
pub(super) fn report_problems(run: &mut Run<'_>, side: Side, place: &str, tree: &Tree) {
    for (path, why) in &tree.problems {
        let source = if why.contains("ermission denied") {
            std::io::ErrorKind::PermissionDenied.into()
        } else {
            std::io::Error::other(why.clone())
        };
        run.error(
            Some(path),
            Some(side),
            &Error::io("read", path, place, source),
        );
    }
}

/// How a directory left alone by `--exclude-dirs-older-than` is marked: as a path whose
/// state is unknown, so nothing at or below it is decided and its baseline stays.
pub(super) const TOO_OLD: &str = "older than --exclude-dirs-older-than: not descended into";

/// Marks directories older than `--exclude-dirs-older-than` on either side, on both sides.
pub(super) fn mark_old_dirs(job: &Job, trees: &mut [Tree; 2]) {
    for t in trees.iter_mut() {
        t.problems.retain(|_, why| why != TOO_OLD);
    }
    let Some(age) = job.exclude_dirs_older_than else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let cutoff = now.saturating_sub(age.as_nanos() as i64);
    let old: Vec<RelPath> = trees
        .iter()
        .flat_map(|t| {
            t.entries
                .iter()
                .filter(|(_, e)| e.is_dir() && e.mtime_ns < cutoff)
                .map(|(p, _)| p.clone())
        })
        .collect();
    for t in trees.iter_mut() {
        for p in &old {
            t.problems
                .entry(p.clone())
                .or_insert_with(|| TOO_OLD.into());
        }
    }
}

/// Fills digests from the hash cache (where the scan has not already) and hashes what
/// reconciliation needs to compare.
pub(super) fn hash(sides: &mut Sides, old: &mut Baseline, run: &mut Run<'_>) -> Result<()> {
    let [lt, rt] = &mut sides.trees;
    let Baseline { tree, caches, .. } = old;
    caches[0].fill(tree, lt);
    caches[1].fill(tree, rt);
    let [need_l, need_r] = digests_needed(&old.tree, lt, rt);
    for (side, need) in [(Side::Local, need_l), (Side::Remote, need_r)] {
        if need.is_empty() {
            continue;
        }
        run.summary.files_hashed += need.len() as u64;
        let found = sides.endpoint(side).digests(&need)?;
        let place = sides.endpoint(side).place().to_string();
        let tree = &mut sides.trees[side as usize];
        for (path, digest) in found {
            match digest {
                Ok(d) => {
                    if let Some(e) = tree.entries.get_mut(&path) {
                        e.digest = Some(d);
                    }
                }
                Err(why) => {
                    let source = std::io::Error::other(why.clone());
                    run.error(
                        Some(&path),
                        Some(side),
                        &Error::io("hash", &path, &place, source),
                    );
                    tree.problems.insert(path, why);
                }
            }
        }
    }
    Ok(())
}
