//! The broker's own metrics, registered once in a process-wide registry
//! (the `prometheus` crate) and rendered by `GET /metrics`.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

/// Every broker-internal metric.
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub bytes_in: IntCounterVec,
    pub bytes_out: IntCounterVec,
    pub records_in: IntCounterVec,
    pub records_out: IntCounterVec,
    pub connections: IntGauge,
    pub connections_accepted: IntCounter,
    pub wal_fsync_seconds: Histogram,
    pub wal_bytes: IntCounter,
    pub object_requests: IntCounterVec,
    pub object_request_seconds: HistogramVec,
    pub objects_written: IntCounter,
    pub upload_bytes: IntCounter,
    pub upload_backlog_bytes: IntGauge,
    pub read_source: IntCounterVec,
    pub memory_bytes: IntGaugeVec,
    /// The process's resident set (Prometheus clients' standard name).
    pub resident_memory_bytes: IntGauge,
    pub block_cache_lookups: IntCounterVec,
    pub read_buffers: IntCounterVec,
    pub read_buffer_bytes: IntCounterVec,
    pub flush_seconds: HistogramVec,
    pub catalog_changes: IntCounterVec,
    pub live_brokers: IntGauge,
    pub lease_epoch: IntGauge,
    pub upkeep_holder: IntGauge,
    pub cluster_metrics_holder: IntGauge,
    pub sasl_failures: IntCounter,
    pub tls_failures: IntCounter,
    pub authorization_denials: IntCounterVec,
    pub quota_throttles: IntCounterVec,
    pub cleaner_runs: IntCounter,
    pub cleaner_records_removed: IntCounter,
    pub cleaner_bytes_read: IntCounter,
    pub cleaner_bytes_written: IntCounter,
    pub cleaner_dirty_bytes: IntGauge,
}

fn latency_buckets() -> Vec<f64> {
    // 50 µs .. ~26 s
    exponential_buckets(0.00005, 2.0, 20).unwrap_or_default()
}

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(latency_buckets()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let requests = counter_vec(
            "sluice_requests_total",
            "Kafka requests handled, by API.",
            &["api"],
        )?;
        let request_seconds = histogram_vec(
            "sluice_request_duration_seconds",
            "Time from a Kafka request's arrival to its response, by API.",
            &["api"],
        )?;
        let bytes_in = counter_vec(
            "sluice_topic_bytes_in_total",
            "Record batch bytes produced, by topic.",
            &["topic"],
        )?;
        let bytes_out = counter_vec(
            "sluice_topic_bytes_out_total",
            "Record batch bytes fetched, by topic.",
            &["topic"],
        )?;
        let records_in = counter_vec(
            "sluice_topic_records_in_total",
            "Records produced, by topic.",
            &["topic"],
        )?;
        let records_out = counter_vec(
            "sluice_topic_records_out_total",
            "Records fetched, by topic.",
            &["topic"],
        )?;
        let connections = IntGauge::new("sluice_connections", "Open Kafka connections.")?;
        registry.register(Box::new(connections.clone()))?;
        let connections_accepted = IntCounter::new(
            "sluice_connections_accepted_total",
            "Kafka connections accepted.",
        )?;
        registry.register(Box::new(connections_accepted.clone()))?;
        let wal_fsync_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "sluice_wal_fsync_duration_seconds",
                "Duration of one WAL group commit (write + fdatasync).",
            )
            .buckets(latency_buckets()),
        )?;
        registry.register(Box::new(wal_fsync_seconds.clone()))?;
        let wal_bytes = IntCounter::new(
            "sluice_wal_bytes_total",
            "Bytes written to the write-ahead log.",
        )?;
        registry.register(Box::new(wal_bytes.clone()))?;
        let object_requests = counter_vec(
            "sluice_object_store_requests_total",
            "Object store requests, by operation and outcome.",
            &["op", "outcome"],
        )?;
        let object_request_seconds = histogram_vec(
            "sluice_object_store_request_duration_seconds",
            "Object store request latency, by operation.",
            &["op"],
        )?;
        let objects_written = IntCounter::new(
            "sluice_objects_written_total",
            "Objects written to the object store.",
        )?;
        registry.register(Box::new(objects_written.clone()))?;
        let upload_bytes = IntCounter::new(
            "sluice_upload_bytes_total",
            "Bytes uploaded to the object store.",
        )?;
        registry.register(Box::new(upload_bytes.clone()))?;
        let upload_backlog_bytes = IntGauge::new(
            "sluice_upload_backlog_bytes",
            "Durable bytes waiting to be uploaded to objects.",
        )?;
        registry.register(Box::new(upload_backlog_bytes.clone()))?;
        let read_source = counter_vec(
            "sluice_fetch_reads_total",
            "Partition reads by where the data came from: tail (memory, a cache hit) or object (a miss).",
            &["source"],
        )?;
        let memory_bytes = IntGaugeVec::new(
            Opts::new(
                "sluice_memory_bytes",
                "Memory held by buffers and caches, by kind.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(memory_bytes.clone()))?;
        let resident_memory_bytes = IntGauge::new(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )?;
        registry.register(Box::new(resident_memory_bytes.clone()))?;
        let block_cache_lookups = counter_vec(
            "sluice_block_cache_lookups_total",
            "Block cache lookups of object rows for catch-up reads, by outcome (hit or miss).",
            &["outcome"],
        )?;
        let read_buffers = counter_vec(
            "sluice_read_buffers_total",
            "Buffers handed out for direct object reads, by whether an idle one was reused or a fresh one allocated.",
            &["outcome"],
        )?;
        let read_buffer_bytes = counter_vec(
            "sluice_read_buffer_bytes_total",
            "Bytes of the buffers counted in sluice_read_buffers_total: a fresh one's are new memory the kernel faults in and zeroes.",
            &["outcome"],
        )?;
        let flush_seconds = histogram_vec(
            "sluice_flush_duration_seconds",
            "A cluster broker's flushes, by stage: put (the object PUT), commit (the catalog transaction), total (sealed to answered).",
            &["stage"],
        )?;
        let catalog_changes = counter_vec(
            "sluice_catalog_changes_total",
            "Change notifications heard from the cluster catalog, by kind (data, topics, brokers, registry, acls, resync).",
            &["kind"],
        )?;
        let authorization_denials = counter_vec(
            "sluice_authorization_denials_total",
            "Requests (or parts of them) the authorizer refused, by resource type and operation.",
            &["resource_type", "operation"],
        )?;
        let quota_throttles = counter_vec(
            "sluice_quota_throttles_total",
            "Requests that earned a throttle under a client quota, by quota (producer_byte_rate, consumer_byte_rate, request_percentage).",
            &["quota"],
        )?;
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let cleaner_runs = counter(
            "sluice_cleaner_runs_total",
            "Partitions of compacted topics the log cleaner rewrote.",
        )?;
        let cleaner_records_removed = counter(
            "sluice_cleaner_records_removed_total",
            "Records the log cleaner removed (superseded values and expired tombstones).",
        )?;
        let cleaner_bytes_read = counter(
            "sluice_cleaner_bytes_read_total",
            "Bytes of record batches the log cleaner rewrote (before cleaning).",
        )?;
        let cleaner_bytes_written = counter(
            "sluice_cleaner_bytes_written_total",
            "Bytes of record batches the log cleaner kept (after cleaning).",
        )?;
        let cleaner_dirty_bytes = gauge(
            "sluice_cleaner_dirty_bytes",
            "Cleanable bytes of compacted topics not yet cleaned (the cleaner's backlog), as of its last pass.",
        )?;
        let live_brokers = gauge(
            "sluice_cluster_live_brokers",
            "Live brokers this broker sees (1 alone).",
        )?;
        let lease_epoch = gauge(
            "sluice_broker_lease_epoch",
            "This broker's lease epoch in the cluster catalog (0 alone); it grows each time the broker registers again.",
        )?;
        let upkeep_holder = gauge(
            "sluice_storage_upkeep_holder",
            "1 while this broker runs retention, compaction and garbage collection for the cluster (always alone).",
        )?;
        let cluster_metrics_holder = gauge(
            "sluice_cluster_metrics_holder",
            "1 while this broker exports the cluster-wide families (kafka_brokers, kafka_topic_*, sluice_dlq_*) for the cluster (always alone); consumer-group families come from each group's coordinator.",
        )?;
        let sasl_failures = IntCounter::new(
            "sluice_sasl_authentication_failures_total",
            "Failed SASL logins (wrong password, unknown user, malformed exchange).",
        )?;
        registry.register(Box::new(sasl_failures.clone()))?;
        let tls_failures = IntCounter::new(
            "sluice_tls_handshake_failures_total",
            "TLS handshakes that failed or did not finish in time.",
        )?;
        registry.register(Box::new(tls_failures.clone()))?;
        // Both outcomes exported from the start, so rates and ratios over
        // them exist before the first catch-up read.
        for outcome in ["hit", "miss"] {
            block_cache_lookups.with_label_values(&[outcome]);
        }
        for outcome in ["reused", "fresh"] {
            read_buffers.with_label_values(&[outcome]);
            read_buffer_bytes.with_label_values(&[outcome]);
        }
        Ok(Self {
            registry,
            requests,
            request_seconds,
            bytes_in,
            bytes_out,
            records_in,
            records_out,
            connections,
            connections_accepted,
            wal_fsync_seconds,
            wal_bytes,
            object_requests,
            object_request_seconds,
            objects_written,
            upload_bytes,
            upload_backlog_bytes,
            read_source,
            memory_bytes,
            resident_memory_bytes,
            block_cache_lookups,
            read_buffers,
            read_buffer_bytes,
            flush_seconds,
            catalog_changes,
            live_brokers,
            lease_epoch,
            upkeep_holder,
            cluster_metrics_holder,
            sasl_failures,
            tls_failures,
            authorization_denials,
            quota_throttles,
            cleaner_runs,
            cleaner_records_removed,
            cleaner_bytes_read,
            cleaner_bytes_written,
            cleaner_dirty_bytes,
        })
    }

    /// Renders every registered metric in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), out) {
            out.push_str(&format!("# encoding error: {e}\n"));
        }
    }

    /// Forgets a deleted topic's series.
    pub fn remove_topic(&self, topic: &str) {
        for v in [
            &self.bytes_in,
            &self.bytes_out,
            &self.records_in,
            &self.records_out,
        ] {
            let _ = v.remove_label_values(&[topic]);
        }
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| match Metrics::new() {
        Ok(m) => m,
        // Only a programming error (a duplicate name) can get here.
        Err(e) => panic!("metric registration failed: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_metrics() {
        let m = metrics();
        m.requests.with_label_values(&["Produce"]).inc();
        m.wal_fsync_seconds.observe(0.001);
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("sluice_requests_total{api=\"Produce\"} 1"));
        assert!(s.contains("sluice_wal_fsync_duration_seconds_bucket"));
        assert!(s.contains("sluice_block_cache_lookups_total{outcome=\"miss\"}"));
        assert!(s.contains("sluice_read_buffers_total{outcome=\"fresh\"}"));
        assert!(s.contains("sluice_read_buffer_bytes_total{outcome=\"fresh\"}"));
    }
}

/// This process's resident set size, from `/proc/self/status` (`VmRSS`);
/// `None` where that file does not exist.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod rss_tests {
    #[test]
    fn resident_memory_is_read_on_linux() {
        let rss = super::resident_memory_bytes().expect("VmRSS");
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
