//! Table tests over small literal trees, each run under its directions and mirrored
//! (sides swapped), then checked for convergence; plus property tests over random trees.
//!
//! Long by nature: it is the table of cases the core is held to.

use super::*;
use crate::core::plan::apply_to;
use crate::core::tree::{Digest, EntryKind, Meta, Stamp};
use proptest::prelude::*;

fn file_m(content: &str, mtime: i64, mode: u32) -> Entry {
    Entry::of(
        Meta {
            kind: EntryKind::File,
            size: content.len() as u64,
            mtime_ns: mtime,
            mode,
            uid: 1000,
            gid: 1000,
            digest: Some(Digest::of(content.as_bytes())),
            extra: None,
        },
        Stamp::default(),
    )
}
fn f(content: &str) -> Entry {
    file_m(content, 1000, 0o644)
}
fn ft(content: &str, mtime: i64) -> Entry {
    file_m(content, mtime, 0o644)
}
fn fmode(content: &str, mode: u32) -> Entry {
    file_m(content, 1000, mode)
}
fn other(kind: EntryKind, mode: u32) -> Entry {
    Entry::of(
        Meta {
            kind,
            size: 0,
            mtime_ns: 1000,
            mode,
            uid: 1000,
            gid: 1000,
            digest: None,
            extra: None,
        },
        Stamp::default(),
    )
}
fn d() -> Entry {
    other(EntryKind::Dir, 0o755)
}
fn dmode(mode: u32) -> Entry {
    other(EntryKind::Dir, mode)
}
fn dt(mtime: i64) -> Entry {
    edited(d(), |m| m.mtime_ns = mtime)
}
/// `e` with `edit` applied to its metadata.
fn edited(mut e: Entry, edit: impl FnOnce(&mut Meta)) -> Entry {
    edit(&mut e);
    e
}
fn l(target: &str) -> Entry {
    let mut e = other(EntryKind::Symlink, 0o777);
    e.set_target(target.as_bytes().to_vec());
    e
}
fn fifo() -> Entry {
    let mut e = other(EntryKind::Special, 0o644);
    e.set_special(0o010000, 0);
    e
}
/// `e` as a later name of the file whose first name is `first` (a hard link).
fn linked(mut e: Entry, first: &str) -> Entry {
    e.set_link(Some(p(first)));
    e
}
fn owned(mut e: Entry, uid: u32) -> Entry {
    e.uid = uid;
    e
}
fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}
fn t(entries: &[(&str, Entry)]) -> Tree {
    Tree {
        entries: entries.iter().map(|(k, e)| (p(k), e.clone())).collect(),
        problems: Default::default(),
    }
}
fn with_problem(mut tree: Tree, at: &str) -> Tree {
    tree.problems.insert(p(at), "permission denied".into());
    tree
}

fn side_char(s: Side) -> char {
    match s {
        Side::Local => 'L',
        Side::Remote => 'R',
    }
}

/// `L cp a`, `R rm d/x`, `R mv a b`, `L mkdir d`, `R meta a`.
fn describe(a: &Action) -> String {
    let s = side_char(a.side);
    match &a.op {
        Op::Copy { from, .. } if from != &a.path => format!("{s} cp {from} {}", a.path),
        Op::Copy { .. } => format!("{s} cp {}", a.path),
        Op::Mkdir { .. } => format!("{s} mkdir {}", a.path),
        Op::Delete => format!("{s} rm {}", a.path),
        Op::Rename { to, .. } => format!("{s} mv {} {to}", a.path),
        Op::SetMeta { .. } => format!("{s} meta {}", a.path),
        Op::Restamp { .. } => format!("{s} stamp {}", a.path),
        Op::Link { to, .. } => format!("{s} ln {to} {}", a.path),
        Op::Unlink { .. } => format!("{s} unlink {}", a.path),
        Op::Dedup { from, .. } => format!("{s} dedup {from} {}", a.path),
    }
}

/// `a unresolved`, `a favor L`, `a both L` (winner L).
fn describe_conflict(c: &Conflict) -> String {
    match &c.resolution {
        Resolution::Unresolved => format!("{} unresolved", c.path),
        Resolution::Favored(s) => format!("{} favor {}", c.path, side_char(*s)),
        Resolution::KeptBoth { winner, .. } => format!("{} both {}", c.path, side_char(*winner)),
    }
}

fn mirror_text(s: &str) -> String {
    let swap = |c: char| match c {
        'L' => 'R',
        'R' => 'L',
        c => c,
    };
    let mut chars: Vec<char> = s.chars().collect();
    if s.starts_with(['L', 'R']) {
        chars[0] = swap(chars[0]);
    }
    if s.ends_with(" L") || s.ends_with(" R") {
        let n = chars.len() - 1;
        chars[n] = swap(chars[n]);
    }
    chars.into_iter().collect()
}

fn sorted(v: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = v.into_iter().collect();
    v.sort();
    v
}

/// Applies a plan to copies of the trees the way a fully successful run would.
fn simulate(plan: &Plan, local: &Tree, remote: &Tree) -> (Tree, Tree) {
    let (mut l, mut r) = (local.clone(), remote.clone());
    for a in &plan.actions {
        let tree = match a.side {
            Side::Local => &mut l,
            Side::Remote => &mut r,
        };
        let result = match &a.op {
            Op::SetMeta { source }
            | Op::Rename {
                source: Some(source),
                ..
            } => {
                let mut e = *a.expect.clone().unwrap();
                (e.mode, e.mtime_ns, e.uid, e.gid) =
                    (source.mode, source.mtime_ns, source.uid, source.gid);
                Some(e)
            }
            Op::Link { to, source } => {
                let mut e = source.clone();
                e.set_link(Some(to.clone()));
                Some(e)
            }
            Op::Unlink { source } => {
                let mut e = source.clone();
                e.set_link(None);
                Some(e)
            }
            _ => a.result().cloned(),
        };
        apply_to(tree, a, result);
    }
    (l, r)
}

/// Reconciling again after a successful run must find nothing left to do.
fn assert_converges(
    name: &str,
    base: &Tree,
    local: &Tree,
    remote: &Tree,
    policy: &Policy,
    plan: &Plan,
) {
    let (l2, r2) = simulate(plan, local, remote);
    let pending: Vec<RelPath> = plan.unresolved().map(|c| c.path.clone()).collect();
    let b2 = next_baseline(base, &l2, &r2, &pending, policy.everything);
    let again = reconcile(&b2, &l2, &r2, policy);
    assert!(
        again.actions.is_empty(),
        "{name}: second run not empty: {:?}",
        again.actions.iter().map(describe).collect::<Vec<_>>()
    );
}

struct Case {
    name: &'static str,
    dirs: &'static [Direction],
    base: Tree,
    local: Tree,
    remote: Tree,
    favor: Option<Favor>,
    keep_both: bool,
    everything: bool,
    actions: &'static [&'static str],
    conflicts: &'static [&'static str],
    identical: &'static [&'static str],
}

const PUSH: &[Direction] = &[Direction::Push];
const BIDI: &[Direction] = &[Direction::Bidi];
const ALL: &[Direction] = &[Direction::Push, Direction::Bidi];

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            dirs: BIDI,
            base: Tree::default(),
            local: Tree::default(),
            remote: Tree::default(),
            favor: None,
            keep_both: false,
            everything: false,
            actions: &[],
            conflicts: &[],
            identical: &[],
        }
    }
}

fn run_case(c: &Case) {
    for &dir in c.dirs {
        for mirrored in [false, true] {
            let mut policy = Policy::new(dir);
            policy.favor = c.favor;
            policy.keep_both = c.keep_both;
            policy.everything = c.everything;
            let (local, remote) = if mirrored {
                (&c.remote, &c.local)
            } else {
                (&c.local, &c.remote)
            };
            if mirrored {
                policy = policy.mirrored();
            }
            let name = format!(
                "{} [{dir:?}{}]",
                c.name,
                if mirrored { ", mirrored" } else { "" }
            );
            let plan = reconcile(&c.base, local, remote, &policy);
            let fix = |s: &&str| {
                if mirrored {
                    mirror_text(s)
                } else {
                    s.to_string()
                }
            };
            // Directory restamps after content changes are checked only where a case lists them.
            let stamps = c.actions.iter().any(|a| a.contains(" stamp "));
            let got = sorted(
                plan.actions
                    .iter()
                    .map(describe)
                    .filter(|a| stamps || !a.contains(" stamp ")),
            );
            assert_eq!(got, sorted(c.actions.iter().map(fix)), "{name}: actions");
            let got = sorted(plan.conflicts.iter().map(describe_conflict));
            assert_eq!(
                got,
                sorted(c.conflicts.iter().map(fix)),
                "{name}: conflicts"
            );
            let got = sorted(plan.identical.iter().map(|p| p.to_string()));
            assert_eq!(
                got,
                sorted(c.identical.iter().map(|s| s.to_string())),
                "{name}: identical"
            );
            assert_converges(&name, &c.base, local, remote, &policy, &plan);
        }
    }
}

fn cases() -> Vec<Case> {
    vec![
        // ---- push (mirrored: pull) ----
        Case {
            name: "push copies a new file",
            dirs: PUSH,
            local: t(&[("a", f("1"))]),
            actions: &["R cp a"],
            ..Default::default()
        },
        Case {
            name: "push overwrites a modified remote file",
            dirs: PUSH,
            base: t(&[("a", f("1"))]),
            local: t(&[("a", f("1"))]),
            remote: t(&[("a", f("2"))]),
            actions: &["R cp a"],
            ..Default::default()
        },
        Case {
            name: "push sends a local modification",
            dirs: PUSH,
            base: t(&[("a", f("1"))]),
            local: t(&[("a", f("2"))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R cp a"],
            ..Default::default()
        },
        Case {
            name: "push deletes what only the remote has",
            dirs: PUSH,
            remote: t(&[("a", f("1"))]),
            actions: &["R rm a"],
            ..Default::default()
        },
        Case {
            name: "push propagates a local deletion",
            dirs: PUSH,
            base: t(&[("a", f("1"))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R rm a"],
            ..Default::default()
        },
        Case {
            name: "push creates nested directories parent first",
            dirs: PUSH,
            local: t(&[("d", d()), ("d/x", f("x")), ("d/y", d()), ("d/y/z", f("z"))]),
            actions: &["R mkdir d", "R cp d/x", "R mkdir d/y", "R cp d/y/z"],
            ..Default::default()
        },
        Case {
            name: "push leaves identical trees alone",
            dirs: PUSH,
            local: t(&[("a", f("1")), ("d", d())]),
            remote: t(&[("a", f("1")), ("d", d())]),
            ..Default::default()
        },
        Case {
            name: "push replaces a file with a directory",
            dirs: PUSH,
            local: t(&[("a", d()), ("a/x", f("x"))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R rm a", "R mkdir a", "R cp a/x"],
            ..Default::default()
        },
        Case {
            name: "push replaces a directory with a file",
            dirs: PUSH,
            local: t(&[("a", f("1"))]),
            remote: t(&[("a", d()), ("a/x", f("x"))]),
            actions: &["R rm a/x", "R rm a", "R cp a"],
            ..Default::default()
        },
        Case {
            name: "push creates a symlink",
            dirs: PUSH,
            local: t(&[("s", l("target"))]),
            actions: &["R cp s"],
            ..Default::default()
        },
        Case {
            name: "push retargets a symlink",
            dirs: PUSH,
            local: t(&[("s", l("new"))]),
            remote: t(&[("s", l("old"))]),
            actions: &["R cp s"],
            ..Default::default()
        },
        Case {
            name: "push replaces a file by a symlink",
            dirs: PUSH,
            local: t(&[("s", l("x"))]),
            remote: t(&[("s", f("1"))]),
            actions: &["R cp s"],
            ..Default::default()
        },
        Case {
            name: "push fixes a mode difference only",
            dirs: PUSH,
            local: t(&[("a", fmode("1", 0o755))]),
            remote: t(&[("a", fmode("1", 0o644))]),
            actions: &["R meta a"],
            ..Default::default()
        },
        Case {
            name: "push fixes an mtime difference only",
            dirs: PUSH,
            local: t(&[("a", ft("1", 2000))]),
            remote: t(&[("a", ft("1", 1000))]),
            actions: &["R meta a"],
            ..Default::default()
        },
        Case {
            name: "push deletes a whole remote tree",
            dirs: PUSH,
            remote: t(&[("d", d()), ("d/x", f("x")), ("d/y", f("y"))]),
            actions: &["R rm d/x", "R rm d/y", "R rm d"],
            ..Default::default()
        },
        Case {
            name: "push replays a rename as a move",
            dirs: PUSH,
            base: t(&[("a", f("1"))]),
            local: t(&[("b", f("1"))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R mv a b"],
            ..Default::default()
        },
        Case {
            name: "push ignores conflicts: the near side wins",
            dirs: PUSH,
            base: t(&[("a", f("1"))]),
            local: t(&[("a", f("2"))]),
            remote: t(&[("a", f("3"))]),
            actions: &["R cp a"],
            ..Default::default()
        },
        Case {
            name: "push fixes a directory mode",
            dirs: PUSH,
            local: t(&[("d", dmode(0o700))]),
            remote: t(&[("d", dmode(0o755))]),
            actions: &["R meta d"],
            ..Default::default()
        },
        Case {
            name: "push with both sides empty does nothing",
            dirs: PUSH,
            ..Default::default()
        },
        Case {
            name: "push ignores owner differences without -e",
            dirs: PUSH,
            local: t(&[("a", owned(f("1"), 1))]),
            remote: t(&[("a", owned(f("1"), 2))]),
            ..Default::default()
        },
        Case {
            name: "push with -e fixes owner differences",
            dirs: PUSH,
            everything: true,
            local: t(&[("a", owned(f("1"), 1))]),
            remote: t(&[("a", owned(f("1"), 2))]),
            actions: &["R meta a"],
            ..Default::default()
        },
        Case {
            name: "push creates a special file",
            dirs: PUSH,
            local: t(&[("p", fifo())]),
            actions: &["R cp p"],
            ..Default::default()
        },
        Case {
            name: "push does not touch what the remote cannot read",
            dirs: PUSH,
            remote: with_problem(t(&[("d", d()), ("d/x", f("x"))]), "d"),
            ..Default::default()
        },
        // ---- bidi ----
        Case {
            name: "unchanged on both sides does nothing",
            dirs: ALL,
            base: t(&[("a", f("1"))]),
            local: t(&[("a", f("1"))]),
            remote: t(&[("a", f("1"))]),
            ..Default::default()
        },
        Case {
            name: "new local file goes to the remote",
            dirs: ALL,
            local: t(&[("a", f("1"))]),
            actions: &["R cp a"],
            ..Default::default()
        },
        Case {
            name: "local modification propagates",
            dirs: ALL,
            base: t(&[("a", f("1"))]),
            local: t(&[("a", f("2"))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R cp a"],
            ..Default::default()
        },
        Case {
            name: "local deletion propagates",
            dirs: ALL,
            base: t(&[("a", f("1"))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R rm a"],
            ..Default::default()
        },
        Case {
            name: "deleted on both sides is agreement",
            base: t(&[("a", f("1"))]),
            ..Default::default()
        },
        Case {
            name: "modified alike on both sides is agreement",
            base: t(&[("a", f("1"))]),
            local: t(&[("a", f("2"))]),
            remote: t(&[("a", f("2"))]),
            identical: &["a"],
            ..Default::default()
        },
        Case {
            name: "modified differently is a conflict left alone",
            base: t(&[("a", f("1"))]),
            local: t(&[("a", f("2"))]),
            remote: t(&[("a", f("3"))]),
            conflicts: &["a unresolved"],
            ..Default::default()
        },
        Case {
            name: "conflict with -f src takes local",
            favor: Some(Favor::Side(Side::Local)),
            base: t(&[("a", f("1"))]),
            local: t(&[("a", f("2"))]),
            remote: t(&[("a", f("3"))]),
            actions: &["R cp a"],
            conflicts: &["a favor L"],
            ..Default::default()
        },
        Case {
            name: "conflict with -f dst takes remote",
            favor: Some(Favor::Side(Side::Remote)),
            base: t(&[("a", f("1"))]),
            local: t(&[("a", f("2"))]),
            remote: t(&[("a", f("3"))]),
            actions: &["L cp a"],
            conflicts: &["a favor R"],
            ..Default::default()
        },
        Case {
            name: "conflict with -f new takes the newer",
            favor: Some(Favor::New),
            base: t(&[("a", f("1"))]),
            local: t(&[("a", ft("2", 3000))]),
            remote: t(&[("a", ft("3", 2000))]),
            actions: &["R cp a"],
            conflicts: &["a favor L"],
            ..Default::default()
        },
        Case {
            name: "conflict with -f old takes the older",
            favor: Some(Favor::Old),
            base: t(&[("a", f("1"))]),
            local: t(&[("a", ft("2", 3000))]),
            remote: t(&[("a", ft("3", 2000))]),
            actions: &["L cp a"],
            conflicts: &["a favor R"],
            ..Default::default()
        },
        Case {
            name: "conflict with -f new and equal mtimes stays unresolved",
            favor: Some(Favor::New),
            base: t(&[("a", f("1"))]),
            local: t(&[("a", ft("2", 3000))]),
            remote: t(&[("a", ft("3", 3000))]),
            conflicts: &["a unresolved"],
            ..Default::default()
        },
        Case {
            name: "keep-both renames the older remote version",
            keep_both: true,
            base: t(&[("a", f("1"))]),
            local: t(&[("a", ft("2", 3000))]),
            remote: t(&[("a", ft("3", 2000))]),
            actions: &[
                "R mv a a.conflict-remote",
                "R cp a",
                "L cp a.conflict-remote",
            ],
            conflicts: &["a both L"],
            ..Default::default()
        },
        Case {
            name: "keep-both with -f dst keeps the remote name",
            keep_both: true,
            favor: Some(Favor::Side(Side::Remote)),
            base: t(&[("a", f("1"))]),
            local: t(&[("a", ft("2", 3000))]),
            remote: t(&[("a", ft("3", 2000))]),
            actions: &["L mv a a.conflict-local", "L cp a", "R cp a.conflict-local"],
            conflicts: &["a both R"],
            ..Default::default()
        },
        Case {
            name: "modification beats deletion",
            base: t(&[("a", f("1"))]),
            remote: t(&[("a", f("2"))]),
            actions: &["L cp a"],
            ..Default::default()
        },
        Case {
            name: "modification beats deletion even with -f",
            favor: Some(Favor::Side(Side::Local)),
            base: t(&[("a", f("1"))]),
            remote: t(&[("a", f("2"))]),
            actions: &["L cp a"],
            ..Default::default()
        },
        Case {
            name: "first run copies one-sided files both ways",
            local: t(&[("a", f("1"))]),
            remote: t(&[("b", f("2"))]),
            actions: &["R cp a", "L cp b"],
            ..Default::default()
        },
        Case {
            name: "first run records identical files",
            local: t(&[("a", f("1"))]),
            remote: t(&[("a", f("1"))]),
            identical: &["a"],
            ..Default::default()
        },
        Case {
            name: "first run conflicts on different files",
            local: t(&[("a", f("1"))]),
            remote: t(&[("a", f("2"))]),
            conflicts: &["a unresolved"],
            ..Default::default()
        },
        Case {
            name: "first run merges directories",
            local: t(&[("d", d()), ("d/x", f("x"))]),
            remote: t(&[("d", d()), ("d/y", f("y"))]),
            actions: &["R cp d/x", "L cp d/y"],
            identical: &["d"],
            ..Default::default()
        },
        Case {
            name: "first run creates an empty directory",
            local: t(&[("d", d())]),
            actions: &["R mkdir d"],
            ..Default::default()
        },
        Case {
            name: "directory deleted with unchanged contents",
            base: t(&[("d", d()), ("d/x", f("x")), ("d/y", f("y"))]),
            remote: t(&[("d", d()), ("d/x", f("x")), ("d/y", f("y"))]),
            actions: &["R rm d/x", "R rm d/y", "R rm d"],
            ..Default::default()
        },
        Case {
            name: "directory deleted but a file inside modified",
            base: t(&[("d", d()), ("d/x", f("1")), ("d/y", f("y"))]),
            remote: t(&[("d", d()), ("d/x", f("2")), ("d/y", f("y"))]),
            actions: &["L mkdir d", "L cp d/x", "R rm d/y"],
            ..Default::default()
        },
        Case {
            name: "directory deleted but a file added inside",
            base: t(&[("d", d()), ("d/x", f("x"))]),
            remote: t(&[("d", d()), ("d/x", f("x")), ("d/n", f("n"))]),
            actions: &["L mkdir d", "L cp d/n", "R rm d/x"],
            ..Default::default()
        },
        Case {
            // Emptying a directory moves its mtime: the echo of the deletions, not an edit
            // that could beat the other side's deletion of it.
            name: "directory deleted on one side and emptied on the other stays deleted",
            base: t(&[("d", d()), ("d/x", f("x")), ("d/y", f("y"))]),
            remote: t(&[("d", dt(2000)), ("e", d()), ("e/x", f("x"))]),
            actions: &["L mkdir e", "L cp e/x", "R rm d"],
            ..Default::default()
        },
        Case {
            name: "directory deleted but its mode changed keeps it",
            base: t(&[("d", d())]),
            remote: t(&[("d", dmode(0o700))]),
            actions: &["L mkdir d"],
            ..Default::default()
        },
        Case {
            name: "nested directory deleted under a kept parent",
            base: t(&[("d", d()), ("d/e", d()), ("d/e/x", f("x"))]),
            local: t(&[("d", d())]),
            remote: t(&[("d", d()), ("d/e", d()), ("d/e/x", f("x"))]),
            actions: &["R rm d/e/x", "R rm d/e"],
            ..Default::default()
        },
        Case {
            name: "file becomes a directory on one side",
            base: t(&[("a", f("1"))]),
            local: t(&[("a", d()), ("a/x", f("x"))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R rm a", "R mkdir a", "R cp a/x"],
            ..Default::default()
        },
        Case {
            name: "directory becomes a file on one side",
            base: t(&[("a", d()), ("a/x", f("x"))]),
            local: t(&[("a", f("1"))]),
            remote: t(&[("a", d()), ("a/x", f("x"))]),
            actions: &["R rm a/x", "R rm a", "R cp a"],
            ..Default::default()
        },
        Case {
            name: "type change against modified contents is a conflict",
            base: t(&[("a", d()), ("a/x", f("1"))]),
            local: t(&[("a", f("1"))]),
            remote: t(&[("a", d()), ("a/x", f("2"))]),
            conflicts: &["a unresolved"],
            ..Default::default()
        },
        Case {
            name: "type change conflict settled by -f src",
            favor: Some(Favor::Side(Side::Local)),
            base: t(&[("a", d()), ("a/x", f("1"))]),
            local: t(&[("a", f("1"))]),
            remote: t(&[("a", d()), ("a/x", f("2"))]),
            actions: &["R rm a/x", "R rm a", "R cp a"],
            conflicts: &["a favor L"],
            ..Default::default()
        },
        Case {
            name: "same type change on both sides is agreement",
            base: t(&[("a", f("1"))]),
            local: t(&[("a", d())]),
            remote: t(&[("a", d())]),
            identical: &["a"],
            ..Default::default()
        },
        Case {
            name: "file against symlink on first run is a conflict",
            local: t(&[("a", f("1"))]),
            remote: t(&[("a", l("x"))]),
            conflicts: &["a unresolved"],
            ..Default::default()
        },
        Case {
            name: "symlink retargeted on one side",
            base: t(&[("s", l("x"))]),
            local: t(&[("s", l("y"))]),
            remote: t(&[("s", l("x"))]),
            actions: &["R cp s"],
            ..Default::default()
        },
        Case {
            name: "symlinks retargeted differently conflict",
            base: t(&[("s", l("x"))]),
            local: t(&[("s", l("y"))]),
            remote: t(&[("s", l("z"))]),
            conflicts: &["s unresolved"],
            ..Default::default()
        },
        Case {
            name: "rename replayed as a move",
            base: t(&[("a", f("1"))]),
            local: t(&[("b", f("1"))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R mv a b"],
            ..Default::default()
        },
        Case {
            name: "move into a new directory",
            base: t(&[("a", f("1"))]),
            local: t(&[("d", d()), ("d/a", f("1"))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R mkdir d", "R mv a d/a"],
            ..Default::default()
        },
        Case {
            name: "rename plus edit is delete plus copy",
            base: t(&[("a", f("1"))]),
            local: t(&[("b", f("2"))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R rm a", "R cp b"],
            ..Default::default()
        },
        Case {
            name: "directory rename moves each file",
            base: t(&[("d", d()), ("d/x", f("x")), ("d/y", f("y"))]),
            local: t(&[("e", d()), ("e/x", f("x")), ("e/y", f("y"))]),
            remote: t(&[("d", d()), ("d/x", f("x")), ("d/y", f("y"))]),
            actions: &["R mkdir e", "R mv d/x e/x", "R mv d/y e/y", "R rm d"],
            ..Default::default()
        },
        Case {
            name: "case-only rename is a move",
            base: t(&[("Readme", f("1"))]),
            local: t(&[("README", f("1"))]),
            remote: t(&[("Readme", f("1"))]),
            actions: &["R mv Readme README"],
            ..Default::default()
        },
        Case {
            name: "NFC and NFD names are distinct entries, both kept",
            local: t(&[("caf\u{e9}", f("1"))]),
            remote: t(&[("cafe\u{301}", f("2"))]),
            actions: &["R cp caf\u{e9}", "L cp cafe\u{301}"],
            ..Default::default()
        },
        Case {
            name: "two identical files deleted and two created pair once each",
            base: t(&[("a", f("1")), ("b", f("1"))]),
            local: t(&[("c", f("1")), ("e", f("1"))]),
            remote: t(&[("a", f("1")), ("b", f("1"))]),
            actions: &["R mv a e", "R mv b c"],
            ..Default::default()
        },
        Case {
            name: "mode change on one side",
            base: t(&[("a", fmode("1", 0o644))]),
            local: t(&[("a", fmode("1", 0o755))]),
            remote: t(&[("a", fmode("1", 0o644))]),
            actions: &["R meta a"],
            ..Default::default()
        },
        Case {
            name: "modes changed differently are a conflict, even without -e",
            base: t(&[("a", fmode("1", 0o644))]),
            local: t(&[("a", fmode("1", 0o755))]),
            remote: t(&[("a", fmode("1", 0o600))]),
            conflicts: &["a unresolved"],
            ..Default::default()
        },
        Case {
            name: "hard-linked names are sent once and linked on the target",
            dirs: PUSH,
            local: t(&[
                ("a", f("1")),
                ("b", linked(f("1"), "a")),
                ("c", linked(f("1"), "a")),
            ]),
            actions: &["R cp a", "R ln a b", "R ln a c"],
            ..Default::default()
        },
        Case {
            name: "a new link to a file in place costs nothing, even when it sorts first",
            dirs: PUSH,
            base: t(&[("one", f("1")), ("two", linked(f("1"), "one"))]),
            local: t(&[
                ("four", f("1")),
                ("one", linked(f("1"), "four")),
                ("two", linked(f("1"), "four")),
            ]),
            remote: t(&[("one", f("1")), ("two", linked(f("1"), "one"))]),
            actions: &["R ln one four"],
            ..Default::default()
        },
        Case {
            name: "a link broken on the source is broken on the target",
            dirs: PUSH,
            base: t(&[("a", f("1")), ("b", linked(f("1"), "a"))]),
            local: t(&[("a", f("1")), ("b", f("1"))]),
            remote: t(&[("a", f("1")), ("b", linked(f("1"), "a"))]),
            actions: &["R unlink b"],
            ..Default::default()
        },
        Case {
            name: "bidi adds a link made on either side",
            base: t(&[("a", f("1")), ("b", f("1"))]),
            local: t(&[("a", f("1")), ("b", f("1"))]),
            remote: t(&[("a", f("1")), ("b", linked(f("1"), "a"))]),
            actions: &["L ln a b"],
            ..Default::default()
        },
        Case {
            name: "mode conflict settled by -f new",
            favor: Some(Favor::New),
            base: t(&[("a", file_m("1", 1000, 0o644))]),
            local: t(&[("a", file_m("1", 3000, 0o755))]),
            remote: t(&[("a", file_m("1", 2000, 0o600))]),
            actions: &["R meta a"],
            conflicts: &["a favor L"],
            ..Default::default()
        },
        Case {
            name: "mtimes changed differently on identical contents are a conflict",
            base: t(&[("a", ft("1", 1000))]),
            local: t(&[("a", ft("1", 2000))]),
            remote: t(&[("a", ft("1", 3000))]),
            conflicts: &["a unresolved"],
            ..Default::default()
        },
        Case {
            name: "a mode change on one side and an mtime change on the other both propagate",
            base: t(&[("a", file_m("1", 1000, 0o644))]),
            local: t(&[("a", file_m("1", 1000, 0o600))]),
            remote: t(&[("a", file_m("1", 2000, 0o644))]),
            actions: &["L meta a", "R meta a"],
            ..Default::default()
        },
        Case {
            name: "a symlink's mtime change alone propagates",
            dirs: ALL,
            base: t(&[("s", l("x"))]),
            local: t(&[("s", edited(l("x"), |m| m.mtime_ns = 5000))]),
            remote: t(&[("s", l("x"))]),
            actions: &["R meta s"],
            ..Default::default()
        },
        Case {
            name: "a symlink's owner change propagates with -e",
            everything: true,
            base: t(&[("s", l("x"))]),
            local: t(&[("s", l("x"))]),
            remote: t(&[("s", owned(l("x"), 0))]),
            actions: &["L meta s"],
            ..Default::default()
        },
        Case {
            name: "a fifo's mtime change alone propagates",
            base: t(&[("p", fifo())]),
            local: t(&[("p", fifo())]),
            remote: t(&[("p", edited(fifo(), |m| m.mtime_ns = 9000))]),
            actions: &["L meta p"],
            ..Default::default()
        },
        Case {
            name: "a directory's group changed on the far side reaches the near side",
            everything: true,
            base: t(&[("d", d())]),
            local: t(&[("d", d())]),
            remote: t(&[("d", edited(d(), |m| m.gid = 50))]),
            actions: &["L meta d"],
            ..Default::default()
        },
        Case {
            name: "a directory's mtime alone is restamped, quietly",
            dirs: ALL,
            base: t(&[("d", dt(1000))]),
            local: t(&[("d", dt(7000))]),
            remote: t(&[("d", dt(1000))]),
            actions: &["R stamp d"],
            ..Default::default()
        },
        Case {
            name: "directory mtimes changed on both sides: the newer wins, no conflict",
            base: t(&[("d", dt(1000))]),
            local: t(&[("d", dt(7000))]),
            remote: t(&[("d", dt(5000))]),
            actions: &["R stamp d"],
            ..Default::default()
        },
        Case {
            name: "a directory whose contents change is restamped to the source's time",
            dirs: ALL,
            base: t(&[("d", dt(1000)), ("d/x", f("1"))]),
            local: t(&[("d", dt(2000)), ("d/x", f("1")), ("d/y", f("2"))]),
            remote: t(&[("d", dt(1000)), ("d/x", f("1"))]),
            actions: &["R cp d/y", "R stamp d"],
            ..Default::default()
        },
        Case {
            name: "new directories are restamped after their contents are written",
            dirs: ALL,
            local: t(&[("d", dt(3000)), ("d/e", dt(4000)), ("d/e/x", f("1"))]),
            actions: &[
                "R mkdir d",
                "R mkdir d/e",
                "R cp d/e/x",
                "R stamp d",
                "R stamp d/e",
            ],
            ..Default::default()
        },
        Case {
            name: "modes changed differently conflict with -e",
            everything: true,
            base: t(&[("a", fmode("1", 0o644))]),
            local: t(&[("a", fmode("1", 0o755))]),
            remote: t(&[("a", fmode("1", 0o600))]),
            conflicts: &["a unresolved"],
            ..Default::default()
        },
        Case {
            name: "mode conflict with -e settled by -f src",
            everything: true,
            favor: Some(Favor::Side(Side::Local)),
            base: t(&[("a", fmode("1", 0o644))]),
            local: t(&[("a", fmode("1", 0o755))]),
            remote: t(&[("a", fmode("1", 0o600))]),
            actions: &["R meta a"],
            conflicts: &["a favor L"],
            ..Default::default()
        },
        Case {
            name: "touched file sends only its mtime",
            base: t(&[("a", ft("1", 1000))]),
            local: t(&[("a", ft("1", 2000))]),
            remote: t(&[("a", ft("1", 1000))]),
            actions: &["R meta a"],
            ..Default::default()
        },
        Case {
            name: "directory mode changed on one side",
            base: t(&[("d", d())]),
            local: t(&[("d", d())]),
            remote: t(&[("d", dmode(0o700))]),
            actions: &["L meta d"],
            ..Default::default()
        },
        Case {
            name: "new remote tree is created locally",
            remote: t(&[("d", d()), ("d/e", d()), ("d/e/f", f("f"))]),
            actions: &["L mkdir d", "L mkdir d/e", "L cp d/e/f"],
            ..Default::default()
        },
        Case {
            name: "same file deleted on both sides inside a kept dir",
            base: t(&[("d", d()), ("d/x", f("x"))]),
            local: t(&[("d", d())]),
            remote: t(&[("d", d())]),
            ..Default::default()
        },
        Case {
            name: "conflict inside a common directory",
            base: t(&[("d", d()), ("d/x", f("1"))]),
            local: t(&[("d", d()), ("d/x", f("2"))]),
            remote: t(&[("d", d()), ("d/x", f("3"))]),
            conflicts: &["d/x unresolved"],
            ..Default::default()
        },
        Case {
            name: "keep-both of a directory against a file",
            keep_both: true,
            local: t(&[("a", dt(5000)), ("a/x", ft("1", 5000))]),
            remote: t(&[("a", ft("2", 2000))]),
            actions: &[
                "R mv a a.conflict-remote",
                "R mkdir a",
                "R cp a/x",
                "L cp a.conflict-remote",
            ],
            conflicts: &["a both L"],
            ..Default::default()
        },
        Case {
            name: "new special file",
            local: t(&[("p", fifo())]),
            actions: &["R cp p"],
            ..Default::default()
        },
        Case {
            name: "unreadable local directory deletes nothing remote",
            base: t(&[("d", d()), ("d/x", f("x"))]),
            local: with_problem(t(&[("d", d())]), "d"),
            remote: t(&[("d", d()), ("d/x", f("x"))]),
            ..Default::default()
        },
        Case {
            name: "unreadable file is not taken as deleted",
            base: t(&[("a", f("1"))]),
            local: with_problem(t(&[]), "a"),
            remote: t(&[("a", f("1"))]),
            ..Default::default()
        },
        Case {
            name: "local edits and remote edits in different files both propagate",
            base: t(&[("a", f("1")), ("b", f("1"))]),
            local: t(&[("a", f("2")), ("b", f("1"))]),
            remote: t(&[("a", f("1")), ("b", f("3"))]),
            actions: &["R cp a", "L cp b"],
            ..Default::default()
        },
        Case {
            name: "owner change is ignored without -e",
            base: t(&[("a", f("1"))]),
            local: t(&[("a", owned(f("1"), 7))]),
            remote: t(&[("a", f("1"))]),
            ..Default::default()
        },
        Case {
            name: "owner change propagates with -e",
            everything: true,
            base: t(&[("a", f("1"))]),
            local: t(&[("a", owned(f("1"), 7))]),
            remote: t(&[("a", f("1"))]),
            actions: &["R meta a"],
            ..Default::default()
        },
        Case {
            name: "deleted directory whose files were all deleted remotely too",
            base: t(&[("d", d()), ("d/x", f("x"))]),
            remote: t(&[("d", d())]),
            actions: &["R rm d"],
            ..Default::default()
        },
        Case {
            name: "created on both sides with the same content and new dirs",
            local: t(&[("d", d()), ("d/x", f("1"))]),
            remote: t(&[("d", d()), ("d/x", f("1"))]),
            identical: &["d", "d/x"],
            ..Default::default()
        },
        Case {
            name: "symlink to outside is copied as a link",
            local: t(&[("s", l("/etc/passwd"))]),
            actions: &["R cp s"],
            ..Default::default()
        },
    ]
}

#[test]
fn table() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    for c in &cases {
        run_case(c);
    }
}

#[test]
fn replacing_a_directory_orders_removal_before_creation() {
    let local = t(&[("a", f("1")), ("b", d()), ("b/c", f("c"))]);
    let remote = t(&[("a", d()), ("a/x", d()), ("a/x/y", f("y")), ("b", f("2"))]);
    let plan = reconcile(
        &Tree::default(),
        &local,
        &remote,
        &Policy::new(Direction::Push),
    );
    let got: Vec<String> = plan.actions.iter().map(describe).collect();
    assert_eq!(
        got,
        [
            "R rm a/x/y",
            "R rm b",
            "R mkdir b",
            "R rm a/x",
            "R rm a",
            "R cp a",
            "R cp b/c",
            "R stamp b"
        ]
    );
}

#[test]
fn actions_carry_the_scanned_target_as_precondition() {
    let base = t(&[("a", f("1"))]);
    let remote = t(&[("a", ft("1", 1000))]);
    let plan = reconcile(
        &base,
        &t(&[("a", f("2"))]),
        &remote,
        &Policy::new(Direction::Bidi),
    );
    assert_eq!(plan.actions[0].expect.as_deref(), remote.get(&p("a")));
}

#[test]
fn digests_requested_only_where_metadata_is_ambiguous() {
    let mut unknown = f("same");
    unknown.digest = None;
    let mut other_size = f("longer content");
    other_size.digest = None;
    let base = t(&[("a", f("same")), ("b", f("same"))]);
    let local = t(&[
        ("a", unknown.clone()),
        ("b", other_size.clone()),
        ("new", other_size.clone()),
    ]);
    let remote = t(&[("a", f("same")), ("b", f("same"))]);
    let [l, r] = digests_needed(&base, &local, &remote);
    assert_eq!(l, vec![p("a")]);
    assert!(r.is_empty());
    // A new file the size of a baseline file may be a move: hash it.
    let local = t(&[("moved", unknown)]);
    let [l, _] = digests_needed(&base, &local, &Tree::default());
    assert_eq!(l, vec![p("moved")]);
}

#[test]
fn baseline_keeps_old_state_where_sides_disagree() {
    let old = t(&[("a", f("1"))]);
    let next = next_baseline(
        &old,
        &t(&[("a", f("2")), ("b", f("b"))]),
        &t(&[("a", f("3")), ("b", f("b"))]),
        &[],
        false,
    );
    assert_eq!(next.get(&p("a")), old.get(&p("a")));
    assert!(next.get(&p("b")).is_some());
}

// ---- properties over random small trees ----

const UNIVERSE: &[&str] = &["a", "b", "d", "d/x", "d/y", "d/e", "d/e/z", "f"];

fn arb_entry() -> impl Strategy<Value = Option<Entry>> {
    prop_oneof![
        3 => Just(None),
        3 => (0..3u8, prop::sample::select(vec![0o644u32, 0o755]), 1..4i64)
            .prop_map(|(c, m, t)| Some(file_m(&format!("content{c}"), t * 1000, m))),
        3 => prop::sample::select(vec![0o755u32, 0o700]).prop_map(|m| Some(dmode(m))),
        1 => (0..2u8).prop_map(|c| Some(l(&format!("target{c}")))),
    ]
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    prop::collection::vec(arb_entry(), UNIVERSE.len()).prop_map(tree_of)
}

/// Tree of `entries` (one per [`UNIVERSE`] path), leaving out what has no directory above.
fn tree_of(entries: impl IntoIterator<Item = Option<Entry>>) -> Tree {
    let mut tree = Tree::default();
    for (name, e) in UNIVERSE.iter().zip(entries) {
        let path = p(name);
        let parent_ok = path
            .parent()
            .is_none_or(|pp| tree.get(&pp).is_some_and(|e| e.is_dir()));
        if let (Some(e), true) = (e, parent_ok) {
            tree.insert(path, e);
        }
    }
    tree
}

/// A baseline and two sides that each changed a few of its paths: most paths settled, as
/// in a real run (independent random trees rarely agree anywhere).
fn arb_edited() -> impl Strategy<Value = (Tree, Tree, Tree)> {
    let n = UNIVERSE.len();
    let edits = || prop::collection::vec(prop::option::weighted(0.25, arb_entry()), n);
    (prop::collection::vec(arb_entry(), n), edits(), edits()).prop_map(|(base, l, r)| {
        let side = |edits: Vec<Option<Option<Entry>>>| {
            tree_of(base.iter().zip(edits).map(|(b, e)| e.unwrap_or(b.clone())))
        };
        (tree_of(base.clone()), side(l), side(r))
    })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(vec![Direction::Push, Direction::Pull, Direction::Bidi]),
        prop::sample::select(vec![
            None,
            Some(Favor::Side(Side::Local)),
            Some(Favor::Side(Side::Remote)),
            Some(Favor::New),
            Some(Favor::Old),
        ]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(direction, favor, keep_both, everything)| Policy {
            favor,
            keep_both,
            everything,
            ..Policy::new(direction)
        })
}

fn mirror_plan(plan: &Plan) -> (Vec<String>, Vec<String>) {
    (
        sorted(plan.actions.iter().map(|a| mirror_text(&describe(a)))),
        sorted(
            plan.conflicts
                .iter()
                .map(|c| mirror_text(&describe_conflict(c))),
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn applying_the_plan_then_reconciling_again_is_empty(base in arb_tree(), local in arb_tree(), remote in arb_tree(), policy in arb_policy()) {
        let plan = reconcile(&base, &local, &remote, &policy);
        assert_converges("property", &base, &local, &remote, &policy, &plan);
        if plan.unresolved().next().is_none() {
            let (l2, r2) = simulate(&plan, &local, &remote);
            let keys: BTreeSet<&RelPath> = l2.entries.keys().chain(r2.entries.keys()).collect();
            for k in keys {
                let (a, b) = (l2.get(k), r2.get(k));
                prop_assert!(matches!((a, b), (Some(a), Some(b)) if a.same_content(b)), "{k} differs after a clean run");
            }
        }
    }

    #[test]
    fn swapping_sides_mirrors_the_plan(base in arb_tree(), local in arb_tree(), remote in arb_tree(), policy in arb_policy()) {
        // Keep-both without a side preference breaks mtime ties towards local: not symmetric.
        let policy = Policy { keep_both: policy.keep_both && matches!(policy.favor, Some(Favor::Side(_))), ..policy };
        let plan = reconcile(&base, &local, &remote, &policy);
        let swapped = reconcile(&base, &remote, &local, &policy.mirrored());
        let (a, c) = mirror_plan(&plan);
        prop_assert_eq!(a, sorted(swapped.actions.iter().map(describe)));
        prop_assert_eq!(c, sorted(swapped.conflicts.iter().map(describe_conflict)));
    }

    #[test]
    fn leaving_out_settled_paths_changes_no_decision((base, local, remote) in arb_edited(), policy in arb_policy()) {
        let every = decide(&base, &local, &remote, &policy, rows_of(&base, &local, &remote, |_| true));
        let plan = reconcile(&base, &local, &remote, &policy);
        prop_assert_eq!(plan, every);
    }

    #[test]
    fn bidi_never_touches_what_is_unchanged_on_both_sides(base in arb_tree(), local in arb_tree(), remote in arb_tree(), policy in arb_policy()) {
        let policy = Policy { direction: Direction::Bidi, ..policy };
        let plan = reconcile(&base, &local, &remote, &policy);
        for a in &plan.actions {
            let unchanged = |x: &RelPath| base.get(x).is_some()
                && same_state(base.get(x), local.get(x), policy.everything)
                && same_state(base.get(x), remote.get(x), policy.everything);
            // Restamping a directory to the time it already has changes nothing.
            let noop = matches!(a.op, Op::Restamp { mtime_ns } if base.get(&a.path).is_some_and(|b| b.mtime_ns == mtime_ns));
            prop_assert!(noop || !unchanged(&a.path), "{} touched although unchanged", a.path);
        }
    }

    #[test]
    fn bidi_without_a_policy_never_overwrites_or_deletes_a_change(base in arb_tree(), local in arb_tree(), remote in arb_tree()) {
        let policy = Policy::new(Direction::Bidi);
        let plan = reconcile(&base, &local, &remote, &policy);
        for a in &plan.actions {
            let mine = match a.side { Side::Local => &local, Side::Remote => &remote };
            let changed_here = mine.get(&a.path).is_some() && !same_state(base.get(&a.path), mine.get(&a.path), false);
            let destructive = matches!(a.op, Op::Delete | Op::Copy { .. }) || matches!(a.op, Op::Rename { .. } if !a.conflict_copy);
            prop_assert!(!(changed_here && destructive), "{} changed on {} but {:?}", a.path, a.side.word(), a.op);
        }
    }
}

#[test]
fn actions_of_one_subtree_share_their_reason() {
    let local = t(&[
        ("d", d()),
        ("d/a", f("a")),
        ("d/b", f("b")),
        ("d/c", f("c")),
    ]);
    let plan = reconcile(&t(&[]), &local, &t(&[]), &Policy::new(Direction::Bidi));
    let creations: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| matches!(a.op, Op::Copy { .. } | Op::Mkdir { .. }))
        .collect();
    assert_eq!(creations.len(), 4);
    let first = &creations[0].reason;
    for a in &creations {
        assert!(
            a.reason.shares(first),
            "'{}' is not shared with '{first}'",
            a.reason
        );
    }
}
