//! Produce-time contracts: for topics whose configs ask for it
//! (`confluent.value.schema.validation`, `confluent.key.schema.validation`,
//! `sluice.governance.*`), every record is decoded and checked against the
//! schema registry and the governance policy before anything is appended.
//! `sluice.validation.on_failure=reject` refuses the whole batch with
//! INVALID_RECORD naming each bad record; `dlq` sends the bad records to
//! `<topic>-dlq` with headers stating why, and appends the rest. Topics that
//! ask for nothing are never decoded.

use crate::Broker;
use sluice_protocol::batch::{split_and_check, CheckedBatch};
use sluice_protocol::records::{decode_batch, encode_batch, RawRecord};
use sluice_registry::{dlq_headers, dlq_topic, policy_from_configs, OnFailure};
use sluice_storage::Topic;

/// What the checks decided for one partition's batches.
pub enum Validated {
    /// Append as sent.
    Accept(Vec<CheckedBatch>),
    /// Refuse everything: (record index, reason) for each bad record.
    Reject(Vec<(i32, String)>),
    /// Append `keep` (may be empty); `dead_lettered` records went to the DLQ.
    Split {
        keep: Vec<CheckedBatch>,
        dead_lettered: usize,
    },
}

fn header<'a>(r: &'a RawRecord, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k.as_ref() == name.as_bytes())
        .and_then(|(_, v)| v.as_deref())
}

/// Runs the topic's checks on a partition's batches.
pub async fn validate(
    broker: &Broker,
    topic: &Topic,
    partition: i32,
    batches: Vec<CheckedBatch>,
) -> Validated {
    let policy = policy_from_configs(&topic.record.configs);
    if !policy.is_active() {
        return Validated::Accept(batches);
    }
    let validator = broker.registry.validator();
    let name = topic.record.name.as_str();
    let mut records = Vec::new();
    for b in &batches {
        match decode_batch(&b.bytes) {
            Ok(rs) => records.extend(rs),
            Err(e) => {
                return Validated::Reject(vec![(
                    records.len() as i32,
                    format!("records do not decode: {e}"),
                )])
            }
        }
    }
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        match policy.check_record_with(
            &validator,
            name,
            r.key.as_deref(),
            r.value.as_deref(),
            |h| header(&r, h),
        ) {
            Ok(_) => good.push(r),
            Err(e) => bad.push((i as i32, r, e)),
        }
    }
    if bad.is_empty() {
        return Validated::Accept(batches);
    }
    if policy.on_failure == OnFailure::Reject {
        return Validated::Reject(
            bad.into_iter()
                .map(|(i, _, e)| (i, e.to_string()))
                .collect(),
        );
    }
    // Dead-letter the bad records, keep the good ones.
    let dead: Vec<RawRecord> = bad
        .iter()
        .map(|(_, r, e)| {
            let mut d = r.clone();
            for (k, v) in dlq_headers(name, partition, e) {
                d.headers.push((k.into_bytes().into(), Some(v.into())));
            }
            d
        })
        .collect();
    let dead_lettered = dead.len();
    if let Err(e) = append_raw(
        broker,
        &dlq_topic(name),
        partition,
        &dead,
        topic.partitions.len() as i32,
    )
    .await
    {
        tracing::error!(topic = name, error = %e, "dead-lettering failed; refusing the batch");
        return Validated::Reject(
            bad.into_iter()
                .map(|(i, _, e)| (i, e.to_string()))
                .collect(),
        );
    }
    let keep = if good.is_empty() {
        Vec::new()
    } else {
        match encode_batch(&good)
            .map_err(|e| e.to_string())
            .and_then(|b| split_and_check(&b).map_err(|e| e.to_string()))
        {
            Ok(k) => k,
            Err(e) => {
                return Validated::Reject(vec![(
                    0,
                    format!("re-encoding the valid records failed: {e}"),
                )])
            }
        }
    };
    Validated::Split {
        keep,
        dead_lettered,
    }
}

/// Appends records to `topic` (created with `partitions` partitions if
/// missing), at `partition` modulo its partition count.
async fn append_raw(
    broker: &Broker,
    topic: &str,
    partition: i32,
    records: &[RawRecord],
    partitions: i32,
) -> Result<(), String> {
    let t = match broker.store.topic(topic) {
        Some(t) => t,
        None => match broker
            .store
            .create_topic(topic, partitions.max(1), Default::default())
            .await
        {
            Ok(t) => t,
            Err(sluice_storage::StorageError::TopicExists(_)) => {
                broker.store.topic(topic).ok_or("topic vanished")?
            }
            Err(e) => return Err(e.to_string()),
        },
    };
    let n = t.partitions.len().max(1) as i32;
    let p = t
        .partition(partition.rem_euclid(n))
        .cloned()
        .ok_or("no partition")?;
    let batch = encode_batch(records).map_err(|e| e.to_string())?;
    let checked = split_and_check(&batch).map_err(|e| e.to_string())?;
    broker
        .store
        .append(&t, &p, checked)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
