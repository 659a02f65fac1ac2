//! Owners by name: a file owned by `alice` on one host belongs to `alice` on the other,
//! whatever her number there (as rsync does without `--numeric-ids`).
//!
//! Each side answers from its own `/etc/passwd` and `/etc/group` (read directly: the agent
//! is a static binary without NSS). The client keeps the far side's tree in its own
//! numbering and translates back when it writes there; a name unknown on a side keeps its
//! number.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::core::tree::{Entry, Tree};

/// Users and groups by number and by name, as one side's database has them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

fn parse(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            (!name.is_empty()).then(|| (id, name.to_string()))
        })
        .collect()
}

impl Database {
    /// This machine's user and group files (empty where unreadable).
    pub fn load() -> Database {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|t| parse(&t))
                .unwrap_or_default()
        };
        Database {
            users: read("/etc/passwd"),
            groups: read("/etc/group"),
        }
    }

    /// Answers a query: names of the ids, ids of the names.
    pub fn answer(&self, q: &OwnerQuery) -> OwnerAnswer {
        let id_of = |map: &HashMap<u32, String>, name: &String| {
            map.iter()
                .filter(|(_, n)| *n == name)
                .map(|(i, _)| *i)
                .min()
        };
        OwnerAnswer {
            user_names: q.uids.iter().map(|u| self.users.get(u).cloned()).collect(),
            group_names: q.gids.iter().map(|g| self.groups.get(g).cloned()).collect(),
            uids: q.users.iter().map(|n| id_of(&self.users, n)).collect(),
            gids: q.groups.iter().map(|n| id_of(&self.groups, n)).collect(),
        }
    }
}

/// What one side is asked: the names of its ids, and its ids for the other side's names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerQuery {
    /// User ids to name.
    pub uids: Vec<u32>,
    /// Group ids to name.
    pub gids: Vec<u32>,
    /// User names to number.
    pub users: Vec<String>,
    /// Group names to number.
    pub groups: Vec<String>,
}

/// The answer, in the query's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerAnswer {
    /// Names of `uids`.
    pub user_names: Vec<Option<String>>,
    /// Names of `gids`.
    pub group_names: Vec<Option<String>>,
    /// Ids of `users`.
    pub uids: Vec<Option<u32>>,
    /// Ids of `groups`.
    pub gids: Vec<Option<u32>>,
}

/// Translation of owner numbers between the two sides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    uid_in: HashMap<u32, u32>,
    gid_in: HashMap<u32, u32>,
    uid_out: HashMap<u32, u32>,
    gid_out: HashMap<u32, u32>,
}

fn ids(tree: &Tree) -> (Vec<u32>, Vec<u32>) {
    let mut u: Vec<u32> = tree.entries.values().map(|e| e.uid).collect();
    let mut g: Vec<u32> = tree.entries.values().map(|e| e.gid).collect();
    u.sort_unstable();
    u.dedup();
    g.sort_unstable();
    g.dedup();
    (u, g)
}

impl IdMap {
    /// The query for the far side, given both trees and this side's database.
    pub fn query(near: &Database, near_tree: &Tree, far_tree: &Tree) -> OwnerQuery {
        let (far_u, far_g) = ids(far_tree);
        let (near_u, near_g) = ids(near_tree);
        OwnerQuery {
            uids: far_u,
            gids: far_g,
            users: near_u
                .iter()
                .filter_map(|u| near.users.get(u).cloned())
                .collect(),
            groups: near_g
                .iter()
                .filter_map(|g| near.groups.get(g).cloned())
                .collect(),
        }
    }

    /// Builds the map from the far side's answer to [`IdMap::query`].
    pub fn build(near: &Database, q: &OwnerQuery, a: &OwnerAnswer) -> IdMap {
        let near_id = |map: &HashMap<u32, String>, name: &str| {
            map.iter()
                .filter(|(_, n)| *n == name)
                .map(|(i, _)| *i)
                .min()
        };
        let mut m = IdMap::default();
        // Far ids by name into near numbering.
        for (uid, name) in q.uids.iter().zip(&a.user_names) {
            if let Some(near) = name.as_deref().and_then(|n| near_id(&near.users, n)) {
                m.uid_in.insert(*uid, near);
            }
        }
        for (gid, name) in q.gids.iter().zip(&a.group_names) {
            if let Some(near) = name.as_deref().and_then(|n| near_id(&near.groups, n)) {
                m.gid_in.insert(*gid, near);
            }
        }
        // Near names into far numbering.
        for (name, far) in q.users.iter().zip(&a.uids) {
            if let (Some(far), Some(near)) = (far, near_id(&near.users, name)) {
                m.uid_out.insert(near, *far);
            }
        }
        for (name, far) in q.groups.iter().zip(&a.gids) {
            if let (Some(far), Some(near)) = (far, near_id(&near.groups, name)) {
                m.gid_out.insert(near, *far);
            }
        }
        m
    }

    /// A far entry in near numbering.
    pub fn inward(&self, e: &mut Entry) {
        renumber(e, &self.uid_in, &self.gid_in);
    }

    /// A near entry in far numbering.
    pub fn outward(&self, e: &mut Entry) {
        renumber(e, &self.uid_out, &self.gid_out);
    }

    /// True when no number changes either way.
    pub fn is_identity(&self) -> bool {
        let same = |m: &HashMap<u32, u32>| m.iter().all(|(a, b)| a == b);
        same(&self.uid_in) && same(&self.gid_in) && same(&self.uid_out) && same(&self.gid_out)
    }
}

/// Renumbers `e`'s owner and group, writing only what changes: an entry sharing its
/// metadata keeps sharing it when its numbers stay.
fn renumber(e: &mut Entry, uids: &HashMap<u32, u32>, gids: &HashMap<u32, u32>) {
    let uid = uids.get(&e.uid).copied().unwrap_or(e.uid);
    let gid = gids.get(&e.gid).copied().unwrap_or(e.gid);
    if (uid, gid) != (e.uid, e.gid) {
        (e.uid, e.gid) = (uid, gid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(users: &str, groups: &str) -> Database {
        Database {
            users: parse(users),
            groups: parse(groups),
        }
    }

    #[test]
    fn owners_travel_by_name_and_unknown_names_keep_their_number() {
        let near = db(
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
            "root:x:0:\nstaff:x:50:\n",
        );
        let far = db(
            "root:x:0:0::/root:/bin/sh\nalice:x:1201:1201::/home/a:/bin/sh\nbob:x:1300:1300::/:\n",
            "root:x:0:\nstaff:x:77:\n",
        );
        let mut near_tree = Tree::default();
        let mut far_tree = Tree::default();
        let entry = |uid, gid| {
            Entry::of(
                crate::core::tree::Meta {
                    kind: crate::core::tree::EntryKind::File,
                    size: 0,
                    mtime_ns: 0,
                    mode: 0o644,
                    uid,
                    gid,
                    digest: None,
                    extra: None,
                },
                Default::default(),
            )
        };
        let p = |s: &str| crate::core::path::RelPath::new(s.as_bytes().to_vec()).unwrap();
        near_tree.insert(p("mine"), entry(1000, 50));
        far_tree.insert(p("hers"), entry(1201, 77));
        far_tree.insert(p("bobs"), entry(1300, 77));
        let q = IdMap::query(&near, &near_tree, &far_tree);
        let map = IdMap::build(&near, &q, &far.answer(&q));
        let mut e = entry(1201, 77);
        map.inward(&mut e);
        assert_eq!((e.uid, e.gid), (1000, 50), "alice and staff by name");
        let mut e = entry(1300, 77);
        map.inward(&mut e);
        assert_eq!(e.uid, 1300, "bob is unknown here: his number stays");
        let mut e = entry(1000, 50);
        map.outward(&mut e);
        assert_eq!((e.uid, e.gid), (1201, 77));
        assert!(!map.is_identity());
    }
}
