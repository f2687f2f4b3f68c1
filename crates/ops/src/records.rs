//! Reading a partition's records for the operator views (the message
//! browser, DLQ inspection and replay): decoded records from an offset,
//! bounded in records and in batch bytes, control records left out.

use sluice_broker::Broker;
use sluice_protocol::batch::BatchHeader;
use sluice_protocol::records::{decode_batch, RawRecord};
use sluice_storage::{PartitionLog, ReadError};

/// Bytes asked of the store per read.
const READ_CHUNK: usize = 1 << 20;

/// What [`read_records`] read.
#[derive(Debug, Default)]
pub struct Records {
    pub records: Vec<RawRecord>,
    /// Where the next read starts.
    pub next_offset: i64,
    /// The partition's high watermark when the read began.
    pub high_watermark: i64,
    /// The read stopped at `max_bytes` before `max_records`.
    pub truncated: bool,
}

/// Decoded records of `p` from `from` (at least its log start): at most
/// `max_records`, and no more batches once `max_bytes` were read (at least
/// one batch is read, however big). Errors are the store's, as text.
pub async fn read_records(
    broker: &Broker,
    p: &PartitionLog,
    from: i64,
    max_records: usize,
    max_bytes: usize,
) -> Result<Records, String> {
    let (log_start, hw) = p.offsets();
    let mut out = Records {
        next_offset: from.max(log_start),
        high_watermark: hw,
        ..Records::default()
    };
    let mut read_bytes = 0usize;
    'reading: while out.next_offset < hw && out.records.len() < max_records {
        let read = match broker.store.read(p, out.next_offset, READ_CHUNK).await {
            Ok(r) => r,
            Err(ReadError::OffsetOutOfRange { .. }) => break,
            Err(ReadError::Storage(e)) => return Err(e.to_string()),
        };
        if read.batches.is_empty() {
            break;
        }
        let read_from = out.next_offset;
        for batch in read.batches {
            if read_bytes >= max_bytes && read_bytes > 0 {
                out.truncated = true;
                break 'reading;
            }
            read_bytes += batch.len();
            let header = BatchHeader::parse(&batch).ok();
            let control = header.as_ref().is_some_and(|h| h.is_control());
            let records = decode_batch(&batch).map_err(|e| format!("undecodable batch: {e}"))?;
            let before = out.next_offset;
            for r in records {
                if r.offset < out.next_offset {
                    continue;
                }
                if out.records.len() >= max_records {
                    break 'reading;
                }
                out.next_offset = r.offset + 1;
                if !control {
                    out.records.push(r);
                }
            }
            if out.next_offset == before {
                // Nothing at or past the offset in this batch (compacted
                // away): go on after it.
                if let Some(h) = &header {
                    out.next_offset = out.next_offset.max(h.last_offset() + 1);
                }
            }
        }
        if out.next_offset == read_from {
            // No progress on what the store answered: stop rather than ask
            // again for the same bytes.
            break;
        }
    }
    Ok(out)
}
