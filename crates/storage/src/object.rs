//! The object format: immutable files in the object store holding log data.
//!
//! `object := chunk* footer footer_len:u32be magic:"SLUICEO1"`. A chunk is a
//! run of one partition's consecutive Kafka v2 record batches, byte for byte
//! as they are served to consumers (offsets assigned). The footer is JSON
//! listing every chunk (topic id, partition, offsets, max timestamp, byte
//! range), so an object describes itself: the catalog's index rows can be
//! rebuilt or checked from it. See `docs/formats.md`.
//!
//! A cluster broker writes an object before its offsets exist (the flush's
//! catalog commit assigns them): its batches keep the producer's base
//! offset and its footer counts offsets from 0 within each chunk
//! (`"offsets_assigned": false`). Readers always pass a row's bytes through
//! [`settle`], which gives each batch its offset from the index row.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sluice_protocol::batch::{iter_stored, set_base_offset};
use uuid::Uuid;

pub const MAGIC: &[u8; 8] = b"SLUICEO1";

/// One chunk's entry in the footer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    pub topic: Uuid,
    pub partition: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub position: u64,
    pub length: u64,
}

impl ChunkEntry {
    /// The catalog index row for this entry of object `key`.
    pub fn to_segment(&self, key: &str) -> sluice_catalog::SegmentRecord {
        sluice_catalog::SegmentRecord {
            topic: self.topic,
            partition: self.partition,
            base_offset: self.base_offset,
            last_offset: self.last_offset,
            max_timestamp: self.max_timestamp,
            object_key: key.to_string(),
            position: self.position,
            length: self.length,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footer {
    pub version: u32,
    pub chunks: Vec<ChunkEntry>,
    /// `false` in a cluster broker's flush objects: offsets count from 0
    /// within each chunk, and the catalog holds the real ones.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub offsets_assigned: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Largest byte range one catalog index row covers (unless a single batch
/// is larger). Index rows are the unit of catch-up reads and of the block
/// cache, so a fetch never reads more than about this much from an object.
pub const INDEX_ROW_BYTES: u64 = 1 << 20;

/// Room reserved for the footer by [`ObjectBuilder::with_capacity`].
const FOOTER_ROOM: usize = 64 << 10;

/// Builds an object chunk by chunk.
#[derive(Default)]
pub struct ObjectBuilder {
    buf: BytesMut,
    chunks: Vec<ChunkEntry>,
    rows: Vec<ChunkEntry>,
    offsets_unassigned: bool,
}

impl ObjectBuilder {
    /// A builder for about `data_bytes` of batches: the buffer is sized once
    /// (with room for the footer) instead of doubling as chunks arrive.
    pub fn with_capacity(data_bytes: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(data_bytes + FOOTER_ROOM),
            ..Self::default()
        }
    }

    /// Adds one partition's consecutive batches (in offset order). A call
    /// that continues the previous call's partition at the next offset
    /// extends its chunk and its last index row, so an object can be built
    /// piece by piece (compaction adds one source row at a time).
    pub fn add_chunk(
        &mut self,
        topic: Uuid,
        partition: i32,
        batches: &[crate::partition::MemBatch],
    ) {
        let Some(first) = batches.first() else {
            return;
        };
        let continues = self.chunks.last().is_some_and(|c| {
            c.topic == topic && c.partition == partition && c.last_offset + 1 == first.base_offset
        });
        if !continues {
            self.chunks.push(ChunkEntry {
                topic,
                partition,
                base_offset: first.base_offset,
                last_offset: first.base_offset - 1,
                max_timestamp: -1,
                position: self.buf.len() as u64,
                length: 0,
            });
        }
        let mut row_open = continues;
        for b in batches {
            let at = self.buf.len() as u64;
            self.buf.extend_from_slice(&b.bytes);
            let len = b.bytes.len() as u64;
            match self.rows.last_mut() {
                Some(r) if row_open && r.length + len <= INDEX_ROW_BYTES => {
                    r.last_offset = b.last_offset;
                    r.max_timestamp = r.max_timestamp.max(b.max_timestamp);
                    r.length += len;
                }
                _ => {
                    self.rows.push(ChunkEntry {
                        topic,
                        partition,
                        base_offset: b.base_offset,
                        last_offset: b.last_offset,
                        max_timestamp: b.max_timestamp,
                        position: at,
                        length: len,
                    });
                    row_open = true;
                }
            }
            if let Some(c) = self.chunks.last_mut() {
                c.last_offset = b.last_offset;
                c.max_timestamp = c.max_timestamp.max(b.max_timestamp);
                c.length += len;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes written so far: where the next batch will start.
    pub fn position(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Marks the object as a cluster flush's: offsets are assigned later,
    /// by the catalog (see the module notes).
    pub fn offsets_unassigned(&mut self) {
        self.offsets_unassigned = true;
    }

    /// Finishes the object: its bytes and its index rows (each a run of one
    /// partition's batches of at most [`INDEX_ROW_BYTES`]).
    pub fn finish(mut self) -> (Bytes, Vec<ChunkEntry>) {
        let footer = Footer {
            version: 1,
            chunks: self.chunks,
            offsets_assigned: !self.offsets_unassigned,
        };
        let json = serde_json::to_vec(&footer).unwrap_or_default();
        self.buf.extend_from_slice(&json);
        self.buf
            .extend_from_slice(&(json.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(MAGIC);
        (self.buf.freeze(), self.rows)
    }
}

/// One index row's bytes as readers must see them: each batch's
/// `baseOffset` set from the row, whose batches hold consecutive offsets
/// from its base. Rows whose batches already carry their offsets (every
/// object but a cluster flush's) come back as they are, without a copy;
/// others are patched on a copy (the CRC does not cover the base offset).
pub fn settle(row: &sluice_catalog::SegmentRecord, data: Bytes) -> Bytes {
    let mut expect = row.base_offset;
    let assigned = iter_stored(&data).all(|(h, _)| {
        let ok = h.base_offset == expect;
        expect += h.last_offset_delta as i64 + 1;
        ok
    });
    if assigned {
        return data;
    }
    let mut owned = BytesMut::from(&data[..]);
    let mut next = row.base_offset;
    for (h, range) in iter_stored(&data) {
        set_base_offset(&mut owned[range], next);
        next += h.last_offset_delta as i64 + 1;
    }
    owned.freeze()
}

/// Groups index rows that follow each other in one object (and in offsets)
/// into spans read with one ranged GET of at most `max_bytes` (unless a
/// single row is larger): each span with the rows it covers.
pub fn adjacent_reads(
    rows: &[sluice_catalog::SegmentRecord],
    max_bytes: u64,
) -> Vec<(
    sluice_catalog::SegmentRecord,
    Vec<sluice_catalog::SegmentRecord>,
)> {
    let mut out: Vec<(
        sluice_catalog::SegmentRecord,
        Vec<sluice_catalog::SegmentRecord>,
    )> = Vec::new();
    for r in rows {
        match out.last_mut() {
            Some((span, parts))
                if span.object_key == r.object_key
                    && span.position + span.length == r.position
                    && span.last_offset + 1 == r.base_offset
                    && span.length + r.length <= max_bytes =>
            {
                span.last_offset = r.last_offset;
                span.max_timestamp = span.max_timestamp.max(r.max_timestamp);
                span.length += r.length;
                parts.push(r.clone());
            }
            _ => out.push((r.clone(), vec![r.clone()])),
        }
    }
    out
}

/// Reads the footer of a whole object.
pub fn read_footer(object: &[u8]) -> Option<Footer> {
    let n = object.len();
    if n < 12 || &object[n - 8..] != MAGIC {
        return None;
    }
    let len = u32::from_be_bytes([
        object[n - 12],
        object[n - 11],
        object[n - 10],
        object[n - 9],
    ]) as usize;
    let start = (n - 12).checked_sub(len)?;
    serde_json::from_slice(&object[start..n - 12]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::MemBatch;

    #[test]
    fn footer_describes_chunks() {
        let t = Uuid::new_v4();
        let mut b = ObjectBuilder::default();
        let batches = vec![
            MemBatch {
                base_offset: 0,
                last_offset: 4,
                max_timestamp: 10,
                bytes: Bytes::from_static(b"aaaa"),
            },
            MemBatch {
                base_offset: 5,
                last_offset: 9,
                max_timestamp: 30,
                bytes: Bytes::from_static(b"bb"),
            },
        ];
        b.add_chunk(t, 0, &batches);
        b.add_chunk(t, 1, &batches[1..]);
        let (obj, chunks) = b.finish();
        let footer = read_footer(&obj).unwrap();
        assert_eq!(footer.chunks, chunks, "small chunks are one index row each");
        assert_eq!(chunks[0].length, 6);
        assert_eq!(chunks[0].max_timestamp, 30);
        assert_eq!(&obj[chunks[1].position as usize..][..2], b"bb");
        assert!(read_footer(b"garbage").is_none());
        assert!(footer.offsets_assigned);
    }

    #[test]
    fn settle_gives_batches_their_row_offsets() {
        use sluice_protocol::batch::test_util::make_batch;
        let mut data = make_batch(3, 1000, -1, -1);
        data.extend(make_batch(2, 2000, -1, -1));
        let data = Bytes::from(data);
        let row = |base: i64| sluice_catalog::SegmentRecord {
            topic: Uuid::nil(),
            partition: 0,
            base_offset: base,
            last_offset: base + 4,
            max_timestamp: 0,
            object_key: "k".into(),
            position: 0,
            length: data.len() as u64,
        };
        let patched = settle(&row(100), data.clone());
        let bases: Vec<i64> = iter_stored(&patched).map(|(h, _)| h.base_offset).collect();
        assert_eq!(bases, vec![100, 103]);
        let checked = sluice_protocol::batch::split_and_check(&patched).unwrap();
        assert_eq!(checked.len(), 2, "CRCs still hold");
        let again = settle(&row(100), patched.clone());
        assert_eq!(
            again.as_ptr(),
            patched.as_ptr(),
            "settled rows are not copied"
        );
        let mut b = ObjectBuilder::default();
        b.offsets_unassigned();
        let (obj, _) = b.finish();
        assert!(!read_footer(&obj).unwrap().offsets_assigned);
    }

    #[test]
    fn large_chunks_are_split_into_index_rows() {
        let t = Uuid::new_v4();
        let big = Bytes::from(vec![7u8; 400 * 1024]);
        let batches: Vec<MemBatch> = (0..6)
            .map(|i| MemBatch {
                base_offset: i * 10,
                last_offset: i * 10 + 9,
                max_timestamp: i,
                bytes: big.clone(),
            })
            .collect();
        let mut b = ObjectBuilder::default();
        b.add_chunk(t, 0, &batches);
        let (obj, rows) = b.finish();
        assert_eq!(rows.len(), 3, "400 KiB batches pack two per 1 MiB row");
        assert_eq!((rows[1].base_offset, rows[1].last_offset), (20, 39));
        assert_eq!(rows[2].position, 4 * 400 * 1024);
        assert_eq!(read_footer(&obj).unwrap().chunks.len(), 1);
    }

    #[test]
    fn continued_chunks_merge_and_fill_index_rows() {
        let t = Uuid::new_v4();
        let small = Bytes::from(vec![1u8; 300 * 1024]);
        let batch = |i: i64| MemBatch {
            base_offset: i * 10,
            last_offset: i * 10 + 9,
            max_timestamp: 100 - i,
            bytes: small.clone(),
        };
        let mut b = ObjectBuilder::with_capacity(5 * 300 * 1024);
        for i in 0..5 {
            b.add_chunk(t, 3, &[batch(i)]);
        }
        // A gap or another partition starts a new chunk.
        b.add_chunk(t, 3, &[batch(7)]);
        b.add_chunk(t, 4, &[batch(8)]);
        let (obj, rows) = b.finish();
        let chunks = read_footer(&obj).unwrap().chunks;
        assert_eq!(chunks.len(), 3);
        assert_eq!((chunks[0].base_offset, chunks[0].last_offset), (0, 49));
        assert_eq!(chunks[0].length, 5 * 300 * 1024);
        assert_eq!(chunks[0].max_timestamp, 100);
        let firsts: Vec<(i64, i64)> = rows
            .iter()
            .map(|r| (r.base_offset, r.last_offset))
            .collect();
        assert_eq!(
            firsts,
            vec![(0, 29), (30, 49), (70, 79), (80, 89)],
            "rows fill up to 1 MiB across calls"
        );
        assert_eq!(rows[1].position, 3 * 300 * 1024);
    }
}
