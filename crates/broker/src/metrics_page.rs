//! `GET /metrics`: the broker's own metrics, then the kafka-exporter
//! families (same names and labels, so existing dashboards and alerts work),
//! event age (`kafka_consumergroup_lag_seconds`), Burrow statuses and
//! dead-letter topic depth and age, all computed at scrape time.

use crate::lag::{group_lag, GroupLagInfo};
use crate::Broker;
use sluice_observe::exposition::FamilyWriter;
use std::collections::BTreeMap;

/// Topic name suffixes that mark a dead-letter topic.
pub const DLQ_SUFFIXES: &[&str] = &["-dlq", ".dlq", "_dlq", "-dlt", ".dlt", ".DLT", "_dlt"];

pub fn is_dlq_topic(name: &str) -> bool {
    DLQ_SUFFIXES.iter().any(|s| name.ends_with(s))
        || name.starts_with("dlq.")
        || name.starts_with("dlq-")
}

pub async fn render(broker: &Broker) -> String {
    let m = sluice_observe::metrics();
    let (mem, unuploaded) = broker.store.memory_usage();
    m.memory_bytes
        .with_label_values(&["tail_cache"])
        .set(mem as i64);
    m.memory_bytes
        .with_label_values(&["unuploaded"])
        .set(unuploaded as i64);
    let mut out = String::with_capacity(64 * 1024);
    m.render(&mut out);

    let now = sluice_storage::now_ms();
    let topics = broker.store.topics();
    let mut groups: Vec<GroupLagInfo> = Vec::new();
    for (g, _, _) in broker.groups.list() {
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

    let mut w = FamilyWriter::new(&mut out);
    w.gauge("kafka_brokers", "Number of brokers in the cluster.");
    w.sample("kafka_brokers", &[], 1.0);

    w.gauge("kafka_topic_partitions", "Number of partitions of a topic.");
    for t in &topics {
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
                (t.record.name.clone(), p.partition.to_string(), start, hw)
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
    for g in &groups {
        w.sample(
            "kafka_consumergroup_members",
            &[("consumergroup", &g.group)],
            g.members as f64,
        );
    }
    type Row<'a> = (&'a str, &'a str, String, &'a crate::lag::PartitionLagInfo);
    let rows: Vec<Row> = groups
        .iter()
        .flat_map(|g| {
            g.partitions.iter().map(move |p| {
                (
                    g.group.as_str(),
                    p.topic.as_str(),
                    p.partition.to_string(),
                    p,
                )
            })
        })
        .collect();
    let per_partition = |w: &mut FamilyWriter,
                         name: &str,
                         help: &str,
                         f: &dyn Fn(&crate::lag::PartitionLagInfo) -> f64| {
        w.gauge(name, help);
        for (g, t, p, info) in &rows {
            w.sample(
                name,
                &[("consumergroup", g), ("topic", t), ("partition", p)],
                f(info),
            );
        }
    };
    per_partition(
        &mut w,
        "kafka_consumergroup_current_offset",
        "Committed offset of a consumer group on a partition.",
        &|i| i.committed as f64,
    );
    per_partition(
        &mut w,
        "kafka_consumergroup_lag",
        "Records between a group's committed offset and the log end.",
        &|i| i.lag as f64,
    );
    per_partition(
        &mut w,
        "kafka_consumergroup_lag_seconds",
        "Age in seconds of the first record the group has not committed (0 when caught up).",
        &|i| i.lag_seconds,
    );
    per_partition(
        &mut w,
        "sluice_consumergroup_lag_rate",
        "Change of the lag in records per second over the recent commit window (positive: falling behind).",
        &|i| i.trend,
    );
    let mut sums: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    for (g, t, _, i) in &rows {
        let e = sums.entry((g, t)).or_default();
        e.0 += i.committed;
        e.1 += i.lag;
    }
    w.gauge(
        "kafka_consumergroup_current_offset_sum",
        "Sum of a group's committed offsets over a topic's partitions.",
    );
    for ((g, t), (o, _)) in &sums {
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
    for ((g, t), (_, l)) in &sums {
        w.sample(
            "kafka_consumergroup_lag_sum",
            &[("consumergroup", g), ("topic", t)],
            *l as f64,
        );
    }
    w.gauge(
        "kafka_consumergroup_lag_seconds_max",
        "Largest event age (seconds) over a group's partitions.",
    );
    for g in &groups {
        w.sample(
            "kafka_consumergroup_lag_seconds_max",
            &[("consumergroup", &g.group)],
            g.max_lag_seconds,
        );
    }
    w.gauge(
        "sluice_consumergroup_partition_status",
        "Burrow status of a group's partition (OK, WARN, STOP, STALL, REWIND): 1 for the current status.",
    );
    for (g, t, p, i) in &rows {
        w.sample(
            "sluice_consumergroup_partition_status",
            &[
                ("consumergroup", g),
                ("topic", t),
                ("partition", p),
                ("status", i.status.as_str()),
            ],
            1.0,
        );
    }
    w.gauge(
        "sluice_consumergroup_status",
        "Burrow status of a group (OK, WARN, ERR): 1 for the current status.",
    );
    for g in &groups {
        w.sample(
            "sluice_consumergroup_status",
            &[("consumergroup", &g.group), ("status", g.status.as_str())],
            1.0,
        );
    }
    w.gauge("sluice_dlq_records", "Records held in a dead-letter topic.");
    for (t, n, _) in &dlq {
        w.sample("sluice_dlq_records", &[("topic", t)], *n as f64);
    }
    w.gauge(
        "sluice_dlq_oldest_record_age_seconds",
        "Age of the oldest record in a dead-letter topic.",
    );
    for (t, _, age) in &dlq {
        w.sample(
            "sluice_dlq_oldest_record_age_seconds",
            &[("topic", t)],
            *age,
        );
    }
    out
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
