//! The console's overview (`GET /v1/overview`): the cluster's brokers and,
//! summed over every topic, partitions, records, storage used and
//! throughput in and out, with the counts of objects in the catalog,
//! consumer groups and registry subjects. Throughput is the answering
//! broker's (each broker of a cluster counts what passes through it), now
//! and over the last minutes.

use crate::admin::{self, AdminError};
use crate::cluster::{cluster_view, ClusterView};
use parking_lot::Mutex;
use serde::Serialize;
use sluice_broker::Broker;
use sluice_catalog::LogIndex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub cluster: ClusterView,
    pub topics: usize,
    pub partitions: usize,
    /// Records between log start and log end over all partitions.
    pub messages: i64,
    pub storage_bytes: u64,
    pub bytes_in_per_sec: f64,
    pub records_in_per_sec: f64,
    pub bytes_out_per_sec: f64,
    /// The same three rates at each tick of the broker's rate sampler over
    /// the last minutes, oldest first.
    pub history: Vec<ThroughputPoint>,
    /// Objects the catalog knows (in the bucket or the data directory),
    /// counted at most every [`OBJECT_COUNT_TTL`].
    pub objects: usize,
    /// Objects written by this broker since it started.
    pub objects_written: u64,
    pub groups: usize,
    pub subjects: usize,
}

/// The answering broker's throughput at one time.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputPoint {
    /// Unix milliseconds.
    pub time_ms: i64,
    pub bytes_in_per_sec: f64,
    pub bytes_out_per_sec: f64,
    pub records_in_per_sec: f64,
}

/// How long an object count is reused: counting lists every object key in
/// the catalog, too much to do on every poll of every open console.
const OBJECT_COUNT_TTL: Duration = Duration::from_secs(15);

async fn object_count(broker: &Broker) -> Result<usize, AdminError> {
    static LAST: Mutex<Option<(Instant, usize)>> = Mutex::new(None);
    if let Some((at, n)) = *LAST.lock() {
        if at.elapsed() < OBJECT_COUNT_TTL {
            return Ok(n);
        }
    }
    let catalog = broker.catalog.clone();
    let n = admin::catalog_call(move || catalog.object_keys().map(|k| k.len())).await?;
    *LAST.lock() = Some((Instant::now(), n));
    Ok(n)
}

pub async fn overview(broker: &Broker) -> Result<Overview, AdminError> {
    let cluster = cluster_view(broker).await?;
    let topics = admin::list_topics(broker);
    let objects = object_count(broker).await?;
    Ok(Overview {
        cluster,
        partitions: topics.iter().map(|t| t.partitions).sum(),
        messages: topics.iter().map(|t| t.messages).sum(),
        storage_bytes: topics.iter().map(|t| t.size_bytes).sum(),
        bytes_in_per_sec: topics.iter().map(|t| t.bytes_in_per_sec).sum(),
        records_in_per_sec: topics.iter().map(|t| t.records_in_per_sec).sum(),
        bytes_out_per_sec: topics.iter().map(|t| t.bytes_out_per_sec).sum(),
        history: broker
            .throughput
            .points()
            .into_iter()
            .map(
                |(time_ms, [bytes_in, bytes_out, records_in])| ThroughputPoint {
                    time_ms,
                    bytes_in_per_sec: bytes_in,
                    bytes_out_per_sec: bytes_out,
                    records_in_per_sec: records_in,
                },
            )
            .collect(),
        topics: topics.len(),
        objects,
        objects_written: sluice_observe::metrics().objects_written.get(),
        groups: broker.groups.list().len(),
        subjects: broker.registry.subjects(false, false, None).len(),
    })
}
