//! Window replay: copies the records of a topic between two points (times
//! or offsets; the end exclusive) into another topic, for "replay a month
//! of events into a new evaluator" without an offset reset on the source.
//! Optional: only some partitions, only records with a header of a given
//! value, a byte-rate limit. Keys, values, headers and timestamps are kept;
//! the target partition follows the key (Kafka's murmur2), else the
//! source's partition number modulo the target's count. The target's
//! contracts apply.
//!
//! Each copied record carries provenance headers: `sluice.replay.window`
//! (the window's id), `sluice.replay.source` (`topic/partition/offset`).
//!
//! A replay runs in the background of the broker that was asked; its
//! progress is kept in memory under a run id (`POST /v1/replays`, `GET
//! /v1/replays/{id}`, `DELETE` to stop it, `sluice replay`). Its position
//! is kept in the catalog as the committed offsets of a group named after
//! the window (`__sluice.replay.<hash of topic, window, target, partitions
//! and filter>`), moved after each chunk (256 KiB read) is written.
//! Asking for the same window again resumes where it stopped, and a window
//! already copied copies nothing, unless `again` is set. A stop through
//! the API stops between chunks, so a resumed window is copied exactly
//! once; a broker killed between writing a chunk and moving the position
//! writes that one chunk again when the window is resumed.

use crate::produce::{produce, OutRecord};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_broker::security::authz::Caller;
use sluice_broker::Broker;
use sluice_protocol::batch::iter_stored;
use sluice_protocol::records::decode_batch;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bytes read per chunk: the window's position moves (and a stop takes
/// effect) after each chunk is written.
const CHUNK_BYTES: usize = 256 << 10;

/// One end of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Point {
    /// A record timestamp, ms since the epoch: the first record at or after it.
    TimeMs(i64),
    /// An offset, the same in every partition.
    Offset(i64),
}

impl Point {
    /// `2026-11-01T00:00:00Z` (RFC 3339) or an epoch-ms number of 13 or
    /// more digits is a time; any other number an offset.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
            return Ok(Point::TimeMs(t.timestamp_millis()));
        }
        match s.parse::<i64>() {
            Ok(n) if n < 0 => Err(format!("{s:?}: a negative position")),
            Ok(n) if s.len() >= 13 => Ok(Point::TimeMs(n)),
            Ok(n) => Ok(Point::Offset(n)),
            Err(_) => Err(format!(
                "{s:?} is neither an RFC 3339 time, epoch milliseconds nor an offset"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub topic: String,
    pub from: Point,
    pub to: Point,
    pub into: String,
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    /// `HEADER=VALUE`: only records carrying that header with that value.
    #[serde(default)]
    pub filter: Option<String>,
    /// Bytes per second at most.
    #[serde(default)]
    pub max_rate_bytes: Option<f64>,
    /// Copy the window from its start even if it was copied (or partly
    /// copied) before.
    #[serde(default)]
    pub again: bool,
}

/// Prefix of the groups keeping window replays' positions.
const WINDOW_GROUP_PREFIX: &str = "__sluice.replay.";

/// Whether a group keeps a window replay's position (not a consumer).
pub fn is_window_group(group: &str) -> bool {
    group.starts_with(WINDOW_GROUP_PREFIX)
}

impl ReplayRequest {
    /// The group whose committed offsets keep this window's position: the
    /// same request (but for rate and `again`) names the same group.
    pub fn window_group(&self) -> String {
        let mut parts = self.partitions.clone().unwrap_or_default();
        parts.sort_unstable();
        parts.dedup();
        let canonical = format!(
            "{}\0{:?}\0{:?}\0{}\0{:?}\0{}",
            self.topic,
            self.from,
            self.to,
            self.into,
            parts,
            self.filter.as_deref().unwrap_or("")
        );
        // FNV-1a: a stable name, not a security boundary.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in canonical.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{WINDOW_GROUP_PREFIX}{h:016x}")
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionProgress {
    pub start: i64,
    pub end: i64,
    /// Next source offset to read.
    pub position: i64,
    /// Where this run took the window up (an earlier run's position).
    #[serde(default)]
    pub resumed_from: Option<i64>,
    pub read: u64,
    pub written: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayStatus {
    pub id: String,
    pub request: ReplayRequest,
    /// `running`, `done`, `stopped` or `failed`.
    pub state: String,
    /// The group keeping the window's position.
    #[serde(default)]
    pub window: String,
    pub error: Option<String>,
    pub partitions: BTreeMap<i32, PartitionProgress>,
    pub records_read: u64,
    pub records_written: u64,
    pub bytes_written: u64,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
}

/// The replays this broker runs or ran (the last 100).
fn replays() -> &'static Mutex<Vec<ReplayStatus>> {
    static R: OnceLock<Mutex<Vec<ReplayStatus>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

fn update(id: &str, f: impl FnOnce(&mut ReplayStatus)) {
    if let Ok(mut all) = replays().lock() {
        if let Some(s) = all.iter_mut().find(|s| s.id == id) {
            f(s);
        }
    }
}

pub fn status(id: &str) -> Result<ReplayStatus, ReplayError> {
    replays()
        .lock()
        .ok()
        .and_then(|all| all.iter().find(|s| s.id == id).cloned())
        .ok_or_else(|| ReplayError::NotFound(format!("no replay {id}")))
}

/// Checks the request, then starts the replay in the background.
pub async fn start(
    broker: Arc<Broker>,
    caller: Caller,
    req: ReplayRequest,
) -> Result<ReplayStatus, ReplayError> {
    let src = broker
        .store
        .topic(&req.topic)
        .ok_or_else(|| ReplayError::NotFound(format!("topic '{}' does not exist", req.topic)))?;
    if broker.store.topic(&req.into).is_none() {
        return Err(ReplayError::NotFound(format!(
            "target topic '{}' does not exist",
            req.into
        )));
    }
    if req.into == req.topic {
        return Err(ReplayError::BadRequest(
            "replaying a topic into itself".into(),
        ));
    }
    if let Some(f) = &req.filter {
        if !f.contains('=') {
            return Err(ReplayError::BadRequest(format!(
                "filter {f:?} is not HEADER=VALUE"
            )));
        }
    }
    if req.max_rate_bytes.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err(ReplayError::BadRequest("max rate must be positive".into()));
    }
    let wanted: Vec<i32> = match &req.partitions {
        Some(ps) => ps.clone(),
        None => (0..src.partitions.len() as i32).collect(),
    };
    let window = req.window_group();
    let done_before: BTreeMap<i32, i64> = if req.again {
        BTreeMap::new()
    } else {
        let catalog = broker.catalog.clone();
        let g = window.clone();
        tokio::task::spawn_blocking(move || {
            use sluice_catalog::OffsetStore;
            catalog.group_offsets(&g)
        })
        .await
        .map_err(|e| ReplayError::BadRequest(e.to_string()))?
        .map_err(|e| ReplayError::BadRequest(format!("reading the window's position: {e}")))?
        .into_iter()
        .filter(|o| o.topic == req.topic)
        .map(|o| (o.partition, o.offset))
        .collect()
    };
    let mut parts = BTreeMap::new();
    for p in &wanted {
        let part = src.partition(*p).cloned().ok_or_else(|| {
            ReplayError::NotFound(format!("topic '{}' has no partition {p}", req.topic))
        })?;
        let (log_start, hw) = part.offsets();
        let resolve = |pt: Point, default: i64| {
            let broker = broker.clone();
            let part = part.clone();
            async move {
                match pt {
                    Point::Offset(o) => Ok(o.clamp(log_start, hw)),
                    Point::TimeMs(t) => broker
                        .store
                        .offset_for_timestamp(&part, t)
                        .await
                        .map(|r| r.map_or(default, |(o, _)| o))
                        .map_err(|e| ReplayError::BadRequest(e.to_string())),
                }
            }
        };
        let start = resolve(req.from, hw).await?;
        let end = resolve(req.to, hw).await?.max(start);
        let resumed_from = done_before.get(p).map(|o| (*o).clamp(start, end));
        parts.insert(
            *p,
            PartitionProgress {
                start,
                end,
                position: resumed_from.unwrap_or(start),
                resumed_from,
                ..Default::default()
            },
        );
    }
    let st = ReplayStatus {
        id: uuid::Uuid::new_v4().simple().to_string(),
        request: req,
        state: "running".into(),
        window,
        error: None,
        partitions: parts,
        records_read: 0,
        records_written: 0,
        bytes_written: 0,
        started_ms: sluice_storage::now_ms(),
        finished_ms: None,
    };
    if let Ok(mut all) = replays().lock() {
        if all.len() >= 100 {
            all.remove(0);
        }
        all.push(st.clone());
    }
    let id = st.id.clone();
    let job = st.clone();
    tokio::spawn(async move {
        let outcome = run(&broker, &caller, &job).await;
        update(&id, |s| {
            s.finished_ms = Some(sluice_storage::now_ms());
            match outcome {
                Ok(()) if s.state == "stopping" => s.state = "stopped".into(),
                Ok(()) => s.state = "done".into(),
                Err(e) => {
                    s.state = "failed".into();
                    s.error = Some(e);
                }
            }
        });
    });
    Ok(st)
}

async fn run(broker: &Broker, caller: &Caller, job: &ReplayStatus) -> Result<(), String> {
    let req = &job.request;
    let src = broker
        .store
        .topic(&req.topic)
        .ok_or_else(|| format!("topic '{}' went away", req.topic))?;
    let target_partitions = broker
        .store
        .topic(&req.into)
        .map(|t| t.partitions.len() as i32)
        .ok_or_else(|| format!("topic '{}' went away", req.into))?;
    let filter = req
        .filter
        .as_deref()
        .and_then(|f| f.split_once('='))
        .map(|(h, v)| (h.as_bytes().to_vec(), v.as_bytes().to_vec()));
    let started = Instant::now();
    let mut sent_bytes = 0f64;
    for (p, prog) in &job.partitions {
        let part = src
            .partition(*p)
            .cloned()
            .ok_or_else(|| format!("partition {p} went away"))?;
        let mut offset = prog.position;
        while offset < prog.end {
            if stopping(&job.id) {
                return Ok(());
            }
            let read = broker
                .store
                .read(&part, offset, CHUNK_BYTES)
                .await
                .map_err(|e| format!("reading {}[{p}] at {offset}: {e}", req.topic))?;
            if read.batches.is_empty() {
                break;
            }
            let mut out = Vec::new();
            let mut read_n = 0u64;
            let mut next = offset;
            for batch in &read.batches {
                for (h, range) in iter_stored(batch) {
                    next = next.max(h.last_offset() + 1);
                    if h.is_control() {
                        continue;
                    }
                    let recs = decode_batch(&batch.slice(range)).map_err(|e| e.to_string())?;
                    for r in recs {
                        if r.offset < offset || r.offset >= prog.end {
                            continue;
                        }
                        read_n += 1;
                        let keep = filter.as_ref().is_none_or(|(hk, hv)| {
                            r.headers.iter().any(|(k, v)| {
                                k.as_ref() == hk.as_slice() && v.as_deref() == Some(hv.as_slice())
                            })
                        });
                        if keep {
                            let mut headers = r.headers;
                            headers.push((
                                Bytes::from_static(b"sluice.replay.window"),
                                Some(Bytes::from(job.window.clone())),
                            ));
                            headers.push((
                                Bytes::from_static(b"sluice.replay.source"),
                                Some(Bytes::from(format!("{}/{p}/{}", req.topic, r.offset))),
                            ));
                            out.push(OutRecord {
                                partition: r.key.is_none().then_some(*p % target_partitions.max(1)),
                                key: r.key,
                                value: r.value,
                                headers,
                                timestamp: Some(r.timestamp),
                            });
                        }
                    }
                }
            }
            let bytes: usize = out
                .iter()
                .map(|r| {
                    r.value.as_ref().map_or(0, |v| v.len()) + r.key.as_ref().map_or(0, |k| k.len())
                })
                .sum();
            let n = out.len() as u64;
            if !out.is_empty() {
                for r in produce(broker, caller, &req.into, out)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    r.map_err(|e| format!("writing to {}: {e}", req.into))?;
                }
            }
            offset = next.min(prog.end).max(offset + 1);
            let position = offset;
            commit_position(broker, job, *p, position).await?;
            update(&job.id, |s| {
                s.records_read += read_n;
                s.records_written += n;
                s.bytes_written += bytes as u64;
                if let Some(pp) = s.partitions.get_mut(p) {
                    pp.position = position;
                    pp.read += read_n;
                    pp.written += n;
                }
            });
            if let Some(rate) = req.max_rate_bytes {
                sent_bytes += bytes as f64;
                let due = Duration::from_secs_f64(sent_bytes / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        update(&job.id, |s| {
            if let Some(pp) = s.partitions.get_mut(p) {
                pp.position = prog.end;
            }
        });
    }
    Ok(())
}

/// Asks a running replay to stop after the chunk it is writing.
pub fn stop(id: &str) -> Result<ReplayStatus, ReplayError> {
    let mut found = None;
    update(id, |s| {
        if s.state == "running" {
            s.state = "stopping".into();
        }
        found = Some(s.clone());
    });
    found.ok_or_else(|| ReplayError::NotFound(format!("no replay {id}")))
}

fn stopping(id: &str) -> bool {
    replays()
        .lock()
        .ok()
        .and_then(|all| {
            all.iter()
                .find(|s| s.id == id)
                .map(|s| s.state == "stopping")
        })
        .unwrap_or(false)
}

/// Keeps the window's position in `partition` (the next source offset).
async fn commit_position(
    broker: &Broker,
    job: &ReplayStatus,
    partition: i32,
    position: i64,
) -> Result<(), String> {
    let offset = sluice_catalog::CommittedOffset {
        topic: job.request.topic.clone(),
        partition,
        offset: position,
        leader_epoch: -1,
        metadata: Some(format!("replay into {}", job.request.into)),
        commit_ms: sluice_storage::now_ms(),
    };
    broker
        .groups
        .commit(&job.window, vec![offset])
        .await
        .map_err(|e| format!("keeping the window's position: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_groups_name_the_window_not_the_run() {
        let req = |rate: Option<f64>, parts: Option<Vec<i32>>| ReplayRequest {
            topic: "t".into(),
            from: Point::TimeMs(1),
            to: Point::Offset(9),
            into: "u".into(),
            partitions: parts,
            filter: None,
            max_rate_bytes: rate,
            again: false,
        };
        let a = req(None, Some(vec![1, 0]));
        assert_eq!(
            a.window_group(),
            req(Some(5.0), Some(vec![0, 1])).window_group()
        );
        assert_ne!(a.window_group(), req(None, Some(vec![0])).window_group());
        assert!(a.window_group().starts_with("__sluice.replay."));
    }

    #[test]
    fn points() {
        assert_eq!(Point::parse("42"), Ok(Point::Offset(42)));
        assert_eq!(
            Point::parse("1764979200000"),
            Ok(Point::TimeMs(1_764_979_200_000))
        );
        assert_eq!(
            Point::parse("2025-12-06T00:00:00Z"),
            Ok(Point::TimeMs(1_764_979_200_000))
        );
        assert!(Point::parse("-1").is_err());
        assert!(Point::parse("yesterday").is_err());
    }
}
