//! The reconciler: one row (baseline, local, remote) at a time, in tree order, decided by
//! direction and policy into actions and conflicts, with what a directory's decision means
//! for the rows below it.

use super::*;

pub(super) struct Reconciler<'a> {
    pub(super) base: &'a Tree,
    pub(super) local: &'a Tree,
    pub(super) remote: &'a Tree,
    pub(super) policy: &'a Policy,
    /// Every path of the three trees (and the unreadable ones), in tree order.
    pub(super) paths: &'a [&'a RelPath],
    /// The entries of `paths[i]`, found by merging the trees rather than by lookups.
    pub(super) rows: &'a [Row<'a>],
    /// The index in `paths` being decided: lookups of that path use its row.
    pub(super) hint: std::cell::Cell<usize>,
    pub(super) plan: Plan,
    pub(super) deleted: HashSet<(Side, RelPath)>,
    /// Set while planning the undoing of a deletion (the other side modified it).
    pub(super) restoring: bool,
    /// The reason of the last action pushed, shared with the next one that gives it.
    pub(super) last_reason: Option<Reason>,
}

impl<'a> Reconciler<'a> {
    pub(super) fn tree(&self, side: Side) -> &'a Tree {
        match side {
            Side::Local => self.local,
            Side::Remote => self.remote,
        }
    }

    pub(super) fn at(&self, side: Side, p: &RelPath) -> Option<&'a Entry> {
        match self.row(p) {
            Some(row) => row[1 + side as usize],
            None => self.tree(side).get(p),
        }
    }

    pub(super) fn at_base(&self, p: &RelPath) -> Option<&'a Entry> {
        match self.row(p) {
            Some(row) => row[0],
            None => self.base.get(p),
        }
    }

    /// The row of `p` when it is the path being decided (most lookups are).
    pub(super) fn row(&self, p: &RelPath) -> Option<&'a Row<'a>> {
        let i = self.hint.get();
        (self.paths.get(i) == Some(&p)).then(|| &self.rows[i])
    }

    pub(super) fn subtree_end(&self, i: usize, end: usize) -> usize {
        let p = self.paths[i];
        let mut j = i + 1;
        while j < end && self.paths[j].starts_with(p) {
            j += 1;
        }
        j
    }

    pub(super) fn problem(&self, p: &RelPath) -> bool {
        self.local.problems.contains_key(p) || self.remote.problems.contains_key(p)
    }

    pub(super) fn changed(&self, side: Side, p: &RelPath) -> bool {
        !same_state(self.at_base(p), self.at(side, p), self.policy.everything)
    }

    pub(super) fn same(&self, p: &RelPath) -> bool {
        same_state(
            self.at(Side::Local, p),
            self.at(Side::Remote, p),
            self.policy.everything,
        )
    }

    pub(super) fn walk(&mut self, start: usize, end: usize) {
        let mut i = start;
        while i < end {
            let p = self.paths[i];
            self.hint.set(i);
            let sub_end = self.subtree_end(i, end);
            if self.problem(p) {
                // Unreadable on one side: deciding anything here could delete what we
                // simply failed to see. The scanner has already reported it.
                i = sub_end;
                continue;
            }
            match self.policy.direction {
                Direction::Push => {
                    self.converge(p, Side::Local, p, "replica of local");
                    i += 1;
                }
                Direction::Pull => {
                    self.converge(p, Side::Remote, p, "replica of remote");
                    i += 1;
                }
                Direction::Bidi => {
                    let base_dir = self.at_base(p).is_some_and(|e| e.is_dir());
                    let dirlike = |e: Option<&Entry>| e.map_or(base_dir, |e| e.is_dir());
                    let (l, r) = (self.at(Side::Local, p), self.at(Side::Remote, p));
                    if dirlike(l) && dirlike(r) && (l.is_some() || r.is_some()) {
                        self.walk(i + 1, sub_end);
                        self.finish_dir(p, i + 1, sub_end);
                    } else {
                        self.decide_subtree(i, sub_end);
                    }
                    i = sub_end;
                }
            }
        }
    }

    /// A directory present on both sides, or deleted on one: its children are decided; now
    /// the directory itself.
    pub(super) fn finish_dir(&mut self, p: &RelPath, child_start: usize, child_end: usize) {
        let (l, r) = (self.at(Side::Local, p), self.at(Side::Remote, p));
        match (l, r) {
            (Some(l), Some(r)) => {
                if l.same_state(r, self.policy.everything) {
                    if self.changed(Side::Local, p) && self.changed(Side::Remote, p) {
                        self.plan.identical.push(p.clone());
                    }
                } else {
                    self.meta_divergence(child_start - 1, l, r);
                }
            }
            (None, Some(_)) => self.deleted_dir(p, Side::Local, child_start, child_end),
            (Some(_), None) => self.deleted_dir(p, Side::Remote, child_start, child_end),
            (None, None) => {}
        }
    }

    /// `gone` deleted directory `p`; the other side still has it. Whatever survives inside
    /// on the other side (modified or new there) keeps the directory; otherwise delete it.
    pub(super) fn deleted_dir(
        &mut self,
        p: &RelPath,
        gone: Side,
        child_start: usize,
        child_end: usize,
    ) {
        let keeper = gone.other();
        let survives = self.paths[child_start..child_end].iter().any(|q| {
            self.problem(q)
                || (self.at(keeper, q).is_some() && !self.deleted.contains(&(keeper, (*q).clone())))
        });
        let kept = self.at(keeper, p).expect("keeper has the directory");
        // Its mtime moves with whatever left it: only what else changed on the directory
        // itself (mode, owner, attributes) keeps it against the deletion.
        let edited = match self.at_base(p) {
            Some(b) if b.is_dir() => {
                let mut k = kept.clone();
                if k.mtime_ns != b.mtime_ns {
                    k.mtime_ns = b.mtime_ns;
                }
                !same_state(Some(b), Some(&k), self.policy.everything)
            }
            _ => true,
        };
        if survives || edited {
            let reason = format!(
                "deleted on {}, but contents changed on {}: restored",
                gone.word(),
                keeper.word()
            );
            self.restoring = true;
            self.create(gone, p, kept, p, &reason);
            self.restoring = false;
        } else {
            let reason = format!("deleted on {}", gone.word());
            self.delete(keeper, p, kept, &reason);
        }
    }

    /// Both sides have the same content at `p` but different metadata: merge it field by
    /// field. A field changed on one side only takes that side's value. A field changed on
    /// both sides to different values is a conflict like any other (mode, mtime, and with
    /// `-e` the owner), settled by `-f` — except a directory's mtime, which writing inside
    /// it changes on its own: the newer one wins.
    pub(super) fn meta_divergence(&mut self, i: usize, l: &Entry, r: &Entry) {
        let p = self.paths[i];
        self.hint.set(i);
        let b = self.at_base(p).filter(|b| b.kind == l.kind);
        let mut merged = l.clone();
        let mut clashes: Vec<&str> = Vec::new();
        if !l.is_symlink() {
            match merge_field(l.mode.into(), r.mode.into(), b.map(|b| b.mode.into())) {
                Some(m) => merged.mode = m as u32,
                None => clashes.push("mode"),
            }
        }
        match merge_field(l.mtime_ns, r.mtime_ns, b.map(|b| b.mtime_ns)) {
            Some(t) => merged.mtime_ns = t,
            None if l.is_dir() => merged.mtime_ns = l.mtime_ns.max(r.mtime_ns),
            None => clashes.push("modification time"),
        }
        if l.xattrs() != r.xattrs() {
            let base = b.map(|b| b.xattrs());
            match base {
                Some(bx) if bx == l.xattrs() => merged.set_xattrs(r.xattrs().cloned()),
                Some(bx) if bx == r.xattrs() => {}
                _ => clashes.push("ACLs or extended attributes"),
            }
        }
        // The owner is merged like the rest: when the attributes cross, an owner changed
        // with them crosses too. `-e` only decides whether owners that cannot be merged
        // are a conflict; without it the local side's stand.
        let uid = merge_field(l.uid.into(), r.uid.into(), b.map(|b| b.uid.into()));
        let gid = merge_field(l.gid.into(), r.gid.into(), b.map(|b| b.gid.into()));
        if self.policy.everything && (uid.is_none() || gid.is_none()) {
            clashes.push("owner");
        }
        merged.uid = uid.map_or(l.uid, |u| u as u32);
        merged.gid = gid.map_or(l.gid, |g| g as u32);
        // Owners that cannot be merged (and do not count, without `-e`) stay each side's.
        let own_owner = uid.is_none() || gid.is_none();
        if !clashes.is_empty() {
            let reason = format!("{} changed on both sides", clashes.join(" and "));
            match self.favored(i, i + 1) {
                Some(w) => {
                    let (from, to) = (self.at(w, p).unwrap(), self.at(w.other(), p).unwrap());
                    self.meta_or_stamp(w.other(), p, to, from, &reason);
                    self.conflict(p, reason, Resolution::Favored(w));
                }
                None => {
                    self.conflict(p, reason, Resolution::Unresolved);
                    if let Some(c) = self.plan.conflicts.last_mut() {
                        c.attributes_only = l.is_dir() && r.is_dir();
                    }
                }
            }
            return;
        }
        for (side, now) in [(Side::Local, l), (Side::Remote, r)] {
            if now.same_meta(&merged, self.policy.everything) {
                continue;
            }
            // Both sides arrived at the same contents independently: async's "exists".
            let both = self.changed(Side::Local, p) && self.changed(Side::Remote, p);
            let why = if both {
                "identical contents; attributes merged".to_string()
            } else {
                format!("attributes changed on {}", side.other().word())
            };
            let mut merged = merged.clone();
            if own_owner {
                (merged.uid, merged.gid) = (now.uid, now.gid);
            }
            // An owner that crosses with the other attributes goes with them.
            if now.is_dir() && now.same_attrs(&merged, true) {
                self.restamp(side, p, now, merged.mtime_ns, &why);
            } else {
                let status = if both { Status::Exists } else { Status::Moved };
                let op = Op::SetMeta {
                    source: merged.clone(),
                };
                self.push_action(side, p, op, Some(now), status, &why);
            }
        }
    }

    pub(super) fn decide_subtree(&mut self, i: usize, end: usize) {
        let range = &self.paths[i..end];
        let p = self.paths[i];
        self.hint.set(i);
        if range.iter().any(|q| self.problem(q)) {
            return;
        }
        let lc = range.iter().any(|q| self.changed(Side::Local, q));
        let rc = range.iter().any(|q| self.changed(Side::Remote, q));
        let all_same = range.iter().all(|q| self.same(q));
        if all_same {
            if lc && rc {
                for q in range {
                    if self.at(Side::Local, q).is_some() {
                        self.plan.identical.push((*q).clone());
                    }
                }
            }
            return;
        }
        let rest_same = range[1..].iter().all(|q| self.same(q));
        match (self.at(Side::Local, p), self.at(Side::Remote, p)) {
            _ if lc && !rc => self.propagate(Side::Local, i, end, "changed on local"),
            _ if rc && !lc => self.propagate(Side::Remote, i, end, "changed on remote"),
            (None, _) => self.restore(
                Side::Remote,
                i,
                end,
                "deleted on local, modified on remote: restored (modification wins)",
            ),
            (_, None) => self.restore(
                Side::Local,
                i,
                end,
                "deleted on remote, modified on local: restored (modification wins)",
            ),
            (Some(l), Some(r)) if rest_same && l.same_content(r) => self.meta_divergence(i, l, r),
            _ => self.content_conflict(i, end),
        }
    }

    pub(super) fn describe(&self, side: Side, p: &RelPath) -> String {
        let (b, x) = (self.at_base(p), self.at(side, p));
        let what = match (b, x) {
            (None, Some(x)) => format!("created {}", x.kind.word()),
            (Some(b), Some(x)) if b.kind != x.kind => format!("changed to {}", x.kind.word()),
            (Some(_), Some(x)) if x.is_dir() => "changed contents".to_string(),
            (_, Some(_)) => "modified".to_string(),
            (_, None) => "deleted".to_string(),
        };
        format!("{} {}", side.word(), what)
    }

    pub(super) fn content_conflict(&mut self, i: usize, end: usize) {
        let p = self.paths[i];
        self.hint.set(i);
        let reason = format!(
            "{}; {}",
            self.describe(Side::Local, p),
            self.describe(Side::Remote, p)
        );
        let winner = self.favored(i, end);
        if self.policy.keep_both {
            let winner = winner.or_else(|| self.newer(i, end)).unwrap_or(Side::Local);
            let loser = winner.other();
            if let Ok(loser_path) = p.with_suffix(self.policy.conflict_suffix(loser)) {
                self.keep_both(i, end, winner, &loser_path, &reason);
                self.conflict(p, reason, Resolution::KeptBoth { winner, loser_path });
                return;
            }
        }
        match winner {
            Some(w) => {
                let why = format!("conflict ({reason}), favoring {}", w.word());
                self.propagate(w, i, end, &why);
                self.conflict(p, reason, Resolution::Favored(w));
            }
            None => self.conflict(p, reason, Resolution::Unresolved),
        }
    }

    /// The winner by `-f`, if one is set and decisive.
    pub(super) fn favored(&self, i: usize, end: usize) -> Option<Side> {
        match self.policy.favor? {
            Favor::Side(s) => Some(s),
            Favor::New => self.newer(i, end),
            Favor::Old => self.newer(i, end).map(Side::other),
        }
    }

    /// The side whose subtree holds the newest modification time; `None` on a tie.
    pub(super) fn newer(&self, i: usize, end: usize) -> Option<Side> {
        let newest = |side: Side| {
            self.paths[i..end]
                .iter()
                .filter_map(|q| self.at(side, q).map(|e| e.mtime_ns))
                .max()
        };
        let (l, r) = (newest(Side::Local), newest(Side::Remote));
        match l.cmp(&r) {
            std::cmp::Ordering::Greater => Some(Side::Local),
            std::cmp::Ordering::Less => Some(Side::Remote),
            std::cmp::Ordering::Equal => None,
        }
    }

    /// Keep-both: rename the loser's version on its side, put the winner's version in its
    /// place, and copy the renamed loser to the winner's side.
    pub(super) fn keep_both(
        &mut self,
        i: usize,
        end: usize,
        winner: Side,
        loser_path: &RelPath,
        reason: &str,
    ) {
        let loser = winner.other();
        let p = self.paths[i];
        self.hint.set(i);
        let why = format!("conflict ({reason}): both kept");
        let loser_top = self.at(loser, p).cloned();
        self.plan.actions.push(Action {
            side: loser,
            path: p.clone(),
            op: Op::Rename {
                to: loser_path.clone(),
                source: None,
            },
            expect: loser_top.map(Box::new),
            status: Status::Moved,
            reason: why.as_str().into(),
            conflict_copy: true,
            restores: false,
        });
        for q in &self.paths[i..end] {
            if let Some(w) = self.at(winner, q) {
                self.create(loser, q, w, q, &why);
            }
            if let Some(l) = self.at(loser, q) {
                let renamed = q.rebase(p, loser_path);
                self.create(winner, &renamed, l, &renamed, &why);
            }
        }
    }

    pub(super) fn conflict(&mut self, p: &RelPath, reason: String, resolution: Resolution) {
        self.plan.conflicts.push(Conflict {
            path: p.clone(),
            reason,
            resolution,
            attributes_only: false,
        });
    }

    /// [`Self::propagate`], undoing the other side's deletion.
    pub(super) fn restore(&mut self, from: Side, i: usize, end: usize, reason: &str) {
        self.restoring = true;
        self.propagate(from, i, end, reason);
        self.restoring = false;
    }

    /// Makes `from`'s other side equal to `from` for every path in the range.
    pub(super) fn propagate(&mut self, from: Side, i: usize, end: usize, reason: &str) {
        for k in i..end {
            let q = self.paths[k];
            self.hint.set(k);
            self.converge(q, from, q, reason);
        }
    }

    /// Makes path `q` on `from.other()` equal to `src` on `from`.
    pub(super) fn converge(&mut self, q: &RelPath, from: Side, src: &RelPath, reason: &str) {
        let to = from.other();
        let (s, t) = (self.at(from, src), self.at(to, q));
        if same_state(s, t, self.policy.everything) {
            return;
        }
        match (s, t) {
            (None, None) => {}
            (None, Some(t)) => self.delete(to, q, t, reason),
            (Some(s), None) => self.create(to, q, s, src, reason),
            (Some(s), Some(t)) => {
                if (s.is_dir() && t.is_dir()) || (!s.is_dir() && !t.is_dir() && s.same_content(t)) {
                    self.meta_or_stamp(to, q, t, s, reason);
                } else if !s.is_dir() && !t.is_dir() {
                    self.push_action(
                        to,
                        q,
                        Op::Copy {
                            from: src.clone(),
                            source: s.clone(),
                        },
                        Some(t),
                        Status::Synchronized,
                        reason,
                    );
                } else {
                    // A type change between directory and non-directory: remove, then create.
                    self.delete(to, q, t, reason);
                    self.create(to, q, s, src, reason);
                }
            }
        }
    }

    pub(super) fn create(
        &mut self,
        to: Side,
        q: &RelPath,
        s: &Entry,
        from: &RelPath,
        reason: &str,
    ) {
        let op = if s.is_dir() {
            Op::Mkdir { source: s.clone() }
        } else {
            Op::Copy {
                from: from.clone(),
                source: s.clone(),
            }
        };
        self.push_action(to, q, op, None, Status::Synchronized, reason);
    }

    pub(super) fn delete(&mut self, side: Side, q: &RelPath, t: &Entry, reason: &str) {
        self.deleted.insert((side, q.clone()));
        self.push_action(side, q, Op::Delete, Some(t), Status::Deleted, reason);
    }

    /// Gives `t` (on `side`) the metadata of `s`: a restamp when only a directory's mtime
    /// differs, an attribute change otherwise.
    pub(super) fn meta_or_stamp(
        &mut self,
        side: Side,
        q: &RelPath,
        t: &Entry,
        s: &Entry,
        reason: &str,
    ) {
        if t.is_dir() && t.same_attrs(s, self.policy.everything) {
            self.restamp(side, q, t, s.mtime_ns, reason);
        } else {
            let op = Op::SetMeta { source: s.clone() };
            self.push_action(side, q, op, Some(t), Status::Moved, reason);
        }
    }

    pub(super) fn restamp(
        &mut self,
        side: Side,
        q: &RelPath,
        t: &Entry,
        mtime_ns: i64,
        reason: &str,
    ) {
        let op = Op::Restamp { mtime_ns };
        self.push_action(side, q, op, Some(t), Status::Moved, reason);
    }

    pub(super) fn push_action(
        &mut self,
        side: Side,
        q: &RelPath,
        op: Op,
        expect: Option<&Entry>,
        status: Status,
        reason: &str,
    ) {
        let reason = self.shared(reason);
        self.plan.actions.push(Action {
            side,
            path: q.clone(),
            op,
            expect: expect.cloned().map(Box::new),
            status,
            reason,
            conflict_copy: false,
            restores: self.restoring,
        });
    }

    /// `reason` as an action holds it: the previous action's copy when it is the same.
    pub(super) fn shared(&mut self, reason: &str) -> Reason {
        match &self.last_reason {
            Some(r) if **r == *reason => r.clone(),
            _ => self.last_reason.insert(reason.into()).clone(),
        }
    }
}
