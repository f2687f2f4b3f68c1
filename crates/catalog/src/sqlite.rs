//! The SQLite engine of the catalog, used by the embedded broker. One
//! connection behind a mutex: metadata writes are rare (uploads, admin calls)
//! and reads are short indexed lookups. `synchronous=FULL` because the WAL
//! segments an upload covers are deleted once its commit returns.

use crate::{
    Catalog, CatalogError, CommittedOffset, ObjectRecord, PartitionState, ProducerBatch,
    ProducerStateRecord, ReplayRecord, Result, SegmentRecord, TopicRecord, UploadCommit,
};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::Path;
use uuid::Uuid;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    configs TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    log_start INTEGER NOT NULL DEFAULT 0,
    uploaded_end INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
);
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL,
    object_key TEXT NOT NULL,
    position INTEGER NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
);
CREATE INDEX IF NOT EXISTS segments_by_last ON segments (topic_id, partition, last_offset);
CREATE INDEX IF NOT EXISTS segments_by_object ON segments (object_key);
CREATE TABLE IF NOT EXISTS producer_state (
    topic_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    producer_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    batches TEXT NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dlq_replays (
    dlq_topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    dlq_offset INTEGER NOT NULL,
    target_topic TEXT NOT NULL,
    target_partition INTEGER NOT NULL,
    target_offset INTEGER NOT NULL,
    replayed_ms INTEGER NOT NULL,
    PRIMARY KEY (dlq_topic, partition, dlq_offset, replayed_ms)
);
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL,
    leader_epoch INTEGER NOT NULL,
    metadata TEXT,
    commit_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
"#;

/// SQLite-backed [`Catalog`].
pub struct SqliteCatalog {
    conn: Mutex<Connection>,
}

fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| CatalogError::Corrupt(format!("bad uuid {s:?}: {e}")))
}

fn segment_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, SegmentRecord)> {
    let topic: String = row.get(0)?;
    Ok((
        topic,
        SegmentRecord {
            topic: Uuid::nil(),
            partition: row.get(1)?,
            base_offset: row.get(2)?,
            last_offset: row.get(3)?,
            max_timestamp: row.get(4)?,
            object_key: row.get(5)?,
            position: row.get::<_, i64>(6)? as u64,
            length: row.get::<_, i64>(7)? as u64,
        },
    ))
}

fn finish_segments(rows: Vec<(String, SegmentRecord)>) -> Result<Vec<SegmentRecord>> {
    rows.into_iter()
        .map(|(t, mut s)| {
            s.topic = parse_uuid(&t)?;
            Ok(s)
        })
        .collect()
}

const SEGMENT_COLUMNS: &str =
    "topic_id, partition, base_offset, last_offset, max_timestamp, object_key, position, length";

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }
}

impl Catalog for SqliteCatalog {
    fn cluster_id(&self) -> Result<String> {
        let conn = self.conn.lock();
        let existing: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'cluster_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let id = format!("sluice-{}", Uuid::new_v4().simple());
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('cluster_id', ?1)",
            params![id],
        )?;
        Ok(id)
    }

    fn list_topics(&self) -> Result<Vec<TopicRecord>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT name, id, partitions, configs, created_ms FROM topics ORDER BY name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i32>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(name, id, partitions, configs, created_ms)| {
                let configs: BTreeMap<String, String> = serde_json::from_str(&configs)
                    .map_err(|e| CatalogError::Corrupt(format!("configs of {name}: {e}")))?;
                Ok(TopicRecord {
                    id: parse_uuid(&id)?,
                    name,
                    partitions,
                    configs,
                    created_ms,
                })
            })
            .collect()
    }

    fn create_topic(&self, topic: &TopicRecord) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let exists: Option<i32> = tx
            .query_row(
                "SELECT 1 FROM topics WHERE name = ?1",
                params![topic.name],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Err(CatalogError::TopicExists(topic.name.clone()));
        }
        let configs = serde_json::to_string(&topic.configs)
            .map_err(|e| CatalogError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO topics (name, id, partitions, configs, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![topic.name, topic.id.to_string(), topic.partitions, configs, topic.created_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn delete_topic(&self, name: &str) -> Result<TopicRecord> {
        let topic = self
            .list_topics()?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| CatalogError::NoSuchTopic(name.to_string()))?;
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let id = topic.id.to_string();
        tx.execute("DELETE FROM topics WHERE name = ?1", params![name])?;
        tx.execute("DELETE FROM partitions WHERE topic_id = ?1", params![id])?;
        tx.execute("DELETE FROM segments WHERE topic_id = ?1", params![id])?;
        tx.execute(
            "DELETE FROM producer_state WHERE topic_id = ?1",
            params![id],
        )?;
        tx.commit()?;
        Ok(topic)
    }

    fn set_partition_count(&self, name: &str, partitions: i32) -> Result<()> {
        let conn = self.conn.lock();
        let n = conn.execute(
            "UPDATE topics SET partitions = ?2 WHERE name = ?1",
            params![name, partitions],
        )?;
        if n == 0 {
            return Err(CatalogError::NoSuchTopic(name.to_string()));
        }
        Ok(())
    }

    fn set_topic_configs(&self, name: &str, configs: &BTreeMap<String, String>) -> Result<()> {
        let json =
            serde_json::to_string(configs).map_err(|e| CatalogError::Corrupt(e.to_string()))?;
        let conn = self.conn.lock();
        let n = conn.execute(
            "UPDATE topics SET configs = ?2 WHERE name = ?1",
            params![name, json],
        )?;
        if n == 0 {
            return Err(CatalogError::NoSuchTopic(name.to_string()));
        }
        Ok(())
    }

    fn commit_upload(&self, commit: &UploadCommit) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for o in &commit.objects {
            tx.execute(
                "INSERT INTO objects (key, size, created_ms) VALUES (?1, ?2, ?3)",
                params![o.key, o.size as i64, o.created_ms],
            )?;
        }
        for s in &commit.segments {
            let topic = s.topic.to_string();
            // A topic deleted while its data was uploading gets no index rows.
            let live: Option<i32> = tx
                .query_row("SELECT 1 FROM topics WHERE id = ?1", params![topic], |r| {
                    r.get(0)
                })
                .optional()?;
            if live.is_none() {
                continue;
            }
            // Data deleted (DeleteRecords) before it was uploaded gets no row,
            // but still counts as uploaded.
            let log_start: i64 = tx
                .query_row(
                    "SELECT log_start FROM partitions WHERE topic_id = ?1 AND partition = ?2",
                    params![topic, s.partition],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            if s.last_offset < log_start {
                tx.execute(
                    "UPDATE partitions SET uploaded_end = MAX(uploaded_end, ?3) WHERE topic_id = ?1 AND partition = ?2",
                    params![topic, s.partition, s.last_offset + 1],
                )?;
                continue;
            }
            insert_segment(&tx, &topic, s.partition, s)?;
            tx.execute(
                "INSERT INTO partitions (topic_id, partition, uploaded_end) VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic_id, partition) DO UPDATE SET uploaded_end = MAX(uploaded_end, excluded.uploaded_end)",
                params![topic, s.partition, s.last_offset + 1],
            )?;
        }
        for p in &commit.producers {
            let batches = serde_json::to_string(&p.batches)
                .map_err(|e| CatalogError::Corrupt(e.to_string()))?;
            tx.execute(
                "INSERT INTO producer_state (topic_id, partition, producer_id, epoch, batches) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (topic_id, partition, producer_id) DO UPDATE SET epoch = excluded.epoch, batches = excluded.batches",
                params![p.topic.to_string(), p.partition, p.producer_id, p.epoch, batches],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn partition_states(&self) -> Result<Vec<PartitionState>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT p.topic_id, p.partition, p.uploaded_end, p.log_start,
                    (SELECT COALESCE(SUM(s.length), 0) FROM segments s
                      WHERE s.topic_id = p.topic_id AND s.partition = p.partition)
             FROM partitions p",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i32>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(t, partition, uploaded_end, log_start, bytes)| {
                Ok(PartitionState {
                    topic: parse_uuid(&t)?,
                    partition,
                    uploaded_end,
                    log_start,
                    bytes,
                })
            })
            .collect()
    }

    fn segments_from(
        &self,
        topic: Uuid,
        partition: i32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<SegmentRecord>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments WHERE topic_id = ?1 AND partition = ?2 AND last_offset >= ?3
             ORDER BY last_offset LIMIT ?4"
        ))?;
        let rows = stmt
            .query_map(
                params![topic.to_string(), partition, from, limit as i64],
                segment_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        finish_segments(rows)
    }

    fn first_segment_at_or_after_time(
        &self,
        topic: Uuid,
        partition: i32,
        ts: i64,
    ) -> Result<Option<SegmentRecord>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM segments WHERE topic_id = ?1 AND partition = ?2 AND max_timestamp >= ?3
             ORDER BY base_offset LIMIT 1"
        ))?;
        let rows = stmt
            .query_map(params![topic.to_string(), partition, ts], segment_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(finish_segments(rows)?.into_iter().next())
    }

    fn producer_states(&self) -> Result<Vec<ProducerStateRecord>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT topic_id, partition, producer_id, epoch, batches FROM producer_state",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i32>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i16>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(t, partition, producer_id, epoch, batches)| {
                let batches: Vec<ProducerBatch> = serde_json::from_str(&batches)
                    .map_err(|e| CatalogError::Corrupt(format!("producer state: {e}")))?;
                Ok(ProducerStateRecord {
                    topic: parse_uuid(&t)?,
                    partition,
                    producer_id,
                    epoch,
                    batches,
                })
            })
            .collect()
    }

    fn allocate_producer_id(&self) -> Result<i64> {
        let conn = self.conn.lock();
        let id: i64 = conn.query_row(
            "INSERT INTO counters (name, value) VALUES ('producer_id', 1000)
             ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            [],
            |r| r.get(0),
        )?;
        Ok(id)
    }

    fn commit_offsets(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO group_offsets (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (group_id, topic, partition) DO UPDATE SET
                   committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch,
                   metadata = excluded.metadata, commit_ms = excluded.commit_ms",
            )?;
            for o in offsets {
                stmt.execute(params![
                    group,
                    o.topic,
                    o.partition,
                    o.offset,
                    o.leader_epoch,
                    o.metadata,
                    o.commit_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn group_offsets(&self, group: &str) -> Result<Vec<CommittedOffset>> {
        let conn = self.conn.lock();
        Self::group_offsets_impl(&conn, group)
    }

    fn offset_groups(&self) -> Result<Vec<String>> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare("SELECT DISTINCT group_id FROM group_offsets ORDER BY group_id")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(rows)
    }

    fn trim_partition(&self, topic: Uuid, partition: i32, new_start: i64) -> Result<u64> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let t = topic.to_string();
        let bytes: i64 = tx.query_row(
            "SELECT COALESCE(SUM(length), 0) FROM segments WHERE topic_id = ?1 AND partition = ?2 AND last_offset < ?3",
            params![t, partition, new_start],
            |r| r.get(0),
        )?;
        tx.execute(
            "DELETE FROM segments WHERE topic_id = ?1 AND partition = ?2 AND last_offset < ?3",
            params![t, partition, new_start],
        )?;
        tx.execute(
            "INSERT INTO partitions (topic_id, partition, log_start) VALUES (?1, ?2, ?3)
             ON CONFLICT (topic_id, partition) DO UPDATE SET log_start = MAX(log_start, excluded.log_start)",
            params![t, partition, new_start],
        )?;
        tx.commit()?;
        Ok(bytes.max(0) as u64)
    }

    fn replace_segments(
        &self,
        topic: Uuid,
        partition: i32,
        old_bases: &[i64],
        object: &ObjectRecord,
        new_rows: &[SegmentRecord],
    ) -> Result<bool> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let t = topic.to_string();
        for base in old_bases {
            let n = tx.execute(
                "DELETE FROM segments WHERE topic_id = ?1 AND partition = ?2 AND base_offset = ?3",
                params![t, partition, base],
            )?;
            if n != 1 {
                // Trimmed or replaced meanwhile: leave everything as it was.
                return Ok(false);
            }
        }
        tx.execute(
            "INSERT INTO objects (key, size, created_ms) VALUES (?1, ?2, ?3)",
            params![object.key, object.size as i64, object.created_ms],
        )?;
        for s in new_rows {
            insert_segment(&tx, &t, partition, s)?;
        }
        tx.commit()?;
        Ok(true)
    }

    fn unreferenced_objects(&self, before_ms: i64) -> Result<Vec<String>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT o.key FROM objects o WHERE o.created_ms < ?1
             AND NOT EXISTS (SELECT 1 FROM segments s WHERE s.object_key = o.key)",
        )?;
        let rows = stmt
            .query_map(params![before_ms], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(rows)
    }

    fn forget_objects(&self, keys: &[String]) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for k in keys {
            tx.execute("DELETE FROM objects WHERE key = ?1", params![k])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn object_keys(&self) -> Result<Vec<String>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT key FROM objects")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(rows)
    }

    fn record_replays(&self, replays: &[ReplayRecord]) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO dlq_replays (dlq_topic, partition, dlq_offset, target_topic, target_partition, target_offset, replayed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in replays {
                stmt.execute(params![
                    r.dlq_topic,
                    r.partition,
                    r.offset,
                    r.target_topic,
                    r.target_partition,
                    r.target_offset,
                    r.replayed_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn replayed(&self, dlq_topic: &str) -> Result<Vec<(i32, i64)>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT partition, dlq_offset FROM dlq_replays WHERE dlq_topic = ?1",
        )?;
        let rows = stmt
            .query_map(params![dlq_topic], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<(i32, i64)>>>()?;
        Ok(rows)
    }

    fn delete_offsets(&self, group: &str, only: Option<&[(String, i32)]>) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        match only {
            None => {
                tx.execute(
                    "DELETE FROM group_offsets WHERE group_id = ?1",
                    params![group],
                )?;
            }
            Some(pairs) => {
                for (t, p) in pairs {
                    tx.execute(
                        "DELETE FROM group_offsets WHERE group_id = ?1 AND topic = ?2 AND partition = ?3",
                        params![group, t, p],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl SqliteCatalog {
    fn group_offsets_impl(conn: &Connection, group: &str) -> Result<Vec<CommittedOffset>> {
        let mut stmt = conn.prepare_cached(
            "SELECT topic, partition, committed_offset, leader_epoch, metadata, commit_ms
             FROM group_offsets WHERE group_id = ?1 ORDER BY topic, partition",
        )?;
        let rows = stmt
            .query_map(params![group], |r| {
                Ok(CommittedOffset {
                    topic: r.get(0)?,
                    partition: r.get(1)?,
                    offset: r.get(2)?,
                    leader_epoch: r.get(3)?,
                    metadata: r.get(4)?,
                    commit_ms: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

/// Adds one index row (upload commits and compaction both write them).
fn insert_segment(
    tx: &rusqlite::Transaction<'_>,
    topic: &str,
    partition: i32,
    s: &SegmentRecord,
) -> rusqlite::Result<usize> {
    tx.execute(
        &format!(
            "INSERT INTO segments ({SEGMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            topic,
            partition,
            s.base_offset,
            s.last_offset,
            s.max_timestamp,
            s.object_key,
            s.position as i64,
            s.length as i64
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectRecord;

    fn topic(name: &str) -> TopicRecord {
        TopicRecord {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions: 3,
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            created_ms: 1,
        }
    }

    fn seg(t: Uuid, base: i64, last: i64, ts: i64) -> SegmentRecord {
        SegmentRecord {
            topic: t,
            partition: 0,
            base_offset: base,
            last_offset: last,
            max_timestamp: ts,
            object_key: format!("o{base}"),
            position: 0,
            length: 10,
        }
    }

    #[test]
    fn topics_uploads_and_producers_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let t = topic("a");
        {
            let c = SqliteCatalog::open(&path).unwrap();
            c.create_topic(&t).unwrap();
            assert!(matches!(
                c.create_topic(&t),
                Err(CatalogError::TopicExists(_))
            ));
            c.commit_upload(&UploadCommit {
                objects: vec![ObjectRecord {
                    key: "o0".into(),
                    size: 20,
                    created_ms: 5,
                }],
                segments: vec![seg(t.id, 0, 9, 100), seg(t.id, 10, 19, 200)],
                producers: vec![ProducerStateRecord {
                    topic: t.id,
                    partition: 0,
                    producer_id: 1000,
                    epoch: 0,
                    batches: vec![ProducerBatch {
                        first_seq: 0,
                        last_seq: 9,
                        base_offset: 0,
                        last_offset: 9,
                    }],
                }],
            })
            .unwrap();
        }
        let c = SqliteCatalog::open(&path).unwrap();
        assert_eq!(c.list_topics().unwrap(), vec![t.clone()]);
        let states = c.partition_states().unwrap();
        assert_eq!(states[0].uploaded_end, 20);
        assert_eq!(c.segments_from(t.id, 0, 12, 10).unwrap().len(), 1);
        assert_eq!(c.segments_from(t.id, 0, 0, 10).unwrap().len(), 2);
        let s = c
            .first_segment_at_or_after_time(t.id, 0, 150)
            .unwrap()
            .unwrap();
        assert_eq!(s.base_offset, 10);
        assert!(c
            .first_segment_at_or_after_time(t.id, 0, 250)
            .unwrap()
            .is_none());
        assert_eq!(c.producer_states().unwrap().len(), 1);
        let a = c.allocate_producer_id().unwrap();
        assert_eq!(c.allocate_producer_id().unwrap(), a + 1);
        let id = c.cluster_id().unwrap();
        assert_eq!(c.cluster_id().unwrap(), id);
        let off = |p: i32, o: i64| CommittedOffset {
            topic: "a".into(),
            partition: p,
            offset: o,
            leader_epoch: -1,
            metadata: Some("m".into()),
            commit_ms: 9,
        };
        c.commit_offsets("g", &[off(0, 5), off(1, 7)]).unwrap();
        c.commit_offsets("g", &[off(0, 6)]).unwrap();
        assert_eq!(c.group_offsets("g").unwrap(), vec![off(0, 6), off(1, 7)]);
        assert_eq!(c.offset_groups().unwrap(), vec!["g".to_string()]);
        c.delete_offsets("g", Some(&[("a".into(), 0)])).unwrap();
        assert_eq!(c.group_offsets("g").unwrap(), vec![off(1, 7)]);
        c.delete_offsets("g", None).unwrap();
        assert!(c.offset_groups().unwrap().is_empty());
        c.delete_topic("a").unwrap();
        assert!(c.list_topics().unwrap().is_empty());
        assert!(c.segments_from(t.id, 0, 0, 10).unwrap().is_empty());
    }
}
