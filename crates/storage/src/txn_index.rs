//! A partition's transaction index: which producers have a transaction
//! open on it (from the offset of its first batch) and which transactions
//! were aborted (from their first batch to their abort marker). It gives
//! the last stable offset (read_committed readers see nothing at or past
//! the first offset of an open transaction) and the aborted transactions a
//! read_committed fetch lists, so the client drops their records.
//!
//! It follows every batch appended (or replayed from the WAL), and uploads
//! save it as of their end, like the idempotent-producer state, so a
//! restart rebuilds it from the catalog plus the WAL's tail.
//!
//! A cluster broker learns other brokers' batches from the change feed and
//! its own when their commit returns, so it may hear a producer's next
//! transaction's data before the marker ending the previous one. The index
//! therefore keeps each open transaction's batch offsets until a marker
//! splits them: those before the marker belong to the transaction it ends,
//! those after it to the next one.

use sluice_catalog::TxnIndexEntry;
use sluice_protocol::records::Marker;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub(crate) struct TxnIndex {
    /// Producer id -> offsets of the data batches of its open
    /// transaction(s) not yet ended by a marker heard here.
    open: BTreeMap<i64, BTreeSet<i64>>,
    /// Aborted transactions, in marker order.
    aborted: Vec<TxnIndexEntry>,
    /// Whether this partition ever held a transaction (its index is then
    /// saved with every upload).
    used: bool,
}

impl TxnIndex {
    /// Follows a transactional data batch at `base`.
    pub fn data(&mut self, producer_id: i64, base: i64) {
        self.used = true;
        self.open.entry(producer_id).or_default().insert(base);
    }

    /// Follows a marker written at `offset`: it ends the transaction of
    /// the producer's batches before it.
    pub fn marker(&mut self, producer_id: i64, marker: Marker, offset: i64) {
        self.used = true;
        let Some(bases) = self.open.get_mut(&producer_id) else {
            return;
        };
        let later = bases.split_off(&offset);
        let ended = std::mem::replace(bases, later);
        if bases.is_empty() {
            self.open.remove(&producer_id);
        }
        if let (Some(first), Marker::Abort) = (ended.first(), marker) {
            let e = TxnIndexEntry {
                producer_id,
                first_offset: *first,
                last_offset: Some(offset),
            };
            // In marker order (a marker heard late goes to its place).
            let at = self
                .aborted
                .partition_point(|x| x.last_offset < e.last_offset);
            self.aborted.insert(at, e);
        }
    }

    /// The last stable offset given the high watermark.
    pub fn last_stable(&self, high_watermark: i64) -> i64 {
        self.open
            .values()
            .filter_map(|b| b.first().copied())
            .min()
            .map_or(high_watermark, |f| f.min(high_watermark))
    }

    /// (producer id, first offset) of the aborted transactions that overlap
    /// offsets `from..to`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        self.aborted
            .iter()
            .filter(|e| e.last_offset.is_some_and(|l| l >= from) && e.first_offset < to)
            .map(|e| (e.producer_id, e.first_offset))
            .collect()
    }

    /// (producer id, first offset, marker offset) of every aborted
    /// transaction.
    pub fn aborted_ranges(&self) -> Vec<(i64, i64, i64)> {
        self.aborted
            .iter()
            .filter_map(|e| e.last_offset.map(|l| (e.producer_id, e.first_offset, l)))
            .collect()
    }

    /// The index as of offset `end` (an upload's end), or `None` when this
    /// partition never held a transaction: open transactions that began
    /// before it, and the aborted ones whose marker is before it (one whose
    /// marker comes later is saved as open: the WAL replays the marker).
    pub fn snapshot(&self, end: i64) -> Option<Vec<TxnIndexEntry>> {
        if !self.used {
            return None;
        }
        let mut out: Vec<TxnIndexEntry> = self
            .aborted
            .iter()
            .filter(|e| e.first_offset < end)
            .map(|e| TxnIndexEntry {
                last_offset: e.last_offset.filter(|l| *l < end),
                ..*e
            })
            .collect();
        out.extend(self.open.iter().filter_map(|(pid, bases)| {
            let first = *bases.first()?;
            (first < end).then_some(TxnIndexEntry {
                producer_id: *pid,
                first_offset: first,
                last_offset: None,
            })
        }));
        Some(out)
    }

    /// Takes back an index saved by an upload.
    pub fn restore(&mut self, entries: Vec<TxnIndexEntry>) {
        self.used |= !entries.is_empty();
        for e in entries {
            match e.last_offset {
                None => {
                    self.open
                        .entry(e.producer_id)
                        .or_default()
                        .insert(e.first_offset);
                }
                Some(_) => self.aborted.push(e),
            }
        }
        self.aborted.sort_by_key(|e| e.last_offset);
    }

    /// Forgets aborted transactions wholly before the log start.
    pub fn trim(&mut self, log_start: i64) {
        self.aborted
            .retain(|e| e.last_offset.is_none_or(|l| l >= log_start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_transactions_hold_the_stable_offset_and_aborts_are_listed() {
        let mut t = TxnIndex::default();
        assert_eq!(t.snapshot(10), None, "no transaction: nothing saved");
        t.data(7, 10);
        t.data(7, 12); // the same transaction goes on
        t.data(8, 11);
        assert_eq!(t.last_stable(20), 10);
        t.marker(7, Marker::Commit, 13);
        assert_eq!(t.last_stable(20), 11);
        t.marker(8, Marker::Abort, 14);
        assert_eq!(t.last_stable(20), 20);
        assert_eq!(t.aborted_between(0, 20), vec![(8, 11)]);
        assert_eq!(t.aborted_between(15, 20), vec![], "ended before");
        assert_eq!(t.aborted_between(0, 11), vec![], "begins after");
        // An upload ending at 14 saw the abort's data but not its marker.
        assert_eq!(
            t.snapshot(14),
            Some(vec![TxnIndexEntry {
                producer_id: 8,
                first_offset: 11,
                last_offset: None
            }])
        );
        let mut restored = TxnIndex::default();
        restored.restore(t.snapshot(14).unwrap());
        assert_eq!(restored.last_stable(20), 11);
        restored.marker(8, Marker::Abort, 14); // the WAL replays the marker
        assert_eq!(restored.aborted_between(0, 20), vec![(8, 11)]);
        restored.trim(15);
        assert_eq!(restored.aborted_between(0, 20), vec![]);
    }

    #[test]
    fn a_marker_heard_after_the_next_transactions_data_splits_them() {
        let mut t = TxnIndex::default();
        t.data(7, 10);
        t.data(7, 20);
        // The next transaction's data (after the abort marker at 30) is
        // heard before the marker.
        t.data(7, 31);
        t.marker(7, Marker::Abort, 30);
        assert_eq!(t.aborted_between(0, 100), vec![(7, 10)]);
        assert_eq!(t.last_stable(100), 31, "the next transaction is open");
        t.marker(7, Marker::Commit, 40);
        assert_eq!(t.last_stable(100), 100);
        assert_eq!(
            t.aborted_between(0, 100),
            vec![(7, 10)],
            "a commit adds no entry"
        );
    }
}
