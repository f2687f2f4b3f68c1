//! One partition's in-memory state, behind its own lock and changed only
//! through [`PartitionLog`]'s methods, which keep its invariants:
//!
//! - offsets: `log_start <= high_watermark`, and readers see only offsets
//!   below the high watermark (the end of durable data); neither moves
//!   backwards;
//! - the tail held in memory is ordered by offset and never holds anything
//!   below the log start. The embedded broker assigns offsets here, so its
//!   tail is contiguous and ends at the next offset to assign; a cluster
//!   broker keeps the batches it committed itself, which other brokers'
//!   batches may separate by gaps (readers find those in objects);
//! - data not yet in objects (`uploaded_end` and after) is never evicted;
//! - the idempotent-producer state and the transaction index follow every
//!   append (embedded).
//!
//! A cluster broker also keeps the index rows other brokers just published
//! (heard through the catalog's notifications), so a reader following the
//! tail finds them without asking the database.

use crate::log::{AppendError, ReadOutcome};
use crate::txn_index::TxnIndex;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use sluice_catalog::sequence::{ProducerState, SequenceCheck};
use sluice_catalog::{
    PartitionTxns, ProducerSeq, ProducerStateRecord, SegmentRecord, TxnIndexEntry,
};
use sluice_protocol::batch::{set_base_offset, set_log_append_time, BatchHeader, CheckedBatch};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A batch held in memory, with its offsets assigned.
#[derive(Debug, Clone)]
pub struct MemBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub bytes: Bytes,
}

/// The producer identity and sequence range of a batch, if it has one.
pub fn producer_seq(h: &BatchHeader) -> Option<ProducerSeq> {
    h.has_producer_id().then(|| ProducerSeq {
        producer_id: h.producer_id,
        epoch: h.producer_epoch,
        first_seq: h.base_sequence,
        last_seq: h.last_sequence(),
    })
}

/// How long a published index row heard from another broker is trusted
/// for tail reads: far less than the garbage collector's grace, so a row
/// that compaction replaced is never read after its object is gone.
const RECENT_ROW_TTL: Duration = Duration::from_secs(10);
/// Index rows kept per partition for tail readers.
const RECENT_ROWS: usize = 64;

#[derive(Debug, Default)]
struct State {
    /// Next offset to assign (embedded).
    next_offset: i64,
    high_watermark: i64,
    log_start: i64,
    /// End of the data already in objects.
    uploaded_end: i64,
    mem: VecDeque<MemBatch>,
    mem_bytes: usize,
    /// Bytes in `mem` not yet uploaded.
    unuploaded_bytes: usize,
    /// Bytes of the whole partition (objects and memory).
    size_bytes: u64,
    producers: HashMap<i64, ProducerState>,
    txns: TxnIndex,
    /// Index rows other brokers published lately, in offset order.
    recent: VecDeque<(Instant, SegmentRecord)>,
    /// Set when the topic is deleted: nothing more is appended or uploaded.
    deleted: bool,
}

impl State {
    /// Index in `mem` of the batch holding `offset`, or of the first batch
    /// after it.
    fn mem_index(&self, offset: i64) -> usize {
        self.mem.partition_point(|b| b.last_offset < offset)
    }

    /// Whether the batch holding `offset` is in memory.
    fn mem_covers(&self, offset: i64) -> bool {
        self.mem
            .get(self.mem_index(offset))
            .is_some_and(|b| b.base_offset <= offset)
    }

    /// Follows a transactional batch appended at `base` in the transaction
    /// index; a marker also fences older epochs of its producer.
    fn follow_transaction(&mut self, h: &BatchHeader, bytes: &Bytes, base: i64) {
        if !h.is_transactional() || !h.has_producer_id() {
            return;
        }
        if h.is_control() {
            if let Some(m) = sluice_protocol::records::marker_of(bytes) {
                self.txns.marker(h.producer_id, m, base);
            }
            self.producers
                .entry(h.producer_id)
                .or_default()
                .fence(h.producer_epoch);
        } else {
            self.txns.data(h.producer_id, base);
        }
    }

    fn push(&mut self, batch: MemBatch, uploaded: bool) {
        self.next_offset = self.next_offset.max(batch.last_offset + 1);
        self.mem_bytes += batch.bytes.len();
        self.size_bytes += batch.bytes.len() as u64;
        if !uploaded {
            self.unuploaded_bytes += batch.bytes.len();
        }
        self.mem.push_back(batch);
    }

    /// Drops uploaded batches from the front until at most `keep` bytes stay.
    fn evict_uploaded(&mut self, keep: usize) {
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

    /// Drops memory wholly below the log start (once it is in objects).
    fn drop_below_start(&mut self) {
        while let Some(b) = self.mem.front() {
            if b.last_offset < self.log_start && b.last_offset < self.uploaded_end {
                self.mem_bytes -= b.bytes.len();
                self.mem.pop_front();
            } else {
                break;
            }
        }
        while self
            .recent
            .front()
            .is_some_and(|(_, r)| r.last_offset < self.log_start)
        {
            self.recent.pop_front();
        }
    }
}

/// What an upload takes from a partition.
pub(crate) struct UploadCandidates {
    pub batches: Vec<MemBatch>,
    /// The idempotent-producer state as of the batches' end.
    pub producers: Vec<ProducerStateRecord>,
    /// The transaction index as of the batches' end (partitions that held
    /// a transaction).
    pub txns: Option<PartitionTxns>,
    /// Whether more data waits.
    pub more: bool,
}

/// What an embedded append decided, batch by batch.
#[derive(Debug, Default)]
pub(crate) struct LocalAppend {
    /// Offset of the request's first batch (appended or retried).
    pub first_base: Option<i64>,
    /// A retried batch's end: answer once it is durable.
    pub duplicate_until: Option<i64>,
    /// Bytes appended (also when a later batch was refused).
    pub bytes: usize,
    /// Why a batch was refused; the batches before it stay appended.
    pub error: Option<AppendError>,
}

/// Where a timestamp lookup found the batch holding an offset.
pub(crate) enum InMemory {
    /// Past the high watermark.
    PastEnd,
    /// In memory: its bytes.
    Found(Bytes),
    /// In objects.
    No,
}

/// A partition of a topic.
#[derive(Debug)]
pub struct PartitionLog {
    topic_id: Uuid,
    topic_name: String,
    partition: i32,
    state: Mutex<State>,
}

impl PartitionLog {
    /// A partition whose indexed data ends at `end`; offsets continue from
    /// the log start when everything before it was deleted.
    pub fn new(
        topic_id: Uuid,
        topic_name: String,
        partition: i32,
        end: i64,
        log_start: i64,
        size_bytes: u64,
    ) -> Self {
        let end = end.max(log_start);
        Self {
            topic_id,
            topic_name,
            partition,
            state: Mutex::new(State {
                next_offset: end,
                high_watermark: end,
                log_start,
                uploaded_end: end,
                size_bytes,
                ..Default::default()
            }),
        }
    }

    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    pub fn topic_name(&self) -> &str {
        &self.topic_name
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// (log start, high watermark).
    pub fn offsets(&self) -> (i64, i64) {
        let s = self.state.lock();
        (s.log_start, s.high_watermark)
    }

    /// Bytes of the partition's data (objects and memory).
    pub fn size_bytes(&self) -> u64 {
        self.state.lock().size_bytes
    }

    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Whether a read at `offset` would go to objects (it is in the log but
    /// not in memory): a catch-up read.
    pub fn reads_from_objects(&self, offset: i64) -> bool {
        let s = self.state.lock();
        offset >= s.log_start && offset < s.high_watermark && !s.mem_covers(offset)
    }

    /// (log start, high watermark, whether `offset` is in memory).
    pub(crate) fn read_position(&self, offset: i64) -> (i64, i64, bool) {
        let s = self.state.lock();
        (s.log_start, s.high_watermark, s.mem_covers(offset))
    }

    /// (bytes in memory, bytes not yet uploaded).
    pub(crate) fn memory(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.mem_bytes, s.unuploaded_bytes)
    }

    // -- the embedded write path ---------------------------------------------

    /// Restores an idempotent producer's state saved by an upload.
    pub(crate) fn restore_producer(&self, producer_id: i64, state: ProducerState) {
        self.state.lock().producers.insert(producer_id, state);
    }

    /// Takes back a batch replayed from the WAL (offsets assigned before the
    /// crash); returns its end, or `None` when it was already in objects.
    pub(crate) fn replay(&self, batch: Bytes) -> Option<(i64, usize)> {
        let h = BatchHeader::parse(&batch).ok()?;
        let mut s = self.state.lock();
        if h.last_offset() < s.next_offset {
            return None; // already in objects or replayed
        }
        if h.base_offset != s.next_offset {
            tracing::warn!(
                topic = %self.topic_name, partition = self.partition,
                expected = s.next_offset, found = h.base_offset,
                "offset gap while replaying the write-ahead log"
            );
        }
        match producer_seq(&h) {
            Some(seq) if !h.is_control() => {
                s.producers.entry(seq.producer_id).or_default().record(
                    &seq,
                    h.base_offset,
                    h.last_offset(),
                );
            }
            _ => {}
        }
        s.follow_transaction(&h, &batch, h.base_offset);
        let len = batch.len();
        s.push(
            MemBatch {
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
                max_timestamp: h.max_timestamp,
                bytes: batch,
            },
            false,
        );
        s.high_watermark = s.next_offset;
        Some((s.next_offset, len))
    }

    /// Assigns offsets to checked batches in order (answering retries of
    /// batches already written with their original offsets) and keeps them
    /// in memory; `write` is called for each appended batch while the
    /// partition is locked, so the WAL holds batches in offset order.
    /// `log_append_time` (>= 0) stamps the batches with the broker's time.
    pub(crate) fn append_local(
        &self,
        batches: Vec<CheckedBatch>,
        log_append_time: i64,
        write: impl FnMut(&MemBatch) -> Result<(), AppendError>,
    ) -> LocalAppend {
        let mut out = LocalAppend::default();
        if let Err(e) = self.append_locked(&mut out, batches, log_append_time, write) {
            out.error = Some(e);
        }
        out
    }

    fn append_locked(
        &self,
        out: &mut LocalAppend,
        batches: Vec<CheckedBatch>,
        log_append_time: i64,
        mut write: impl FnMut(&MemBatch) -> Result<(), AppendError>,
    ) -> Result<(), AppendError> {
        let mut s = self.state.lock();
        if s.deleted {
            return Err(AppendError::TopicDeleted);
        }
        for b in batches {
            let h = b.header;
            // Markers carry no sequence: they are the coordinator's.
            let seq = producer_seq(&h).filter(|_| !h.is_control());
            if let Some(seq) = &seq {
                match ProducerState::check(s.producers.get(&seq.producer_id), seq) {
                    SequenceCheck::Append => {}
                    SequenceCheck::Duplicate {
                        base_offset,
                        last_offset,
                    } => {
                        out.first_base.get_or_insert(base_offset);
                        out.duplicate_until = Some(last_offset + 1);
                        continue;
                    }
                    SequenceCheck::OutOfOrder => {
                        return Err(AppendError::OutOfOrderSequence(h.producer_id))
                    }
                    SequenceCheck::StaleEpoch => {
                        return Err(AppendError::StaleEpoch(h.producer_id))
                    }
                }
            }
            let base = s.next_offset;
            let last = base + h.last_offset_delta as i64;
            let mut owned = BytesMut::from(&b.bytes[..]);
            set_base_offset(&mut owned, base);
            let mut max_ts = h.max_timestamp;
            if log_append_time >= 0 {
                set_log_append_time(&mut owned, log_append_time);
                max_ts = log_append_time;
            }
            let batch = MemBatch {
                base_offset: base,
                last_offset: last,
                max_timestamp: max_ts,
                bytes: owned.freeze(),
            };
            write(&batch)?;
            if let Some(seq) = &seq {
                s.producers
                    .entry(seq.producer_id)
                    .or_default()
                    .record(seq, base, last);
            }
            s.follow_transaction(&h, &batch.bytes, base);
            out.bytes += batch.bytes.len();
            out.first_base.get_or_insert(base);
            s.push(batch, false);
        }
        Ok(())
    }

    /// Raises the high watermark after the WAL made data up to `end` durable.
    pub fn mark_durable(&self, end: i64) {
        let mut s = self.state.lock();
        if end > s.high_watermark {
            s.high_watermark = end;
        }
    }

    /// Durable batches not yet uploaded, at most about `budget` bytes (at
    /// least one batch), with the producer state and transaction index as
    /// of their end; `None` when there is nothing to upload.
    pub(crate) fn upload_candidates(&self, budget: usize) -> Option<UploadCandidates> {
        let s = self.state.lock();
        if s.deleted {
            return None;
        }
        let from = s.mem_index(s.uploaded_end);
        let mut taken = 0usize;
        let mut more = false;
        let mut batches = Vec::new();
        for b in s.mem.iter().skip(from) {
            if b.last_offset >= s.high_watermark {
                break;
            }
            if !batches.is_empty() && taken + b.bytes.len() > budget {
                more = true;
                break;
            }
            taken += b.bytes.len();
            batches.push(b.clone());
        }
        let end = batches.last()?.last_offset + 1;
        let producers = s
            .producers
            .iter()
            .filter_map(|(id, st)| {
                // Only batches this object makes durable in the catalog.
                let kept: Vec<_> = st
                    .batches
                    .iter()
                    .filter(|b| b.last_offset < end)
                    .cloned()
                    .collect();
                (!kept.is_empty()).then_some(ProducerStateRecord {
                    topic: self.topic_id,
                    partition: self.partition,
                    producer_id: *id,
                    epoch: st.epoch,
                    batches: kept,
                })
            })
            .collect();
        let txns = s.txns.snapshot(end).map(|entries| PartitionTxns {
            topic: self.topic_id,
            partition: self.partition,
            entries,
        });
        Some(UploadCandidates {
            batches,
            producers,
            txns,
            more,
        })
    }

    /// Learns another broker's transactional batch (`marker` `None`) or
    /// marker (`Some(commit)`) at `offset`, heard on the change feed.
    pub(crate) fn learn_txn(&self, producer_id: i64, offset: i64, marker: Option<bool>) {
        let mut s = self.state.lock();
        match marker {
            None => s.txns.data(producer_id, offset),
            Some(commit) => {
                let m = if commit {
                    sluice_protocol::records::Marker::Commit
                } else {
                    sluice_protocol::records::Marker::Abort
                };
                s.txns.marker(producer_id, m, offset)
            }
        }
    }

    /// Replaces the transaction index with the catalog's (a cluster
    /// broker's reload).
    pub(crate) fn replace_txns(&self, entries: Vec<TxnIndexEntry>) {
        let mut s = self.state.lock();
        s.txns = TxnIndex::default();
        s.txns.restore(entries);
    }

    /// Takes back the transaction index an upload saved.
    pub(crate) fn restore_txns(&self, entries: Vec<TxnIndexEntry>) {
        self.state.lock().txns.restore(entries);
    }

    /// The last stable offset: read_committed readers see only offsets
    /// below it (the first offset of the earliest open transaction, else
    /// the high watermark).
    pub fn last_stable_offset(&self) -> i64 {
        let s = self.state.lock();
        s.txns.last_stable(s.high_watermark)
    }

    /// (producer id, first offset, marker offset) of every aborted
    /// transaction still in the log (the cleaner removes their data).
    pub fn aborted_ranges(&self) -> Vec<(i64, i64, i64)> {
        self.state.lock().txns.aborted_ranges()
    }

    /// (producer id, first offset) of the aborted transactions overlapping
    /// offsets `from..to`, for a read_committed fetch.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        self.state.lock().txns.aborted_between(from, to)
    }

    /// Marks data up to `end` as uploaded, keeps at most `keep` bytes of
    /// uploaded data in memory, and returns the bytes that became uploaded.
    pub(crate) fn mark_uploaded(&self, end: i64, keep: usize) -> usize {
        let mut s = self.state.lock();
        if s.deleted {
            return 0;
        }
        let from = s.mem_index(s.uploaded_end);
        let bytes: usize = s
            .mem
            .iter()
            .skip(from)
            .take_while(|b| b.last_offset < end)
            .map(|b| b.bytes.len())
            .sum();
        s.uploaded_end = s.uploaded_end.max(end);
        s.unuploaded_bytes = s.unuploaded_bytes.saturating_sub(bytes);
        s.evict_uploaded(keep);
        bytes
    }

    /// End of the data in objects.
    pub(crate) fn uploaded_end(&self) -> i64 {
        self.state.lock().uploaded_end
    }

    // -- the cluster write and follow paths ---------------------------------

    /// Takes this broker's batches that a flush just committed at their
    /// offsets (already patched in), with the partition's ends after the
    /// flush; keeps at most `keep` bytes in memory. Returns whether the
    /// high watermark moved.
    pub(crate) fn committed(
        &self,
        batches: Vec<MemBatch>,
        log_start: i64,
        end: i64,
        keep: usize,
    ) -> bool {
        let mut s = self.state.lock();
        if s.deleted {
            return false;
        }
        for b in batches {
            if let Ok(h) = BatchHeader::parse(&b.bytes) {
                s.follow_transaction(&h, &b.bytes, b.base_offset);
            }
            // Everything committed is in objects: nothing here is unuploaded.
            if s.mem.back().is_none_or(|l| l.last_offset < b.base_offset) {
                s.push(b, true);
            }
        }
        let moved = Self::learn_locked(&mut s, log_start, end);
        s.evict_uploaded(keep);
        moved
    }

    /// Learns a partition's ends from the catalog (another broker's commit,
    /// a trim, a reload); never moves them backwards. Returns whether the
    /// high watermark moved.
    pub(crate) fn learn(&self, log_start: i64, end: i64) -> bool {
        let mut s = self.state.lock();
        Self::learn_locked(&mut s, log_start, end)
    }

    fn learn_locked(s: &mut State, log_start: i64, end: i64) -> bool {
        let moved = end > s.high_watermark;
        s.high_watermark = s.high_watermark.max(end);
        s.next_offset = s.next_offset.max(end);
        s.uploaded_end = s.uploaded_end.max(end);
        if log_start > s.log_start {
            s.log_start = log_start.min(s.high_watermark);
            s.drop_below_start();
        }
        moved
    }

    /// Learns the partition's size from the catalog (a cluster broker does
    /// not see the batches other brokers write).
    pub(crate) fn learn_size(&self, bytes: u64) {
        self.state.lock().size_bytes = bytes;
    }

    /// Keeps an index row another broker just published, for tail readers.
    pub(crate) fn learn_row(&self, row: SegmentRecord) {
        let mut s = self.state.lock();
        if s.recent
            .back()
            .is_some_and(|(_, r)| r.last_offset >= row.base_offset)
        {
            return; // already known (or out of order: the catalog has it)
        }
        s.recent.push_back((Instant::now(), row));
        while s.recent.len() > RECENT_ROWS {
            s.recent.pop_front();
        }
    }

    /// Up to `limit` recently published rows from the one holding `offset`,
    /// if they cover it (contiguous, and fresh enough to be safe to read).
    pub(crate) fn recent_rows(&self, offset: i64, limit: usize) -> Option<Vec<SegmentRecord>> {
        let s = self.state.lock();
        let i = s.recent.partition_point(|(_, r)| r.last_offset < offset);
        let (_, first) = s.recent.get(i)?;
        if first.base_offset > offset {
            return None;
        }
        let now = Instant::now();
        let mut out: Vec<SegmentRecord> = Vec::new();
        for (at, r) in s.recent.iter().skip(i).take(limit) {
            let follows = out
                .last()
                .is_none_or(|l| l.last_offset + 1 == r.base_offset);
            if !follows || now.duration_since(*at) > RECENT_ROW_TTL {
                break;
            }
            out.push(r.clone());
        }
        (!out.is_empty()).then_some(out)
    }

    /// Forgets the recently published rows (an object they named is gone:
    /// the catalog has newer ones).
    pub(crate) fn forget_recent(&self) {
        self.state.lock().recent.clear();
    }

    // -- both ----------------------------------------------------------------

    /// Moves the log start forward after the catalog dropped `freed` bytes
    /// of index rows before it.
    pub(crate) fn trim(&self, new_start: i64, freed: u64) -> i64 {
        let mut s = self.state.lock();
        s.log_start = s.log_start.max(new_start);
        s.size_bytes = s.size_bytes.saturating_sub(freed);
        s.drop_below_start();
        let start = s.log_start;
        s.txns.trim(start);
        s.log_start
    }

    /// After the cleaner rewrote the rows up to `through` (`freed` bytes
    /// fewer): drops the uploaded batches of that range kept in memory, so
    /// readers go to the cleaned objects, and the recently published rows.
    pub(crate) fn forget_cleaned(&self, through: i64, freed: u64) {
        let mut s = self.state.lock();
        s.size_bytes = s.size_bytes.saturating_sub(freed);
        while let Some(b) = s.mem.front() {
            if b.last_offset <= through && b.last_offset < s.uploaded_end {
                s.mem_bytes -= b.bytes.len();
                s.mem.pop_front();
            } else {
                break;
            }
        }
        s.recent.clear();
    }

    /// Reads batches from memory from the one holding `offset` while they
    /// follow each other, below `hw`, within `max_bytes` (the first batch
    /// whatever its size).
    pub(crate) fn read_mem(&self, offset: i64, max_bytes: usize, hw: i64, out: &mut ReadOutcome) {
        let s = self.state.lock();
        let from = s.mem_index(offset);
        let mut expect = offset;
        for b in s.mem.iter().skip(from) {
            if b.last_offset >= hw || b.base_offset > expect {
                break;
            }
            if !out.batches.is_empty() && out.bytes + b.bytes.len() > max_bytes {
                break;
            }
            out.bytes += b.bytes.len();
            out.batches.push(b.bytes.clone());
            expect = b.last_offset + 1;
            if out.bytes >= max_bytes {
                break;
            }
        }
    }

    /// The in-memory batch holding `offset`, for timestamp lookups.
    pub(crate) fn mem_batch_at(&self, offset: i64) -> InMemory {
        let s = self.state.lock();
        if offset >= s.high_watermark {
            return InMemory::PastEnd;
        }
        match s.mem.get(s.mem_index(offset)) {
            Some(b) if b.base_offset <= offset => InMemory::Found(b.bytes.clone()),
            _ => InMemory::No,
        }
    }

    /// Durable in-memory batches holding a timestamp at or after `ts`.
    pub(crate) fn mem_batches_from_time(&self, ts: i64) -> Vec<Bytes> {
        let s = self.state.lock();
        s.mem
            .iter()
            .filter(|b| b.last_offset < s.high_watermark && b.max_timestamp >= ts)
            .map(|b| b.bytes.clone())
            .collect()
    }

    /// Marks the partition deleted and drops its memory; returns the bytes
    /// that were waiting for upload.
    pub(crate) fn mark_deleted(&self) -> usize {
        let mut s = self.state.lock();
        s.deleted = true;
        let freed = s.unuploaded_bytes;
        s.unuploaded_bytes = 0;
        s.mem.clear();
        s.recent.clear();
        s.mem_bytes = 0;
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::batch::test_util::make_batch;

    fn checked(count: i32, producer: i64, seq: i32) -> CheckedBatch {
        let bytes = Bytes::from(make_batch(count, 1000, producer, seq));
        CheckedBatch {
            header: BatchHeader::parse(&bytes).unwrap(),
            bytes,
        }
    }

    #[test]
    fn local_appends_assign_offsets_and_answer_retries() {
        let p = PartitionLog::new(Uuid::nil(), "t".into(), 0, 10, 0, 0);
        let mut written = Vec::new();
        let a = p.append_local(vec![checked(3, 5, 0), checked(2, 5, 3)], -1, |b| {
            written.push(b.base_offset);
            Ok(())
        });
        assert!(a.error.is_none());
        assert_eq!(a.first_base, Some(10));
        assert_eq!(written, vec![10, 13]);
        assert_eq!(p.offsets(), (0, 10), "not durable yet");
        p.mark_durable(15);
        let retry = p.append_local(vec![checked(2, 5, 3)], -1, |_| panic!("not written"));
        assert_eq!(
            (retry.first_base, retry.duplicate_until),
            (Some(13), Some(15))
        );
        assert!(matches!(
            p.append_local(vec![checked(1, 5, 9)], -1, |_| Ok(())).error,
            Some(AppendError::OutOfOrderSequence(5))
        ));
        let mut out = ReadOutcome::default();
        p.read_mem(11, 1, 15, &mut out);
        assert_eq!(out.batches.len(), 1, "the first batch whatever the limit");
    }

    #[test]
    fn uploads_evict_only_what_is_in_objects() {
        let p = PartitionLog::new(Uuid::nil(), "t".into(), 0, 0, 0, 0);
        for _ in 0..4 {
            p.append_local(vec![checked(10, -1, 0)], -1, |_| Ok(()));
        }
        p.mark_durable(30);
        let c = p.upload_candidates(usize::MAX).unwrap();
        let (batches, more) = (c.batches, c.more);
        assert_eq!((batches.len(), more), (3, false));
        let len = batches[0].bytes.len();
        assert_eq!(p.mark_uploaded(30, len * 2 + len / 2), 3 * len);
        assert_eq!(p.memory(), (2 * len, len));
        assert!(p.reads_from_objects(5), "evicted: read from objects");
        assert!(p.reads_from_objects(15));
        assert!(!p.reads_from_objects(25), "kept within the tail budget");
        p.mark_uploaded(30, 0);
        assert!(
            !p.reads_from_objects(35),
            "never evicts what is not uploaded"
        );
        assert_eq!(p.memory(), (len, len));
    }

    #[test]
    fn cluster_tail_has_gaps_that_readers_respect() {
        let p = PartitionLog::new(Uuid::nil(), "t".into(), 0, 0, 0, 0);
        let batch = |base: i64, last: i64| MemBatch {
            base_offset: base,
            last_offset: last,
            max_timestamp: 0,
            bytes: Bytes::from(vec![0u8; 10]),
        };
        // This broker committed 0..=4 and 10..=14; another broker 5..=9.
        assert!(p.committed(vec![batch(0, 4)], 0, 5, usize::MAX));
        assert!(p.committed(vec![batch(10, 14)], 0, 15, usize::MAX));
        assert_eq!(p.offsets(), (0, 15));
        assert!(p.reads_from_objects(7));
        assert!(!p.reads_from_objects(12));
        let mut out = ReadOutcome::default();
        p.read_mem(0, 1 << 20, 15, &mut out);
        assert_eq!(out.batches.len(), 1, "the read stops at the gap");
        assert!(!p.learn(0, 12), "never backwards");
        assert!(p.learn(3, 20));
        assert_eq!(p.offsets(), (3, 20));
        p.learn_row(SegmentRecord {
            topic: Uuid::nil(),
            partition: 0,
            base_offset: 15,
            last_offset: 19,
            max_timestamp: 0,
            object_key: "o".into(),
            position: 0,
            length: 10,
        });
        assert_eq!(p.recent_rows(17, 8).map(|r| r.len()), Some(1));
        assert!(
            p.recent_rows(12, 8).is_none(),
            "not covered: ask the catalog"
        );
        p.forget_recent();
        assert!(p.recent_rows(17, 8).is_none());
    }
}
