//! Produce: checks every batch (size, magic, CRC32C; a transactional
//! batch only to a partition of its producer's ongoing transaction, KIP-890;
//! no control batch from a client), then
//! appends all partitions of the request concurrently so one durable write
//! covers them (a WAL group commit, or a cluster flush), and answers once
//! they are durable.

use super::validation::{self, Validated};
use super::{code, find_or_create_topic, str_bytes};
use crate::security::authz::Caller;
use crate::Broker;
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use sluice_protocol::batch::split_and_check;
use sluice_storage::AppendError;

fn partition_error(
    index: i32,
    e: ResponseError,
    message: Option<String>,
) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default();
    r.index = index;
    r.error_code = code(e);
    r.base_offset = -1;
    r.error_message = message.map(str_bytes);
    r
}

/// INVALID_RECORD naming every record that failed its topic's contract.
fn rejected(index: i32, bad: Vec<(i32, String)>) -> PartitionProduceResponse {
    let message = bad
        .iter()
        .take(5)
        .map(|(i, m)| format!("record {i}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut r = partition_error(index, ResponseError::InvalidRecord, Some(message));
    r.record_errors = bad
        .into_iter()
        .map(|(i, m)| {
            let mut e = BatchIndexAndErrorMessage::default();
            e.batch_index = i;
            e.batch_index_error_message = Some(str_bytes(m));
            e
        })
        .collect();
    r
}

/// Records without a key on a compacted topic (`cleanup.policy` naming
/// `compact`), which Kafka refuses: compaction keeps the latest record per
/// key, and a keyless record has none. `None` when the batches may go on.
fn keyless_on_compacted(
    t: &sluice_storage::Topic,
    partition: i32,
    batches: &[sluice_protocol::batch::CheckedBatch],
) -> Option<Vec<(i32, String)>> {
    if !t.has_cleanup_policy("compact") {
        return None;
    }
    let mut bad = Vec::new();
    let mut index = 0i32;
    for b in batches {
        match sluice_protocol::records::decode_batch(&b.bytes) {
            Ok(records) => {
                for r in records {
                    if r.key.is_none() {
                        bad.push((
                            index,
                            format!(
                                "compacted topic {}-{partition} cannot accept a record without a key",
                                t.record.name
                            ),
                        ));
                    }
                    index += 1;
                }
            }
            Err(e) => return Some(vec![(index, format!("records do not decode: {e}"))]),
        }
    }
    (!bad.is_empty()).then_some(bad)
}

/// Why batches cannot be appended as they are, as far as transactions go:
/// control batches are the broker's own; transactional batches need the
/// request's transactional id (and all of them one producer), and a
/// transactional request only transactional batches.
fn transaction_misfit(
    batches: &[sluice_protocol::batch::CheckedBatch],
    transactional_request: bool,
) -> Option<(ResponseError, String)> {
    let invalid = |m: &str| Some((ResponseError::InvalidRecord, m.to_string()));
    if batches.iter().any(|b| b.header.is_control()) {
        return invalid("control batches are written by the transaction coordinator, not produced");
    }
    let transactional = batches
        .iter()
        .filter(|b| b.header.is_transactional())
        .count();
    if transactional > 0 && !transactional_request {
        return invalid("a transactional batch needs the request's transactional id");
    }
    if transactional_request && transactional < batches.len() {
        return invalid("a transactional request carries only transactional batches");
    }
    let first = batches.first()?.header;
    if batches.iter().any(|b| {
        b.header.producer_id != first.producer_id || b.header.producer_epoch != first.producer_epoch
    }) {
        return invalid("the batches of one partition come from more than one producer");
    }
    None
}

/// Handles a produce request in two steps: this call checks every batch and
/// assigns offsets (so a connection's pipelined requests append in the order
/// they were sent); the returned future resolves once everything is durable,
/// with `None` for acks=0 (no response is sent).
pub async fn handle(
    broker: &Broker,
    req: ProduceRequest,
    _version: i16,
    caller: &Caller,
) -> BoxFuture<'static, Option<ProduceResponse>> {
    let acks = req.acks;
    let txn_id = req.transactional_id.as_ref().map(|t| t.0.as_str());
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut appends = Vec::new();
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        let name = td.name.0.as_str().to_string();
        let mut resp = TopicProduceResponse::default();
        resp.name = td.name.clone();
        let topic = if !matches!(acks, -1..=1) {
            None
        } else {
            Some(find_or_create_topic(broker, &name, true).await)
        };
        for pd in td.partition_data {
            let early = |e: ResponseError, m: Option<String>| Some(partition_error(pd.index, e, m));
            let failure = match &topic {
                None => early(ResponseError::InvalidRequiredAcks, None),
                Some(Err(e)) => early(*e, None),
                Some(Ok(t)) => match (t.partition(pd.index), pd.records.as_ref()) {
                    (None, _) => early(ResponseError::UnknownTopicOrPartition, None),
                    (Some(_), None) => {
                        early(ResponseError::CorruptMessage, Some("no records".into()))
                    }
                    (Some(p), Some(records)) => {
                        let max = t
                            .config("max.message.bytes")
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(broker.config.message_max_bytes);
                        match split_and_check(records) {
                            Err(e) => early(ResponseError::CorruptMessage, Some(e.to_string())),
                            Ok(batches) => {
                                if let Some(b) = batches.iter().find(|b| b.bytes.len() > max) {
                                    early(
                                        ResponseError::MessageTooLarge,
                                        Some(format!("record batch of {} bytes exceeds the limit of {max} bytes", b.bytes.len())),
                                    )
                                } else if let Some((e, m)) =
                                    transaction_misfit(&batches, txn_id.is_some())
                                {
                                    early(e, Some(m))
                                } else if let Some(bad) =
                                    keyless_on_compacted(t, pd.index, &batches)
                                {
                                    Some(rejected(pd.index, bad))
                                } else {
                                    match validation::validate(broker, t, pd.index, batches, caller)
                                        .await
                                    {
                                        Validated::Reject(bad) => Some(rejected(pd.index, bad)),
                                        Validated::Split { keep, .. } if keep.is_empty() => {
                                            // Every record went to the dead-letter topic.
                                            let mut r = PartitionProduceResponse::default();
                                            r.index = pd.index;
                                            r.base_offset = -1;
                                            r.log_start_offset = p.offsets().0;
                                            Some(r)
                                        }
                                        Validated::Accept(batches)
                                        | Validated::Split { keep: batches, .. } => 'append: {
                                            // KIP-890: only into the ongoing
                                            // transaction's partitions; the guard
                                            // keeps its end waiting until queued.
                                            let _guard = match (txn_id, batches.first()) {
                                                (Some(id), Some(b)) => match broker
                                                    .txns
                                                    .check_append(
                                                        id,
                                                        b.header.producer_id,
                                                        b.header.producer_epoch,
                                                        &name,
                                                        pd.index,
                                                    )
                                                    .await
                                                {
                                                    Ok(g) => Some(g),
                                                    Err(e) => {
                                                        break 'append Some(partition_error(
                                                            pd.index,
                                                            e,
                                                            Some(format!("{e:?}: the partition is not in the producer's ongoing transaction")),
                                                        ))
                                                    }
                                                },
                                                _ => None,
                                            };
                                            let index = pd.index;
                                            let bytes: usize =
                                                batches.iter().map(|b| b.bytes.len()).sum();
                                            let records: i64 = batches
                                                .iter()
                                                .map(|b| b.header.record_count as i64)
                                                .sum();
                                            // Offsets are assigned here, in request order; durability is
                                            // awaited after the next request of the connection may start.
                                            let submitted =
                                                broker.store.submit(t, p, batches).await;
                                            appends.push((
                                                ti,
                                                index,
                                                p.clone(),
                                                bytes,
                                                records,
                                                submitted,
                                            ));
                                            None
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            };
            if let Some(f) = failure {
                resp.partition_responses.push(f);
            }
        }
        topics.push(resp);
    }
    Box::pin(async move {
        for (ti, index, p, bytes, records, submitted) in appends {
            let result = match submitted {
                Ok(pending) => pending.wait().await,
                Err(e) => Err(e),
            };
            if result.is_ok() {
                let m = sluice_observe::metrics();
                let topic = [p.topic_name()];
                m.bytes_in.with_label_values(&topic).inc_by(bytes as u64);
                m.records_in
                    .with_label_values(&topic)
                    .inc_by(records as u64);
            }
            let log_start = p.offsets().0;
            let r = match result {
                Ok(o) => {
                    let mut r = PartitionProduceResponse::default();
                    r.index = index;
                    r.base_offset = o.base_offset;
                    r.log_append_time_ms = o.log_append_time;
                    r.log_start_offset = log_start;
                    r
                }
                Err(e) => {
                    let err = match &e {
                        AppendError::OutOfOrderSequence(_) => {
                            ResponseError::OutOfOrderSequenceNumber
                        }
                        AppendError::StaleEpoch(_) => ResponseError::InvalidProducerEpoch,
                        AppendError::TopicDeleted => ResponseError::UnknownTopicOrPartition,
                        AppendError::NotInTransaction(_) => ResponseError::InvalidTxnState,
                        // Retriable: the client sends the batch again.
                        AppendError::Wal(_) | AppendError::Unavailable(_) => {
                            ResponseError::KafkaStorageError
                        }
                    };
                    if matches!(e, AppendError::Wal(_) | AppendError::Unavailable(_)) {
                        tracing::error!(error = %e, "append failed");
                    }
                    partition_error(index, err, Some(e.to_string()))
                }
            };
            topics[ti].partition_responses.push(r);
        }
        if acks == 0 {
            return None;
        }
        for t in &mut topics {
            t.partition_responses.sort_by_key(|p| p.index);
        }
        let mut resp = ProduceResponse::default();
        resp.responses = topics;
        Some(resp)
    })
}
