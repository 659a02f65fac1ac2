//! Sorted-stream merges: every path of several maps in tree order, each with that map's
//! value, found by walking the maps side by side instead of looking each path up (on a
//! million entries a lookup is a dozen cache misses; a step of the merge is one).

use std::collections::BTreeMap;
use std::iter::Peekable;

use crate::core::path::RelPath;

/// Every key of the `N` maps once, in order, with each map's value for it.
pub fn merge<V, const N: usize>(
    maps: [&BTreeMap<RelPath, V>; N],
) -> impl Iterator<Item = (&RelPath, [Option<&V>; N])> {
    Merge {
        heads: maps.map(|m| m.iter().peekable()),
    }
}

struct Merge<I: Iterator, const N: usize> {
    heads: [Peekable<I>; N],
}

impl<'a, V: 'a, I, const N: usize> Iterator for Merge<I, N>
where
    I: Iterator<Item = (&'a RelPath, &'a V)>,
{
    type Item = (&'a RelPath, [Option<&'a V>; N]);

    fn next(&mut self) -> Option<Self::Item> {
        let least = self
            .heads
            .iter_mut()
            .filter_map(|h| h.peek().map(|(p, _)| *p))
            .min()?;
        let row = std::array::from_fn(|i| {
            let head = &mut self.heads[i];
            head.next_if(|(p, _)| *p == least).map(|(_, v)| v)
        });
        Some((least, row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn path(s: &[u8]) -> RelPath {
        RelPath::new(s.to_vec()).unwrap()
    }

    #[test]
    fn merges_in_tree_order_with_every_value() {
        let a: BTreeMap<RelPath, u8> =
            [(path(b"a"), 1), (path(b"a/b"), 2), (path(b"a-b"), 3)].into();
        let b: BTreeMap<RelPath, u8> = [(path(b"a/b"), 4), (path(b"z"), 5)].into();
        let got: Vec<_> = merge([&a, &b])
            .map(|(p, [x, y])| (p.to_string(), x.copied(), y.copied()))
            .collect();
        let want = [
            ("a", Some(1), None),
            ("a/b", Some(2), Some(4)),
            ("a-b", Some(3), None),
            ("z", None, Some(5)),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(p, x, y)| (p.to_string(), *x, *y))
            .collect();
        assert_eq!(got, want);
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(b"ab-./\xff ".to_vec()), 1..6)
    }

    proptest! {
        #[test]
        fn equals_the_union_looked_up(
            xs in prop::collection::vec(name(), 0..40),
            ys in prop::collection::vec(name(), 0..40),
            zs in prop::collection::vec(name(), 0..40),
        ) {
            let map = |v: &[Vec<u8>], tag: u8| -> BTreeMap<RelPath, u8> {
                v.iter().filter_map(|n| RelPath::new(n.clone()).ok()).map(|p| (p, tag)).collect()
            };
            let (x, y, z) = (map(&xs, 1), map(&ys, 2), map(&zs, 3));
            let union: BTreeSet<&RelPath> = x.keys().chain(y.keys()).chain(z.keys()).collect();
            let want: Vec<_> = union.into_iter().map(|p| (p, [x.get(p), y.get(p), z.get(p)])).collect();
            let got: Vec<_> = merge([&x, &y, &z]).collect();
            prop_assert_eq!(got, want);
        }
    }
}
