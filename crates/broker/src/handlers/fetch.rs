//! Fetch: reads each requested partition from its offset, within the
//! request's `max_bytes` and each partition's `partition_max_bytes` (the first
//! batch found is always returned, whatever its size, or a consumer whose
//! next batch is larger than its limits would stall), and long-polls until
//! `min_bytes` are available or `max_wait_ms` passes. Fetch sessions
//! (KIP-227) are declined with session id 0, so clients send full requests.
//! A cluster broker asked by a client of another zone (`client.rack`, Fetch
//! v11+) points it at a broker of that zone instead (KIP-392's preferred
//! read replica), so catch-up reads stay in the client's zone.

use super::code;
use crate::Broker;
use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use sluice_protocol::batch::iter_stored;
use sluice_storage::{PartitionLog, ReadError, ReadOutcome};
use std::time::Duration;
use tokio::time::Instant;

/// Upper bound on how long one fetch waits, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// A fetch's answer: the response, and each partition's stored batches (in
/// response order), kept apart so the frame can carry them without copying
/// (see `fetch_frame`).
pub struct FetchReply {
    pub response: FetchResponse,
    pub records: Vec<Vec<Bytes>>,
    /// Some partition was read from objects: a catch-up answer, written at
    /// background priority (see the server's `write_frame`).
    pub from_objects: bool,
}

impl FetchReply {
    /// A reply with no topics.
    pub fn empty() -> Self {
        Self {
            response: FetchResponse::default(),
            records: Vec::new(),
            from_objects: false,
        }
    }

    /// The response with every partition's batches joined into its
    /// `records` field, for `kafka-protocol`'s encoder.
    pub fn into_joined(self) -> FetchResponse {
        let mut resp = self.response;
        let mut records = self.records.into_iter();
        for p in resp
            .responses
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            let batches = records.next().unwrap_or_default();
            if !batches.is_empty() {
                p.records = Some(join(batches));
            }
        }
        resp
    }
}

fn join(batches: Vec<Bytes>) -> Bytes {
    match batches.len() {
        0 => Bytes::new(),
        1 => batches.into_iter().next().unwrap_or_default(),
        _ => {
            let mut buf = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
            for b in batches {
                buf.extend_from_slice(&b);
            }
            buf.freeze()
        }
    }
}

/// How a fetch sees transactions (its `isolation_level`, from `offset`).
#[derive(Clone, Copy)]
struct Isolation {
    read_committed: bool,
    offset: i64,
}

/// Fills `pd` from a read's outcome; returns its batches and whether it
/// failed. Every answer carries the last stable offset; a read_committed
/// one stops there and lists the aborted transactions among its batches
/// (the client drops their records).
fn settle(
    pd: &mut PartitionData,
    p: &PartitionLog,
    read: Result<ReadOutcome, ReadError>,
    iso: Isolation,
) -> (Vec<Bytes>, bool) {
    match read {
        Ok(out) => {
            let lso = p.last_stable_offset().min(out.high_watermark);
            pd.high_watermark = out.high_watermark;
            pd.last_stable_offset = lso;
            pd.log_start_offset = out.log_start;
            let mut batches = out.batches;
            if iso.read_committed {
                // A transaction's batches never straddle the stable offset
                // (it is the first offset of a batch, or the end).
                let keep = batches
                    .iter()
                    .take_while(|b| {
                        sluice_protocol::batch::BatchHeader::parse(b)
                            .is_ok_and(|h| h.base_offset < lso)
                    })
                    .count();
                batches.truncate(keep);
                let end = batches
                    .last()
                    .and_then(|b| sluice_protocol::batch::BatchHeader::parse(b).ok())
                    .map_or(iso.offset, |h| h.last_offset() + 1);
                pd.aborted_transactions = Some(
                    p.aborted_transactions(iso.offset, end)
                        .into_iter()
                        .map(|(producer_id, first_offset)| {
                            let mut a = AbortedTransaction::default();
                            a.producer_id = ProducerId(producer_id);
                            a.first_offset = first_offset;
                            a
                        })
                        .collect(),
                );
            }
            (batches, false)
        }
        Err(ReadError::OffsetOutOfRange {
            log_start,
            high_watermark,
            ..
        }) => {
            pd.error_code = code(ResponseError::OffsetOutOfRange);
            pd.high_watermark = high_watermark;
            pd.last_stable_offset = high_watermark;
            pd.log_start_offset = log_start;
            (Vec::new(), true)
        }
        Err(ReadError::Storage(e)) => {
            tracing::error!(topic = %p.topic_name(), partition = p.partition(), error = %e, "fetch read failed");
            pd.error_code = code(ResponseError::KafkaStorageError);
            (Vec::new(), true)
        }
    }
}

/// Reads every requested partition. Reads from memory happen in order, each
/// within what is left of the request's `max_bytes`; reads from objects
/// (catch-up) are started with their whole partition budget reserved and run
/// concurrently, so a fetch over several lagging partitions waits for one
/// round of object reads, not one per partition. A last pass in response
/// order keeps the total within `max_bytes` (the first batch always stays).
/// Returns the partitions' responses, their batches, the bytes kept, whether
/// any partition failed and whether any was read from objects.
async fn read_all(
    broker: &Broker,
    req: &FetchRequest,
) -> (
    Vec<FetchableTopicResponse>,
    Vec<Vec<Bytes>>,
    usize,
    bool,
    bool,
) {
    let max_bytes = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut reserved = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut records: Vec<Vec<Bytes>> = Vec::new();
    // (topic index, partition index, slot in `records`, partition, read)
    let mut cold = Vec::new();
    for ft in &req.topics {
        let mut tr = FetchableTopicResponse::default();
        tr.topic = ft.topic.clone();
        tr.topic_id = ft.topic_id;
        let topic = broker.store.topic(ft.topic.0.as_str());
        for fp in &ft.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = fp.partition;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            pd.records = Some(Bytes::new());
            let Some(p) = topic.as_ref().and_then(|t| t.partition(fp.partition)) else {
                pd.error_code = code(ResponseError::UnknownTopicOrPartition);
                any_error = true;
                tr.partitions.push(pd);
                records.push(Vec::new());
                continue;
            };
            if let Some(e) = super::leader_epoch::check_current(fp.current_leader_epoch) {
                pd.error_code = code(e);
                any_error = true;
                tr.partitions.push(pd);
                records.push(Vec::new());
                continue;
            }
            let budget =
                (fp.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(reserved));
            let iso = Isolation {
                read_committed: req.isolation_level == 1,
                offset: fp.fetch_offset,
            };
            if budget == 0 && reserved > 0 {
                let (start, hw) = p.offsets();
                pd.high_watermark = hw;
                pd.last_stable_offset = p.last_stable_offset();
                pd.log_start_offset = start;
                tr.partitions.push(pd);
                records.push(Vec::new());
                continue;
            }
            if p.reads_from_objects(fp.fetch_offset) {
                reserved = reserved.saturating_add(budget.max(1));
                let (p, offset) = (p.clone(), fp.fetch_offset);
                let read = async move {
                    let r = broker.store.read(&p, offset, budget.max(1)).await;
                    (p, r, iso)
                };
                cold.push((topics.len(), tr.partitions.len(), records.len(), read));
                tr.partitions.push(pd);
                records.push(Vec::new());
                continue;
            }
            let read = broker.store.read(p, fp.fetch_offset, budget.max(1)).await;
            let (batches, failed) = settle(&mut pd, p, read, iso);
            any_error |= failed;
            reserved += batches.iter().map(Bytes::len).sum::<usize>();
            tr.partitions.push(pd);
            records.push(batches);
        }
        topics.push(tr);
    }
    let from_objects = !cold.is_empty();
    let slots: Vec<_> = cold.iter().map(|(t, i, r, _)| (*t, *i, *r)).collect();
    let reads = futures::future::join_all(cold.into_iter().map(|(.., read)| read)).await;
    for ((t, i, r), (p, read, iso)) in slots.into_iter().zip(reads) {
        let (batches, failed) = settle(&mut topics[t].partitions[i], &p, read, iso);
        any_error |= failed;
        records[r] = batches;
    }
    let total = trim_to(&mut records, max_bytes);
    (topics, records, total, any_error, from_objects)
}

/// Keeps the batches, in response order, within `max_bytes` (the first batch
/// stays whatever its size); returns the bytes kept.
fn trim_to(records: &mut [Vec<Bytes>], max_bytes: usize) -> usize {
    let mut total = 0usize;
    for batches in records.iter_mut() {
        let mut keep = 0;
        for b in batches.iter() {
            if total > 0 && total.saturating_add(b.len()) > max_bytes {
                break;
            }
            total += b.len();
            keep += 1;
        }
        batches.truncate(keep);
    }
    total
}

/// Adds the bytes and records a response carries to the per-topic counters.
fn count_out(topics: &[FetchableTopicResponse], batches: &[Vec<Bytes>]) {
    let m = sluice_observe::metrics();
    let mut per_partition = batches.iter();
    for t in topics {
        let (mut bytes, mut records) = (0u64, 0u64);
        for _ in &t.partitions {
            for b in per_partition.next().into_iter().flatten() {
                bytes += b.len() as u64;
                records += iter_stored(b)
                    .map(|(h, _)| h.record_count.max(0) as u64)
                    .sum::<u64>();
            }
        }
        if bytes > 0 {
            let topic = [t.topic.0.as_str()];
            m.bytes_out.with_label_values(&topic).inc_by(bytes);
            m.records_out.with_label_values(&topic).inc_by(records);
        }
    }
}

/// The live brokers of the client's zone, when the client says its zone
/// (`client.rack`), this broker is in another, and that zone has brokers.
fn zone_brokers(broker: &Broker, rack: &str) -> Option<Vec<sluice_catalog::BrokerRecord>> {
    let m = &broker.membership;
    if rack.is_empty() || !m.is_cluster() || m.me().rack.as_deref() == Some(rack) {
        return None;
    }
    let local: Vec<_> = m
        .live()
        .iter()
        .filter(|b| b.rack.as_deref() == Some(rack))
        .cloned()
        .collect();
    (!local.is_empty()).then_some(local)
}

/// Answers every partition with the broker of the client's zone to fetch
/// it from, and the partition's offsets (no records).
fn redirect(
    broker: &Broker,
    req: &FetchRequest,
    local: &[sluice_catalog::BrokerRecord],
) -> FetchReply {
    let mut response = FetchResponse::default();
    let mut records = Vec::new();
    for ft in &req.topics {
        let mut tr = FetchableTopicResponse::default();
        tr.topic = ft.topic.clone();
        tr.topic_id = ft.topic_id;
        let topic = broker.store.topic(ft.topic.0.as_str());
        for fp in &ft.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = fp.partition;
            pd.records = Some(Bytes::new());
            match topic.as_ref().and_then(|t| t.partition(fp.partition)) {
                None => pd.error_code = code(ResponseError::UnknownTopicOrPartition),
                Some(p) => {
                    let (start, hw) = p.offsets();
                    pd.high_watermark = hw;
                    pd.last_stable_offset = p.last_stable_offset();
                    pd.log_start_offset = start;
                    if let Some(b) =
                        broker
                            .membership
                            .partition_leader(local, &p.topic_id(), p.partition())
                    {
                        pd.preferred_read_replica = kafka_protocol::messages::BrokerId(b.broker_id);
                    }
                }
            }
            tr.partitions.push(pd);
            records.push(Vec::new());
        }
        response.responses.push(tr);
    }
    FetchReply {
        response,
        records,
        from_objects: false,
    }
}

pub async fn handle(broker: &Broker, req: FetchRequest, version: i16) -> FetchReply {
    if version >= 11 {
        if let Some(local) = zone_brokers(broker, req.rack_id.as_str()) {
            return redirect(broker, &req, &local);
        }
    }
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let mut changes = broker.store.subscribe();
    loop {
        changes.borrow_and_update();
        let (topics, records, total, any_error, from_objects) = read_all(broker, &req).await;
        if total >= min_bytes || any_error || Instant::now() >= deadline {
            count_out(&topics, &records);
            let mut response = FetchResponse::default();
            response.responses = topics;
            return FetchReply {
                response,
                records,
                from_objects,
            };
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    let mut response = FetchResponse::default();
                    response.responses = topics;
                    return FetchReply {
                        response,
                        records,
                        from_objects,
                    };
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
