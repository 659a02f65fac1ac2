//! Building sorted maps (trees, caches) from entries in tree order in bulk: runs appended
//! at the end, out-of-order ones merged in batches, never one lookup per entry.

use super::*;

/// Deserializes a map through a [`MapBuilder`]: its nodes come out full, where inserting
/// keys one by one in order leaves every node about half empty (nearly twice the memory
/// for a large tree).
pub fn bulk_map<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    K: Ord + Deserialize<'de>,
    V: Deserialize<'de>,
{
    struct Pairs<K, V>(std::marker::PhantomData<(K, V)>);
    impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> serde::de::Visitor<'de> for Pairs<K, V> {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut b = MapBuilder::default();
            while let Some((k, v)) = m.next_entry()? {
                b.push(k, v);
            }
            Ok(b.finish())
        }
    }
    d.deserialize_map(Pairs(std::marker::PhantomData))
}

/// Builds a `BTreeMap` with full nodes from pairs that arrive one at a time, in any order
/// (a later duplicate wins), without ever holding all of them twice.
///
/// `BTreeMap::from_iter` fills its nodes but first collects every pair into a list, so a
/// large tree needs the list and the map at once; inserting one by one leaves nodes half
/// empty for good. Here pairs wait in a list until they number a quarter of the map,
/// which then absorbs them with `append` (a merge that rebuilds the map with full nodes):
/// the peak is ~1.2 maps instead of ~2, and as the map grows geometrically each pair is
/// moved about five times.
pub struct MapBuilder<K, V> {
    pub(super) map: BTreeMap<K, V>,
    pub(super) pending: Vec<(K, V)>,
}

impl<K, V> Default for MapBuilder<K, V> {
    fn default() -> Self {
        MapBuilder {
            map: BTreeMap::new(),
            pending: Vec::new(),
        }
    }
}

impl<K: Ord, V> MapBuilder<K, V> {
    /// Below this many waiting pairs a merge is not worth its pass over the map.
    pub(super) const MIN_PART: usize = 1 << 15;

    /// Adds a pair.
    pub fn push(&mut self, key: K, value: V) {
        if self.pending.capacity() == 0 && !self.map.is_empty() {
            // Sized once: a list that doubles its way up touches fresh memory at every
            // step. Not before it is needed: after the last merge it would be wasted.
            self.pending.reserve_exact(self.threshold());
        }
        self.pending.push((key, value));
        if self.pending.len() >= self.threshold() {
            self.merge();
        }
    }

    /// How many pairs wait before a merge.
    pub(super) fn threshold(&self) -> usize {
        Self::MIN_PART.max(self.map.len() / 4)
    }

    /// Moves the waiting pairs into the map.
    pub(super) fn merge(&mut self) {
        // Collecting a list's own iterator reuses its buffer: no copy besides the map's.
        let mut part: BTreeMap<K, V> = std::mem::take(&mut self.pending).into_iter().collect();
        if self.map.is_empty() {
            self.map = part;
        } else {
            self.map.append(&mut part);
        }
    }

    /// The map of every pair pushed.
    pub fn finish(mut self) -> BTreeMap<K, V> {
        if worth_merging(self.pending.len(), self.map.len()) {
            self.merge();
        } else {
            self.map.extend(self.pending);
        }
        self.map
    }
}

/// Whether `part` new pairs should join a map of `map` pairs by a merge (which rebuilds the
/// map with full nodes) rather than one insert each: not for a few, where the merge would
/// move the whole map and inserting leaves only a few nodes half empty.
pub(super) fn worth_merging(part: usize, map: usize) -> bool {
    part > map / 16
}

impl<K: Ord, V> Extend<(K, V)> for MapBuilder<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.push(k, v);
        }
    }
}
