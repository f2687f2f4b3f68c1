//! The catalog schema and its migrations, the same in both engines.
//!
//! The schema is written once: SQLite gives `BIGINT` columns integer
//! affinity, so the PostgreSQL types serve both. Every migration runs in
//! one write transaction together with the `schema_version` row that records
//! it; on PostgreSQL an advisory lock makes brokers starting together
//! migrate one at a time. A catalog written by a newer Sluice is refused
//! rather than misread.
//!
//! Version 1 is the embedded broker's schema as it was before versioning
//! (its `CREATE ... IF NOT EXISTS` statements are no-ops on such a file).

use crate::sql::{write, Dialect};
use crate::{CatalogError, Db, Result};

/// One schema change: statements for both engines, then each engine's own.
struct Migration {
    version: i64,
    what: &'static str,
    statements: &'static [&'static str],
    postgres: &'static [&'static str],
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "topics, the object index, producer state, group offsets, DLQ replays, schemas",
        statements: &[
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS topics (
                name TEXT PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                partitions BIGINT NOT NULL,
                configs TEXT NOT NULL,
                created_ms BIGINT NOT NULL
            )",
            "CREATE TABLE IF NOT EXISTS partitions (
                topic_id TEXT NOT NULL,
                partition BIGINT NOT NULL,
                log_start BIGINT NOT NULL DEFAULT 0,
                uploaded_end BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (topic_id, partition)
            )",
            "CREATE TABLE IF NOT EXISTS objects (
                key TEXT PRIMARY KEY,
                size BIGINT NOT NULL,
                created_ms BIGINT NOT NULL
            )",
            "CREATE TABLE IF NOT EXISTS segments (
                topic_id TEXT NOT NULL,
                partition BIGINT NOT NULL,
                base_offset BIGINT NOT NULL,
                last_offset BIGINT NOT NULL,
                max_timestamp BIGINT NOT NULL,
                object_key TEXT NOT NULL,
                position BIGINT NOT NULL,
                length BIGINT NOT NULL,
                PRIMARY KEY (topic_id, partition, base_offset)
            )",
            "CREATE INDEX IF NOT EXISTS segments_by_last ON segments (topic_id, partition, last_offset)",
            "CREATE INDEX IF NOT EXISTS segments_by_object ON segments (object_key)",
            "CREATE TABLE IF NOT EXISTS producer_state (
                topic_id TEXT NOT NULL,
                partition BIGINT NOT NULL,
                producer_id BIGINT NOT NULL,
                epoch BIGINT NOT NULL,
                batches TEXT NOT NULL,
                PRIMARY KEY (topic_id, partition, producer_id)
            )",
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS dlq_replays (
                dlq_topic TEXT NOT NULL,
                partition BIGINT NOT NULL,
                dlq_offset BIGINT NOT NULL,
                target_topic TEXT NOT NULL,
                target_partition BIGINT NOT NULL,
                target_offset BIGINT NOT NULL,
                replayed_ms BIGINT NOT NULL,
                PRIMARY KEY (dlq_topic, partition, dlq_offset, replayed_ms)
            )",
            "CREATE TABLE IF NOT EXISTS group_offsets (
                group_id TEXT NOT NULL,
                topic TEXT NOT NULL,
                partition BIGINT NOT NULL,
                committed_offset BIGINT NOT NULL,
                leader_epoch BIGINT NOT NULL,
                metadata TEXT,
                commit_ms BIGINT NOT NULL,
                PRIMARY KEY (group_id, topic, partition)
            )",
            "CREATE TABLE IF NOT EXISTS registry_schemas (
                id BIGINT PRIMARY KEY,
                schema_type TEXT NOT NULL,
                schema TEXT NOT NULL,
                canonical TEXT NOT NULL,
                refs TEXT NOT NULL
            )",
            "CREATE TABLE IF NOT EXISTS registry_versions (
                subject TEXT NOT NULL,
                version BIGINT NOT NULL,
                schema_id BIGINT NOT NULL,
                deleted BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (subject, version)
            )",
            "CREATE TABLE IF NOT EXISTS registry_config (
                subject TEXT PRIMARY KEY,
                compatibility TEXT NOT NULL
            )",
            "CREATE TABLE IF NOT EXISTS registry_mode (subject TEXT PRIMARY KEY, mode TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS registry_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        ],
        postgres: &[],
    },
    Migration {
        version: 2,
        what: "live brokers and their leases (cluster mode)",
        statements: &["CREATE TABLE IF NOT EXISTS brokers (
                broker_id BIGINT PRIMARY KEY,
                host TEXT NOT NULL,
                port BIGINT NOT NULL,
                rack TEXT,
                epoch BIGINT NOT NULL,
                started_ms BIGINT NOT NULL,
                lease_expires_ms BIGINT NOT NULL
            )"],
        postgres: &[],
    },
    Migration {
        version: 3,
        what: "committed offsets' metadata as bytes (Kafka strings may hold NUL, which PostgreSQL text cannot); the registry's version row",
        // SQLite keeps whatever a column is given: nothing to change there.
        // The registry's version row exists from now on, so that writers
        // always have a row to lock (see the registry's store).
        statements: &["INSERT INTO registry_meta (key, value) VALUES ('version', 0) ON CONFLICT (key) DO NOTHING"],
        postgres: &["ALTER TABLE group_offsets ALTER COLUMN metadata TYPE BYTEA USING convert_to(metadata, 'UTF8')"],
    },
    Migration {
        version: 4,
        what: "when each broker last renewed its lease",
        statements: &["ALTER TABLE brokers ADD COLUMN renewed_ms BIGINT NOT NULL DEFAULT 0"],
        postgres: &[],
    },
    Migration {
        version: 5,
        what: "background jobs and the broker (lease epoch) holding each",
        statements: &["CREATE TABLE IF NOT EXISTS jobs (
                name TEXT PRIMARY KEY,
                broker_id BIGINT NOT NULL,
                epoch BIGINT NOT NULL,
                since_ms BIGINT NOT NULL
            )"],
        postgres: &[],
    },
    Migration {
        version: 6,
        what: "dead-letter replays under way: each batch's producer id, written before it is produced",
        statements: &["CREATE TABLE IF NOT EXISTS dlq_replay_pending (
                producer_id BIGINT PRIMARY KEY,
                dlq_topic TEXT NOT NULL,
                partition BIGINT NOT NULL,
                dlq_offsets TEXT NOT NULL,
                target_topic TEXT NOT NULL,
                target_partition BIGINT NOT NULL,
                created_ms BIGINT NOT NULL
            )"],
        postgres: &[],
    },
    Migration {
        version: 7,
        what: "SASL/SCRAM credentials: salt, iterations and keys per user and mechanism (never a password)",
        statements: &["CREATE TABLE IF NOT EXISTS scram_credentials (
                username TEXT NOT NULL,
                mechanism TEXT NOT NULL,
                salt TEXT NOT NULL,
                iterations BIGINT NOT NULL,
                stored_key TEXT NOT NULL,
                server_key TEXT NOT NULL,
                updated_ms BIGINT NOT NULL,
                PRIMARY KEY (username, mechanism)
            )"],
        postgres: &[],
    },
    Migration {
        version: 8,
        what: "authorization rules (Kafka ACL bindings, Kafka's numeric codes)",
        statements: &["CREATE TABLE IF NOT EXISTS acls (
                resource_type BIGINT NOT NULL,
                resource_name TEXT NOT NULL,
                pattern_type BIGINT NOT NULL,
                principal TEXT NOT NULL,
                host TEXT NOT NULL,
                operation BIGINT NOT NULL,
                permission BIGINT NOT NULL,
                PRIMARY KEY (resource_type, resource_name, pattern_type, principal, host, operation, permission)
            )"],
        postgres: &[],
    },
    Migration {
        version: 9,
        what: "client quotas (Kafka's producer_byte_rate, consumer_byte_rate, request_percentage per user and client id)",
        statements: &["CREATE TABLE IF NOT EXISTS client_quotas (
                entity TEXT NOT NULL,
                quota_key TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (entity, quota_key)
            )"],
        postgres: &[],
    },
    Migration {
        version: 10,
        what: "user attributes (a SASL user's tenant, for identity-bound governance)",
        statements: &["CREATE TABLE IF NOT EXISTS user_attributes (
                username TEXT NOT NULL,
                attr TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (username, attr)
            )"],
        postgres: &[],
    },
    Migration {
        version: 11,
        what: "transactions: coordinator state per transactional id, their pending offsets, and each partition's open and aborted transactions",
        statements: &[
            "CREATE TABLE IF NOT EXISTS transactions (
                transactional_id TEXT PRIMARY KEY,
                producer_id BIGINT NOT NULL,
                epoch BIGINT NOT NULL,
                state TEXT NOT NULL,
                timeout_ms BIGINT NOT NULL,
                started_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL,
                detail TEXT NOT NULL
            )",
            "CREATE TABLE IF NOT EXISTS txn_index (
                topic_id TEXT NOT NULL,
                partition BIGINT NOT NULL,
                producer_id BIGINT NOT NULL,
                first_offset BIGINT NOT NULL,
                last_offset BIGINT,
                PRIMARY KEY (topic_id, partition, producer_id, first_offset)
            )",
            "CREATE TABLE IF NOT EXISTS txn_offsets (
                transactional_id TEXT NOT NULL,
                group_id TEXT NOT NULL,
                topic TEXT NOT NULL,
                partition BIGINT NOT NULL,
                committed_offset BIGINT NOT NULL,
                leader_epoch BIGINT NOT NULL,
                metadata TEXT,
                PRIMARY KEY (transactional_id, group_id, topic, partition)
            )",
        ],
        postgres: &[],
    },
];

/// The schema version this build writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// Brings the schema up to [`latest_version`]; returns the version found.
pub fn migrate(db: &dyn Db) -> Result<i64> {
    let latest = latest_version();
    write(db, |tx| {
        if tx.dialect() == Dialect::Postgres {
            // One migrating broker at a time; the others wait, then find
            // nothing left to do.
            tx.query("SELECT pg_advisory_xact_lock(7433001)", &[])?;
        }
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version BIGINT PRIMARY KEY,
                applied_ms BIGINT NOT NULL
            )",
            &[],
        )?;
        let found = tx
            .query_opt("SELECT MAX(version) FROM schema_version", &[])?
            .map(|r| r.opt_int(0))
            .transpose()?
            .flatten()
            .unwrap_or(0);
        if found > latest {
            return Err(CatalogError::TooNew { found, latest });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > found) {
            let own: &[&str] = match tx.dialect() {
                Dialect::Postgres => m.postgres,
                Dialect::Sqlite => &[],
            };
            for s in m.statements.iter().chain(own) {
                tx.execute(s, &[])?;
            }
            tx.execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES ($1, $2)",
                crate::params![m.version, crate::now_ms()],
            )?;
            tracing::info!(
                version = m.version,
                what = m.what,
                "catalog schema migrated"
            );
        }
        Ok(found)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteDb;

    /// A catalog written before the schema was versioned (the embedded
    /// broker's tables, no `schema_version`) keeps its data and gains the
    /// new tables.
    #[test]
    fn an_unversioned_embedded_catalog_is_migrated_in_place() {
        use crate::{Catalog, CatalogUrl, TopicStore};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE topics (name TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE,
                    partitions INTEGER NOT NULL, configs TEXT NOT NULL, created_ms INTEGER NOT NULL);
                 CREATE TABLE group_offsets (group_id TEXT NOT NULL, topic TEXT NOT NULL,
                    partition INTEGER NOT NULL, committed_offset INTEGER NOT NULL,
                    leader_epoch INTEGER NOT NULL, metadata TEXT, commit_ms INTEGER NOT NULL,
                    PRIMARY KEY (group_id, topic, partition));
                 INSERT INTO meta VALUES ('cluster_id', 'sluice-old');
                 INSERT INTO topics VALUES ('kept', '00000000-0000-0000-0000-000000000007', 2, '{}', 1);
                 INSERT INTO group_offsets VALUES ('g', 'kept', 0, 42, -1, 'text metadata', 5);",
            )
            .unwrap();
        }
        let c = Catalog::open(&CatalogUrl::Sqlite(path)).unwrap();
        assert_eq!(c.cluster_id().unwrap(), "sluice-old");
        assert_eq!(c.list_topics().unwrap()[0].name, "kept");
        let offsets = crate::OffsetStore::group_offsets(&*c, "g").unwrap();
        assert_eq!(
            (offsets[0].offset, offsets[0].metadata.as_deref()),
            (42, Some("text metadata")),
            "old text metadata reads back"
        );
        assert!(crate::BrokerRegistry::live_brokers(&*c).unwrap().is_empty());
        assert_eq!(
            crate::sql::read(&*c.db(), |tx| tx
                .query_opt("SELECT MAX(version) FROM schema_version", &[]))
            .unwrap()
            .unwrap()
            .int(0)
            .unwrap(),
            latest_version()
        );
    }

    #[test]
    fn migrates_once_and_refuses_newer() {
        let db = SqliteDb::in_memory().unwrap();
        assert_eq!(migrate(&db).unwrap(), 0);
        assert_eq!(migrate(&db).unwrap(), latest_version());
        write(&db, |tx| {
            tx.execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES (999, 0)",
                &[],
            )
        })
        .unwrap();
        assert!(matches!(
            migrate(&db),
            Err(CatalogError::TooNew { found: 999, .. })
        ));
    }
}
