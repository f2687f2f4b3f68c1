//! [`TopicStore`]: topics, their partition counts and explicit configs. Every
//! change tells the other brokers of a cluster to reload their topic list.

use super::Catalog;
use crate::changes::MetaChange;
use crate::sql::{insert_many, read, write, Tx, Value};
use crate::{params, CatalogError, Result, TopicRecord, TopicStore};
use std::collections::BTreeMap;
use uuid::Uuid;

fn topic_from_row(r: &crate::sql::Row) -> Result<TopicRecord> {
    let name = r.text(0)?;
    let configs: BTreeMap<String, String> = serde_json::from_str(&r.text(3)?)
        .map_err(|e| CatalogError::Corrupt(format!("configs of {name}: {e}")))?;
    Ok(TopicRecord {
        id: r.uuid(1)?,
        partitions: r.int32(2)?,
        configs,
        created_ms: r.int(4)?,
        name,
    })
}

/// Creates the partition rows `from..to` of a topic (their ends start at 0;
/// cluster flushes lock these rows).
fn add_partition_rows(tx: &mut dyn Tx, topic: Uuid, from: i32, to: i32) -> Result<()> {
    let id = topic.to_string();
    let rows: Vec<Vec<Value>> = (from..to)
        .map(|p| vec![id.as_str().into(), p.into()])
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    insert_many(
        tx,
        "partitions (topic_id, partition)",
        "ON CONFLICT (topic_id, partition) DO NOTHING",
        &rows,
    )
}

impl TopicStore for Catalog {
    fn cluster_id(&self) -> Result<String> {
        write(&*self.db, |tx| {
            // Brokers starting together: the first insert wins, all read it.
            let id = format!("sluice-{}", Uuid::new_v4().simple());
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('cluster_id', $1) ON CONFLICT (key) DO NOTHING",
                params![id.as_str()],
            )?;
            tx.query_opt("SELECT value FROM meta WHERE key = 'cluster_id'", &[])?
                .ok_or_else(|| CatalogError::Corrupt("the cluster id vanished".into()))?
                .text(0)
        })
    }

    fn list_topics(&self) -> Result<Vec<TopicRecord>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT name, id, partitions, configs, created_ms FROM topics ORDER BY name",
                &[],
            )
        })?;
        rows.iter().map(topic_from_row).collect()
    }

    fn create_topic(&self, topic: &TopicRecord) -> Result<()> {
        let configs = serde_json::to_string(&topic.configs)
            .map_err(|e| CatalogError::Corrupt(e.to_string()))?;
        write(&*self.db, |tx| {
            // Two brokers creating the same topic: one insert wins.
            let n = tx.execute(
                "INSERT INTO topics (name, id, partitions, configs, created_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (name) DO NOTHING",
                params![topic.name.as_str(), topic.id.to_string(), topic.partitions, configs.as_str(), topic.created_ms],
            )?;
            if n == 0 {
                return Err(CatalogError::TopicExists(topic.name.clone()));
            }
            add_partition_rows(tx, topic.id, 0, topic.partitions)?;
            MetaChange::Topics.send(tx)
        })
    }

    fn delete_topic(&self, name: &str) -> Result<TopicRecord> {
        write(&*self.db, |tx| {
            let sql = format!(
                "SELECT name, id, partitions, configs, created_ms FROM topics WHERE name = $1{}",
                tx.dialect().for_update()
            );
            let topic = match tx.query_opt(&sql, params![name])? {
                Some(r) => topic_from_row(&r)?,
                None => return Err(CatalogError::NoSuchTopic(name.to_string())),
            };
            let id = topic.id.to_string();
            tx.execute("DELETE FROM topics WHERE name = $1", params![name])?;
            for table in ["partitions", "segments", "producer_state"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE topic_id = $1"),
                    params![id.as_str()],
                )?;
            }
            MetaChange::Topics.send(tx)?;
            Ok(topic)
        })
    }

    fn set_partition_count(&self, name: &str, partitions: i32) -> Result<()> {
        write(&*self.db, |tx| {
            let r = tx
                .query_opt(
                    "UPDATE topics SET partitions = $2 WHERE name = $1 RETURNING id",
                    params![name, partitions],
                )?
                .ok_or_else(|| CatalogError::NoSuchTopic(name.to_string()))?;
            add_partition_rows(tx, r.uuid(0)?, 0, partitions)?;
            MetaChange::Topics.send(tx)
        })
    }

    fn set_topic_configs(&self, name: &str, configs: &BTreeMap<String, String>) -> Result<()> {
        let json =
            serde_json::to_string(configs).map_err(|e| CatalogError::Corrupt(e.to_string()))?;
        write(&*self.db, |tx| {
            let n = tx.execute(
                "UPDATE topics SET configs = $2 WHERE name = $1",
                params![name, json.as_str()],
            )?;
            if n == 0 {
                return Err(CatalogError::NoSuchTopic(name.to_string()));
            }
            MetaChange::Topics.send(tx)
        })
    }
}
