//! Dead-letter topics: reading their records with the failure context that
//! Kafka Connect (`__connect.errors.*` headers, string values) and Spring
//! Kafka (`kafka_dlt-*` headers, binary ints and longs) attach (Sluice's own
//! produce-time dead letters carry `sluice.dlq.*` plus the Connect headers), and replaying
//! them to their original topic (or another) with key, value and headers
//! byte-identical minus the failure context. Every replay is recorded in the
//! catalog so a second run replays nothing twice unless asked.
//!
//! A replay runs exactly once even when its broker dies in the middle: one
//! replay per dead-letter partition at a time (a process-wide claim, and in
//! a cluster the catalog job `dlq-replay:<topic>:<partition>`, held under
//! the broker's lease); each batch is recorded as pending, with a producer
//! id of its own, before it is produced as that idempotent producer's
//! sequence 0. Whoever next holds the partition's claim (the next replay of
//! it, or the background pass of [`recover_pending`]) produces the pending
//! batches again: the target partition's idempotence check answers a batch
//! that had landed with its original offsets instead of writing it twice,
//! and the replay log then records each once.

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sluice_broker::Broker;
use sluice_catalog::ReplayRecord;
use sluice_catalog::{
    BrokerRegistry, CatalogError, Fence, PendingReplay, ProducerStore, ReplayLog,
};
use sluice_protocol::batch::split_and_check;
use sluice_protocol::records::{encode_idempotent_batch, RawRecord};
use sluice_storage::PartitionLog;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

type Headers = [(Bytes, Option<Bytes>)];

/// Failure context found in a dead-letter record's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqContext {
    /// `connect`, `spring` or `none`.
    pub source: String,
    pub original_topic: Option<String>,
    pub original_partition: Option<i32>,
    pub original_offset: Option<i64>,
    pub original_timestamp: Option<i64>,
    pub exception_class: Option<String>,
    pub exception_message: Option<String>,
    pub connector: Option<String>,
    pub stage: Option<String>,
    pub consumer_group: Option<String>,
}

/// Whether a header only describes the failure (dropped on replay).
pub fn is_context_header(key: &[u8]) -> bool {
    key.starts_with(b"__connect.errors.")
        || key.starts_with(b"kafka_dlt-")
        || key.starts_with(b"sluice.dlq.")
}

fn text(v: &Option<Bytes>) -> Option<String> {
    v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Kafka Connect writes numbers as decimal strings.
fn decimal(v: &Option<Bytes>) -> Option<i64> {
    std::str::from_utf8(v.as_ref()?).ok()?.trim().parse().ok()
}

/// Spring writes partitions as 4-byte and offsets and timestamps as 8-byte
/// big-endian numbers; anything else is read as a decimal string.
fn spring_number(v: &Option<Bytes>) -> Option<i64> {
    let b = v.as_ref()?;
    match b.len() {
        4 => Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64),
        8 => Some(i64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ])),
        _ => decimal(v),
    }
}

pub fn parse_context(headers: &Headers) -> DlqContext {
    let get = |k: &str| -> Option<Bytes> {
        headers
            .iter()
            .find(|(key, _)| key.as_ref() == k.as_bytes())
            .and_then(|(_, v)| v.clone())
    };
    let has_connect = headers
        .iter()
        .any(|(k, _)| k.starts_with(b"__connect.errors."));
    let has_spring = headers.iter().any(|(k, _)| k.starts_with(b"kafka_dlt-"));
    if has_connect {
        DlqContext {
            source: "connect".into(),
            original_topic: text(&get("__connect.errors.topic")),
            original_partition: decimal(&get("__connect.errors.partition")).map(|v| v as i32),
            original_offset: decimal(&get("__connect.errors.offset")),
            original_timestamp: None,
            exception_class: text(&get("__connect.errors.exception.class.name")),
            exception_message: text(&get("__connect.errors.exception.message")),
            connector: text(&get("__connect.errors.connector.name")),
            stage: text(&get("__connect.errors.stage")),
            consumer_group: None,
        }
    } else if has_spring {
        DlqContext {
            source: "spring".into(),
            original_topic: text(&get("kafka_dlt-original-topic")),
            original_partition: spring_number(&get("kafka_dlt-original-partition"))
                .map(|v| v as i32),
            original_offset: spring_number(&get("kafka_dlt-original-offset")),
            original_timestamp: spring_number(&get("kafka_dlt-original-timestamp")),
            exception_class: text(&get("kafka_dlt-exception-fqcn")),
            exception_message: text(&get("kafka_dlt-exception-message")),
            connector: None,
            stage: None,
            consumer_group: text(&get("kafka_dlt-original-consumer-group")),
        }
    } else {
        DlqContext {
            source: "none".into(),
            ..Default::default()
        }
    }
}

/// A dead-letter record as the tools show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DlqRecordView {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<String>,
    pub value_preview: Option<String>,
    pub value_bytes: usize,
    /// Headers other than the failure context.
    pub headers: Vec<(String, String)>,
    pub context: DlqContext,
    pub replayed: bool,
}

/// A page of a dead-letter partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DlqPage {
    pub records: Vec<DlqRecordView>,
    /// Where the next page starts.
    pub next_offset: i64,
    pub end_offset: i64,
}

/// What to replay.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub partition: i32,
    pub from_offset: i64,
    pub max_records: usize,
    /// Target topic instead of each record's original topic.
    pub to: Option<String>,
    /// Only records whose original topic is this.
    pub original_topic: Option<String>,
    /// Only records whose exception class or message contains this.
    pub error_contains: Option<String>,
    /// Show what would be replayed without producing anything.
    #[serde(default)]
    pub dry_run: bool,
    /// Replay records even if they were replayed before.
    #[serde(default)]
    pub again: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayRow {
    pub partition: i32,
    pub offset: i64,
    pub target_topic: String,
    pub target_partition: i32,
    /// Offset in the target (absent in a dry run or on failure).
    pub target_offset: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayResult {
    pub scanned: usize,
    pub matched: usize,
    pub replayed: usize,
    pub skipped_already_replayed: usize,
    pub failed: usize,
    pub next_offset: i64,
    pub end_offset: i64,
    pub rows: Vec<ReplayRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("topic '{0}' does not exist")]
    NoSuchTopic(String),
    #[error("topic '{0}' has no partition {1}")]
    NoSuchPartition(String, i32),
    #[error("{0}")]
    Storage(String),
    /// Another replay of the same dead-letter partition is running.
    #[error("{0}")]
    Busy(String),
}

fn storage(e: impl std::fmt::Display) -> DlqError {
    DlqError::Storage(e.to_string())
}

/// Runs catalog work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, DlqError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(storage)?
        .map_err(storage)
}

/// Dead-letter partitions with a replay running in this process.
fn local_claims() -> &'static Mutex<HashSet<(String, i32)>> {
    static CLAIMS: OnceLock<Mutex<HashSet<(String, i32)>>> = OnceLock::new();
    CLAIMS.get_or_init(Default::default)
}

/// The catalog job that makes one broker of a cluster the replayer of a
/// dead-letter partition.
pub fn replay_job(topic: &str, partition: i32) -> String {
    format!("dlq-replay:{topic}:{partition}")
}

/// The right to replay one dead-letter partition: this process's claim and,
/// in a cluster, the catalog job. Give it back with [`Claim::release`]; a
/// claim dropped without it (a cancelled request) frees the local part and
/// leaves the job to run out with this broker's lease or be released at the
/// next replay here.
struct Claim {
    key: (String, i32),
    job: Option<(Arc<sluice_catalog::Catalog>, String, Fence)>,
}

impl Claim {
    async fn take(broker: &Broker, topic: &str, partition: i32) -> Result<Option<Claim>, DlqError> {
        let key = (topic.to_string(), partition);
        if !local_claims().lock().insert(key.clone()) {
            return Ok(None);
        }
        let mut claim = Claim { key, job: None };
        if let Some(fence) = broker.membership.fence() {
            let (catalog, name) = (broker.catalog.clone(), replay_job(topic, partition));
            let (c, n) = (catalog.clone(), name.clone());
            if !blocking(move || c.claim_job(&n, fence)).await? {
                return Ok(None);
            }
            claim.job = Some((catalog, name, fence));
        }
        Ok(Some(claim))
    }

    async fn release(mut self) {
        if let Some((catalog, name, fence)) = self.job.take() {
            if let Err(e) = blocking(move || catalog.release_job(&name, fence)).await {
                tracing::warn!(error = %e, "releasing a replay job failed; it ends with the lease");
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        local_claims().lock().remove(&self.key);
    }
}

/// Decoded records of a partition from `from`, at most `max` of them, with
/// where the next read starts and the high watermark.
async fn read_records(
    broker: &Broker,
    p: &PartitionLog,
    from: i64,
    max: usize,
) -> Result<(Vec<RawRecord>, i64, i64), DlqError> {
    let r = crate::records::read_records(broker, p, from, max, usize::MAX)
        .await
        .map_err(DlqError::Storage)?;
    Ok((r.records, r.next_offset, r.high_watermark))
}

fn partition_of(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> Result<std::sync::Arc<PartitionLog>, DlqError> {
    let t = broker
        .store
        .topic(topic)
        .ok_or_else(|| DlqError::NoSuchTopic(topic.to_string()))?;
    t.partition(partition)
        .cloned()
        .ok_or_else(|| DlqError::NoSuchPartition(topic.to_string(), partition))
}

fn replayed_set(broker: &Broker, topic: &str) -> HashSet<(i32, i64)> {
    broker
        .catalog
        .replayed(topic)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Reads a page of a dead-letter partition.
pub async fn inspect(
    broker: &Broker,
    topic: &str,
    partition: i32,
    from: i64,
    limit: usize,
) -> Result<DlqPage, DlqError> {
    let p = partition_of(broker, topic, partition)?;
    let (records, next, end) = read_records(broker, &p, from, limit.clamp(1, 10_000)).await?;
    let replayed = replayed_set(broker, topic);
    let records = records
        .into_iter()
        .map(|r| {
            let value_preview = r.value.as_ref().map(|v| {
                let s = String::from_utf8_lossy(&v[..v.len().min(200)]).into_owned();
                if v.len() > 200 {
                    format!("{s}…")
                } else {
                    s
                }
            });
            DlqRecordView {
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: text(&r.key),
                value_bytes: r.value.as_ref().map(|v| v.len()).unwrap_or(0),
                value_preview,
                headers: r
                    .headers
                    .iter()
                    .filter(|(k, _)| !is_context_header(k))
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into_owned(),
                            text(v).unwrap_or_default(),
                        )
                    })
                    .collect(),
                context: parse_context(&r.headers),
                replayed: replayed.contains(&(partition, r.offset)),
            }
        })
        .collect();
    Ok(DlqPage {
        records,
        next_offset: next,
        end_offset: end,
    })
}

/// The record to produce for a dead-letter record: same key, value and
/// headers (in order, duplicates kept) without the failure context, and the
/// original timestamp when known.
fn replay_record(r: &RawRecord, ctx: &DlqContext) -> RawRecord {
    RawRecord {
        offset: 0,
        timestamp: ctx.original_timestamp.unwrap_or(r.timestamp),
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r
            .headers
            .iter()
            .filter(|(k, _)| !is_context_header(k))
            .cloned()
            .collect(),
    }
}

/// Replays a page of a dead-letter partition (first finishing any replay
/// of it that a crash interrupted).
pub async fn replay(
    broker: &Broker,
    topic: &str,
    req: ReplayRequest,
) -> Result<ReplayResult, DlqError> {
    let p = partition_of(broker, topic, req.partition)?;
    let busy = || {
        DlqError::Busy(format!(
            "a replay of {topic} partition {} is running (on this or another broker); try again when it is done",
            req.partition
        ))
    };
    let claim = Claim::take(broker, topic, req.partition)
        .await?
        .ok_or_else(busy)?;
    let out = replay_claimed(broker, topic, &p, req).await;
    claim.release().await;
    out
}

async fn replay_claimed(
    broker: &Broker,
    topic: &str,
    p: &PartitionLog,
    req: ReplayRequest,
) -> Result<ReplayResult, DlqError> {
    finish_pending(broker, topic, req.partition).await?;
    let (records, next, end) =
        read_records(broker, p, req.from_offset, req.max_records.clamp(1, 10_000)).await?;
    let already = replayed_set(broker, topic);
    let mut result = ReplayResult {
        scanned: records.len(),
        next_offset: next,
        end_offset: end,
        ..Default::default()
    };
    // Records to produce, grouped by target partition in DLQ order.
    let mut plan: BTreeMap<(String, i32), Vec<(i64, RawRecord)>> = BTreeMap::new();
    for r in &records {
        let ctx = parse_context(&r.headers);
        if let Some(want) = &req.original_topic {
            if ctx.original_topic.as_deref() != Some(want.as_str()) {
                continue;
            }
        }
        if let Some(needle) = &req.error_contains {
            let hay = format!(
                "{} {}",
                ctx.exception_class.clone().unwrap_or_default(),
                ctx.exception_message.clone().unwrap_or_default()
            );
            if !hay.contains(needle.as_str()) {
                continue;
            }
        }
        result.matched += 1;
        if !req.again && already.contains(&(req.partition, r.offset)) {
            result.skipped_already_replayed += 1;
            continue;
        }
        let target = req.to.clone().or(ctx.original_topic.clone());
        let Some(target) = target else {
            result.failed += 1;
            result.rows.push(ReplayRow {
                partition: req.partition,
                offset: r.offset,
                target_topic: String::new(),
                target_partition: -1,
                target_offset: None,
                error: Some("no original topic in the headers; use --to".into()),
            });
            continue;
        };
        let Some(t) = broker.store.topic(&target) else {
            result.failed += 1;
            result.rows.push(ReplayRow {
                partition: req.partition,
                offset: r.offset,
                target_topic: target.clone(),
                target_partition: -1,
                target_offset: None,
                error: Some(format!("target topic '{target}' does not exist")),
            });
            continue;
        };
        let n = t.partitions.len().max(1) as i32;
        let wanted = if req.to.is_none() {
            ctx.original_partition.unwrap_or(req.partition)
        } else {
            req.partition
        };
        let target_partition = if (0..n).contains(&wanted) {
            wanted
        } else {
            wanted.rem_euclid(n)
        };
        plan.entry((target, target_partition))
            .or_default()
            .push((r.offset, replay_record(r, &ctx)));
    }
    if req.dry_run {
        for ((target, tp), items) in plan {
            for (offset, _) in &items {
                result.rows.push(ReplayRow {
                    partition: req.partition,
                    offset: *offset,
                    target_topic: target.clone(),
                    target_partition: tp,
                    target_offset: None,
                    error: None,
                });
            }
        }
        return Ok(result);
    }
    // Each batch is recorded as pending, under a producer id of its own,
    // before anything is produced.
    let now = sluice_storage::now_ms();
    let mut batches = Vec::with_capacity(plan.len());
    for ((target, tp), items) in plan {
        let catalog = broker.catalog.clone();
        let producer_id = blocking(move || catalog.allocate_producer_id()).await?;
        let pending = PendingReplay {
            producer_id,
            dlq_topic: topic.to_string(),
            partition: req.partition,
            dlq_offsets: items.iter().map(|(o, _)| *o).collect(),
            target_topic: target,
            target_partition: tp,
            created_ms: now,
        };
        batches.push((
            pending,
            items.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        ));
    }
    let catalog = broker.catalog.clone();
    let begun: Vec<PendingReplay> = batches.iter().map(|(p, _)| p.clone()).collect();
    blocking(move || catalog.begin_replays(&begun)).await?;
    let (mut done, mut log) = (Vec::new(), Vec::new());
    for (pending, records) in &batches {
        let outcome = produce(broker, pending, records).await;
        for (i, offset) in pending.dlq_offsets.iter().enumerate() {
            let (target_offset, error) = match &outcome {
                Ok(base) => (Some(base + i as i64), None),
                Err(e) => (
                    None,
                    Some(format!(
                        "{e} (kept pending: the next replay of this partition retries it)"
                    )),
                ),
            };
            if let Some(o) = target_offset {
                result.replayed += 1;
                log.push(replay_row(pending, *offset, o, now));
            } else {
                result.failed += 1;
            }
            result.rows.push(ReplayRow {
                partition: req.partition,
                offset: *offset,
                target_topic: pending.target_topic.clone(),
                target_partition: pending.target_partition,
                target_offset,
                error,
            });
        }
        if outcome.is_ok() {
            done.push(pending.producer_id);
        }
    }
    let n = log.len();
    let catalog = broker.catalog.clone();
    blocking(move || catalog.finish_replays(&done, &log)).await?;
    if n > 0 {
        tracing::info!(dlq = topic, replayed = n, "replayed dead-letter records");
    }
    Ok(result)
}

fn replay_row(p: &PendingReplay, offset: i64, target_offset: i64, at: i64) -> ReplayRecord {
    ReplayRecord {
        dlq_topic: p.dlq_topic.clone(),
        partition: p.partition,
        offset,
        target_topic: p.target_topic.clone(),
        target_partition: p.target_partition,
        target_offset,
        replayed_ms: at,
    }
}

/// Produces the pending batches of a dead-letter partition again (the
/// caller holds its claim) and records them as replayed. Returns how many
/// records were recorded.
async fn finish_pending(broker: &Broker, topic: &str, partition: i32) -> Result<usize, DlqError> {
    let catalog = broker.catalog.clone();
    let key = topic.to_string();
    let pending = blocking(move || catalog.pending_replays(Some((&key, partition)))).await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let now = sluice_storage::now_ms();
    let (mut done, mut log) = (Vec::new(), Vec::new());
    for pb in &pending {
        let records = match pending_records(broker, pb).await {
            Ok(r) => r,
            Err(why) => {
                // The dead-letter records are gone (retention, a deleted
                // topic): nothing can be produced again, so the batch is
                // dropped from the pending list, named in the log.
                tracing::warn!(
                    dlq = topic, partition, producer_id = pb.producer_id,
                    offsets = ?pb.dlq_offsets, target = %pb.target_topic, why,
                    "an interrupted replay batch cannot be rebuilt; dropped"
                );
                done.push(pb.producer_id);
                continue;
            }
        };
        match produce(broker, pb, &records).await {
            Ok(base) => {
                for (i, offset) in pb.dlq_offsets.iter().enumerate() {
                    log.push(replay_row(pb, *offset, base + i as i64, now));
                }
                done.push(pb.producer_id);
            }
            Err(e) => {
                return Err(DlqError::Storage(format!(
                    "finishing an interrupted replay of {topic} partition {partition} failed: {e}"
                )))
            }
        }
    }
    let n = log.len();
    let catalog = broker.catalog.clone();
    blocking(move || catalog.finish_replays(&done, &log)).await?;
    tracing::info!(
        dlq = topic,
        partition,
        records = n,
        "finished an interrupted replay"
    );
    Ok(n)
}

/// The records of a pending batch, rebuilt from the dead-letter partition.
async fn pending_records(broker: &Broker, pb: &PendingReplay) -> Result<Vec<RawRecord>, String> {
    let p = partition_of(broker, &pb.dlq_topic, pb.partition).map_err(|e| e.to_string())?;
    if broker.store.topic(&pb.target_topic).is_none() {
        return Err(format!("target topic '{}' does not exist", pb.target_topic));
    }
    let (Some(first), Some(last)) = (pb.dlq_offsets.first(), pb.dlq_offsets.iter().max()) else {
        return Err("no offsets".into());
    };
    let span = (last - first + 1).clamp(1, 10_000) as usize;
    let (records, _, _) = read_records(broker, &p, *first, span)
        .await
        .map_err(|e| e.to_string())?;
    let by_offset: BTreeMap<i64, &RawRecord> = records.iter().map(|r| (r.offset, r)).collect();
    pb.dlq_offsets
        .iter()
        .map(|o| {
            by_offset
                .get(o)
                .map(|r| replay_record(r, &parse_context(&r.headers)))
                .ok_or_else(|| format!("dead-letter offset {o} is no longer in the log"))
        })
        .collect()
}

/// Finishes every interrupted replay whose partition no replay holds now
/// (run in the background; in a cluster only the partitions whose job is
/// free, so a replay under way on another broker is left alone). Returns
/// how many records were recorded.
pub async fn recover_pending(broker: &Broker) -> Result<usize, DlqError> {
    let catalog = broker.catalog.clone();
    let pending = blocking(move || catalog.pending_replays(None)).await?;
    let partitions: std::collections::BTreeSet<(String, i32)> = pending
        .into_iter()
        .map(|p| (p.dlq_topic, p.partition))
        .collect();
    let mut n = 0;
    for (topic, partition) in partitions {
        let Some(claim) = Claim::take(broker, &topic, partition).await? else {
            continue;
        };
        let out = finish_pending(broker, &topic, partition).await;
        claim.release().await;
        n += out?;
    }
    Ok(n)
}

/// Runs [`recover_pending`] every `every` until `shutdown`.
pub async fn run_recovery(
    broker: Arc<Broker>,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match recover_pending(&broker).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "interrupted dead-letter replays finished"),
            Err(e) => {
                tracing::warn!(error = %e, "finishing interrupted dead-letter replays failed; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Appends a pending batch's records to its target partition as its
/// producer's sequence 0; returns the base offset (the original one when
/// the batch had landed before).
async fn produce(
    broker: &Broker,
    pending: &PendingReplay,
    records: &[RawRecord],
) -> Result<i64, String> {
    let (topic, partition) = (&pending.target_topic, pending.target_partition);
    let t = broker
        .store
        .topic(topic)
        .ok_or_else(|| format!("topic '{topic}' does not exist"))?;
    let p = t
        .partition(partition)
        .cloned()
        .ok_or_else(|| format!("no partition {partition}"))?;
    let batch = encode_idempotent_batch(records, pending.producer_id, 0, 0)
        .map_err(|e| format!("encoding failed: {e}"))?;
    let batches = split_and_check(&batch).map_err(|e| e.to_string())?;
    broker
        .store
        .append(&t, &p, batches)
        .await
        .map(|o| o.base_offset)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> Vec<(Bytes, Option<Bytes>)> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    Bytes::copy_from_slice(k.as_bytes()),
                    Some(Bytes::copy_from_slice(v)),
                )
            })
            .collect()
    }

    #[test]
    fn reads_connect_and_spring_context() {
        let c = parse_context(&headers(&[
            ("__connect.errors.topic", b"orders"),
            ("__connect.errors.partition", b"2"),
            ("__connect.errors.offset", b"12345678"),
            (
                "__connect.errors.exception.class.name",
                b"org.apache.kafka.connect.errors.DataException",
            ),
            ("__connect.errors.exception.message", b"bad json"),
            ("trace", b"x"),
        ]));
        assert_eq!(c.source, "connect");
        assert_eq!(c.original_topic.as_deref(), Some("orders"));
        assert_eq!(
            (c.original_partition, c.original_offset),
            (Some(2), Some(12_345_678))
        );
        let s = parse_context(&headers(&[
            ("kafka_dlt-original-topic", b"payments"),
            ("kafka_dlt-original-partition", &3i32.to_be_bytes()),
            ("kafka_dlt-original-offset", &99i64.to_be_bytes()),
            (
                "kafka_dlt-original-timestamp",
                &1_700_000_000_000i64.to_be_bytes(),
            ),
            (
                "kafka_dlt-exception-fqcn",
                b"java.lang.IllegalStateException",
            ),
        ]));
        assert_eq!(s.source, "spring");
        assert_eq!(
            (s.original_partition, s.original_offset),
            (Some(3), Some(99))
        );
        assert_eq!(s.original_timestamp, Some(1_700_000_000_000));
        assert_eq!(parse_context(&headers(&[("a", b"b")])).source, "none");
        assert!(is_context_header(b"kafka_dlt-exception-message"));
        assert!(!is_context_header(b"traceparent"));
        assert!(is_context_header(b"sluice.dlq.reason"));
    }
}
