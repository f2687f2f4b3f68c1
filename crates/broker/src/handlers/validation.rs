//! Produce-time contracts: for topics whose configs ask for it
//! (`confluent.value.schema.validation`, `confluent.key.schema.validation`,
//! `sluice.governance.*`), every record is decoded and checked against the
//! schema registry and the governance policy before anything is appended.
//! `sluice.validation.on_failure=reject` refuses the whole batch with
//! INVALID_RECORD naming each bad record; `dlq` sends the bad records to
//! `<topic>-dlq` with headers stating why, and appends the rest. Topics that
//! ask for nothing are never decoded.
//!
//! Identity-bound governance: with `sluice.governance.tenant.binding` a
//! record's `tenant-id` header must be the producing user's tenant (a
//! failure like any other), and `sluice.governance.producer.identity.header`
//! names a header the broker writes the producing principal into (stored
//! batches are then re-encoded, uncompressed, as the same producer's).

use crate::security::authz::Caller;
use crate::Broker;
use bytes::Bytes;
use sluice_protocol::batch::{split_and_check, CheckedBatch};
use sluice_protocol::records::{decode_batch, encode_batch, encode_retained_batch, RawRecord};
use sluice_registry::{dlq_headers, dlq_topic, policy_from_configs, OnFailure, TENANT_HEADER};
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

/// Runs the topic's checks on a partition's batches, produced by `caller`.
pub async fn validate(
    broker: &Broker,
    topic: &Topic,
    partition: i32,
    batches: Vec<CheckedBatch>,
    caller: &Caller,
) -> Validated {
    let policy = policy_from_configs(&topic.record.configs);
    if !policy.is_active() {
        return Validated::Accept(batches);
    }
    let validator = broker.registry.validator();
    let name = topic.record.name.as_str();
    let mut per_batch: Vec<Vec<RawRecord>> = Vec::with_capacity(batches.len());
    let mut seen = 0usize;
    for b in &batches {
        match decode_batch(&b.bytes) {
            Ok(rs) => {
                seen += rs.len();
                per_batch.push(rs);
            }
            Err(e) => {
                return Validated::Reject(vec![(
                    seen as i32,
                    format!("records do not decode: {e}"),
                )])
            }
        }
    }
    let identity = policy.governance.identity_header.as_deref();
    let stamp = |r: &mut RawRecord| {
        if let Some(h) = identity {
            // The broker's word, not the client's: a header of that name
            // sent by the client is replaced.
            r.headers.retain(|(k, _)| k.as_ref() != h.as_bytes());
            r.headers.push((
                Bytes::copy_from_slice(h.as_bytes()),
                Some(Bytes::copy_from_slice(caller.principal.as_bytes())),
            ));
        }
    };
    // Verdicts first; records are moved (not copied) only when some fail.
    let mut failures = Vec::new();
    for (i, r) in per_batch.iter().flatten().enumerate() {
        let checked = policy
            .check_record_with(
                &validator,
                name,
                r.key.as_deref(),
                r.value.as_deref(),
                |h| header(r, h),
            )
            .and_then(|_| {
                policy.governance.check_identity(
                    header(r, TENANT_HEADER),
                    &caller.principal,
                    caller.tenant.as_deref(),
                )
            });
        if let Err(e) = checked {
            failures.push((i as i32, e));
        }
    }
    if failures.is_empty() {
        if identity.is_none() {
            return Validated::Accept(batches);
        }
        // Every batch again with the identity header, as the same
        // producer's batch (the idempotence check still knows a retry).
        let mut stamped = Vec::with_capacity(batches.len());
        for (b, mut rs) in batches.iter().zip(per_batch) {
            rs.iter_mut().for_each(stamp);
            // The same header: producer, sequence, transactional bit.
            match encode_retained_batch(&rs, &b.header)
                .map_err(|e| e.to_string())
                .and_then(|bytes| split_and_check(&bytes).map_err(|e| e.to_string()))
            {
                Ok(k) => stamped.extend(k),
                Err(e) => {
                    return Validated::Reject(vec![(
                        0,
                        format!("stamping the producer identity failed: {e}"),
                    )])
                }
            }
        }
        return Validated::Accept(stamped);
    }
    if policy.on_failure == OnFailure::Reject {
        return Validated::Reject(
            failures
                .into_iter()
                .map(|(i, e)| (i, e.to_string()))
                .collect(),
        );
    }
    let mut failures = failures.into_iter().peekable();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    // A transactional batch keeps its header (producer, sequence range,
    // transactional bit) with the records that passed, so it stays in its
    // transaction; other batches' good records go out as one plain batch.
    let transactional = batches.iter().any(|b| b.header.is_transactional());
    let mut kept_batches = Vec::new();
    let mut i = 0i32;
    for (b, rs) in batches.iter().zip(per_batch) {
        let mut kept = Vec::new();
        for r in rs {
            match failures.next_if(|(j, _)| *j == i) {
                Some((j, e)) => bad.push((j, r, e)),
                None => kept.push(r),
            }
            i += 1;
        }
        kept.iter_mut().for_each(stamp);
        if transactional {
            kept_batches.push((b.header, kept));
        } else {
            good.extend(kept);
        }
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
    let keep = if transactional {
        let mut keep = Vec::new();
        for (h, rs) in kept_batches {
            match encode_retained_batch(&rs, &h)
                .map_err(|e| e.to_string())
                .and_then(|b| split_and_check(&b).map_err(|e| e.to_string()))
            {
                Ok(k) => keep.extend(k),
                Err(e) => {
                    return Validated::Reject(vec![(
                        0,
                        format!("re-encoding the valid records failed: {e}"),
                    )])
                }
            }
        }
        keep
    } else if good.is_empty() {
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
