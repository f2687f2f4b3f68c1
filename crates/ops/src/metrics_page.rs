//! `GET /metrics`: the broker's own metrics, then the kafka-exporter
//! families (same names and labels, so existing dashboards and alerts work),
//! event age (`kafka_consumergroup_lag_seconds`), Burrow statuses and
//! dead-letter topic depth and age, all computed at scrape time.
//!
//! Per group and partition the page carries what kafka-exporter does (offset,
//! lag) plus the event age: three lines per group-partition, 600,000 at
//! 200 groups × 1,000 partitions. Burrow's status and the lag rate are given
//! per group (a count of partitions in each status, a rate summed per topic);
//! their per-partition series double the page, so they come only with
//! [`Detail::Partition`] (`/metrics?detail=partition`, or the broker setting
//! `metrics_partition_detail`). `/v1/groups/{group}` always has them.
//!
//! In a cluster each series comes from one broker, so a Prometheus scraping
//! every broker can sum them: a group's families from its coordinator (the
//! only broker holding its offsets and commit history), and the
//! cluster-wide ones (`kafka_brokers`, `kafka_topic_*`, `sluice_dlq_*`) from
//! the holder of the `cluster-metrics` job. Each broker's own families
//! (requests, flushes, PUTs, catalog commits, its lease) come from it.

use crate::lag::{group_lag, GroupLagInfo};
use sluice_broker::Broker;
use sluice_observe::burrow::PartitionStatus;
use sluice_observe::exposition::{group_topic_labels, FamilyWriter};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Topic name suffixes that mark a dead-letter topic.
pub const DLQ_SUFFIXES: &[&str] = &["-dlq", ".dlq", "_dlq", "-dlt", ".dlt", ".DLT", "_dlt"];

pub fn is_dlq_topic(name: &str) -> bool {
    DLQ_SUFFIXES.iter().any(|s| name.ends_with(s))
        || name.starts_with("dlq.")
        || name.starts_with("dlq-")
}

/// How much per-partition detail the page carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// kafka-exporter's per-partition families and the event age; Burrow
    /// statuses and lag rates per group.
    #[default]
    Group,
    /// Also Burrow's status and the lag rate of every group-partition.
    Partition,
}

/// Bytes per chunk of a streamed page.
const PAGE_CHUNK: usize = 256 << 10;

/// Everything a page shows, gathered at scrape time; written out by
/// [`Page::write`].
pub struct Page {
    detail: Detail,
    /// The broker's own families (requests, storage, caches...).
    registry_text: String,
    /// Live brokers, when this broker exports the cluster-wide families.
    brokers: Option<usize>,
    topics: Vec<Arc<sluice_storage::Topic>>,
    groups: Vec<GroupLagInfo>,
    /// (topic, records, age in seconds of the oldest record)
    dlq: Vec<(String, i64, f64)>,
}

/// Gathers the page: offsets, lag and event age of every group, DLQ depth.
pub async fn collect(broker: &Broker, detail: Detail) -> Page {
    let m = sluice_observe::metrics();
    let (mem, unuploaded) = broker.store.memory_usage();
    m.memory_bytes
        .with_label_values(&["tail_cache"])
        .set(mem as i64);
    m.memory_bytes
        .with_label_values(&["unuploaded"])
        .set(unuploaded as i64);
    if let Some(rss) = sluice_observe::metrics::resident_memory_bytes() {
        m.resident_memory_bytes.set(rss as i64);
    }
    let mut registry_text = String::with_capacity(64 * 1024);
    m.render(&mut registry_text);

    let now = sluice_storage::now_ms();
    let cluster_wide = broker.membership.exports_cluster_metrics();
    let topics = if cluster_wide {
        broker.store.topics()
    } else {
        Vec::new()
    };
    let mut groups: Vec<GroupLagInfo> = Vec::new();
    for (g, _, _) in broker.groups.list() {
        // A window replay's position is not a consumer's lag (its window
        // ends before the log does): no lag series, no lag alerts.
        if crate::replay::is_window_group(&g) {
            continue;
        }
        groups.push(group_lag(broker, &g, now).await);
    }
    let mut dlq = Vec::new();
    for t in topics.iter().filter(|t| is_dlq_topic(&t.record.name)) {
        let (mut records, mut oldest) = (0i64, 0f64);
        for p in &t.partitions {
            let (start, hw) = p.offsets();
            records += hw - start;
            if hw > start {
                if let Ok(Some(ts)) = broker.store.timestamp_at(p, start).await {
                    oldest = oldest.max(((now - ts).max(0)) as f64 / 1000.0);
                }
            }
        }
        dlq.push((t.record.name.clone(), records, oldest));
    }
    Page {
        detail,
        registry_text,
        brokers: cluster_wide.then(|| broker.membership.live().len()),
        topics,
        groups,
        dlq,
    }
}

/// The whole page as one string.
pub async fn render(broker: &Broker, detail: Detail) -> String {
    let page = collect(broker, detail).await;
    let mut out = String::new();
    page.write(|chunk| out.push_str(&chunk));
    out
}

/// The page as a stream of chunks, written on a blocking thread while the
/// client reads: a page of 600,000 lines is never held whole in memory.
pub async fn render_chunks(
    broker: &Broker,
    detail: Detail,
) -> tokio::sync::mpsc::Receiver<bytes::Bytes> {
    let page = collect(broker, detail).await;
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        page.write(|chunk| {
            // A client that went away just stops receiving.
            let _ = tx.blocking_send(bytes::Bytes::from(chunk));
        })
    });
    rx
}

impl Page {
    /// Writes the page in the text format, handing `sink` chunks of about
    /// [`PAGE_CHUNK`] bytes.
    pub fn write(&self, sink: impl FnMut(String)) {
        let mut w = FamilyWriter::new(PAGE_CHUNK, sink);
        w.raw(&self.registry_text);
        let (topics, groups, dlq, detail) = (&self.topics, &self.groups, &self.dlq, self.detail);
        write_families(&mut w, self.brokers, topics, groups, dlq, detail);
        w.finish();
    }
}

fn write_families(
    w: &mut FamilyWriter,
    brokers: Option<usize>,
    topics: &[Arc<sluice_storage::Topic>],
    groups: &[GroupLagInfo],
    dlq: &[(String, i64, f64)],
    detail: Detail,
) {
    w.gauge("kafka_brokers", "Number of brokers in the cluster.");
    if let Some(n) = brokers {
        w.sample("kafka_brokers", &[], n as f64);
    }

    w.gauge("kafka_topic_partitions", "Number of partitions of a topic.");
    for t in topics {
        w.sample(
            "kafka_topic_partitions",
            &[("topic", &t.record.name)],
            t.partitions.len() as f64,
        );
    }
    let offsets: Vec<(String, String, i64, i64)> = topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let (start, hw) = p.offsets();
                (t.record.name.clone(), p.partition().to_string(), start, hw)
            })
        })
        .collect();
    w.gauge(
        "kafka_topic_partition_current_offset",
        "Log end offset (high watermark) of a partition.",
    );
    for (t, p, _, hw) in &offsets {
        w.sample(
            "kafka_topic_partition_current_offset",
            &[("topic", t), ("partition", p)],
            *hw as f64,
        );
    }
    w.gauge(
        "kafka_topic_partition_oldest_offset",
        "Log start offset of a partition.",
    );
    for (t, p, start, _) in &offsets {
        w.sample(
            "kafka_topic_partition_oldest_offset",
            &[("topic", t), ("partition", p)],
            *start as f64,
        );
    }

    w.gauge(
        "kafka_consumergroup_members",
        "Number of members in a consumer group.",
    );
    for g in groups {
        w.sample(
            "kafka_consumergroup_members",
            &[("consumergroup", &g.group)],
            g.members as f64,
        );
    }
    let per_partition = |w: &mut FamilyWriter,
                         name: &str,
                         help: &str,
                         f: &dyn Fn(&crate::lag::PartitionLagInfo) -> f64| {
        w.gauge(name, help);
        let mut labels = String::new();
        for g in groups {
            let mut topic: Option<&str> = None;
            for p in &g.partitions {
                if topic != Some(&*p.topic) {
                    group_topic_labels(&mut labels, &g.group, &p.topic);
                    topic = Some(&*p.topic);
                }
                w.sample_prefixed(name, &labels, p.partition, f(p));
            }
        }
    };
    per_partition(
        w,
        "kafka_consumergroup_current_offset",
        "Committed offset of a consumer group on a partition.",
        &|i| i.committed as f64,
    );
    per_partition(
        w,
        "kafka_consumergroup_lag",
        "Records between a group's committed offset and the log end.",
        &|i| i.lag as f64,
    );
    per_partition(
        w,
        "kafka_consumergroup_lag_seconds",
        "Age in seconds of the first record the group has not committed (0 when caught up).",
        &|i| i.lag_seconds,
    );
    if detail == Detail::Partition {
        per_partition(
            w,
            "sluice_consumergroup_lag_rate",
            "Change of the lag in records per second over the recent commit window (positive: falling behind).",
            &|i| i.trend,
        );
    }
    // Per group and topic: offsets, lags and lag rates summed over partitions.
    let mut sums: Vec<(&str, &str, i64, i64, f64)> = Vec::new();
    for g in groups {
        let mut by_topic: BTreeMap<&str, (i64, i64, f64)> = BTreeMap::new();
        for p in &g.partitions {
            let e = by_topic.entry(&*p.topic).or_default();
            e.0 += p.committed;
            e.1 += p.lag;
            e.2 += p.trend;
        }
        sums.extend(
            by_topic
                .into_iter()
                .map(|(t, (o, l, r))| (g.group.as_str(), t, o, l, r)),
        );
    }
    w.gauge(
        "kafka_consumergroup_current_offset_sum",
        "Sum of a group's committed offsets over a topic's partitions.",
    );
    for (g, t, o, _, _) in &sums {
        w.sample(
            "kafka_consumergroup_current_offset_sum",
            &[("consumergroup", g), ("topic", t)],
            *o as f64,
        );
    }
    w.gauge(
        "kafka_consumergroup_lag_sum",
        "Sum of a group's lag over a topic's partitions.",
    );
    for (g, t, _, l, _) in &sums {
        w.sample(
            "kafka_consumergroup_lag_sum",
            &[("consumergroup", g), ("topic", t)],
            *l as f64,
        );
    }
    w.gauge(
        "sluice_consumergroup_topic_lag_rate",
        "Change of a group's lag over a topic's partitions, records per second over the recent commit window (positive: falling behind).",
    );
    for (g, t, _, _, r) in &sums {
        w.sample(
            "sluice_consumergroup_topic_lag_rate",
            &[("consumergroup", g), ("topic", t)],
            *r,
        );
    }
    w.gauge(
        "kafka_consumergroup_lag_seconds_max",
        "Largest event age (seconds) over a group's partitions.",
    );
    for g in groups {
        w.sample(
            "kafka_consumergroup_lag_seconds_max",
            &[("consumergroup", &g.group)],
            g.max_lag_seconds,
        );
    }
    if detail == Detail::Partition {
        w.gauge(
            "sluice_consumergroup_partition_status",
            "Burrow status of a group's partition (OK, WARN, STOP, STALL, REWIND): 1 for the current status.",
        );
        for g in groups {
            for p in &g.partitions {
                w.sample(
                    "sluice_consumergroup_partition_status",
                    &[
                        ("consumergroup", &g.group),
                        ("topic", &p.topic),
                        ("partition", itoa::Buffer::new().format(p.partition)),
                        ("status", p.status.as_str()),
                    ],
                    1.0,
                );
            }
        }
    }
    w.gauge(
        "sluice_consumergroup_partitions",
        "Partitions of a group in each Burrow status (OK, WARN, STOP, STALL, REWIND).",
    );
    for g in groups {
        let mut counts = [0usize; PartitionStatus::ALL.len()];
        for p in &g.partitions {
            counts[p.status as usize] += 1;
        }
        for (status, n) in PartitionStatus::ALL.iter().zip(counts) {
            w.sample(
                "sluice_consumergroup_partitions",
                &[("consumergroup", &g.group), ("status", status.as_str())],
                n as f64,
            );
        }
    }
    w.gauge(
        "sluice_consumergroup_status",
        "Burrow status of a group (OK, WARN, ERR): 1 for the current status.",
    );
    for g in groups {
        w.sample(
            "sluice_consumergroup_status",
            &[("consumergroup", &g.group), ("status", g.status.as_str())],
            1.0,
        );
    }
    w.gauge("sluice_dlq_records", "Records held in a dead-letter topic.");
    for (t, n, _) in dlq {
        w.sample("sluice_dlq_records", &[("topic", t)], *n as f64);
    }
    w.gauge(
        "sluice_dlq_oldest_record_age_seconds",
        "Age of the oldest record in a dead-letter topic.",
    );
    for (t, _, age) in dlq {
        w.sample(
            "sluice_dlq_oldest_record_age_seconds",
            &[("topic", t)],
            *age,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_dead_letter_topics() {
        assert!(is_dlq_topic("orders-dlq"));
        assert!(is_dlq_topic("payments.DLT"));
        assert!(is_dlq_topic("dlq.llm.inferences"));
        assert!(!is_dlq_topic("dlqueue"));
    }
}
