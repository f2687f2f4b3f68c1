//! The Fetch response frame as a list of byte runs, so the stored record
//! batches go to the socket without being copied.
//!
//! Written by hand because `kafka-protocol` encodes a partition's records as
//! one contiguous `Bytes` copied into the response buffer: a fetch's batches
//! would be copied twice (joined, then encoded) before the kernel copies them
//! once more. Here everything but the records is encoded into small buffers
//! and each batch is its own run. Only what Sluice sends is handled (versions
//! 4–12, no tagged fields); anything else returns `None` and the caller uses
//! `kafka-protocol`. The tests compare every byte with `kafka-protocol`'s
//! encoding of the same response.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::FetchResponse;

/// Fetch versions this encoder writes.
const VERSIONS: std::ops::RangeInclusive<i16> = 4..=12;

/// A response frame: byte runs written back to back.
#[derive(Debug, Default)]
pub struct Frame {
    pub parts: Vec<Bytes>,
    /// Catch-up data: written at background priority.
    pub background: bool,
}

impl Frame {
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<BytesMut> for Frame {
    fn from(b: BytesMut) -> Self {
        Frame {
            parts: vec![b.freeze()],
            background: false,
        }
    }
}

/// Builds the frame: small fields into `head`, record batches as runs.
struct Writer {
    parts: Vec<Bytes>,
    head: BytesMut,
}

impl Writer {
    fn runs(&mut self, batches: &[Bytes]) {
        if !self.head.is_empty() {
            self.parts.push(self.head.split().freeze());
        }
        self.parts
            .extend(batches.iter().filter(|b| !b.is_empty()).cloned());
    }

    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.head.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.head.put_u8(v as u8);
    }

    /// An array or nullable field's length: compact (n + 1, 0 for null) or
    /// INT32 (-1 for null).
    fn len(&mut self, flexible: bool, n: Option<usize>) {
        match (flexible, n) {
            (true, Some(n)) => self.uvarint(n as u64 + 1),
            (true, None) => self.uvarint(0),
            (false, Some(n)) => self.head.put_i32(n as i32),
            (false, None) => self.head.put_i32(-1),
        }
    }

    fn string(&mut self, flexible: bool, s: &str) {
        if flexible {
            self.uvarint(s.len() as u64 + 1);
        } else {
            self.head.put_i16(s.len() as i16);
        }
        self.head.put_slice(s.as_bytes());
    }
}

/// Whether `kafka-protocol` would write tagged fields for this partition.
fn has_tagged_fields(p: &PartitionData) -> bool {
    !p.unknown_tagged_fields.is_empty()
        || p.diverging_epoch != Default::default()
        || p.current_leader != Default::default()
        || p.snapshot_id != Default::default()
        || p.aborted_transactions
            .iter()
            .flatten()
            .any(|a| !a.unknown_tagged_fields.is_empty())
}

/// Encodes the whole frame (length prefix, response header, body) of
/// `resp`, whose partitions' records are `records` (one list of stored
/// batches per partition, in response order; the partitions' own `records`
/// fields are ignored). `None` when this encoder does not cover the case.
pub fn encode(
    version: i16,
    correlation_id: i32,
    resp: &FetchResponse,
    records: &[Vec<Bytes>],
) -> Option<Frame> {
    let partitions: usize = resp.responses.iter().map(|t| t.partitions.len()).sum();
    if !VERSIONS.contains(&version)
        || partitions != records.len()
        || !resp.unknown_tagged_fields.is_empty()
        || (version < 7 && resp.session_id != 0)
        || resp.responses.iter().any(|t| {
            !t.unknown_tagged_fields.is_empty()
                || t.partitions.iter().any(|p| {
                    has_tagged_fields(p) || (version < 11 && p.preferred_read_replica != -1)
                })
        })
    {
        return None;
    }
    let flexible = version >= 12;
    let mut w = Writer {
        parts: Vec::with_capacity(2 + 2 * partitions),
        head: BytesMut::with_capacity(256),
    };
    // Response header: v1 (with an empty tagged-field section) for flexible versions.
    w.head.put_i32(correlation_id);
    if flexible {
        w.uvarint(0);
    }
    w.head.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        w.head.put_i16(resp.error_code);
        w.head.put_i32(resp.session_id);
    }
    w.len(flexible, Some(resp.responses.len()));
    let mut batches = records.iter();
    for t in &resp.responses {
        w.string(flexible, t.topic.0.as_str());
        w.len(flexible, Some(t.partitions.len()));
        for p in &t.partitions {
            w.head.put_i32(p.partition_index);
            w.head.put_i16(p.error_code);
            w.head.put_i64(p.high_watermark);
            w.head.put_i64(p.last_stable_offset);
            if version >= 5 {
                w.head.put_i64(p.log_start_offset);
            }
            let aborted = p.aborted_transactions.as_ref();
            w.len(flexible, aborted.map(Vec::len));
            for a in aborted.into_iter().flatten() {
                w.head.put_i64(a.producer_id.0);
                w.head.put_i64(a.first_offset);
                if flexible {
                    w.uvarint(0);
                }
            }
            if version >= 11 {
                w.head.put_i32(p.preferred_read_replica.0);
            }
            let runs = batches.next().map(Vec::as_slice).unwrap_or_default();
            if p.records.is_none() && runs.is_empty() {
                w.len(flexible, None);
            } else {
                let size: usize = runs.iter().map(Bytes::len).sum();
                w.len(flexible, Some(size));
                w.runs(runs);
            }
            if flexible {
                w.uvarint(0);
            }
        }
        if flexible {
            w.uvarint(0);
        }
    }
    if flexible {
        w.uvarint(0);
    }
    if !w.head.is_empty() {
        let rest = w.head.split().freeze();
        w.parts.push(rest);
    }
    let body: usize = w.parts.iter().map(Bytes::len).sum();
    let mut parts = Vec::with_capacity(w.parts.len() + 1);
    parts.push(Bytes::copy_from_slice(&(body as i32).to_be_bytes()));
    parts.extend(w.parts);
    Some(Frame {
        parts,
        background: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::encode_response;
    use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse};
    use kafka_protocol::messages::{ApiKey, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response(with_aborted: bool) -> (FetchResponse, Vec<Vec<Bytes>>) {
        let mut resp = FetchResponse::default();
        resp.throttle_time_ms = 3;
        let mut records = Vec::new();
        for (ti, name) in ["llm.inferences", "t"].iter().enumerate() {
            let mut t = FetchableTopicResponse::default();
            t.topic = TopicName(StrBytes::from_static_str(name));
            for pi in 0..3 {
                let mut p = PartitionData::default();
                p.partition_index = pi;
                p.high_watermark = 1000 + pi as i64;
                p.last_stable_offset = 1000 + pi as i64;
                p.log_start_offset = 7;
                p.error_code = if pi == 2 { 1 } else { 0 };
                if with_aborted {
                    p.aborted_transactions = if pi == 1 {
                        None
                    } else {
                        let mut a = AbortedTransaction::default();
                        a.producer_id = kafka_protocol::messages::ProducerId(42);
                        a.first_offset = 9;
                        Some(vec![a])
                    };
                }
                // Several runs, one empty partition, a large run.
                let runs: Vec<Bytes> = match (ti, pi) {
                    (0, 0) => vec![Bytes::from(vec![1u8; 70]), Bytes::from(vec![2u8; 5])],
                    (0, 1) => vec![Bytes::from(vec![3u8; 300_000])],
                    _ => vec![],
                };
                let joined: Vec<u8> = runs.iter().flat_map(|b| b.iter().copied()).collect();
                // A null records field (partition 2 of the second topic).
                p.records = Some(Bytes::from(joined));
                if (ti, pi) == (1, 2) {
                    p.records = None;
                }
                records.push(runs);
                t.partitions.push(p);
            }
            resp.responses.push(t);
        }
        (resp, records)
    }

    #[test]
    fn same_bytes_as_kafka_protocol_for_every_version() {
        for with_aborted in [false, true] {
            for version in VERSIONS {
                let (resp, records) = response(with_aborted);
                let mut resp = resp;
                if version >= 7 {
                    resp.session_id = 0;
                    resp.error_code = 0;
                }
                let want = encode_response(
                    ApiKey::Fetch,
                    version,
                    77,
                    &ResponseKind::Fetch(resp.clone()),
                )
                .unwrap();
                let got = encode(version, 77, &resp, &records).expect("covered");
                let joined: Vec<u8> = got.parts.iter().flat_map(|b| b.iter().copied()).collect();
                assert_eq!(
                    joined,
                    want.to_vec(),
                    "version {version}, aborted {with_aborted}"
                );
                assert!(
                    got.parts.iter().any(|p| p.len() == 300_000),
                    "the large batch is its own run, not copied"
                );
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        let (mut resp, records) = response(false);
        assert!(
            encode(13, 1, &resp, &records).is_none(),
            "topic ids from v13"
        );
        assert!(
            encode(12, 1, &resp, &records[1..]).is_none(),
            "records per partition"
        );
        resp.responses[0].partitions[0].snapshot_id.epoch = 3;
        assert!(encode(12, 1, &resp, &records).is_none(), "tagged fields");
    }
}
