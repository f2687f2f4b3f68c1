//! Moving a catalog to another engine (`sluice catalog migrate`): an
//! embedded broker's SQLite catalog into a cluster's PostgreSQL one. Only
//! metadata moves — topics and configs, partition ends, the object index,
//! producer state, transactions, committed offsets, the replay log and the schema
//! registry; the objects stay where they are, since both modes read the
//! same formats (DESIGN.md invariant 5). The copy is one transaction on the
//! target, which must be empty.

use crate::sql::{insert_many, read, write, Row, Value};
use crate::{Catalog, CatalogError, Result, TopicStore};

/// A table to copy: its name, its columns, which rows (a `WHERE` clause,
/// or ""), and what to do when the target already has a row (migrations
/// seed a few).
struct Table {
    name: &'static str,
    columns: &'static str,
    only: &'static str,
    on_conflict: &'static str,
}

const TABLES: &[Table] = &[
    Table {
        name: "meta",
        columns: "key, value",
        only: "WHERE key = 'cluster_id'",
        // The moved broker's cluster id wins over one a cluster broker
        // made while the target was still empty.
        on_conflict: "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    },
    Table {
        name: "topics",
        columns: "name, id, partitions, configs, created_ms",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "partitions",
        columns: "topic_id, partition, log_start, uploaded_end",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "objects",
        columns: "key, size, created_ms",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "segments",
        columns: "topic_id, partition, base_offset, last_offset, max_timestamp, object_key, position, length",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "producer_state",
        columns: "topic_id, partition, producer_id, epoch, batches",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "txn_index",
        columns: "topic_id, partition, producer_id, first_offset, last_offset",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "txn_offsets",
        columns: "transactional_id, group_id, topic, partition, committed_offset, leader_epoch, metadata",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "transactions",
        columns: "transactional_id, producer_id, epoch, state, timeout_ms, started_ms, updated_ms, detail",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "counters",
        columns: "name, value",
        only: "WHERE name = 'producer_id'",
        on_conflict: "",
    },
    Table {
        name: "dlq_replays",
        columns: "dlq_topic, partition, dlq_offset, target_topic, target_partition, target_offset, replayed_ms",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "dlq_replay_pending",
        columns: "producer_id, dlq_topic, partition, dlq_offsets, target_topic, target_partition, created_ms",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "scram_credentials",
        columns: "username, mechanism, salt, iterations, stored_key, server_key, updated_ms",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "acls",
        columns: "resource_type, resource_name, pattern_type, principal, host, operation, permission",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "user_attributes",
        columns: "username, attr, value",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "client_quotas",
        columns: "entity, quota_key, value",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "group_offsets",
        columns: "group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_ms",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "registry_schemas",
        columns: "id, schema_type, schema, canonical, refs",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "registry_versions",
        columns: "subject, version, schema_id, deleted",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "registry_config",
        columns: "subject, compatibility",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "registry_mode",
        columns: "subject, mode",
        only: "",
        on_conflict: "",
    },
    Table {
        name: "registry_meta",
        columns: "key, value",
        only: "",
        on_conflict: "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    },
];

/// Tables that must be empty in the target.
const MUST_BE_EMPTY: &[&str] = &[
    "topics",
    "objects",
    "segments",
    "group_offsets",
    "producer_state",
    "registry_schemas",
];

/// What a table held in the target before the copy, if anything: `None`
/// when the target is empty enough to take a copy.
pub fn not_empty(target: &Catalog) -> Result<Option<String>> {
    let db = target.db();
    let mut found = Vec::new();
    for table in MUST_BE_EMPTY {
        let n = read(&*db, |tx| {
            tx.query_opt(
                &format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"),
                &[],
            )?
            .map(|r| r.int(0))
            .transpose()
        })?
        .unwrap_or(0);
        if n > 0 {
            found.push(format!("{n} rows in {table}"));
        }
    }
    Ok((!found.is_empty()).then(|| found.join(", ")))
}

/// Rows copied, per table.
pub type Copied = Vec<(&'static str, usize)>;

/// Copies every table from `from` into `to` (which [`not_empty`] found
/// empty) in one transaction on `to`; `progress` hears each table's count.
pub fn copy(from: &Catalog, to: &Catalog, mut progress: impl FnMut(&str, usize)) -> Result<Copied> {
    let source = from.db();
    // The id clients saw stays the cluster's (created now if the source
    // never made one).
    from.cluster_id()?;
    let mut rows: Vec<(&Table, Vec<Vec<Value>>)> = Vec::new();
    for t in TABLES {
        let got: Vec<Row> = read(&*source, |tx| {
            tx.query(
                &format!("SELECT {} FROM {} {}", t.columns, t.name, t.only),
                &[],
            )
        })?;
        let values = got
            .into_iter()
            .map(|r| {
                let mut v = r.0;
                // Committed offsets' metadata is bytes since schema v3
                // (older rows, and SQLite, may hold text).
                if t.name == "group_offsets" {
                    if let Some(Value::Text(s)) = v.get(5).cloned() {
                        v[5] = Value::Bytes(s.into_bytes());
                    }
                }
                v
            })
            .collect();
        rows.push((t, values));
    }
    // Every partition of every topic has a row (cluster flushes lock them;
    // older embedded catalogs created rows only on first upload).
    let topics = from.list_topics()?;
    let copied = write(&*to.db(), |tx| {
        let mut copied = Vec::new();
        for (t, values) in &rows {
            if !values.is_empty() {
                insert_many(
                    tx,
                    &format!("{} ({})", t.name, t.columns),
                    t.on_conflict,
                    values,
                )?;
            }
            copied.push((t.name, values.len()));
        }
        for topic in &topics {
            let id = topic.id.to_string();
            let missing: Vec<Vec<Value>> = (0..topic.partitions)
                .map(|p| vec![id.as_str().into(), p.into()])
                .collect();
            if !missing.is_empty() {
                insert_many(
                    tx,
                    "partitions (topic_id, partition)",
                    "ON CONFLICT (topic_id, partition) DO NOTHING",
                    &missing,
                )?;
            }
        }
        crate::changes::MetaChange::Topics.send(tx)?;
        Ok(copied)
    })?;
    for (t, n) in &copied {
        progress(t, *n);
    }
    if copied.iter().all(|(_, n)| *n == 0) {
        return Err(CatalogError::Conflict(
            "the source catalog holds nothing to move".into(),
        ));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    #[test]
    fn everything_moves_and_a_full_target_is_refused() {
        let from = Catalog::in_memory().unwrap();
        let to = Catalog::in_memory().unwrap();
        assert!(not_empty(&to).unwrap().is_none());
        let t = TopicRecord {
            name: "moved".into(),
            id: uuid::Uuid::new_v4(),
            partitions: 2,
            configs: Default::default(),
            created_ms: 1,
        };
        from.create_topic(&t).unwrap();
        from.commit_upload(&UploadCommit {
            objects: vec![ObjectRecord {
                key: "data/o".into(),
                size: 10,
                created_ms: 1,
            }],
            segments: vec![SegmentRecord {
                topic: t.id,
                partition: 1,
                base_offset: 0,
                last_offset: 4,
                max_timestamp: 9,
                object_key: "data/o".into(),
                position: 0,
                length: 10,
            }],
            producers: vec![],
            ..Default::default()
        })
        .unwrap();
        let off = CommittedOffset {
            topic: "moved".into(),
            partition: 1,
            offset: 3,
            leader_epoch: -1,
            metadata: Some("m".into()),
            commit_ms: 2,
        };
        from.commit_offsets("g", std::slice::from_ref(&off), None)
            .unwrap();
        let id = from.allocate_producer_id().unwrap();
        let copied = copy(&from, &to, |_, _| {}).unwrap();
        assert!(copied.contains(&("segments", 1)));
        assert_eq!(to.list_topics().unwrap(), vec![t.clone()]);
        assert_eq!(to.segments_from(t.id, 1, 0, 10).unwrap().len(), 1);
        assert_eq!(to.group_offsets("g").unwrap(), vec![off]);
        assert_eq!(to.cluster_id().unwrap(), from.cluster_id().unwrap());
        assert_eq!(to.allocate_producer_id().unwrap(), id + 1, "ids go on");
        let ends: Vec<(i32, i64)> = to
            .partition_states()
            .unwrap()
            .iter()
            .map(|s| (s.partition, s.uploaded_end))
            .collect();
        assert_eq!(ends.len(), 2, "every partition has its row");
        assert!(ends.contains(&(1, 5)));
        assert!(not_empty(&to).unwrap().is_some());
    }
}
