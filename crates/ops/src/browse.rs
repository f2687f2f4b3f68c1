//! The message browser behind the console (`GET /v1/topics/{t}/messages`):
//! a page of one partition's records from an offset or from a timestamp,
//! with keys and values decoded through the schema registry
//! ([`sluice_registry::decode`]), headers, timestamps and the W3C trace id
//! of a `traceparent` header. Pages are bounded in records ([`MAX_LIMIT`])
//! and in bytes read ([`MAX_BYTES`]).

use bytes::Bytes;
use serde::Serialize;
use sluice_broker::Broker;
use sluice_protocol::records::RawRecord;
use sluice_registry::decode::{decode, decode_plain, Decoded};
use sluice_registry::registry::Registry;

/// Most records in one page.
pub const MAX_LIMIT: usize = 500;
/// Records in a page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 50;
/// Most bytes of record batches read for one page (a page holds at least
/// one record even when that record is bigger).
pub const MAX_BYTES: usize = 4 << 20;

/// Where a page starts: exactly one of `offset` and `timestamp`; neither
/// means the log start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowseQuery {
    pub partition: i32,
    pub offset: Option<i64>,
    /// Milliseconds since the epoch: the page starts at the first record
    /// at or after it.
    pub timestamp: Option<i64>,
    pub limit: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BrowseError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Storage(String),
}

/// One header; `value` is UTF-8 text or, with `base64`, base64.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderView {
    pub key: String,
    pub value: Option<String>,
    pub base64: bool,
}

/// One record of a page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrowsedRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Decoded,
    pub value: Decoded,
    pub headers: Vec<HeaderView>,
    /// The trace id of a valid W3C `traceparent` header.
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

/// A page of records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrowsePage {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    pub end_offset: i64,
    /// Where the page started (after resolving a timestamp).
    pub start_offset: i64,
    /// Where the next page starts.
    pub next_offset: i64,
    pub records: Vec<BrowsedRecord>,
    /// The page stopped at [`MAX_BYTES`] before `limit` records.
    pub truncated: bool,
}

/// Checks the parameters of a request (`limit` 0 means the default).
pub fn check_query(q: &BrowseQuery) -> Result<BrowseQuery, BrowseError> {
    if q.partition < 0 {
        return Err(BrowseError::BadRequest(format!(
            "partition must be 0 or more, not {}",
            q.partition
        )));
    }
    if q.offset.is_some() && q.timestamp.is_some() {
        return Err(BrowseError::BadRequest(
            "give offset or timestamp, not both".into(),
        ));
    }
    if let Some(o) = q.offset.filter(|o| *o < 0) {
        return Err(BrowseError::BadRequest(format!(
            "offset must be 0 or more, not {o}"
        )));
    }
    if let Some(t) = q.timestamp.filter(|t| *t < 0) {
        return Err(BrowseError::BadRequest(format!(
            "timestamp must be milliseconds since the epoch, not {t}"
        )));
    }
    if q.limit > MAX_LIMIT {
        return Err(BrowseError::BadRequest(format!(
            "limit must be at most {MAX_LIMIT}, not {}",
            q.limit
        )));
    }
    let mut q = q.clone();
    if q.limit == 0 {
        q.limit = DEFAULT_LIMIT;
    }
    Ok(q)
}

/// `(trace id, span id)` of a W3C `traceparent` value
/// (`version-traceid-spanid-flags`, lower-case hex, ids not all zero).
pub fn parse_traceparent(v: &str) -> Option<(String, String)> {
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    if !hex(version, 2) || version == "ff" || !hex(flags, 2) {
        return None;
    }
    if !hex(trace, 32) || !hex(span, 16) || zero(trace) || zero(span) {
        return None;
    }
    // Version 00 has exactly four fields.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    Some((trace.to_string(), span.to_string()))
}

fn header_view(key: &Bytes, value: &Option<Bytes>) -> HeaderView {
    let key = String::from_utf8_lossy(key).into_owned();
    match value {
        None => HeaderView {
            key,
            value: None,
            base64: false,
        },
        Some(v) => match std::str::from_utf8(v) {
            Ok(s) => HeaderView {
                key,
                value: Some(s.to_string()),
                base64: false,
            },
            Err(_) => {
                let d = decode_plain(v);
                HeaderView {
                    key,
                    value: d.value.as_str().map(str::to_string),
                    base64: true,
                }
            }
        },
    }
}

/// A record as the browser shows it.
pub fn view_record(registry: &Registry, partition: i32, r: &RawRecord) -> BrowsedRecord {
    let headers: Vec<HeaderView> = r.headers.iter().map(|(k, v)| header_view(k, v)).collect();
    let trace = headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case("traceparent") && !h.base64)
        .and_then(|h| h.value.as_deref())
        .and_then(parse_traceparent);
    BrowsedRecord {
        partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: decode(registry, r.key.as_deref()),
        value: decode(registry, r.value.as_deref()),
        headers,
        trace_id: trace.as_ref().map(|t| t.0.clone()),
        span_id: trace.map(|t| t.1),
    }
}

/// Reads a page of `topic`.
pub async fn browse(
    broker: &Broker,
    topic: &str,
    q: BrowseQuery,
) -> Result<BrowsePage, BrowseError> {
    let q = check_query(&q)?;
    let t = broker
        .store
        .topic(topic)
        .ok_or_else(|| BrowseError::NotFound(format!("topic '{topic}' does not exist")))?;
    let p = t.partition(q.partition).cloned().ok_or_else(|| {
        BrowseError::NotFound(format!("topic '{topic}' has no partition {}", q.partition))
    })?;
    let (log_start, hw) = p.offsets();
    let start = match (q.offset, q.timestamp) {
        (Some(o), _) => o.max(log_start),
        (None, Some(ts)) => broker
            .store
            .offset_for_timestamp(&p, ts)
            .await
            .map_err(|e| BrowseError::Storage(e.to_string()))?
            .map_or(hw, |(o, _)| o.max(log_start)),
        (None, None) => log_start,
    };
    let read = crate::records::read_records(broker, &p, start, q.limit, MAX_BYTES)
        .await
        .map_err(BrowseError::Storage)?;
    let (raw, offset, truncated) = (read.records, read.next_offset, read.truncated);
    let registry = broker.registry.clone();
    let partition = q.partition;
    // Registry look-ups may reach the catalog: off the async workers.
    let records = tokio::task::spawn_blocking(move || {
        raw.iter()
            .map(|r| view_record(&registry, partition, r))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| BrowseError::Storage(e.to_string()))?;
    Ok(BrowsePage {
        topic: topic.to_string(),
        partition,
        log_start_offset: log_start,
        end_offset: hw,
        start_offset: start,
        next_offset: offset,
        records,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked() {
        let q = |partition, offset, timestamp, limit| BrowseQuery {
            partition,
            offset,
            timestamp,
            limit,
        };
        assert_eq!(
            check_query(&q(0, None, None, 0)).map(|q| q.limit),
            Ok(DEFAULT_LIMIT)
        );
        assert_eq!(
            check_query(&q(1, Some(5), None, 10)).map(|q| q.limit),
            Ok(10)
        );
        for bad in [
            q(-1, None, None, 1),
            q(0, Some(-1), None, 1),
            q(0, None, Some(-5), 1),
            q(0, Some(1), Some(1), 1),
            q(0, None, None, MAX_LIMIT + 1),
        ] {
            assert!(
                matches!(check_query(&bad), Err(BrowseError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn traceparent() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(tp),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into()
            ))
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_show_headers_and_trace_ids() {
        let registry = Registry::in_memory().expect("registry");
        let r = RawRecord {
            offset: 7,
            timestamp: 1000,
            key: Some(Bytes::from_static(b"k1")),
            value: Some(Bytes::from_static(br#"{"x":1}"#)),
            headers: vec![
                (
                    Bytes::from_static(b"traceparent"),
                    Some(Bytes::from_static(
                        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    )),
                ),
                (
                    Bytes::from_static(b"bin"),
                    Some(Bytes::from_static(&[0xff])),
                ),
                (Bytes::from_static(b"none"), None),
            ],
        };
        let v = view_record(&registry, 3, &r);
        assert_eq!((v.partition, v.offset, v.timestamp), (3, 7, 1000));
        assert_eq!(v.key.format, "text");
        assert_eq!(v.value.value, serde_json::json!({"x": 1}));
        assert_eq!(
            v.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(v.headers[1].value.as_deref(), Some("/w=="));
        assert!(v.headers[1].base64);
        assert_eq!(v.headers[2].value, None);
    }
}
