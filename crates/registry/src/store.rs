//! Durable storage of the registry behind a small trait. The registry keeps
//! its working state in memory and writes every change through `apply`, one
//! atomic batch per API call; `load` rebuilds the state at start. SQLite is
//! the embedded engine (tables prefixed `registry_` inside the broker's
//! catalog file); a PostgreSQL engine only has to implement the same two
//! calls over the same tables.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::RegistryError;
use crate::model::{
    CompatibilityLevel, Mode, SchemaReference, SchemaType, StoredSchema, VersionEntry,
};

/// Everything the registry persists, as loaded at start.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub schemas: Vec<StoredSchema>,
    /// (subject, entry), any order.
    pub versions: Vec<(String, VersionEntry)>,
    /// `None` subject = global.
    pub configs: Vec<(Option<String>, CompatibilityLevel)>,
    pub modes: Vec<(Option<String>, Mode)>,
    /// The next id to hand out; ids are never reused, even after a
    /// permanent delete.
    pub next_id: u32,
}

/// One change; a batch of them is applied atomically.
#[derive(Debug, Clone)]
pub enum StoreOp {
    PutSchema(StoredSchema),
    DeleteSchema(u32),
    PutVersion {
        subject: String,
        entry: VersionEntry,
    },
    DeleteVersion {
        subject: String,
        version: u32,
    },
    SetConfig {
        subject: Option<String>,
        level: Option<CompatibilityLevel>,
    },
    SetMode {
        subject: Option<String>,
        mode: Option<Mode>,
    },
    SetNextId(u32),
}

/// A storage engine for the registry.
pub trait SchemaStore: Send {
    fn load(&mut self) -> Result<Snapshot, RegistryError>;
    /// Applies all ops or none, durably, before returning.
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), RegistryError>;
}

/// The SQLite engine: its own connection to the given file (WAL journal,
/// `synchronous=FULL`, busy timeout), so it can share the broker's catalog
/// file without sharing its connection.
pub struct SqliteStore {
    conn: Connection,
}

const GLOBAL: &str = "";

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self, RegistryError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, RegistryError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        // In-memory databases answer "memory" here; both are fine.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS registry_schemas (
                 id INTEGER PRIMARY KEY,
                 schema_type TEXT NOT NULL,
                 schema TEXT NOT NULL,
                 canonical TEXT NOT NULL,
                 refs TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS registry_versions (
                 subject TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 schema_id INTEGER NOT NULL,
                 deleted INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (subject, version)
             );
             CREATE TABLE IF NOT EXISTS registry_config (
                 subject TEXT PRIMARY KEY,
                 compatibility TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS registry_mode (
                 subject TEXT PRIMARY KEY,
                 mode TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS registry_meta (
                 key TEXT PRIMARY KEY,
                 value INTEGER NOT NULL
             );",
        )?;
        Ok(SqliteStore { conn })
    }
}

fn type_from_db(s: &str) -> Result<SchemaType, RegistryError> {
    SchemaType::parse(Some(s))
        .map_err(|_| RegistryError::Store(format!("bad schema type {s:?} in store")))
}

fn subject_key(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or(GLOBAL)
}

fn subject_from_key(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

impl SchemaStore for SqliteStore {
    fn load(&mut self) -> Result<Snapshot, RegistryError> {
        let mut snap = Snapshot::default();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT id, schema_type, schema, canonical, refs FROM registry_schemas")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            for row in rows {
                let (id, ty, schema, canonical, refs) = row?;
                let references: Vec<SchemaReference> =
                    serde_json::from_str(&refs).map_err(|e| {
                        RegistryError::Store(format!("bad references of schema {id}: {e}"))
                    })?;
                let id = u32::try_from(id)
                    .map_err(|_| RegistryError::Store(format!("bad schema id {id} in store")))?;
                snap.schemas.push(StoredSchema {
                    id,
                    schema_type: type_from_db(&ty)?,
                    schema,
                    canonical,
                    references,
                });
            }
        }
        {
            let mut stmt = self
                .conn
                .prepare("SELECT subject, version, schema_id, deleted FROM registry_versions")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })?;
            for row in rows {
                let (subject, version, id, deleted) = row?;
                let (Ok(version), Ok(id)) = (u32::try_from(version), u32::try_from(id)) else {
                    return Err(RegistryError::Store(format!(
                        "bad version row {subject}/{version} -> {id}"
                    )));
                };
                snap.versions.push((
                    subject,
                    VersionEntry {
                        version,
                        id,
                        deleted,
                    },
                ));
            }
        }
        {
            let mut stmt = self
                .conn
                .prepare("SELECT subject, compatibility FROM registry_config")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (subject, level) = row?;
                let level = level
                    .parse()
                    .map_err(|_| RegistryError::Store(format!("bad compatibility {level:?}")))?;
                snap.configs.push((subject_from_key(subject), level));
            }
        }
        {
            let mut stmt = self
                .conn
                .prepare("SELECT subject, mode FROM registry_mode")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (subject, mode) = row?;
                let mode = mode
                    .parse()
                    .map_err(|_| RegistryError::Store(format!("bad mode {mode:?}")))?;
                snap.modes.push((subject_from_key(subject), mode));
            }
        }
        let next: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM registry_meta WHERE key = 'next_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let max_id = snap.schemas.iter().map(|s| s.id).max().unwrap_or(0);
        let next = next.and_then(|n| u32::try_from(n).ok()).unwrap_or(1);
        snap.next_id = next.max(max_id.saturating_add(1)).max(1);
        Ok(snap)
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), RegistryError> {
        let tx = self.conn.transaction()?;
        for op in ops {
            match op {
                StoreOp::PutSchema(s) => {
                    let refs = serde_json::to_string(&s.references)
                        .map_err(|e| RegistryError::Store(e.to_string()))?;
                    tx.execute(
                        "INSERT OR REPLACE INTO registry_schemas (id, schema_type, schema, canonical, refs)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![s.id, s.schema_type.as_str(), s.schema, s.canonical, refs],
                    )?;
                }
                StoreOp::DeleteSchema(id) => {
                    tx.execute("DELETE FROM registry_schemas WHERE id = ?1", params![id])?;
                }
                StoreOp::PutVersion { subject, entry } => {
                    tx.execute(
                        "INSERT OR REPLACE INTO registry_versions (subject, version, schema_id, deleted)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![subject, entry.version, entry.id, entry.deleted],
                    )?;
                }
                StoreOp::DeleteVersion { subject, version } => {
                    tx.execute(
                        "DELETE FROM registry_versions WHERE subject = ?1 AND version = ?2",
                        params![subject, version],
                    )?;
                }
                StoreOp::SetConfig { subject, level } => match level {
                    Some(l) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO registry_config (subject, compatibility) VALUES (?1, ?2)",
                            params![subject_key(subject), l.as_str()],
                        )?;
                    }
                    None => {
                        tx.execute(
                            "DELETE FROM registry_config WHERE subject = ?1",
                            params![subject_key(subject)],
                        )?;
                    }
                },
                StoreOp::SetMode { subject, mode } => match mode {
                    Some(m) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO registry_mode (subject, mode) VALUES (?1, ?2)",
                            params![subject_key(subject), m.as_str()],
                        )?;
                    }
                    None => {
                        tx.execute(
                            "DELETE FROM registry_mode WHERE subject = ?1",
                            params![subject_key(subject)],
                        )?;
                    }
                },
                StoreOp::SetNextId(n) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO registry_meta (key, value) VALUES ('next_id', ?1)",
                        params![n],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// A store that keeps nothing (tests, throwaway registries).
#[derive(Default)]
pub struct MemoryStore {
    snapshot: Snapshot,
    schemas: HashMap<u32, StoredSchema>,
}

impl SchemaStore for MemoryStore {
    fn load(&mut self) -> Result<Snapshot, RegistryError> {
        let mut s = self.snapshot.clone();
        s.schemas = self.schemas.values().cloned().collect();
        s.next_id = s.next_id.max(1);
        Ok(s)
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), RegistryError> {
        for op in ops {
            match op {
                StoreOp::PutSchema(s) => {
                    self.schemas.insert(s.id, s.clone());
                }
                StoreOp::DeleteSchema(id) => {
                    self.schemas.remove(id);
                }
                StoreOp::PutVersion { subject, entry } => {
                    self.snapshot
                        .versions
                        .retain(|(s, e)| !(s == subject && e.version == entry.version));
                    self.snapshot.versions.push((subject.clone(), *entry));
                }
                StoreOp::DeleteVersion { subject, version } => {
                    self.snapshot
                        .versions
                        .retain(|(s, e)| !(s == subject && e.version == *version));
                }
                StoreOp::SetConfig { subject, level } => {
                    self.snapshot.configs.retain(|(s, _)| s != subject);
                    if let Some(l) = level {
                        self.snapshot.configs.push((subject.clone(), *l));
                    }
                }
                StoreOp::SetMode { subject, mode } => {
                    self.snapshot.modes.retain(|(s, _)| s != subject);
                    if let Some(m) = mode {
                        self.snapshot.modes.push((subject.clone(), *m));
                    }
                }
                StoreOp::SetNextId(n) => self.snapshot.next_id = *n,
            }
        }
        Ok(())
    }
}
