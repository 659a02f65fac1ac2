//! Bringing a tree up to date from a rescan of some of its paths (continuous mode): which
//! paths to ask for, and how the answer replaces what was known. Pure: no IO.

use std::collections::BTreeMap;

use crate::core::path::RelPath;
use crate::core::tree::Tree;
use crate::endpoint::Rescan;

/// The paths to rescan for changes reported at `changed` (`true`: everything below too).
/// A path whose directory is not known as a directory is widened to the highest unknown
/// one, a directory not known as one is rescanned whole, and each changed path's parent is
/// restatted (its mtime moved); paths below a whole rescan are dropped.
pub fn widen(tree: &Tree, changed: &[(RelPath, bool)]) -> Vec<(RelPath, bool)> {
    let is_dir = |p: &RelPath| tree.get(p).is_some_and(|e| e.is_dir());
    let mut asked: BTreeMap<RelPath, bool> = BTreeMap::new();
    for (path, deep) in changed {
        let (mut path, mut deep) = (path.clone(), *deep);
        while let Some(parent) = path.parent() {
            if is_dir(&parent) {
                break;
            }
            path = parent;
            deep = true;
        }
        // Something new (or no longer a directory): all of it is news.
        deep |= !is_dir(&path);
        if let Some(parent) = path.parent() {
            asked.entry(parent).or_insert(false);
        }
        *asked.entry(path).or_insert(false) |= deep;
    }
    let whole: Vec<RelPath> = asked
        .iter()
        .filter(|(_, deep)| **deep)
        .map(|(p, _)| p.clone())
        .collect();
    asked
        .into_iter()
        .filter(|(p, _)| !whole.iter().any(|w| p != w && p.starts_with(w)))
        .collect()
}

/// Replaces what `tree` knew at the `asked` paths with what the rescan `found`.
pub fn merge(tree: &mut Tree, asked: &[(RelPath, bool)], found: Rescan) {
    if found.whole {
        *tree = found.tree;
        return;
    }
    for (path, deep) in asked {
        let still_dir = |t: &Tree| t.get(path).is_some_and(|e| e.is_dir());
        if !deep && still_dir(tree) && still_dir(&found.tree) {
            // The directory's own entry changed; what is below it was not looked at.
            tree.entries.remove(path);
            tree.problems.remove(path);
        } else {
            tree.remove_subtree(path);
            tree.problems.retain(|p, _| !p.starts_with(path));
        }
    }
    tree.entries.extend(found.tree.entries);
    tree.problems.extend(found.tree.problems);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tree::{Entry, EntryKind, Meta, Stamp};

    fn entry(kind: EntryKind) -> Entry {
        Entry::of(
            Meta {
                kind,
                size: 0,
                mtime_ns: 0,
                mode: 0o755,
                uid: 0,
                gid: 0,
                digest: None,
                extra: None,
            },
            Stamp::default(),
        )
    }

    fn p(s: &str) -> RelPath {
        RelPath::new(s.as_bytes().to_vec()).unwrap()
    }

    fn tree(paths: &[&str]) -> Tree {
        let mut t = Tree::default();
        for s in paths {
            let e = if s.ends_with('/') {
                entry(EntryKind::Dir)
            } else {
                entry(EntryKind::File)
            };
            t.insert(p(s.trim_end_matches('/')), e);
        }
        t
    }

    #[test]
    fn a_changed_file_is_restatted_with_its_directory() {
        let t = tree(&["d/", "d/f"]);
        assert_eq!(
            widen(&t, &[(p("d/f"), false)]),
            vec![(p("d"), false), (p("d/f"), true)]
        );
    }

    #[test]
    fn paths_below_an_unknown_directory_widen_to_it() {
        let t = tree(&["d/"]);
        assert_eq!(
            widen(&t, &[(p("d/new/deeper/f"), false), (p("d/new/x"), false)]),
            vec![(p("d"), false), (p("d/new"), true)]
        );
    }

    #[test]
    fn a_known_directory_changed_in_itself_is_restatted_alone() {
        let t = tree(&["d/", "d/f"]);
        assert_eq!(widen(&t, &[(p("d"), false)]), vec![(p("d"), false)]);
    }

    #[test]
    fn merge_replaces_subtrees_and_keeps_what_was_not_looked_at() {
        let mut t = tree(&["a/", "a/old", "a/keep/", "a/keep/x", "b"]);
        let found = Rescan {
            tree: tree(&["a/", "a/keep/", "a/new"]),
            whole: false,
        };
        let asked = vec![
            (p("a"), false),
            (p("a/keep"), false),
            (p("a/new"), true),
            (p("a/old"), true),
        ];
        merge(&mut t, &asked, found);
        let names: Vec<String> = t.entries.keys().map(|k| k.to_string()).collect();
        assert_eq!(names, ["a", "a/keep", "a/keep/x", "a/new", "b"]);
    }

    #[test]
    fn a_directory_gone_takes_everything_below_with_it() {
        let mut t = tree(&["a/", "a/x", "a/y/", "a/y/z"]);
        let found = Rescan {
            tree: Tree::default(),
            whole: false,
        };
        merge(&mut t, &[(p("a"), true)], found);
        assert!(t.is_empty());
    }
}
