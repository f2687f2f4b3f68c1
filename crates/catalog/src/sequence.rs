//! Idempotent-producer sequence rules, shared by the embedded broker (which
//! checks them in memory before its WAL append) and the cluster's flush
//! commit (which checks them inside the catalog transaction that assigns
//! offsets, so a batch retried through another broker is caught too).

use crate::{ProducerBatch, ProducerSeq};
use std::collections::VecDeque;

/// How many recent batches per producer are remembered for duplicate detection
/// (the same as Kafka's max in-flight requests per idempotent producer).
pub const PRODUCER_BATCH_MEMORY: usize = 5;

/// Sequence state of one idempotent producer on one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerState {
    pub epoch: i16,
    pub batches: VecDeque<ProducerBatch>,
}

/// What the sequence check decided for an incoming batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already written at these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
    /// The batch skips sequence numbers (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder,
    /// The producer epoch is older than the one seen (INVALID_PRODUCER_EPOCH).
    StaleEpoch,
}

impl ProducerState {
    /// Checks an incoming batch from this producer against its history.
    pub fn check(state: Option<&ProducerState>, b: &ProducerSeq) -> SequenceCheck {
        let Some(state) = state else {
            return if b.first_seq == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder
            };
        };
        if b.epoch < state.epoch {
            return SequenceCheck::StaleEpoch;
        }
        if b.epoch > state.epoch {
            return if b.first_seq == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder
            };
        }
        if let Some(dup) = state
            .batches
            .iter()
            .find(|x| x.first_seq == b.first_seq && x.last_seq == b.last_seq)
        {
            return SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
            };
        }
        let expected = match state.batches.back() {
            Some(x) if x.last_seq == i32::MAX => 0,
            Some(x) => x.last_seq + 1,
            None => 0,
        };
        if b.first_seq == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder
        }
    }

    /// Takes a newer epoch the transaction coordinator wrote a marker with
    /// (the producer was fenced or bumped): batches of older epochs become
    /// stale, and the new epoch's sequence starts afresh.
    pub fn fence(&mut self, epoch: i16) {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }

    /// Records a batch written at offsets `base_offset..=last_offset`.
    pub fn record(&mut self, b: &ProducerSeq, base_offset: i64, last_offset: i64) {
        if b.epoch != self.epoch {
            self.epoch = b.epoch;
            self.batches.clear();
        }
        self.batches.push_back(ProducerBatch {
            first_seq: b.first_seq,
            last_seq: b.last_seq,
            base_offset,
            last_offset,
        });
        while self.batches.len() > PRODUCER_BATCH_MEMORY {
            self.batches.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(epoch: i16, first: i32, count: i32) -> ProducerSeq {
        ProducerSeq {
            producer_id: 1,
            epoch,
            first_seq: first,
            last_seq: first + count - 1,
        }
    }

    #[test]
    fn sequence_rules() {
        assert_eq!(
            ProducerState::check(None, &seq(0, 0, 5)),
            SequenceCheck::Append
        );
        assert_eq!(
            ProducerState::check(None, &seq(0, 3, 5)),
            SequenceCheck::OutOfOrder
        );
        let mut s = ProducerState::default();
        s.record(&seq(0, 0, 5), 100, 104);
        assert_eq!(
            ProducerState::check(Some(&s), &seq(0, 0, 5)),
            SequenceCheck::Duplicate {
                base_offset: 100,
                last_offset: 104
            }
        );
        assert_eq!(
            ProducerState::check(Some(&s), &seq(0, 5, 2)),
            SequenceCheck::Append
        );
        assert_eq!(
            ProducerState::check(Some(&s), &seq(0, 6, 2)),
            SequenceCheck::OutOfOrder
        );
        assert_eq!(
            ProducerState::check(Some(&s), &seq(1, 0, 2)),
            SequenceCheck::Append
        );
        s.record(&seq(1, 0, 2), 200, 201);
        assert_eq!(
            ProducerState::check(Some(&s), &seq(0, 7, 1)),
            SequenceCheck::StaleEpoch
        );
        for i in 0..10 {
            s.record(&seq(1, 2 + i, 1), 300 + i as i64, 300 + i as i64);
        }
        assert_eq!(s.batches.len(), PRODUCER_BATCH_MEMORY);
    }
}
