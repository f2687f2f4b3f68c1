//! Consumer lag as the broker sees it: per group and partition the committed
//! offset, the log end, the lag in records, the event age in seconds (now
//! minus the timestamp of the first record not yet committed, read from its
//! batch header without decompressing), and Burrow's health status and trend
//! from the window of recent commits.

use serde::Serialize;
use sluice_broker::Broker;
use sluice_observe::burrow::{group_status, GroupStatus, PartitionStatus};
use sluice_storage::PartitionLog;
use std::sync::Arc;

/// Lag of one partition of a group.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionLagInfo {
    pub topic: Arc<str>,
    pub partition: i32,
    pub committed: i64,
    pub log_end: i64,
    pub lag: i64,
    pub lag_seconds: f64,
    pub status: PartitionStatus,
    /// Lag change in records per second over the commit window.
    pub trend: f64,
}

/// Lag of a whole group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupLagInfo {
    pub group: String,
    pub members: usize,
    pub status: GroupStatus,
    pub max_lag_seconds: f64,
    pub total_lag: i64,
    pub partitions: Vec<PartitionLagInfo>,
}

/// Lag of one partition from committed offsets read from the catalog (a
/// group another broker of the cluster coordinates): no Burrow status or
/// trend, which need the window of commits only the coordinator sees.
#[derive(Debug, Clone)]
pub struct OffsetLag {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub log_end: i64,
    pub lag: i64,
    pub lag_seconds: f64,
}

/// Lag and event age of `offsets` (topic, partition, committed), for a
/// group this broker does not coordinate. The storage is shared, so the log
/// ends and the first uncommitted records' timestamps are the cluster's;
/// the lag tracker (this broker's coordinated groups) is not touched.
/// Partitions of topics that no longer exist are left out.
pub async fn lag_from_offsets(
    broker: &Broker,
    offsets: impl IntoIterator<Item = (String, i32, i64)>,
    now_ms: i64,
) -> Vec<OffsetLag> {
    let mut out = Vec::new();
    for (topic, partition, committed) in offsets {
        let Some(p) = broker
            .store
            .topic(&topic)
            .and_then(|t| t.partition(partition).cloned())
        else {
            continue;
        };
        let (log_start, log_end) = p.offsets();
        let lag = (log_end - committed).max(0);
        let first_uncommitted = committed.max(log_start);
        let mut lag_seconds = 0.0;
        if lag > 0 && first_uncommitted < log_end {
            match broker.store.timestamp_at(&p, first_uncommitted).await {
                Ok(Some(ts)) => lag_seconds = age_seconds(ts, now_ms),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(topic, partition, error = %e, "timestamp lookup for lag seconds failed");
                }
            }
        }
        out.push(OffsetLag {
            topic,
            partition,
            committed,
            log_end,
            lag,
            lag_seconds,
        });
    }
    out
}

/// Event age in seconds of a record produced at `ts` (0 when unknown).
fn age_seconds(ts: i64, now_ms: i64) -> f64 {
    if ts > 0 {
        ((now_ms - ts).max(0)) as f64 / 1000.0
    } else {
        0.0
    }
}

/// Lag of every partition a group has committed offsets for.
///
/// One pass under the tracker's lock computes offsets, lag, status, trend and
/// (from the cached timestamp) the event age; only partitions whose first
/// uncommitted record's timestamp is not cached are then read from storage.
pub async fn group_lag(broker: &Broker, group: &str, now_ms: i64) -> GroupLagInfo {
    let members = broker.groups.member_count(group);
    // Committed offsets by topic, each topic's partitions in order: one
    // catalog and one tracker lookup per topic, and a page in a stable order.
    let by_topic = broker.groups.committed_by_topic(group);
    let mut partitions = Vec::with_capacity(by_topic.iter().map(|(_, v)| v.len()).sum());
    // (index in `partitions`, partition log, first uncommitted offset)
    let mut misses: Vec<(usize, Arc<PartitionLog>, i64)> = Vec::new();
    for (topic_name, offsets) in by_topic {
        let Some(topic) = broker.store.topic(&topic_name) else {
            continue;
        };
        let topic_name: Arc<str> = Arc::from(topic_name);
        broker.lag.with_topic(group, &topic_name, |topic_tracks| {
            for (partition, committed) in offsets {
                let Some(p) = topic.partition(partition) else {
                    continue;
                };
                let (log_start, log_end) = p.offsets();
                let lag = (log_end - committed).max(0);
                let track = topic_tracks.entry(partition).or_default();
                let first_uncommitted = committed.max(log_start);
                let lag_seconds = if lag == 0 || first_uncommitted >= log_end {
                    0.0
                } else {
                    match track.age_at {
                        Some((at, ts)) if at == first_uncommitted => age_seconds(ts, now_ms),
                        _ => {
                            misses.push((partitions.len(), p.clone(), first_uncommitted));
                            0.0
                        }
                    }
                };
                partitions.push(PartitionLagInfo {
                    status: track.window.evaluate(lag, now_ms),
                    trend: track.window.trend(),
                    topic: topic_name.clone(),
                    partition,
                    committed,
                    log_end,
                    lag,
                    lag_seconds,
                });
            }
        });
    }
    for (i, p, offset) in misses {
        match broker.store.timestamp_at(&p, offset).await {
            Ok(Some(ts)) => {
                partitions[i].lag_seconds = age_seconds(ts, now_ms);
                broker
                    .lag
                    .record_age(group, p.topic_name(), p.partition(), offset, ts);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(topic = %p.topic_name(), partition = p.partition(), error = %e, "timestamp lookup for lag seconds failed");
            }
        }
    }
    GroupLagInfo {
        group: group.to_string(),
        members,
        status: group_status(partitions.iter().map(|p| p.status)),
        max_lag_seconds: partitions.iter().map(|p| p.lag_seconds).fold(0.0, f64::max),
        total_lag: partitions.iter().map(|p| p.lag).sum(),
        partitions,
    }
}
