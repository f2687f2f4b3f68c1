//! Views over Kafka record batches (magic v2) as they travel on the wire and
//! sit in the log. Batches are stored exactly as producers sent them; the
//! broker only reads header fields and rewrites `baseOffset` (which the CRC
//! does not cover). Records inside are decoded only by features that need them.
//!
//! Layout of the 61-byte header (all big-endian):
//! `baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 |
//!  crc u32 | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 |
//!  maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32 |
//!  recordCount i32`; the CRC32C covers everything from `attributes` on.

use bytes::Bytes;

/// Size of the v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s payload starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
const MAGIC_POS: usize = 16;
const CRC_POS: usize = 17;
const ATTRIBUTES_POS: usize = 21;
const MAX_TIMESTAMP_POS: usize = 35;

/// Attribute bit: timestamps are the broker's append time.
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit: the batch is part of a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: the batch holds control records.
pub const ATTR_CONTROL: i16 = 0x20;

/// Why a batch was refused; maps to Kafka's CORRUPT_MESSAGE unless noted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    BadMagic(i8),
    #[error("record batch CRC mismatch: header says {stored:#010x}, data gives {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record batch header is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("no record batch in the request")]
    Empty,
}

/// Decoded header fields of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses the header at the start of `b` (no CRC check).
    pub fn parse(b: &[u8]) -> Result<Self, BatchError> {
        if b.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                need: HEADER_LEN,
                have: b.len(),
            });
        }
        Ok(Self {
            base_offset: be_i64(b, 0),
            batch_length: be_i32(b, 8),
            partition_leader_epoch: be_i32(b, 12),
            magic: b[MAGIC_POS] as i8,
            crc: u32::from_be_bytes([b[17], b[18], b[19], b[20]]),
            attributes: be_i16(b, 21),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            record_count: be_i32(b, 57),
        })
    }

    /// Total size of the batch on the wire, including offset and length.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Sequence number of the batch's last record (wraps like Kafka's).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether the producer asked for idempotent sequencing.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// One batch split out of a produce request, checked and ready to append.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    pub header: BatchHeader,
    pub bytes: Bytes,
}

/// Splits a produce request's `records` into batches, checking for each the
/// length, magic v2, header consistency and CRC32C.
pub fn split_and_check(records: &Bytes) -> Result<Vec<CheckedBatch>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                need: HEADER_LEN,
                have: rest.len(),
            });
        }
        let header = BatchHeader::parse(rest)?;
        if header.magic != 2 {
            return Err(BatchError::BadMagic(header.magic));
        }
        if (header.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Inconsistent(
                "batchLength shorter than the header",
            ));
        }
        let total = header.total_len();
        if rest.len() < total {
            return Err(BatchError::Truncated {
                need: total,
                have: rest.len(),
            });
        }
        let computed = crc32c::crc32c(&rest[ATTRIBUTES_POS..total]);
        if computed != header.crc {
            return Err(BatchError::BadCrc {
                stored: header.crc,
                computed,
            });
        }
        if header.last_offset_delta < 0 || header.record_count < 0 {
            return Err(BatchError::Inconsistent("negative record count"));
        }
        if header.record_count as i64 != header.last_offset_delta as i64 + 1 {
            return Err(BatchError::Inconsistent(
                "recordCount does not match lastOffsetDelta + 1",
            ));
        }
        out.push(CheckedBatch {
            header,
            bytes: records.slice(pos..pos + total),
        });
        pos += total;
    }
    if out.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(out)
}

/// Rewrites `baseOffset` in place. The CRC does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Marks a batch as stamped with the broker's append time (topic config
/// `message.timestamp.type=LogAppendTime`) and recomputes its CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, ATTRIBUTES_POS) | ATTR_LOG_APPEND_TIME;
    batch[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_POS..]);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates over the batches of already-stored log data (trusted: written by
/// this broker), yielding each header with the batch's byte range.
pub fn iter_stored(
    data: &[u8],
) -> impl Iterator<Item = (BatchHeader, std::ops::Range<usize>)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let h = BatchHeader::parse(data.get(pos..)?).ok()?;
        let end = pos.checked_add(h.total_len())?;
        if end > data.len() || h.total_len() < HEADER_LEN {
            return None;
        }
        let range = pos..end;
        pos = end;
        Some((h, range))
    })
}

/// Batch builders for tests (here and in the crates above).
#[doc(hidden)]
pub mod test_util {
    use super::*;

    /// Builds a minimal valid v2 batch with `count` empty records (test helper).
    pub fn make_batch(count: i32, base_ts: i64, producer_id: i64, base_seq: i32) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            // attributes, tsDelta, offsetDelta, keyLen(-1), valueLen(0), headers(0);
            // all zigzag varints.
            let body = [0u8, (i as u8) << 1, (i as u8) << 1, 1, 0, 0];
            records.push(body.len() as u8 * 2);
            records.extend_from_slice(&body);
        }
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        let batch_len = (HEADER_LEN - LOG_OVERHEAD + records.len()) as i32;
        b.extend_from_slice(&batch_len.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&(base_ts + count as i64 - 1).to_be_bytes());
        b.extend_from_slice(&producer_id.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&base_seq.to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&records);
        let crc = crc32c::crc32c(&b[ATTRIBUTES_POS..]);
        b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::make_batch;
    use super::*;

    #[test]
    fn splits_valid_batches() {
        let mut data = make_batch(3, 1000, -1, -1);
        data.extend(make_batch(2, 2000, 7, 5));
        let batches = split_and_check(&Bytes::from(data)).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].header.record_count, 3);
        assert_eq!(batches[1].header.producer_id, 7);
        assert_eq!(batches[1].header.last_sequence(), 6);
    }

    #[test]
    fn rejects_bad_crc_magic_and_truncation() {
        let mut data = make_batch(3, 1000, -1, -1);
        let last = data.len() - 1;
        data[last] ^= 0xff;
        assert!(matches!(
            split_and_check(&Bytes::from(data)),
            Err(BatchError::BadCrc { .. })
        ));
        let mut data = make_batch(1, 1000, -1, -1);
        data[MAGIC_POS] = 1;
        assert_eq!(
            split_and_check(&Bytes::from(data)).unwrap_err(),
            BatchError::BadMagic(1)
        );
        let data = make_batch(2, 1000, -1, -1);
        let cut = Bytes::from(data[..data.len() - 3].to_vec());
        assert!(matches!(
            split_and_check(&cut),
            Err(BatchError::Truncated { .. })
        ));
        assert_eq!(
            split_and_check(&Bytes::new()).unwrap_err(),
            BatchError::Empty
        );
    }

    #[test]
    fn base_offset_patch_keeps_crc_valid_and_log_append_time_recomputes_it() {
        let mut data = make_batch(4, 1000, -1, -1);
        set_base_offset(&mut data, 42);
        let b = split_and_check(&Bytes::from(data.clone())).unwrap();
        assert_eq!(b[0].header.base_offset, 42);
        assert_eq!(b[0].header.last_offset(), 45);
        set_log_append_time(&mut data, 99_999);
        let b = split_and_check(&Bytes::from(data)).unwrap();
        assert_eq!(b[0].header.max_timestamp, 99_999);
        assert_ne!(b[0].header.attributes & ATTR_LOG_APPEND_TIME, 0);
    }

    #[test]
    fn iterates_stored_batches() {
        let mut data = make_batch(3, 1000, -1, -1);
        data.extend(make_batch(2, 2000, -1, -1));
        let v: Vec<_> = iter_stored(&data).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].1.end, data.len());
    }
}
