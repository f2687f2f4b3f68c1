//! Exact offset-for-timestamp lookups. Batch headers give the maximum
//! timestamp of each batch, which finds the right batch without decompressing
//! anything; only that one batch is decoded to find the first record at or
//! after the target time.

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use sluice_protocol::batch::{BatchHeader, ATTR_LOG_APPEND_TIME};

/// In one batch whose max timestamp is at or after `ts`: the offset and
/// timestamp of the first record at or after `ts`.
pub fn find_in_batch(header: &BatchHeader, batch: &Bytes, ts: i64) -> Option<(i64, i64)> {
    if header.max_timestamp < ts {
        return None;
    }
    if header.attributes & ATTR_LOG_APPEND_TIME != 0 {
        return Some((header.base_offset, header.max_timestamp));
    }
    let mut buf = batch.clone();
    match RecordBatchDecoder::decode(&mut buf) {
        Ok(set) => set
            .records
            .iter()
            .find(|r| r.timestamp >= ts)
            .map(|r| (r.offset, r.timestamp)),
        Err(e) => {
            tracing::warn!(error = %e, base_offset = header.base_offset, "cannot decode a stored batch for a timestamp lookup");
            // The header's max timestamp is at or after `ts`: the batch start
            // is the closest answer that loses nothing.
            Some((header.base_offset, header.max_timestamp))
        }
    }
}

/// Scans stored batches in order for the first record at or after `ts`.
pub fn find_in_batches<'a>(
    batches: impl IntoIterator<Item = &'a Bytes>,
    ts: i64,
) -> Option<(i64, i64)> {
    for b in batches {
        let Ok(h) = BatchHeader::parse(b) else {
            continue;
        };
        if let Some(hit) = find_in_batch(&h, b, ts) {
            return Some(hit);
        }
    }
    None
}
