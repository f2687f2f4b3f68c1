//! Consumer lag as the broker sees it: per group and partition the committed
//! offset, the log end, the lag in records, the event age in seconds (now
//! minus the timestamp of the first record not yet committed, read from its
//! batch header without decompressing), and Burrow's health status and trend
//! from the window of recent commits.

use crate::Broker;
use parking_lot::Mutex;
use serde::Serialize;
use sluice_observe::burrow::{
    group_status, CommitPoint, CommitWindow, GroupStatus, PartitionStatus,
};
use sluice_storage::PartitionLog;
use std::collections::HashMap;

/// Past this many cached timestamps the cache starts over.
const TS_CACHE_LIMIT: usize = 200_000;

/// topic → partition → commit window.
type TopicWindows = HashMap<String, HashMap<i32, CommitWindow>>;
/// (partition, offset) → batch timestamp.
type OffsetTimestamps = HashMap<(i32, i64), i64>;

/// Commit windows and a cache of record timestamps.
#[derive(Default)]
pub struct LagTracker {
    /// group → topic → partition → window (nested so lookups by `&str` allocate nothing).
    windows: Mutex<HashMap<String, TopicWindows>>,
    /// topic → (partition, offset) → batch timestamp.
    timestamps: Mutex<(usize, HashMap<String, OffsetTimestamps>)>,
}

/// Lag of one partition of a group.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionLagInfo {
    pub topic: String,
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

impl LagTracker {
    /// Adds a commit to the group-partition's window.
    pub fn record_commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        log_end: i64,
        now_ms: i64,
    ) {
        self.windows
            .lock()
            .entry(group.to_string())
            .or_default()
            .entry(topic.to_string())
            .or_default()
            .entry(partition)
            .or_default()
            .push(CommitPoint {
                offset,
                lag: (log_end - offset).max(0),
                time_ms: now_ms,
            });
    }

    pub fn forget_group(&self, group: &str) {
        self.windows.lock().remove(group);
    }

    fn evaluate(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        lag: i64,
        now_ms: i64,
    ) -> (PartitionStatus, f64) {
        let windows = self.windows.lock();
        match windows
            .get(group)
            .and_then(|g| g.get(topic))
            .and_then(|t| t.get(&partition))
        {
            Some(w) => (w.evaluate(lag, now_ms), w.trend()),
            None => (PartitionStatus::Ok, 0.0),
        }
    }

    fn cached_timestamp(&self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        self.timestamps
            .lock()
            .1
            .get(topic)
            .and_then(|t| t.get(&(partition, offset)))
            .copied()
    }

    fn cache_timestamp(&self, topic: &str, partition: i32, offset: i64, ts: i64) {
        let mut guard = self.timestamps.lock();
        let (count, map) = &mut *guard;
        if *count >= TS_CACHE_LIMIT {
            map.clear();
            *count = 0;
        }
        let per_topic = match map.get_mut(topic) {
            Some(t) => t,
            None => map.entry(topic.to_string()).or_default(),
        };
        if per_topic.insert((partition, offset), ts).is_none() {
            *count += 1;
        }
    }
}

/// Seconds since the first uncommitted record of a partition was produced
/// (0 when the group is caught up).
pub async fn lag_seconds(broker: &Broker, p: &PartitionLog, committed: i64, now_ms: i64) -> f64 {
    let (topic, partition) = (p.topic_name.as_str(), p.partition);
    let (log_start, hw) = p.offsets();
    let first_uncommitted = committed.max(log_start);
    if first_uncommitted >= hw {
        return 0.0;
    }
    let ts = match broker
        .lag
        .cached_timestamp(topic, partition, first_uncommitted)
    {
        Some(ts) => Some(ts),
        None => match broker.store.timestamp_at(p, first_uncommitted).await {
            Ok(Some(ts)) => {
                broker
                    .lag
                    .cache_timestamp(topic, partition, first_uncommitted, ts);
                Some(ts)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "timestamp lookup for lag seconds failed");
                None
            }
        },
    };
    match ts {
        Some(ts) if ts > 0 => ((now_ms - ts).max(0)) as f64 / 1000.0,
        _ => 0.0,
    }
}

/// Lag of every partition a group has committed offsets for.
pub async fn group_lag(broker: &Broker, group: &str, now_ms: i64) -> GroupLagInfo {
    let members = broker
        .groups
        .group(group)
        .map(|g| g.describe().members.len())
        .unwrap_or(0);
    let mut partitions = Vec::new();
    for c in broker.groups.committed(group) {
        let Some(p) = broker
            .store
            .topic(&c.topic)
            .and_then(|t| t.partition(c.partition).cloned())
        else {
            continue;
        };
        let log_end = p.offsets().1;
        let lag = (log_end - c.offset).max(0);
        let lag_seconds = if lag > 0 {
            lag_seconds(broker, &p, c.offset, now_ms).await
        } else {
            0.0
        };
        let (status, trend) = broker
            .lag
            .evaluate(group, &c.topic, c.partition, lag, now_ms);
        partitions.push(PartitionLagInfo {
            topic: c.topic,
            partition: c.partition,
            committed: c.offset,
            log_end,
            lag,
            lag_seconds,
            status,
            trend,
        });
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
