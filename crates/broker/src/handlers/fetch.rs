//! Fetch: reads each requested partition from its offset, within the
//! request's `max_bytes` and each partition's `partition_max_bytes` (the first
//! batch found is always returned, whatever its size, or a consumer whose
//! next batch is larger than its limits would stall), and long-polls until
//! `min_bytes` are available or `max_wait_ms` passes. Fetch sessions
//! (KIP-227) are declined with session id 0, so clients send full requests.

use super::code;
use crate::Broker;
use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use sluice_protocol::batch::iter_stored;
use sluice_storage::ReadError;
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
}

impl FetchReply {
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

async fn read_all(
    broker: &Broker,
    req: &FetchRequest,
) -> (Vec<FetchableTopicResponse>, Vec<Vec<Bytes>>, usize, bool) {
    let max_bytes = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut records = Vec::new();
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
            let budget =
                (fp.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
            if budget == 0 && total > 0 {
                let (start, hw) = p.offsets();
                pd.high_watermark = hw;
                pd.last_stable_offset = hw;
                pd.log_start_offset = start;
                tr.partitions.push(pd);
                records.push(Vec::new());
                continue;
            }
            let mut batches = Vec::new();
            match broker.store.read(p, fp.fetch_offset, budget.max(1)).await {
                Ok(out) => {
                    pd.high_watermark = out.high_watermark;
                    pd.last_stable_offset = out.high_watermark;
                    pd.log_start_offset = out.log_start;
                    total += out.bytes;
                    batches = out.batches;
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
                    any_error = true;
                }
                Err(ReadError::Storage(e)) => {
                    tracing::error!(topic = %p.topic_name, partition = p.partition, error = %e, "fetch read failed");
                    pd.error_code = code(ResponseError::KafkaStorageError);
                    any_error = true;
                }
            }
            tr.partitions.push(pd);
            records.push(batches);
        }
        topics.push(tr);
    }
    (topics, records, total, any_error)
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

pub async fn handle(broker: &Broker, req: FetchRequest, _version: i16) -> FetchReply {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let mut changes = broker.store.subscribe();
    loop {
        changes.borrow_and_update();
        let (topics, records, total, any_error) = read_all(broker, &req).await;
        if total >= min_bytes || any_error || Instant::now() >= deadline {
            count_out(&topics, &records);
            let mut response = FetchResponse::default();
            response.responses = topics;
            return FetchReply { response, records };
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    let mut response = FetchResponse::default();
                    response.responses = topics;
                    return FetchReply { response, records };
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
