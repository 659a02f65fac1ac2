//! Table tests: keys, collisions, respellings and case-only renames, each reconciled.

use super::*;
use crate::core::reconcile::{next_baseline, reconcile, Policy};
use crate::core::tree::{Digest, Entry, EntryKind, Meta, Stamp};

const NFC_E: &str = "caf\u{e9}.txt";
const NFD_E: &str = "cafe\u{301}.txt";

/// Case-sensitive, keeps names (ext4).
const PLAIN: NameRules = NameRules {
    folds_case: false,
    folds_form: false,
    respells: false,
    respells_only_form: false,
};
/// Ignores case, keeps spellings (NTFS on Windows).
const NTFS: NameRules = NameRules {
    folds_case: true,
    folds_form: false,
    respells: false,
    respells_only_form: false,
};
/// Ignores case, lists lower case (ntfs-3g with `ignore_case`).
const LOWER: NameRules = NameRules {
    folds_case: true,
    folds_form: false,
    respells: true,
    respells_only_form: false,
};
/// Ignores case and form, keeps spellings (APFS).
const APFS: NameRules = NameRules {
    folds_case: true,
    folds_form: true,
    respells: false,
    respells_only_form: false,
};
/// Ignores case and form, lists NFD in the case written (HFS+).
const HFS: NameRules = NameRules {
    folds_case: true,
    folds_form: true,
    respells: true,
    respells_only_form: true,
};

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

fn f(content: &str) -> Entry {
    Entry::of(
        Meta {
            kind: EntryKind::File,
            size: content.len() as u64,
            mtime_ns: 1000,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            digest: Some(Digest::of(content.as_bytes())),
            extra: None,
        },
        Stamp::default(),
    )
}

fn d() -> Entry {
    let mut e = f("");
    e.kind = EntryKind::Dir;
    e.digest = None;
    e.mode = 0o755;
    e
}

fn tree(items: &[(&str, Entry)]) -> Tree {
    Tree::from_entries(items.iter().map(|(k, e)| (p(k), e.clone())))
}

/// Aligns and reconciles; returns the plan and the aligned trees.
fn run(
    base: &Tree,
    local: &Tree,
    remote: &Tree,
    rules: [NameRules; 2],
    direction: Direction,
) -> (Plan, [Tree; 2], Alignment) {
    let mut trees = [local.clone(), remote.clone()];
    let mut base = base.clone();
    let alignment = align(&mut base, &mut trees, rules, direction);
    let mut plan = reconcile(&base, &trees[0], &trees[1], &Policy::new(direction));
    finish_plan(&mut plan, &alignment, &trees);
    (plan, trees, alignment)
}

/// Each action as `side op path[ -> to]`.
fn ops(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .filter(|a| !matches!(a.op, Op::Restamp { .. }))
        .map(|a| {
            let op = match &a.op {
                Op::Copy { .. } => "copy".to_string(),
                Op::Delete => "delete".into(),
                Op::Mkdir { .. } => "mkdir".into(),
                Op::Rename { to, .. } => format!("rename -> {to}"),
                Op::SetMeta { .. } => "meta".into(),
                other => format!("{other:?}"),
            };
            format!("{} {op} {}", a.side.word(), a.path)
        })
        .collect()
}

#[test]
fn keys_fold_what_the_root_folds() {
    let cases: &[(NameRules, &str, &str, bool)] = &[
        (PLAIN, "README", "readme", false),
        (NTFS, "README", "readme", true),
        (NTFS, "Dir/A.txt", "dir/a.TXT", true),
        (NTFS, NFC_E, NFD_E, false),
        (APFS, NFC_E, NFD_E, true),
        (APFS, "CAF\u{c9}.TXT", NFD_E, true),
        (HFS, "a", "b", false),
        // Full folding: sharp s and long s.
        (NTFS, "stra\u{df}e", "STRASSE", true),
        (NTFS, "\u{17f}", "S", true),
        // Greek final sigma and the Kelvin sign.
        (NTFS, "\u{3c3}", "\u{3c2}", true),
        (NTFS, "\u{212a}", "k", true),
        // Not UTF-8: ASCII letters still fold.
        (NTFS, "x\u{ff}", "X\u{ff}", true),
    ];
    for (rules, a, b, same) in cases {
        assert_eq!(
            rules.key(a.as_bytes()) == rules.key(b.as_bytes()),
            *same,
            "{a:?} vs {b:?} under {rules:?}"
        );
    }
    let raw = [b'A', 0xff];
    assert_eq!(&*NTFS.key(&raw), &[b'a', 0xff]);
    assert!(matches!(PLAIN.key(b"ABC"), Cow::Borrowed(_)));
    assert!(matches!(NTFS.key(b"abc"), Cow::Borrowed(_)));
}

#[test]
fn two_source_names_that_are_one_name_on_the_target_are_a_conflict_naming_both() {
    let cases: &[(&str, &str, NameRules)] = &[
        ("README", "readme", NTFS),
        ("README", "readme", LOWER),
        (NFC_E, NFD_E, APFS),
        (NFC_E, NFD_E, HFS),
    ];
    for &(a, b, rules) in cases {
        for direction in [Direction::Push, Direction::Bidi] {
            let local = tree(&[(a, f("one")), (b, f("two"))]);
            let empty = Tree::default();
            let (plan, trees, _) = run(&empty, &local, &empty, [PLAIN, rules], direction);
            assert!(
                plan.actions.is_empty(),
                "{a} {b} {rules:?}: {:?}",
                ops(&plan)
            );
            let c: Vec<&Conflict> = plan.unresolved().collect();
            assert_eq!(c.len(), 1, "{a} {b} {rules:?} {direction:?}");
            assert!(c[0].reason.contains(a) && c[0].reason.contains(b), "{c:?}");
            // Nothing decided, so the baseline learns nothing of them either.
            let next = next_baseline(&empty, &trees[0], &trees[1], &[], false);
            assert!(next.is_empty(), "{next:?}");
        }
    }
    // Where forms do not fold (NTFS), NFC and NFD are two names: both are copied.
    let local = tree(&[(NFC_E, f("one")), (NFD_E, f("two"))]);
    let empty = Tree::default();
    let (plan, _, _) = run(&empty, &local, &empty, [PLAIN, NTFS], Direction::Push);
    assert_eq!(plan.actions.len(), 2, "{:?}", ops(&plan));
    assert!(plan.conflicts.is_empty());
    // A pull reads from the folding side: nothing collides on the case-sensitive one.
    let (plan, _, _) = run(&empty, &empty, &local, [PLAIN, NTFS], Direction::Pull);
    assert_eq!(plan.actions.len(), 2, "{:?}", ops(&plan));
}

#[test]
fn a_collision_in_bidi_never_propagates_a_deletion() {
    // The target already holds one of the two (from an earlier run); the other is new.
    let base = tree(&[("readme", f("old"))]);
    let local = tree(&[("README", f("new")), ("readme", f("old"))]);
    let remote = tree(&[("readme", f("old"))]);
    for rules in [NTFS, LOWER] {
        let (plan, trees, _) = run(&base, &local, &remote, [PLAIN, rules], Direction::Bidi);
        assert!(plan.actions.is_empty(), "{:?}", ops(&plan));
        assert_eq!(plan.unresolved().count(), 1);
        let next = next_baseline(&base, &trees[0], &trees[1], &[], false);
        assert_eq!(next, base, "the baseline keeps what it had");
    }
    // The same, with the folding side edited meanwhile: still nothing moves.
    let remote = tree(&[("readme", f("edited"))]);
    let (plan, _, _) = run(&base, &local, &remote, [PLAIN, NTFS], Direction::Bidi);
    assert!(plan.actions.is_empty(), "{:?}", ops(&plan));
    // A directory collision holds everything below both names.
    let local = tree(&[("D", d()), ("D/x", f("x")), ("d", d()), ("d/y", f("y"))]);
    let empty = Tree::default();
    let (plan, _, _) = run(&empty, &local, &empty, [PLAIN, NTFS], Direction::Bidi);
    assert!(plan.actions.is_empty(), "{:?}", ops(&plan));
    assert_eq!(plan.unresolved().count(), 1);
}

#[test]
fn a_name_listed_in_another_spelling_is_the_same_entry() {
    // (base and local spelling, what the folding side lists, its rules)
    let cases: &[(&str, &str, NameRules)] = &[
        ("README", "readme", LOWER),
        ("Docs/Notes.txt", "docs/notes.txt", LOWER),
        (NFC_E, NFD_E, HFS),
    ];
    for &(name, listed, rules) in cases {
        let parent = |n: &str| n.split_once('/').map(|(d, _)| d.to_string());
        let mut b: Vec<(String, Entry)> = vec![(name.into(), f("x"))];
        let mut r: Vec<(String, Entry)> = vec![(listed.into(), f("x"))];
        if let (Some(pb), Some(pr)) = (parent(name), parent(listed)) {
            b.push((pb, d()));
            r.push((pr, d()));
        }
        let as_tree =
            |v: &[(String, Entry)]| Tree::from_entries(v.iter().map(|(k, e)| (p(k), e.clone())));
        let (base, remote) = (as_tree(&b), as_tree(&r));
        for direction in [Direction::Bidi, Direction::Push] {
            let (plan, trees, _) = run(&base, &base, &remote, [PLAIN, rules], direction);
            assert!(plan.is_empty(), "{name} {direction:?}: {:?}", ops(&plan));
            assert_eq!(
                trees[1].entries.keys().collect::<Vec<_>>(),
                base.entries.keys().collect::<Vec<_>>()
            );
        }
        // The other side deleted it: deleted on the folding side too, not copied back.
        let (plan, _, _) = run(
            &base,
            &Tree::default(),
            &remote,
            [PLAIN, rules],
            Direction::Bidi,
        );
        assert_eq!(
            ops(&plan).len(),
            if name.contains('/') { 2 } else { 1 },
            "{:?}",
            ops(&plan)
        );
        assert!(plan
            .actions
            .iter()
            .all(|a| a.side == Side::Remote && a.op == Op::Delete));
    }
}

#[test]
fn a_case_only_rename_is_carried_as_a_rename_onto_a_folding_side() {
    let base = tree(&[("Notes.txt", f("x"))]);
    let renamed = tree(&[("notes.txt", f("x"))]);
    for direction in [Direction::Bidi, Direction::Push] {
        // Renamed on the case-sensitive side: the folding side is renamed, nothing
        // deleted or written there.
        let (plan, _, _) = run(&base, &renamed, &base, [PLAIN, NTFS], direction);
        assert_eq!(
            ops(&plan),
            ["remote rename -> notes.txt Notes.txt"],
            "{direction:?}"
        );
        // Both sides fold and keep spellings (APFS to APFS); or the folding side
        // lists NFD, but in the case written (HFS+).
        for rules in [[APFS, APFS], [PLAIN, HFS]] {
            let (plan, _, _) = run(&base, &renamed, &base, rules, direction);
            assert_eq!(
                ops(&plan),
                ["remote rename -> notes.txt Notes.txt"],
                "{direction:?} {rules:?}"
            );
        }
        // The folding side lists lower case anyway: nothing to do.
        let listed = tree(&[("notes.txt", f("x"))]);
        let (plan, _, _) = run(&base, &renamed, &listed, [PLAIN, LOWER], direction);
        assert!(plan.is_empty(), "{:?}", ops(&plan));
    }
    // Renamed on the folding side: carried to the other side as a rename there.
    let (plan, _, _) = run(&base, &base, &renamed, [PLAIN, NTFS], Direction::Bidi);
    assert_eq!(ops(&plan), ["local rename -> notes.txt Notes.txt"]);
    for rules in [[APFS, APFS], [PLAIN, HFS]] {
        let (plan, _, _) = run(&base, &base, &renamed, rules, Direction::Bidi);
        assert_eq!(
            ops(&plan),
            ["local rename -> notes.txt Notes.txt"],
            "{rules:?}"
        );
    }
    // Renamed and edited: renamed, then written, never deleted.
    let edited = tree(&[("notes.txt", f("edited"))]);
    let (plan, _, _) = run(&base, &edited, &base, [PLAIN, NTFS], Direction::Bidi);
    assert_eq!(
        ops(&plan),
        [
            "remote rename -> notes.txt Notes.txt",
            "remote copy notes.txt"
        ]
    );
    // Renamed differently on each side: a conflict, nothing moves.
    let other = tree(&[("NOTES.TXT", f("x"))]);
    let (plan, _, _) = run(&base, &renamed, &other, [APFS, APFS], Direction::Bidi);
    assert!(plan.actions.is_empty(), "{:?}", ops(&plan));
    assert_eq!(plan.unresolved().count(), 1);
}

#[test]
fn a_directory_renamed_in_case_only_moves_once_with_its_contents() {
    let base = tree(&[("Docs", d()), ("Docs/a", f("a")), ("Docs/B", f("b"))]);
    let local = tree(&[
        ("docs", d()),
        ("docs/a", f("a")),
        ("docs/b", f("b")),
        ("docs/new", f("n")),
    ]);
    let (plan, trees, alignment) = run(&base, &local, &base, [PLAIN, NTFS], Direction::Bidi);
    assert_eq!(
        ops(&plan),
        [
            "remote rename -> docs Docs",
            "remote rename -> docs/b Docs/B",
            "remote copy docs/new"
        ]
    );
    assert_eq!(alignment.respelled.len(), 2);
    let names: Vec<&RelPath> = trees[1].entries.keys().collect();
    assert_eq!(names, [&p("docs"), &p("docs/a"), &p("docs/b")]);
}

#[test]
fn what_a_root_cannot_keep_is_not_a_difference() {
    let ntfs = Holds {
        modes: false,
        owners: false,
        mtime_step_ns: 100,
    };
    let src = f("x");
    let mut copy = f("x");
    copy.mode = 0o777;
    copy.uid = 0;
    copy.mtime_ns = src.mtime_ns / 100 * 100;
    let mut trees = [tree(&[("a", src.clone())]), tree(&[("a", copy.clone())])];
    accommodate(&mut trees, [Holds::default(), ntfs]);
    assert!(trees[1].get(&p("a")).unwrap().same_state(&src, true));
    // Another content, or a time a step away, stays a difference.
    let mut later = copy.clone();
    later.mtime_ns += 1000;
    let mut other = f("y");
    other.mode = 0o777;
    for e in [later, other] {
        let mut trees = [tree(&[("a", src.clone())]), tree(&[("a", e)])];
        accommodate(&mut trees, [Holds::default(), ntfs]);
        assert!(!trees[1].get(&p("a")).unwrap().same_state(&src, false));
    }
    // A root that keeps everything is left alone.
    let mut trees = [tree(&[("a", src.clone())]), tree(&[("a", copy.clone())])];
    accommodate(&mut trees, [Holds::default(), Holds::default()]);
    assert_eq!(trees[1].get(&p("a")), Some(&copy));
    assert_eq!(
        ntfs.lacks().as_deref(),
        Some("permission bits, owners, times finer than 100 ns")
    );
}
