//! One partition's in-memory state: offset assignment, the high watermark
//! (end of durable data), the tail of the log held in memory, and the
//! idempotent-producer sequence state.
//!
//! The in-memory tail is a contiguous run of batches ending at `next_offset`.
//! Batches at or after the high watermark are not yet durable and are never
//! returned to readers. Batches before `uploaded_end` are also in objects and
//! may be evicted from the front.

use bytes::Bytes;
use parking_lot::Mutex;
use sluice_catalog::{ProducerBatch, ProducerStateRecord};
use sluice_protocol::batch::BatchHeader;
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

/// How many recent batches per producer are remembered for duplicate detection
/// (the same as Kafka's max in-flight requests per idempotent producer).
pub const PRODUCER_BATCH_MEMORY: usize = 5;

/// A batch held in memory, with its offsets assigned.
#[derive(Debug, Clone)]
pub struct MemBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub bytes: Bytes,
}

/// Sequence state of one idempotent producer on this partition.
#[derive(Debug, Clone, Default)]
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
    pub fn check(state: Option<&ProducerState>, h: &BatchHeader) -> SequenceCheck {
        let Some(state) = state else {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder
            };
        };
        if h.producer_epoch < state.epoch {
            return SequenceCheck::StaleEpoch;
        }
        if h.producer_epoch > state.epoch {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder
            };
        }
        let last_seq = h.last_sequence();
        if let Some(dup) = state
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
            };
        }
        let expected = match state.batches.back() {
            Some(b) if b.last_seq == i32::MAX => 0,
            Some(b) => b.last_seq + 1,
            None => 0,
        };
        if h.base_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder
        }
    }

    /// Records a batch written at `base_offset`.
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if h.producer_epoch != self.epoch {
            self.epoch = h.producer_epoch;
            self.batches.clear();
        }
        self.batches.push_back(ProducerBatch {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset,
            last_offset: base_offset + h.last_offset_delta as i64,
        });
        while self.batches.len() > PRODUCER_BATCH_MEMORY {
            self.batches.pop_front();
        }
    }
}

/// Mutable state of a partition, behind its lock.
#[derive(Debug, Default)]
pub struct PartitionInner {
    /// Next offset to assign.
    pub next_offset: i64,
    /// End of durable data: readers see offsets below it.
    pub high_watermark: i64,
    /// First offset still in the log.
    pub log_start: i64,
    /// End of the data already in objects.
    pub uploaded_end: i64,
    /// The in-memory tail, contiguous and ending at `next_offset`.
    pub mem: VecDeque<MemBatch>,
    /// Bytes in `mem`.
    pub mem_bytes: usize,
    /// Bytes in `mem` not yet uploaded.
    pub unuploaded_bytes: usize,
    /// Bytes of the whole partition (objects and memory).
    pub size_bytes: u64,
    pub producers: HashMap<i64, ProducerState>,
    /// Set when the topic is deleted: nothing more is appended or uploaded.
    pub deleted: bool,
}

impl PartitionInner {
    /// First offset held in memory (`next_offset` when the tail is empty).
    pub fn mem_start(&self) -> i64 {
        self.mem
            .front()
            .map(|b| b.base_offset)
            .unwrap_or(self.next_offset)
    }

    /// Appends a batch whose offsets are already assigned.
    pub fn push(&mut self, batch: MemBatch, uploaded: bool) {
        self.next_offset = batch.last_offset + 1;
        self.mem_bytes += batch.bytes.len();
        self.size_bytes += batch.bytes.len() as u64;
        if !uploaded {
            self.unuploaded_bytes += batch.bytes.len();
        }
        self.mem.push_back(batch);
    }

    /// Index in `mem` of the batch holding `offset`, or of the first batch
    /// after it.
    pub fn mem_index(&self, offset: i64) -> usize {
        self.mem.partition_point(|b| b.last_offset < offset)
    }

    /// Durable batches not yet uploaded.
    pub fn upload_candidates(&self) -> Vec<MemBatch> {
        let from = self.mem_index(self.uploaded_end);
        self.mem
            .iter()
            .skip(from)
            .take_while(|b| b.last_offset < self.high_watermark)
            .cloned()
            .collect()
    }

    /// Marks data up to `end` as uploaded and returns the bytes that became
    /// uploaded.
    pub fn mark_uploaded(&mut self, end: i64) -> usize {
        let from = self.mem_index(self.uploaded_end);
        let bytes: usize = self
            .mem
            .iter()
            .skip(from)
            .take_while(|b| b.last_offset < end)
            .map(|b| b.bytes.len())
            .sum();
        self.uploaded_end = self.uploaded_end.max(end);
        self.unuploaded_bytes = self.unuploaded_bytes.saturating_sub(bytes);
        bytes
    }

    /// Drops uploaded batches from the front until at most `keep` bytes stay.
    pub fn evict_uploaded(&mut self, keep: usize) {
        while self.mem_bytes > keep {
            match self.mem.front() {
                Some(b) if b.last_offset < self.uploaded_end => {
                    self.mem_bytes -= b.bytes.len();
                    self.mem.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Producer state in the catalog's form.
    pub fn producer_records(&self, topic: Uuid, partition: i32) -> Vec<ProducerStateRecord> {
        self.producers
            .iter()
            .map(|(id, s)| ProducerStateRecord {
                topic,
                partition,
                producer_id: *id,
                epoch: s.epoch,
                batches: s.batches.iter().cloned().collect(),
            })
            .collect()
    }
}

/// A partition of a topic.
#[derive(Debug)]
pub struct PartitionLog {
    pub topic_id: Uuid,
    pub topic_name: String,
    pub partition: i32,
    pub inner: Mutex<PartitionInner>,
}

impl PartitionLog {
    pub fn new(
        topic_id: Uuid,
        topic_name: String,
        partition: i32,
        start: i64,
        log_start: i64,
    ) -> Self {
        Self {
            topic_id,
            topic_name,
            partition,
            inner: Mutex::new(PartitionInner {
                // Offsets continue from the log start when everything
                // before it was deleted (DeleteRecords, retention).
                next_offset: start.max(log_start),
                high_watermark: start.max(log_start),
                log_start,
                uploaded_end: start.max(log_start),
                ..Default::default()
            }),
        }
    }

    /// Raises the high watermark after the WAL made data up to `end` durable.
    pub fn mark_durable(&self, end: i64) {
        let mut inner = self.inner.lock();
        if end > inner.high_watermark {
            inner.high_watermark = end;
        }
    }

    /// (log start, high watermark).
    pub fn offsets(&self) -> (i64, i64) {
        let inner = self.inner.lock();
        (inner.log_start, inner.high_watermark)
    }

    /// Whether a read at `offset` would go to objects (it is in the log but
    /// no longer in memory): a catch-up read.
    pub fn reads_from_objects(&self, offset: i64) -> bool {
        let inner = self.inner.lock();
        offset >= inner.log_start && offset < inner.high_watermark && offset < inner.mem_start()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(epoch: i16, seq: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: 1,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn sequence_rules() {
        assert_eq!(
            ProducerState::check(None, &header(0, 0, 5)),
            SequenceCheck::Append
        );
        assert_eq!(
            ProducerState::check(None, &header(0, 3, 5)),
            SequenceCheck::OutOfOrder
        );
        let mut s = ProducerState::default();
        s.record(&header(0, 0, 5), 100);
        assert_eq!(
            ProducerState::check(Some(&s), &header(0, 0, 5)),
            SequenceCheck::Duplicate {
                base_offset: 100,
                last_offset: 104
            }
        );
        assert_eq!(
            ProducerState::check(Some(&s), &header(0, 5, 2)),
            SequenceCheck::Append
        );
        assert_eq!(
            ProducerState::check(Some(&s), &header(0, 6, 2)),
            SequenceCheck::OutOfOrder
        );
        assert_eq!(
            ProducerState::check(Some(&s), &header(1, 0, 2)),
            SequenceCheck::Append
        );
        s.record(&header(1, 0, 2), 200);
        assert_eq!(
            ProducerState::check(Some(&s), &header(0, 7, 1)),
            SequenceCheck::StaleEpoch
        );
        for i in 0..10 {
            s.record(&header(1, 2 + i, 1), 300 + i as i64);
        }
        assert_eq!(s.batches.len(), PRODUCER_BATCH_MEMORY);
    }

    #[test]
    fn upload_and_eviction_bookkeeping() {
        let mut p = PartitionInner::default();
        for i in 0..4 {
            p.push(
                MemBatch {
                    base_offset: i * 10,
                    last_offset: i * 10 + 9,
                    max_timestamp: 0,
                    bytes: Bytes::from(vec![0u8; 100]),
                },
                false,
            );
        }
        p.high_watermark = 30;
        assert_eq!(p.upload_candidates().len(), 3);
        assert_eq!(p.mark_uploaded(30), 300);
        assert_eq!(p.unuploaded_bytes, 100);
        assert!(p.upload_candidates().is_empty());
        p.evict_uploaded(250);
        assert_eq!(p.mem_start(), 20);
        p.evict_uploaded(0);
        assert_eq!(p.mem_start(), 30, "never evicts what is not uploaded");
        assert_eq!(p.mem_index(35), 0);
    }
}
