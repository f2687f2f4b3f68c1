//! Durable storage of the registry behind a small trait. The registry keeps
//! its working state in memory and writes every change through `apply`, one
//! atomic batch per API call; `load` rebuilds the state at start and
//! whenever another broker of a cluster changed it. [`CatalogStore`] keeps
//! the `registry_*` tables in the broker's catalog (SQLite embedded,
//! PostgreSQL in a cluster), through the catalog's engine-neutral SQL layer.
//!
//! Writes are optimistic: every batch names the store version it was
//! computed against, and is refused ([`RegistryError::Stale`]) when another
//! writer got there first; the registry then reloads and computes the
//! change again.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_catalog::changes::MetaChange;
use sluice_catalog::sql::{write, Db, Tx};
use sluice_catalog::{params, CatalogError};

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
    /// How many change batches the store has taken.
    pub version: u64,
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
    /// Applies all ops or none, durably, before returning, if the store is
    /// still at `version` (else [`RegistryError::Stale`]); returns the new
    /// version.
    fn apply(&mut self, version: u64, ops: &[StoreOp]) -> Result<u64, RegistryError>;
}

/// The registry's tables in the broker's catalog.
pub struct CatalogStore {
    db: Arc<dyn Db>,
}

impl CatalogStore {
    /// Over the catalog's engine (its migrations created the tables).
    pub fn new(db: Arc<dyn Db>) -> Self {
        Self { db }
    }
}

const GLOBAL: &str = "";

impl From<CatalogError> for RegistryError {
    fn from(e: CatalogError) -> Self {
        RegistryError::Store(e.to_string())
    }
}

fn type_from_db(s: &str) -> Result<SchemaType, CatalogError> {
    SchemaType::parse(Some(s))
        .map_err(|_| CatalogError::Corrupt(format!("bad schema type {s:?} in the registry")))
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

fn id32(v: i64, what: &str) -> Result<u32, CatalogError> {
    u32::try_from(v).map_err(|_| CatalogError::Corrupt(format!("bad {what} {v} in the registry")))
}

/// A `registry_meta` value; `lock` is the row lock clause to read it with.
fn meta(tx: &mut dyn Tx, key: &str, lock: &str) -> Result<Option<i64>, CatalogError> {
    tx.query_opt(
        &format!("SELECT value FROM registry_meta WHERE key = $1{lock}"),
        params![key],
    )?
    .map(|r| r.int(0))
    .transpose()
}

fn set_meta(tx: &mut dyn Tx, key: &str, value: i64) -> Result<(), CatalogError> {
    tx.execute(
        "INSERT INTO registry_meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Everything, as of one moment: the version row is read first under a
/// shared lock, which every writer's exclusive lock waits for, so no write
/// lands between the statements that follow.
fn load_snapshot(tx: &mut dyn Tx) -> Result<Snapshot, CatalogError> {
    let mut snap = Snapshot::default();
    let share = tx.dialect().for_share();
    snap.version = meta(tx, "version", share)?.unwrap_or(0).max(0) as u64;
    for r in tx.query(
        "SELECT id, schema_type, schema, canonical, refs FROM registry_schemas",
        &[],
    )? {
        let id = id32(r.int(0)?, "schema id")?;
        let references: Vec<SchemaReference> = serde_json::from_str(&r.text(4)?)
            .map_err(|e| CatalogError::Corrupt(format!("bad references of schema {id}: {e}")))?;
        snap.schemas.push(StoredSchema {
            id,
            schema_type: type_from_db(&r.text(1)?)?,
            schema: r.text(2)?,
            canonical: r.text(3)?,
            references,
        });
    }
    for r in tx.query(
        "SELECT subject, version, schema_id, deleted FROM registry_versions",
        &[],
    )? {
        snap.versions.push((
            r.text(0)?,
            VersionEntry {
                version: id32(r.int(1)?, "version")?,
                id: id32(r.int(2)?, "schema id")?,
                deleted: r.int(3)? != 0,
            },
        ));
    }
    for r in tx.query("SELECT subject, compatibility FROM registry_config", &[])? {
        let level = r.text(1)?;
        let level = level
            .parse()
            .map_err(|_| CatalogError::Corrupt(format!("bad compatibility {level:?}")))?;
        snap.configs.push((subject_from_key(r.text(0)?), level));
    }
    for r in tx.query("SELECT subject, mode FROM registry_mode", &[])? {
        let mode = r.text(1)?;
        let mode = mode
            .parse()
            .map_err(|_| CatalogError::Corrupt(format!("bad mode {mode:?}")))?;
        snap.modes.push((subject_from_key(r.text(0)?), mode));
    }
    let max_id = snap.schemas.iter().map(|s| s.id).max().unwrap_or(0);
    let next = meta(tx, "next_id", "")?
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(1);
    snap.next_id = next.max(max_id.saturating_add(1)).max(1);
    Ok(snap)
}

fn apply_op(tx: &mut dyn Tx, op: &StoreOp) -> Result<(), CatalogError> {
    match op {
        StoreOp::PutSchema(s) => {
            let refs = serde_json::to_string(&s.references)
                .map_err(|e| CatalogError::Corrupt(e.to_string()))?;
            tx.execute(
                "INSERT INTO registry_schemas (id, schema_type, schema, canonical, refs)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET schema_type = excluded.schema_type,
                   schema = excluded.schema, canonical = excluded.canonical, refs = excluded.refs",
                params![
                    s.id,
                    s.schema_type.as_str(),
                    s.schema.as_str(),
                    s.canonical.as_str(),
                    refs
                ],
            )?;
        }
        StoreOp::DeleteSchema(id) => {
            tx.execute("DELETE FROM registry_schemas WHERE id = $1", params![*id])?;
        }
        StoreOp::PutVersion { subject, entry } => {
            tx.execute(
                "INSERT INTO registry_versions (subject, version, schema_id, deleted)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (subject, version) DO UPDATE SET schema_id = excluded.schema_id,
                   deleted = excluded.deleted",
                params![subject.as_str(), entry.version, entry.id, entry.deleted],
            )?;
        }
        StoreOp::DeleteVersion { subject, version } => {
            tx.execute(
                "DELETE FROM registry_versions WHERE subject = $1 AND version = $2",
                params![subject.as_str(), *version],
            )?;
        }
        StoreOp::SetConfig { subject, level } => match level {
            Some(l) => {
                tx.execute(
                    "INSERT INTO registry_config (subject, compatibility) VALUES ($1, $2)
                     ON CONFLICT (subject) DO UPDATE SET compatibility = excluded.compatibility",
                    params![subject_key(subject), l.as_str()],
                )?;
            }
            None => {
                tx.execute(
                    "DELETE FROM registry_config WHERE subject = $1",
                    params![subject_key(subject)],
                )?;
            }
        },
        StoreOp::SetMode { subject, mode } => match mode {
            Some(m) => {
                tx.execute(
                    "INSERT INTO registry_mode (subject, mode) VALUES ($1, $2)
                     ON CONFLICT (subject) DO UPDATE SET mode = excluded.mode",
                    params![subject_key(subject), m.as_str()],
                )?;
            }
            None => {
                tx.execute(
                    "DELETE FROM registry_mode WHERE subject = $1",
                    params![subject_key(subject)],
                )?;
            }
        },
        StoreOp::SetNextId(n) => set_meta(tx, "next_id", *n as i64)?,
    }
    Ok(())
}

impl SchemaStore for CatalogStore {
    fn load(&mut self) -> Result<Snapshot, RegistryError> {
        // A transaction, for the lock that makes the snapshot consistent.
        Ok(write(&*self.db, load_snapshot)?)
    }

    fn apply(&mut self, version: u64, ops: &[StoreOp]) -> Result<u64, RegistryError> {
        let outcome = write(&*self.db, |tx| {
            let lock = tx.dialect().for_update();
            let current = meta(tx, "version", lock)?.unwrap_or(0).max(0) as u64;
            if current != version {
                return Ok(None);
            }
            for op in ops {
                apply_op(tx, op)?;
            }
            set_meta(tx, "version", version as i64 + 1)?;
            MetaChange::Registry.send(tx)?;
            Ok(Some(version + 1))
        })?;
        outcome.ok_or(RegistryError::Stale)
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

    fn apply(&mut self, version: u64, ops: &[StoreOp]) -> Result<u64, RegistryError> {
        if version != self.snapshot.version {
            return Err(RegistryError::Stale);
        }
        self.snapshot.version += 1;
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
        Ok(self.snapshot.version)
    }
}
