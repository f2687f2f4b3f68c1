//! Records inside v2 batches, for the few features that must read or write
//! them (dead-letter replay). Hand-written (with `kafka-protocol`'s
//! decompressors) because that crate's
//! `Record` keeps headers in a map, which merges duplicate header keys —
//! Kafka allows them and a replay must keep them byte-identical.

use crate::batch::{BatchHeader, HEADER_LEN};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, None as NoCompression, Snappy, Zstd};

/// One record with its headers in order, duplicates kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("record batch: {0}")]
    Batch(#[from] crate::batch::BatchError),
    #[error("records: {0}")]
    Decode(String),
}

fn err(e: impl std::fmt::Display) -> RecordsError {
    RecordsError::Decode(e.to_string())
}

/// Zigzag varints as Kafka records use them (the `kafka-protocol` ones are private).
fn get_varlong(buf: &mut Bytes) -> Result<i64, RecordsError> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err(err("truncated varint"));
        }
        let b = buf.get_u8();
        raw |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(err("varint too long"))
}

fn get_varint(buf: &mut Bytes) -> Result<i32, RecordsError> {
    i32::try_from(get_varlong(buf)?).map_err(|_| err("varint out of range"))
}

fn put_varlong(buf: &mut BytesMut, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        buf.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    buf.put_u8(raw as u8);
}

fn read_len_bytes(buf: &mut Bytes) -> Result<Option<Bytes>, RecordsError> {
    let len = get_varint(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(err("length past the end of the record"));
    }
    Ok(Some(buf.split_to(len)))
}

fn decode_records(
    buf: &mut Bytes,
    h: &BatchHeader,
    out: &mut Vec<RawRecord>,
) -> Result<(), RecordsError> {
    for _ in 0..h.record_count.max(0) {
        let len = get_varint(buf)?;
        if len < 0 || buf.remaining() < len as usize {
            return Err(err("record length past the end of the batch"));
        }
        let mut rec = buf.split_to(len as usize);
        if !rec.has_remaining() {
            return Err(err("empty record"));
        }
        rec.advance(1); // attributes (unused in v2)
        let ts_delta = get_varlong(&mut rec)?;
        let off_delta = get_varint(&mut rec)?;
        let key = read_len_bytes(&mut rec)?;
        let value = read_len_bytes(&mut rec)?;
        let n = get_varint(&mut rec)?;
        if n < 0 || n as usize > rec.remaining() {
            return Err(err("bad header count"));
        }
        let mut headers = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = read_len_bytes(&mut rec)?.ok_or_else(|| err("null header key"))?;
            headers.push((k, read_len_bytes(&mut rec)?));
        }
        let timestamp = if h.attributes & crate::batch::ATTR_LOG_APPEND_TIME != 0 {
            h.max_timestamp
        } else {
            h.base_timestamp + ts_delta
        };
        out.push(RawRecord {
            offset: h.base_offset + off_delta as i64,
            timestamp,
            key,
            value,
            headers,
        });
    }
    Ok(())
}

/// Decodes every record of one stored batch (any compression).
pub fn decode_batch(batch: &Bytes) -> Result<Vec<RawRecord>, RecordsError> {
    let h = BatchHeader::parse(batch)?;
    if batch.len() < h.total_len() || h.total_len() < HEADER_LEN {
        return Err(err("truncated batch"));
    }
    let mut body = batch.slice(HEADER_LEN..h.total_len());
    let mut out = Vec::with_capacity(h.record_count.clamp(0, 10_000) as usize);
    let f =
        |b: &mut Bytes| decode_records(b, &h, &mut out).map_err(|e| anyhow::anyhow!(e.to_string()));
    let r = match h.attributes & 0x07 {
        0 => NoCompression::decompress(&mut body, f),
        1 => Gzip::decompress(&mut body, f),
        2 => Snappy::decompress(&mut body, f),
        3 => Lz4::decompress(&mut body, f),
        4 => Zstd::decompress(&mut body, f),
        c => return Err(err(format!("unknown compression codec {c}"))),
    };
    r.map_err(err)?;
    Ok(out)
}

fn put_len_bytes(buf: &mut BytesMut, v: &Option<Bytes>) {
    match v {
        None => put_varlong(buf, -1),
        Some(b) => {
            put_varlong(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

/// Encodes records as one uncompressed v2 batch with base offset 0, for an
/// append (the log assigns the real offsets).
pub fn encode_batch(records: &[RawRecord]) -> Result<Bytes, RecordsError> {
    encode_batch_as(records, -1, -1, -1)
}

/// Like [`encode_batch`], as an idempotent producer's batch: producer id,
/// epoch and the first record's sequence number in the header, so the
/// partition's idempotence check recognises a retry of it.
pub fn encode_idempotent_batch(
    records: &[RawRecord],
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
) -> Result<Bytes, RecordsError> {
    encode_batch_as(records, producer_id, epoch, base_sequence)
}

fn encode_batch_as(
    records: &[RawRecord],
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
) -> Result<Bytes, RecordsError> {
    let shape = Shape {
        base_offset: 0,
        offsets_from_records: false,
        last_offset_delta: records.len().saturating_sub(1) as i32,
        attributes: 0,
        producer_id,
        epoch,
        base_sequence,
    };
    encode_shaped(records, &shape)
}

/// Encodes the records a cleaner kept of a stored batch: the batch's base
/// offset, last offset delta, producer fields and timestamp type stay (so
/// the batch still spans its original offsets, with gaps where records
/// went), each record keeps its own offset; uncompressed.
pub fn encode_retained_batch(
    records: &[RawRecord],
    original: &crate::batch::BatchHeader,
) -> Result<Bytes, RecordsError> {
    if let Some(r) = records
        .iter()
        .find(|r| r.offset < original.base_offset || r.offset > original.last_offset())
    {
        return Err(err(format!(
            "record offset {} is outside its batch {}..={}",
            r.offset,
            original.base_offset,
            original.last_offset()
        )));
    }
    let shape = Shape {
        base_offset: original.base_offset,
        offsets_from_records: true,
        last_offset_delta: original.last_offset_delta,
        // The timestamp type and the transactional and control bits; the
        // codec bits go (the records are written uncompressed).
        attributes: original.attributes & !0x07,
        producer_id: original.producer_id,
        epoch: original.producer_epoch,
        base_sequence: original.base_sequence,
    };
    encode_shaped(records, &shape)
}

/// A transaction marker: the one record of a control batch, which closes a
/// producer's transaction on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Abort,
    Commit,
}

/// Encodes a transaction marker as Kafka writes it: a transactional control
/// batch of the producer (`producer_id`, `epoch`, no sequence) holding one
/// record whose key is (version 0, type: 0 abort, 1 commit) and whose value
/// is (version 0, the coordinator's epoch).
pub fn encode_marker(
    marker: Marker,
    producer_id: i64,
    epoch: i16,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Result<Bytes, RecordsError> {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(match marker {
        Marker::Abort => 0,
        Marker::Commit => 1,
    });
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let record = RawRecord {
        offset: 0,
        timestamp,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Vec::new(),
    };
    let shape = Shape {
        base_offset: 0,
        offsets_from_records: false,
        last_offset_delta: 0,
        attributes: crate::batch::ATTR_TRANSACTIONAL | crate::batch::ATTR_CONTROL,
        producer_id,
        epoch,
        base_sequence: -1,
    };
    encode_shaped(std::slice::from_ref(&record), &shape)
}

/// The transaction marker a control batch holds (`None` for another control
/// record, or a batch that does not decode).
pub fn marker_of(batch: &Bytes) -> Option<Marker> {
    let records = decode_batch(batch).ok()?;
    let key = records.first()?.key.as_ref()?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(Marker::Abort),
        1 => Some(Marker::Commit),
        _ => None,
    }
}

/// The header fields of a batch being encoded.
struct Shape {
    base_offset: i64,
    /// Offset deltas from each record's offset (else its position).
    offsets_from_records: bool,
    last_offset_delta: i32,
    attributes: i16,
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
}

fn encode_shaped(records: &[RawRecord], shape: &Shape) -> Result<Bytes, RecordsError> {
    let base_ts = records.iter().map(|r| r.timestamp).min().unwrap_or(-1);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    let mut body = BytesMut::new();
    for (i, r) in records.iter().enumerate() {
        let delta = if shape.offsets_from_records {
            r.offset - shape.base_offset
        } else {
            i as i64
        };
        let mut rec = BytesMut::new();
        rec.put_u8(0);
        put_varlong(&mut rec, r.timestamp - base_ts);
        put_varlong(&mut rec, delta);
        put_len_bytes(&mut rec, &r.key);
        put_len_bytes(&mut rec, &r.value);
        put_varlong(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_varlong(&mut rec, k.len() as i64);
            rec.put_slice(k);
            put_len_bytes(&mut rec, v);
        }
        put_varlong(&mut body, rec.len() as i64);
        body.put_slice(&rec);
    }
    let mut b = BytesMut::with_capacity(HEADER_LEN + body.len());
    b.put_i64(shape.base_offset);
    b.put_i32((HEADER_LEN - 12 + body.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(shape.attributes);
    b.put_i32(shape.last_offset_delta);
    b.put_i64(base_ts);
    b.put_i64(max_ts);
    b.put_i64(shape.producer_id);
    b.put_i16(shape.epoch);
    b.put_i32(shape.base_sequence);
    b.put_i32(records.len() as i32);
    b.put_slice(&body);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(b.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_transactional_control_batches() {
        let b = encode_marker(Marker::Commit, 42, 3, 0, 1234).unwrap();
        let checked = crate::batch::split_and_check(&b).unwrap();
        let h = checked[0].header;
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (42, 3, -1)
        );
        assert_eq!((h.record_count, h.last_offset_delta), (1, 0));
        assert_eq!(marker_of(&b), Some(Marker::Commit));
        let a = encode_marker(Marker::Abort, 42, 4, 0, 1234).unwrap();
        assert_eq!(marker_of(&a), Some(Marker::Abort));
    }

    #[test]
    fn retained_batches_keep_offsets_and_span() {
        let rec = |offset: i64, v: &'static [u8]| RawRecord {
            offset,
            timestamp: 1000 + offset,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(v)),
            headers: vec![],
        };
        // An idempotent producer's batch of offsets 100..=104.
        let original = encode_idempotent_batch(
            &[
                rec(0, b"a"),
                rec(1, b"b"),
                rec(2, b"c"),
                rec(3, b"d"),
                rec(4, b"e"),
            ],
            7,
            1,
            40,
        )
        .unwrap();
        let mut stored = original.to_vec();
        stored[0..8].copy_from_slice(&100i64.to_be_bytes());
        let header = crate::batch::BatchHeader::parse(&stored).unwrap();
        let kept = [rec(101, b"b"), rec(103, b"d")];
        let out = encode_retained_batch(&kept, &header).unwrap();
        // (A produce request's check would refuse the gaps; stored batches
        // are read without it.)
        let h = &crate::batch::BatchHeader::parse(&out).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset()),
            (100, 104),
            "the batch keeps its span"
        );
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 1, 40)
        );
        assert_eq!(h.record_count, 2);
        let back = decode_batch(&out).unwrap();
        assert_eq!(
            back.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![101, 103]
        );
        assert_eq!(back[1].value.as_deref(), Some(&b"d"[..]));
        assert!(encode_retained_batch(&[rec(99, b"x")], &header).is_err());
    }

    #[test]
    fn round_trips_with_duplicate_headers_and_nulls() {
        let recs = vec![
            RawRecord {
                offset: 0,
                timestamp: 1000,
                key: Some(Bytes::from_static(b"k")),
                value: None,
                headers: vec![
                    (Bytes::from_static(b"hop"), Some(Bytes::from_static(b"a"))),
                    (Bytes::from_static(b"hop"), Some(Bytes::from_static(b"b"))),
                    (Bytes::from_static(b"nil"), None),
                ],
            },
            RawRecord {
                offset: 1,
                timestamp: 900,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: vec![],
            },
        ];
        let batch = encode_batch(&recs).unwrap();
        let checked = crate::batch::split_and_check(&batch).unwrap();
        assert_eq!(checked[0].header.record_count, 2);
        assert_eq!(decode_batch(&batch).unwrap(), recs);
    }
}
