//! Producing from outside the Kafka protocol (the REST produce endpoints):
//! records go through the broker's own write path, with the same topic
//! contracts (validation, dead-lettering, identity governance) a Kafka
//! producer's records meet, and land at offsets a Kafka consumer reads.
//! A record without a partition goes where Kafka's default partitioner
//! would put it: by the murmur2 hash of its key, else round robin.

use bytes::Bytes;
use sluice_broker::handlers::validation::{self, Validated};
use sluice_broker::security::authz::Caller;
use sluice_broker::Broker;
use sluice_protocol::batch::split_and_check;
use sluice_protocol::records::{encode_batch, RawRecord};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct OutRecord {
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    /// Milliseconds since the epoch (default: now).
    pub timestamp: Option<i64>,
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landed {
    pub partition: i32,
    /// -1 when it was dead-lettered instead.
    pub offset: i64,
    pub timestamp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("topic '{0}' does not exist")]
    NoSuchTopic(String),
    #[error("topic '{topic}' has no partition {partition}")]
    NoSuchPartition { topic: String, partition: i32 },
    /// The topic's contract refused the record (INVALID_RECORD).
    #[error("{0}")]
    Invalid(String),
    #[error("the record could not be stored: {0}")]
    Storage(String),
}

static ROUND_ROBIN: AtomicU32 = AtomicU32::new(0);

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), which its default
/// partitioner uses for keyed records: the same key goes to the same
/// partition whether it came through REST or a Java/librdkafka producer
/// with the murmur2 partitioner. Written out here because it is 20 lines
/// and the crates that offer it differ in seed and tail handling.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len() as u32;
    let mut h = SEED ^ len;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

fn partition_for(r: &OutRecord, partitions: i32) -> i32 {
    match (&r.partition, &r.key) {
        (Some(p), _) => *p,
        (None, Some(k)) => (murmur2(k) & 0x7fff_ffff) % partitions,
        (None, None) => (ROUND_ROBIN.fetch_add(1, Ordering::Relaxed) % partitions as u32) as i32,
    }
}

/// Produces `records` to `topic` as `caller`, in order; one result per
/// record (a refusal by the topic's contract is that record's error).
pub async fn produce(
    broker: &Broker,
    caller: &Caller,
    topic: &str,
    records: Vec<OutRecord>,
) -> Result<Vec<Result<Landed, ProduceError>>, ProduceError> {
    let t = broker
        .store
        .topic(topic)
        .ok_or_else(|| ProduceError::NoSuchTopic(topic.to_string()))?;
    let n = t.partitions.len().max(1) as i32;
    let now = sluice_storage::now_ms();
    let mut results: Vec<Option<Result<Landed, ProduceError>>> =
        (0..records.len()).map(|_| None).collect();
    // Each partition's records as one batch, in the order given.
    let mut by_partition: BTreeMap<i32, Vec<(usize, RawRecord)>> = BTreeMap::new();
    for (i, r) in records.into_iter().enumerate() {
        let p = partition_for(&r, n);
        if p < 0 || p >= n {
            results[i] = Some(Err(ProduceError::NoSuchPartition {
                topic: topic.to_string(),
                partition: p,
            }));
            continue;
        }
        by_partition.entry(p).or_default().push((
            i,
            RawRecord {
                offset: 0,
                timestamp: r.timestamp.unwrap_or(now),
                key: r.key,
                value: r.value,
                headers: r.headers,
            },
        ));
    }
    // A topic with a contract may dead-letter some records of a batch; to
    // tell each record's fate, its records go one batch each.
    let one_by_one = sluice_registry::policy_from_configs(&t.record.configs).is_active();
    let groups: Vec<(i32, Vec<(usize, RawRecord)>)> = by_partition
        .into_iter()
        .flat_map(|(p, items)| {
            if one_by_one {
                items
                    .into_iter()
                    .map(|it| (p, vec![it]))
                    .collect::<Vec<_>>()
            } else {
                vec![(p, items)]
            }
        })
        .collect();
    for (p, items) in groups {
        let (idx, raw): (Vec<usize>, Vec<RawRecord>) = items.into_iter().unzip();
        let stamps: Vec<i64> = raw.iter().map(|r| r.timestamp).collect();
        let outcome = append_one(broker, &t, p, &raw, caller).await;
        for (j, i) in idx.iter().enumerate() {
            results[*i] = Some(match &outcome {
                Ok(Some(base)) => Ok(Landed {
                    partition: p,
                    offset: base + j as i64,
                    timestamp: stamps[j],
                }),
                Ok(None) => Ok(Landed {
                    partition: p,
                    offset: -1,
                    timestamp: stamps[j],
                }),
                Err(e) => Err(match e {
                    ProduceError::Invalid(m) => ProduceError::Invalid(m.clone()),
                    other => ProduceError::Storage(other.to_string()),
                }),
            });
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ProduceError::Storage("not produced".into()))))
        .collect())
}

/// Appends one partition's records through the topic's contract; the base
/// offset, or None when they went to the dead-letter topic.
async fn append_one(
    broker: &Broker,
    t: &std::sync::Arc<sluice_storage::Topic>,
    partition: i32,
    records: &[RawRecord],
    caller: &Caller,
) -> Result<Option<i64>, ProduceError> {
    let p = t
        .partition(partition)
        .cloned()
        .ok_or_else(|| ProduceError::NoSuchPartition {
            topic: t.record.name.clone(),
            partition,
        })?;
    if t.has_cleanup_policy("compact") && records.iter().any(|r| r.key.is_none()) {
        return Err(ProduceError::Invalid(
            "records on a compacted topic need a key".into(),
        ));
    }
    let batch = encode_batch(records).map_err(|e| ProduceError::Storage(e.to_string()))?;
    let batches = split_and_check(&batch).map_err(|e| ProduceError::Storage(e.to_string()))?;
    let batches = match validation::validate(broker, t, partition, batches, caller).await {
        Validated::Accept(b) => b,
        Validated::Reject(bad) => {
            let msg = bad
                .iter()
                .map(|(i, why)| format!("record {i}: {why}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ProduceError::Invalid(msg));
        }
        Validated::Split { keep, .. } if keep.is_empty() => return Ok(None),
        Validated::Split { keep, .. } => keep,
    };
    broker
        .store
        .append(t, &p, batches)
        .await
        .map(|o| Some(o.base_offset))
        .map_err(|e| ProduceError::Storage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
