//! The block cache for catch-up reads: index rows (at most ~1 MiB of one
//! partition's batches) fetched from objects, kept in an LRU bounded by
//! bytes. It is separate from the in-memory tail, so a reader replaying
//! history can never evict what tail consumers read, and it has its own
//! budget. Reads ahead: after a miss, the next rows of the same partition are
//! fetched in the background so sequential catch-up reads find them ready.

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;

type Key = (String, u64);

/// A byte-bounded LRU of object ranges.
pub struct BlockCache {
    budget: usize,
    inner: Mutex<(LruCache<Key, Bytes>, usize)>,
}

impl BlockCache {
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new((LruCache::unbounded(), 0)),
        }
    }

    pub fn get(&self, object: &str, position: u64) -> Option<Bytes> {
        let hit = self
            .inner
            .lock()
            .0
            .get(&(object.to_string(), position))
            .cloned();
        sluice_observe::metrics()
            .block_cache_lookups
            .with_label_values(&[if hit.is_some() { "hit" } else { "miss" }])
            .inc();
        hit
    }

    /// Like [`get`](Self::get), but neither counted in the hit/miss metrics
    /// nor moving the row up the LRU: for a second look at a row already
    /// counted, and for background (compaction) reads.
    pub fn peek(&self, object: &str, position: u64) -> Option<Bytes> {
        self.inner
            .lock()
            .0
            .peek(&(object.to_string(), position))
            .cloned()
    }

    pub fn contains(&self, object: &str, position: u64) -> bool {
        self.inner
            .lock()
            .0
            .contains(&(object.to_string(), position))
    }

    pub fn insert(&self, object: &str, position: u64, data: Bytes) {
        if data.len() > self.budget {
            return;
        }
        let mut g = self.inner.lock();
        let (cache, used) = &mut *g;
        if let Some(old) = cache.put((object.to_string(), position), data.clone()) {
            *used -= old.len();
        }
        *used += data.len();
        while *used > self.budget {
            match cache.pop_lru() {
                Some((_, v)) => *used -= v.len(),
                None => break,
            }
        }
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.inner.lock().1
    }

    /// Drops every block of an object (it was deleted).
    pub fn forget_object(&self, object: &str) {
        let mut g = self.inner.lock();
        let (cache, used) = &mut *g;
        let keys: Vec<Key> = cache
            .iter()
            .filter(|(k, _)| k.0 == object)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(v) = cache.pop(&k) {
                *used -= v.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_budget_evicting_least_recent() {
        let c = BlockCache::new(250);
        c.insert("a", 0, Bytes::from(vec![0; 100]));
        c.insert("a", 100, Bytes::from(vec![0; 100]));
        assert!(c.get("a", 0).is_some());
        c.insert("b", 0, Bytes::from(vec![0; 100]));
        assert!(c.used() <= 250);
        assert!(c.get("a", 100).is_none(), "least recently used goes first");
        assert!(c.get("a", 0).is_some());
        c.forget_object("a");
        assert!(!c.contains("a", 0));
        c.insert("huge", 0, Bytes::from(vec![0; 1000]));
        assert!(!c.contains("huge", 0));
    }

    #[test]
    fn peek_does_not_keep_a_row_from_eviction() {
        let c = BlockCache::new(250);
        c.insert("a", 0, Bytes::from(vec![0; 100]));
        c.insert("a", 100, Bytes::from(vec![0; 100]));
        assert!(c.peek("a", 0).is_some());
        c.insert("b", 0, Bytes::from(vec![0; 100]));
        assert!(
            c.peek("a", 0).is_none(),
            "a peek does not make a row recent"
        );
        assert!(c.peek("a", 100).is_some());
    }
}
