//! Change notifications between the brokers of a cluster, sent inside the
//! transaction that made the change (PostgreSQL delivers them on commit, in
//! commit order) and heard through [`crate::postgres::listen`].
//!
//! - [`DATA_CHANNEL`]: new index rows and partition ends, so every broker
//!   wakes its long-polling fetches and knows where the new data is without
//!   asking the database per fetch. Text lines, at most
//!   [`MAX_PAYLOAD`] bytes a notification (PostgreSQL's limit is 8000):
//!   `o KEY` (the object of the rows that follow), `r TOPIC PARTITION BASE
//!   LAST MAX_TS POSITION LENGTH` (an index row), `e TOPIC PARTITION
//!   LOG_START END` (a partition's ends), `t TOPIC PARTITION PRODUCER
//!   OFFSET d|a|c` (a transaction's data, abort or commit marker; sent
//!   before the ends, so a reader never sees new ends without them).
//! - [`META_CHANNEL`]: one word naming what to reload: `topics`, `brokers`,
//!   `registry`, `acls`, `quotas` or `offsets`.

use crate::sql::Tx;
use crate::{CatalogError, PartitionEnd, Result, SegmentRecord, TxnChange};
use uuid::Uuid;

pub const DATA_CHANNEL: &str = "sluice_data";
pub const META_CHANNEL: &str = "sluice_meta";

/// Largest payload of one notification.
pub const MAX_PAYLOAD: usize = 7900;

/// What a [`META_CHANNEL`] notification asks brokers to reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaChange {
    Topics,
    Brokers,
    Registry,
    Acls,
    Quotas,
    /// Committed offsets written by a broker that may not coordinate
    /// their group (a transaction's commit).
    Offsets,
}

impl MetaChange {
    pub fn as_str(self) -> &'static str {
        match self {
            MetaChange::Topics => "topics",
            MetaChange::Brokers => "brokers",
            MetaChange::Registry => "registry",
            MetaChange::Acls => "acls",
            MetaChange::Quotas => "quotas",
            MetaChange::Offsets => "offsets",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "topics" => Some(MetaChange::Topics),
            "brokers" => Some(MetaChange::Brokers),
            "registry" => Some(MetaChange::Registry),
            "acls" => Some(MetaChange::Acls),
            "quotas" => Some(MetaChange::Quotas),
            "offsets" => Some(MetaChange::Offsets),
            _ => None,
        }
    }

    /// Tells the other brokers, when `tx` commits.
    pub fn send(self, tx: &mut dyn Tx) -> Result<()> {
        tx.notify(META_CHANNEL, self.as_str())
    }
}

/// What a [`DATA_CHANNEL`] notification carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataChange {
    /// The broker whose flush this is (`None`: not a flush, e.g. a trim):
    /// it applied the change itself already.
    pub writer: Option<i32>,
    /// Changes to partitions' transaction indexes.
    pub txns: Vec<TxnChange>,
    pub rows: Vec<SegmentRecord>,
    pub ends: Vec<PartitionEnd>,
}

impl DataChange {
    /// The notifications' payloads (several when one would be too long;
    /// each names the object of the rows it carries).
    pub fn encode(&self) -> Vec<String> {
        let rows = self.rows.iter().map(|r| {
            let line = format!(
                "r {} {} {} {} {} {} {}\n",
                r.topic.simple(),
                r.partition,
                r.base_offset,
                r.last_offset,
                r.max_timestamp,
                r.position,
                r.length
            );
            (Some(r.object_key.as_str()), line)
        });
        let txns = self.txns.iter().map(|t| {
            let kind = match t.marker {
                None => 'd',
                Some(false) => 'a',
                Some(true) => 'c',
            };
            let line = format!(
                "t {} {} {} {} {kind}\n",
                t.topic.simple(),
                t.partition,
                t.producer_id,
                t.offset
            );
            (None, line)
        });
        let ends = self.ends.iter().map(|e| {
            let line = format!(
                "e {} {} {} {}\n",
                e.topic.simple(),
                e.partition,
                e.log_start,
                e.end
            );
            (None, line)
        });
        let start = self.writer.map(|w| format!("w {w}\n")).unwrap_or_default();
        let mut out = Vec::new();
        let mut cur = start.clone();
        let mut cur_key: Option<&str> = None;
        for (key, line) in txns.chain(rows).chain(ends) {
            let header = |k: &str| format!("o {k}\n");
            let mut head = key.filter(|k| cur_key != Some(*k)).map(header);
            let need = head.as_ref().map_or(0, String::len) + line.len();
            if cur.len() > start.len() && cur.len() + need > MAX_PAYLOAD {
                out.push(std::mem::replace(&mut cur, start.clone()));
                cur_key = None;
                head = key.map(header);
            }
            if let Some(h) = head {
                cur.push_str(&h);
                cur_key = key;
            }
            cur.push_str(&line);
        }
        if cur.len() > start.len() {
            out.push(cur);
        }
        out
    }

    /// Reads one notification's payload.
    pub fn decode(payload: &str) -> Result<DataChange> {
        let bad =
            |line: &str| CatalogError::Corrupt(format!("bad change notification line {line:?}"));
        let mut out = DataChange::default();
        let mut key: Option<String> = None;
        for line in payload.lines().filter(|l| !l.is_empty()) {
            let mut f = line.split(' ');
            let kind = f.next().ok_or_else(|| bad(line))?;
            let mut next = || f.next().ok_or_else(|| bad(line));
            match kind {
                "w" => out.writer = Some(next()?.parse().map_err(|_| bad(line))?),
                "o" => key = Some(next()?.to_string()),
                "r" => {
                    let topic = Uuid::parse_str(next()?).map_err(|_| bad(line))?;
                    let nums: Vec<i64> = (0..6)
                        .map(|_| next().and_then(|v| v.parse().map_err(|_| bad(line))))
                        .collect::<Result<_>>()?;
                    out.rows.push(SegmentRecord {
                        topic,
                        partition: i32::try_from(nums[0]).map_err(|_| bad(line))?,
                        base_offset: nums[1],
                        last_offset: nums[2],
                        max_timestamp: nums[3],
                        object_key: key.clone().ok_or_else(|| bad(line))?,
                        position: u64::try_from(nums[4]).map_err(|_| bad(line))?,
                        length: u64::try_from(nums[5]).map_err(|_| bad(line))?,
                    });
                }
                "t" => {
                    let topic = Uuid::parse_str(next()?).map_err(|_| bad(line))?;
                    let nums: Vec<i64> = (0..3)
                        .map(|_| next().and_then(|v| v.parse().map_err(|_| bad(line))))
                        .collect::<Result<_>>()?;
                    let marker = match next()? {
                        "d" => None,
                        "a" => Some(false),
                        "c" => Some(true),
                        _ => return Err(bad(line)),
                    };
                    out.txns.push(TxnChange {
                        topic,
                        partition: i32::try_from(nums[0]).map_err(|_| bad(line))?,
                        producer_id: nums[1],
                        offset: nums[2],
                        marker,
                    });
                }
                "e" => {
                    let topic = Uuid::parse_str(next()?).map_err(|_| bad(line))?;
                    let nums: Vec<i64> = (0..3)
                        .map(|_| next().and_then(|v| v.parse().map_err(|_| bad(line))))
                        .collect::<Result<_>>()?;
                    out.ends.push(PartitionEnd {
                        topic,
                        partition: i32::try_from(nums[0]).map_err(|_| bad(line))?,
                        log_start: nums[1],
                        end: nums[2],
                    });
                }
                _ => return Err(bad(line)),
            }
        }
        Ok(out)
    }

    /// Tells the other brokers, when `tx` commits.
    pub fn send(&self, tx: &mut dyn Tx) -> Result<()> {
        for payload in self.encode() {
            tx.notify(DATA_CHANNEL, &payload)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, p: i32, base: i64) -> SegmentRecord {
        SegmentRecord {
            topic: Uuid::from_u128(7),
            partition: p,
            base_offset: base,
            last_offset: base + 9,
            max_timestamp: 1_700_000_000_000 + base,
            object_key: key.into(),
            position: base as u64 * 100,
            length: 1000,
        }
    }

    #[test]
    fn round_trips_and_splits_long_payloads() {
        let change = DataChange {
            writer: Some(3),
            txns: vec![TxnChange {
                topic: Uuid::from_u128(7),
                partition: 2,
                producer_id: 1001,
                offset: 55,
                marker: Some(false),
            }],
            rows: (0..300)
                .map(|i| {
                    row(
                        if i < 150 { "data/a.obj" } else { "data/b.obj" },
                        i % 7,
                        i as i64 * 10,
                    )
                })
                .collect(),
            ends: (0..7)
                .map(|p| PartitionEnd {
                    topic: Uuid::from_u128(7),
                    partition: p,
                    log_start: 0,
                    end: 3000,
                })
                .collect(),
        };
        let payloads = change.encode();
        assert!(payloads.len() > 1, "300 rows need several notifications");
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let mut back = DataChange::default();
        for p in &payloads {
            let d = DataChange::decode(p).unwrap();
            assert_eq!(d.writer, Some(3), "every payload names its writer");
            back.writer = d.writer;
            back.txns.extend(d.txns);
            back.rows.extend(d.rows);
            back.ends.extend(d.ends);
        }
        assert_eq!(back, change);
        assert!(DataChange::decode("r nonsense").is_err());
        assert!(DataChange::decode("x 1 2").is_err());
        assert!(
            DataChange::decode("r 00000000000000000000000000000007 0 1 2 3 4 5").is_err(),
            "a row needs its object"
        );
    }
}
