//! The registry itself: subjects, versions, globally unique schema ids,
//! deduplication, soft/permanent deletes, references, compatibility and
//! mode configuration, with Confluent's semantics. Working state lives in
//! memory (rebuilt from the store at open); every change is written
//! through the store in one atomic batch before it becomes visible.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::RegistryError;
use crate::model::{
    CompatibilityLevel, Mode, SchemaReference, SchemaType, StoredSchema, VersionEntry, VersionSel,
};
use crate::schema::{Dep, Parsed};
use crate::store::{CatalogStore, MemoryStore, SchemaStore, Snapshot, StoreOp};

/// A schema as submitted to register, look up or check.
#[derive(Debug, Clone)]
pub struct SchemaRequest {
    pub schema: String,
    pub schema_type: SchemaType,
    pub references: Vec<SchemaReference>,
    /// IMPORT mode only: the id to register under.
    pub id: Option<u32>,
    /// IMPORT mode only: the version to register as.
    pub version: Option<u32>,
}

impl SchemaRequest {
    pub fn new(schema_type: SchemaType, schema: impl Into<String>) -> Self {
        SchemaRequest {
            schema: schema.into(),
            schema_type,
            references: Vec::new(),
            id: None,
            version: None,
        }
    }
}

/// One subject version with its schema.
#[derive(Debug, Clone)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub deleted: bool,
    pub schema: Arc<StoredSchema>,
}

/// The outcome of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub id: u32,
    pub version: u32,
    /// False when the subject already had this schema.
    pub created: bool,
}

type ContentKey = (SchemaType, String, Vec<SchemaReference>);

#[derive(Default)]
pub(crate) struct State {
    pub(crate) schemas: BTreeMap<u32, Arc<StoredSchema>>,
    by_content: HashMap<ContentKey, u32>,
    /// Versions of each subject, ascending.
    pub(crate) subjects: BTreeMap<String, Vec<VersionEntry>>,
    /// Subjects with a live (not soft-deleted) version of each id.
    pub(crate) id_subjects: HashMap<u32, Vec<String>>,
    global_level: Option<CompatibilityLevel>,
    subject_level: HashMap<String, CompatibilityLevel>,
    global_mode: Option<Mode>,
    subject_mode: HashMap<String, Mode>,
    next_id: u32,
}

fn content_key(s: &StoredSchema) -> ContentKey {
    (s.schema_type, s.canonical.clone(), s.references.clone())
}

impl State {
    fn apply(&mut self, ops: &[StoreOp]) {
        for op in ops {
            match op {
                StoreOp::PutSchema(s) => {
                    self.by_content.insert(content_key(s), s.id);
                    self.schemas.insert(s.id, Arc::new(s.clone()));
                }
                StoreOp::DeleteSchema(id) => {
                    if let Some(s) = self.schemas.remove(id) {
                        self.by_content.remove(&content_key(&s));
                    }
                }
                StoreOp::PutVersion { subject, entry } => {
                    let list = self.subjects.entry(subject.clone()).or_default();
                    match list.binary_search_by_key(&entry.version, |e| e.version) {
                        Ok(i) => list[i] = *entry,
                        Err(i) => list.insert(i, *entry),
                    }
                }
                StoreOp::DeleteVersion { subject, version } => {
                    if let Some(list) = self.subjects.get_mut(subject) {
                        list.retain(|e| e.version != *version);
                        if list.is_empty() {
                            self.subjects.remove(subject);
                        }
                    }
                }
                StoreOp::SetConfig { subject, level } => match (subject, level) {
                    (None, l) => self.global_level = *l,
                    (Some(s), Some(l)) => {
                        self.subject_level.insert(s.clone(), *l);
                    }
                    (Some(s), None) => {
                        self.subject_level.remove(s);
                    }
                },
                StoreOp::SetMode { subject, mode } => match (subject, mode) {
                    (None, m) => self.global_mode = *m,
                    (Some(s), Some(m)) => {
                        self.subject_mode.insert(s.clone(), *m);
                    }
                    (Some(s), None) => {
                        self.subject_mode.remove(s);
                    }
                },
                StoreOp::SetNextId(n) => self.next_id = *n,
            }
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        self.id_subjects.clear();
        for (subject, list) in &self.subjects {
            for e in list.iter().filter(|e| !e.deleted) {
                let subs = self.id_subjects.entry(e.id).or_default();
                if !subs.contains(subject) {
                    subs.push(subject.clone());
                }
            }
        }
    }

    fn level(&self, subject: Option<&str>) -> CompatibilityLevel {
        subject
            .and_then(|s| self.subject_level.get(s).copied())
            .or(self.global_level)
            .unwrap_or(CompatibilityLevel::DEFAULT)
    }

    fn mode(&self, subject: Option<&str>) -> Mode {
        subject
            .and_then(|s| self.subject_mode.get(s).copied())
            .or(self.global_mode)
            .unwrap_or(Mode::ReadWrite)
    }

    fn live_versions(&self, subject: &str) -> Vec<VersionEntry> {
        self.subjects
            .get(subject)
            .map(|l| l.iter().filter(|e| !e.deleted).copied().collect())
            .unwrap_or_default()
    }

    /// The version a selector names among live versions, or among all when
    /// `deleted`.
    fn select(
        &self,
        subject: &str,
        sel: VersionSel,
        deleted: bool,
    ) -> Result<VersionEntry, RegistryError> {
        let list = self
            .subjects
            .get(subject)
            .filter(|l| deleted || l.iter().any(|e| !e.deleted))
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let found = match sel {
            VersionSel::Latest => list.iter().rev().find(|e| deleted || !e.deleted),
            VersionSel::Number(n) => list
                .iter()
                .find(|e| e.version == n && (deleted || !e.deleted)),
        };
        found
            .copied()
            .ok_or_else(|| RegistryError::VersionNotFound {
                subject: subject.to_string(),
                version: sel.to_string(),
            })
    }

    /// Flattens references (dependencies first), each once.
    fn resolve_deps(&self, refs: &[SchemaReference]) -> Result<Vec<Dep>, RegistryError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        self.resolve_into(refs, &mut out, &mut seen, 0)?;
        Ok(out)
    }

    fn resolve_into(
        &self,
        refs: &[SchemaReference],
        out: &mut Vec<Dep>,
        seen: &mut BTreeSet<String>,
        depth: u32,
    ) -> Result<(), RegistryError> {
        if depth > 32 {
            return Err(RegistryError::InvalidSchema(
                "references nest too deeply".into(),
            ));
        }
        for r in refs {
            if seen.contains(&r.name) {
                continue;
            }
            let entry = self
                .subjects
                .get(&r.subject)
                .and_then(|l| l.iter().find(|e| e.version == r.version))
                .ok_or_else(|| {
                    RegistryError::InvalidSchema(format!(
                        "Invalid schema reference {{name={}, subject={}, version={}}}: not found",
                        r.name, r.subject, r.version
                    ))
                })?;
            let schema = self.schemas.get(&entry.id).ok_or_else(|| {
                RegistryError::Store(format!(
                    "schema {} of {}/{} missing",
                    entry.id, r.subject, r.version
                ))
            })?;
            seen.insert(r.name.clone());
            self.resolve_into(&schema.references, out, seen, depth + 1)?;
            out.push(Dep {
                name: r.name.clone(),
                text: schema.schema.clone(),
            });
        }
        Ok(())
    }

    /// Is (subject, version) referenced by a schema that still has a live
    /// version somewhere?
    fn is_referenced(&self, subject: &str, version: u32) -> bool {
        self.schemas.values().any(|s| {
            self.id_subjects.contains_key(&s.id)
                && s.references
                    .iter()
                    .any(|r| r.subject == subject && r.version == version)
        })
    }
}

pub(crate) struct Inner {
    pub(crate) state: RwLock<State>,
    /// Held by writers for the whole read-check-write of one operation.
    store: Mutex<Writer>,
    parsed: RwLock<HashMap<u32, Arc<Parsed>>>,
    /// When a lookup miss last reloaded the state (ms since the epoch).
    last_miss_reload_ms: std::sync::atomic::AtomicI64,
}

/// How often a lookup of an unknown id may reload the state.
const MISS_RELOAD_MS: i64 = 100;

impl Inner {
    fn may_reload_on_miss(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let last = self.last_miss_reload_ms.load(Ordering::Acquire);
        now - last >= MISS_RELOAD_MS
            && self
                .last_miss_reload_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

/// The store and the version of it the in-memory state reflects.
pub(crate) struct Writer {
    store: Box<dyn SchemaStore>,
    version: u64,
}

/// How often a change is computed again after another broker's change got
/// to the store first.
const STALE_RETRIES: usize = 5;

/// The schema registry. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

/// The in-memory state a store snapshot describes.
fn state_of(snap: Snapshot) -> State {
    let mut ops = Vec::new();
    ops.extend(snap.schemas.into_iter().map(StoreOp::PutSchema));
    ops.extend(
        snap.versions
            .into_iter()
            .map(|(subject, entry)| StoreOp::PutVersion { subject, entry }),
    );
    ops.extend(
        snap.configs
            .into_iter()
            .map(|(subject, l)| StoreOp::SetConfig {
                subject,
                level: Some(l),
            }),
    );
    ops.extend(snap.modes.into_iter().map(|(subject, m)| StoreOp::SetMode {
        subject,
        mode: Some(m),
    }));
    ops.push(StoreOp::SetNextId(snap.next_id.max(1)));
    let mut state = State::default();
    state.apply(&ops);
    state
}

fn check_subject(subject: &str) -> Result<(), RegistryError> {
    if subject.is_empty() || subject.len() > 1024 || subject.chars().any(|c| c.is_control()) {
        return Err(RegistryError::InvalidSubject(subject.to_string()));
    }
    Ok(())
}

impl Registry {
    /// A registry over the catalog's `registry_*` tables (the catalog's
    /// migrations create them), in whatever engine the catalog uses.
    pub fn open(db: Arc<dyn sluice_catalog::Db>) -> Result<Registry, RegistryError> {
        Self::with_store(Box::new(CatalogStore::new(db)))
    }

    /// A registry that keeps nothing on disk.
    pub fn in_memory() -> Result<Registry, RegistryError> {
        Self::with_store(Box::<MemoryStore>::default())
    }

    /// A registry over any storage engine.
    pub fn with_store(mut store: Box<dyn SchemaStore>) -> Result<Registry, RegistryError> {
        let snap = store.load()?;
        let version = snap.version;
        Ok(Registry {
            inner: Arc::new(Inner {
                state: RwLock::new(state_of(snap)),
                store: Mutex::new(Writer { store, version }),
                parsed: RwLock::new(HashMap::new()),
                last_miss_reload_ms: std::sync::atomic::AtomicI64::new(0),
            }),
        })
    }

    /// Reloads the state if the store changed behind this registry's back
    /// (another broker of a cluster wrote to it).
    pub fn reload(&self) -> Result<(), RegistryError> {
        let mut w = self.inner.store.lock();
        self.reload_locked(&mut w)
    }

    fn reload_locked(&self, w: &mut Writer) -> Result<(), RegistryError> {
        let snap = w.store.load()?;
        if snap.version == w.version {
            return Ok(());
        }
        w.version = snap.version;
        *self.inner.state.write() = state_of(snap);
        self.inner.parsed.write().clear();
        Ok(())
    }

    /// Runs a write operation, again on fresh state when another writer
    /// changed the store first.
    fn retrying<T>(&self, op: impl Fn() -> Result<T, RegistryError>) -> Result<T, RegistryError> {
        for _ in 0..STALE_RETRIES {
            match op() {
                Err(RegistryError::Stale) => continue,
                other => return other,
            }
        }
        op()
    }

    /// Writes `ops` to the store, then applies them to the in-memory state;
    /// [`RegistryError::Stale`] (with the state reloaded) when another
    /// writer changed the store since this state was loaded.
    fn commit(&self, w: &mut Writer, ops: Vec<StoreOp>) -> Result<(), RegistryError> {
        if ops.is_empty() {
            return Ok(());
        }
        match w.store.apply(w.version, &ops) {
            Ok(v) => w.version = v,
            Err(RegistryError::Stale) => {
                self.reload_locked(w)?;
                return Err(RegistryError::Stale);
            }
            Err(e) => return Err(e),
        }
        let mut parsed = self.inner.parsed.write();
        for op in &ops {
            if let StoreOp::DeleteSchema(id) = op {
                parsed.remove(id);
            }
        }
        drop(parsed);
        self.inner.state.write().apply(&ops);
        Ok(())
    }

    /// The parsed form of a registered schema (cached by id).
    pub fn parsed(&self, id: u32) -> Result<Arc<Parsed>, RegistryError> {
        if let Some(p) = self.inner.parsed.read().get(&id) {
            return Ok(p.clone());
        }
        let (stored, deps) = {
            let st = self.inner.state.read();
            let s = st
                .schemas
                .get(&id)
                .cloned()
                .ok_or_else(|| RegistryError::SchemaNotFound(id.to_string()))?;
            let deps = st.resolve_deps(&s.references)?;
            (s, deps)
        };
        let p = Arc::new(Parsed::parse(stored.schema_type, &stored.schema, &deps)?);
        self.inner.parsed.write().insert(id, p.clone());
        Ok(p)
    }

    fn parse_request(&self, req: &SchemaRequest) -> Result<Parsed, RegistryError> {
        let deps = self.inner.state.read().resolve_deps(&req.references)?;
        Parsed::parse(req.schema_type, &req.schema, &deps)
    }

    fn compat_errors(
        &self,
        new: &Parsed,
        previous: &[VersionEntry],
        level: CompatibilityLevel,
    ) -> Result<Vec<String>, RegistryError> {
        if level == CompatibilityLevel::None || previous.is_empty() {
            return Ok(Vec::new());
        }
        let targets: &[VersionEntry] = if level.is_transitive() {
            previous
        } else {
            &previous[previous.len() - 1..]
        };
        let mut errs = Vec::new();
        for t in targets.iter().rev() {
            let old = self.parsed(t.id)?;
            if level.checks_backward() {
                errs.extend(Parsed::can_read(new, &old));
            }
            if level.checks_forward() {
                errs.extend(Parsed::can_read(&old, new));
            }
        }
        errs.dedup();
        Ok(errs)
    }

    // -- schemas -----------------------------------------------------------

    /// Registers a schema under a subject (`POST /subjects/{s}/versions`).
    pub fn register(
        &self,
        subject: &str,
        req: &SchemaRequest,
        normalize: bool,
    ) -> Result<Registered, RegistryError> {
        self.retrying(|| self.register_once(subject, req, normalize))
    }

    fn register_once(
        &self,
        subject: &str,
        req: &SchemaRequest,
        normalize: bool,
    ) -> Result<Registered, RegistryError> {
        check_subject(subject)?;
        let mut store = self.inner.store.lock();
        let mode = self.inner.state.read().mode(Some(subject));
        if mode.is_read_only() {
            return Err(RegistryError::OperationNotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        let parsed = self.parse_request(req)?;
        let canonical = parsed.canonical().to_string();
        let stored_text = match req.schema_type {
            // Confluent returns the canonical text for Avro and JSON.
            SchemaType::Avro | SchemaType::Json => canonical.clone(),
            // Descriptors (what the Python serializer sends) are stored as
            // the `.proto` text they render to, like Confluent.
            SchemaType::Protobuf => parsed
                .rendered_text()
                .map(str::to_string)
                .unwrap_or_else(|| req.schema.clone()),
        };
        let key: ContentKey = (req.schema_type, canonical.clone(), req.references.clone());
        let _ = normalize; // canonical forms are always used for matching

        let st = self.inner.state.read();
        let live = st.live_versions(subject);
        if req.version.is_none() {
            if let Some(e) = live
                .iter()
                .rev()
                .find(|e| st.schemas.get(&e.id).is_some_and(|s| content_key(s) == key))
            {
                if req.id.is_none_or(|id| id == e.id) {
                    return Ok(Registered {
                        id: e.id,
                        version: e.version,
                        created: false,
                    });
                }
            }
        }
        let existing_id = st.by_content.get(&key).copied();
        let (id, new_schema) = match (mode, req.id) {
            (Mode::Import, Some(want)) => {
                if let Some(s) = st.schemas.get(&want) {
                    if content_key(s) != key {
                        return Err(RegistryError::IdDoesNotMatch(format!(
                            "Overwrite new schema with id {want} is not permitted."
                        )));
                    }
                    (want, false)
                } else {
                    (want, true)
                }
            }
            (Mode::Import, None) => {
                return Err(RegistryError::OperationNotPermitted(format!(
                    "Subject {subject} is in import mode: a schema id is required"
                )))
            }
            (_, Some(want)) if existing_id != Some(want) => {
                return Err(RegistryError::OperationNotPermitted(format!(
                    "Schema id {want} given but subject {subject} is not in import mode"
                )))
            }
            _ => match existing_id {
                Some(id) => (id, false),
                None => (st.next_id, true),
            },
        };
        if mode != Mode::Import {
            let level = st.level(Some(subject));
            drop(st);
            let errs = self.compat_errors(&parsed, &live, level)?;
            if !errs.is_empty() {
                return Err(RegistryError::Incompatible {
                    subject: subject.to_string(),
                    messages: errs,
                });
            }
        } else {
            drop(st);
        }
        let st = self.inner.state.read();
        let all = st.subjects.get(subject).cloned().unwrap_or_default();
        let version = match req.version.filter(|_| mode == Mode::Import) {
            Some(v) => {
                if all.iter().any(|e| e.version == v) {
                    return Err(RegistryError::OperationNotPermitted(format!(
                        "Version {v} already exists in subject {subject}"
                    )));
                }
                v
            }
            None => all.last().map(|e| e.version + 1).unwrap_or(1),
        };
        let next_id = st.next_id.max(id.saturating_add(1));
        drop(st);
        let mut ops = Vec::new();
        if new_schema {
            ops.push(StoreOp::PutSchema(StoredSchema {
                id,
                schema_type: req.schema_type,
                schema: stored_text,
                canonical,
                references: req.references.clone(),
            }));
            ops.push(StoreOp::SetNextId(next_id));
        }
        ops.push(StoreOp::PutVersion {
            subject: subject.to_string(),
            entry: VersionEntry {
                version,
                id,
                deleted: false,
            },
        });
        self.commit(&mut store, ops)?;
        self.inner
            .parsed
            .write()
            .entry(id)
            .or_insert_with(|| Arc::new(parsed));
        Ok(Registered {
            id,
            version,
            created: true,
        })
    }

    /// Finds the version of `subject` holding this schema (`POST /subjects/{s}`).
    pub fn lookup(
        &self,
        subject: &str,
        req: &SchemaRequest,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let parsed = self.parse_request(req)?;
        let key: ContentKey = (
            req.schema_type,
            parsed.canonical().to_string(),
            req.references.clone(),
        );
        let st = self.inner.state.read();
        let list = st
            .subjects
            .get(subject)
            .filter(|l| deleted || l.iter().any(|e| !e.deleted))
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        for e in list.iter().rev().filter(|e| deleted || !e.deleted) {
            if let Some(s) = st.schemas.get(&e.id) {
                if content_key(s) == key {
                    return Ok(SubjectVersion {
                        subject: subject.to_string(),
                        version: e.version,
                        id: e.id,
                        deleted: e.deleted,
                        schema: s.clone(),
                    });
                }
            }
        }
        Err(RegistryError::SchemaNotFound("".into()))
    }

    pub fn schema_by_id(&self, id: u32) -> Result<Arc<StoredSchema>, RegistryError> {
        let known = |reg: &Self| reg.inner.state.read().schemas.get(&id).cloned();
        if let Some(s) = known(self) {
            return Ok(s);
        }
        // In a cluster another broker may have registered it a moment ago,
        // its notification not here yet: an id above every known one is
        // read through from the store (at most every MISS_RELOAD_MS, so
        // asking for made-up ids cannot turn into a stream of reloads).
        let newest = self
            .inner
            .state
            .read()
            .schemas
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        if id > newest && self.inner.may_reload_on_miss() {
            if let Err(e) = self.reload() {
                tracing::warn!(error = %e, "reloading the schema registry after a miss failed");
            }
            if let Some(s) = known(self) {
                return Ok(s);
            }
        }
        Err(RegistryError::SchemaNotFound(id.to_string()))
    }

    /// All schemas (latest version only per subject unless `all`).
    pub fn schemas(&self) -> Vec<Arc<StoredSchema>> {
        self.inner.state.read().schemas.values().cloned().collect()
    }

    /// Subjects with a version of this id (`GET /schemas/ids/{id}/subjects`).
    pub fn subjects_for_id(&self, id: u32, deleted: bool) -> Result<Vec<String>, RegistryError> {
        Ok(self
            .versions_for_id(id, deleted)?
            .into_iter()
            .map(|(s, _)| s)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect())
    }

    /// (subject, version) pairs holding this id.
    pub fn versions_for_id(
        &self,
        id: u32,
        deleted: bool,
    ) -> Result<Vec<(String, u32)>, RegistryError> {
        let st = self.inner.state.read();
        if !st.schemas.contains_key(&id) {
            return Err(RegistryError::SchemaNotFound(id.to_string()));
        }
        let mut out = Vec::new();
        for (s, list) in &st.subjects {
            for e in list
                .iter()
                .filter(|e| e.id == id && (deleted || !e.deleted))
            {
                out.push((s.clone(), e.version));
            }
        }
        Ok(out)
    }

    // -- subjects ----------------------------------------------------------

    /// `GET /subjects`.
    pub fn subjects(&self, deleted: bool, deleted_only: bool, prefix: Option<&str>) -> Vec<String> {
        let st = self.inner.state.read();
        st.subjects
            .iter()
            .filter(|(s, _)| prefix.is_none_or(|p| s.starts_with(p)))
            .filter(|(_, l)| {
                let live = l.iter().any(|e| !e.deleted);
                if deleted_only {
                    l.iter().any(|e| e.deleted)
                } else {
                    live || deleted
                }
            })
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// `GET /subjects/{s}/versions`.
    pub fn versions(
        &self,
        subject: &str,
        deleted: bool,
        deleted_only: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let st = self.inner.state.read();
        let list = st
            .subjects
            .get(subject)
            .filter(|l| deleted || deleted_only || l.iter().any(|e| !e.deleted))
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        Ok(list
            .iter()
            .filter(|e| {
                if deleted_only {
                    e.deleted
                } else {
                    deleted || !e.deleted
                }
            })
            .map(|e| e.version)
            .collect())
    }

    /// `GET /subjects/{s}/versions/{v}`.
    pub fn version(
        &self,
        subject: &str,
        sel: VersionSel,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let st = self.inner.state.read();
        let e = st.select(subject, sel, deleted)?;
        let schema = st
            .schemas
            .get(&e.id)
            .cloned()
            .ok_or_else(|| RegistryError::SchemaNotFound(e.id.to_string()))?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version: e.version,
            id: e.id,
            deleted: e.deleted,
            schema,
        })
    }

    /// Ids of live schemas that reference `subject`/`version`.
    pub fn referenced_by(&self, subject: &str, sel: VersionSel) -> Result<Vec<u32>, RegistryError> {
        let st = self.inner.state.read();
        let e = st.select(subject, sel, true)?;
        Ok(st
            .schemas
            .values()
            .filter(|s| {
                st.id_subjects.contains_key(&s.id)
                    && s.references
                        .iter()
                        .any(|r| r.subject == subject && r.version == e.version)
            })
            .map(|s| s.id)
            .collect())
    }

    fn check_writable(&self, subject: &str) -> Result<(), RegistryError> {
        if self.inner.state.read().mode(Some(subject)).is_read_only() {
            return Err(RegistryError::OperationNotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        Ok(())
    }

    /// Ops removing schemas no version points at any more once `removed`
    /// (subject, version) rows are gone.
    fn orphan_ops(st: &State, removed: &[(String, VersionEntry)]) -> Vec<StoreOp> {
        let mut ops = Vec::new();
        let ids: BTreeSet<u32> = removed.iter().map(|(_, e)| e.id).collect();
        for id in ids {
            let still_used = st.subjects.iter().any(|(s, l)| {
                l.iter().any(|e| {
                    e.id == id
                        && !removed
                            .iter()
                            .any(|(rs, re)| rs == s && re.version == e.version)
                })
            });
            if !still_used {
                ops.push(StoreOp::DeleteSchema(id));
            }
        }
        ops
    }

    /// `DELETE /subjects/{s}[?permanent=true]`: the versions deleted.
    pub fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        self.retrying(|| self.delete_subject_once(subject, permanent))
    }

    fn delete_subject_once(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let mut store = self.inner.store.lock();
        self.check_writable(subject)?;
        let st = self.inner.state.read();
        let list = st
            .subjects
            .get(subject)
            .cloned()
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        for e in &list {
            if st.is_referenced(subject, e.version) {
                return Err(RegistryError::ReferenceExists {
                    subject: subject.to_string(),
                    version: e.version,
                });
            }
        }
        let live: Vec<VersionEntry> = list.iter().filter(|e| !e.deleted).copied().collect();
        let mut ops = Vec::new();
        let versions: Vec<u32> = if permanent {
            if !live.is_empty() {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_string()));
            }
            let removed: Vec<(String, VersionEntry)> =
                list.iter().map(|e| (subject.to_string(), *e)).collect();
            for (s, e) in &removed {
                ops.push(StoreOp::DeleteVersion {
                    subject: s.clone(),
                    version: e.version,
                });
            }
            ops.extend(Self::orphan_ops(&st, &removed));
            ops.push(StoreOp::SetConfig {
                subject: Some(subject.to_string()),
                level: None,
            });
            ops.push(StoreOp::SetMode {
                subject: Some(subject.to_string()),
                mode: None,
            });
            list.iter().map(|e| e.version).collect()
        } else {
            if live.is_empty() {
                return Err(RegistryError::SubjectSoftDeleted(subject.to_string()));
            }
            for e in &live {
                ops.push(StoreOp::PutVersion {
                    subject: subject.to_string(),
                    entry: VersionEntry {
                        deleted: true,
                        ..*e
                    },
                });
            }
            live.iter().map(|e| e.version).collect()
        };
        drop(st);
        self.commit(&mut store, ops)?;
        Ok(versions)
    }

    /// `DELETE /subjects/{s}/versions/{v}[?permanent=true]`: the version deleted.
    pub fn delete_version(
        &self,
        subject: &str,
        sel: VersionSel,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        self.retrying(|| self.delete_version_once(subject, sel, permanent))
    }

    fn delete_version_once(
        &self,
        subject: &str,
        sel: VersionSel,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        let mut store = self.inner.store.lock();
        self.check_writable(subject)?;
        let st = self.inner.state.read();
        let list = st
            .subjects
            .get(subject)
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let e = match sel {
            VersionSel::Latest => list.iter().rev().find(|e| permanent || !e.deleted),
            VersionSel::Number(n) => list.iter().find(|e| e.version == n),
        }
        .copied()
        .ok_or_else(|| RegistryError::VersionNotFound {
            subject: subject.to_string(),
            version: sel.to_string(),
        })?;
        if st.is_referenced(subject, e.version) {
            return Err(RegistryError::ReferenceExists {
                subject: subject.to_string(),
                version: e.version,
            });
        }
        let mut ops = Vec::new();
        if permanent {
            if !e.deleted {
                return Err(RegistryError::VersionNotSoftDeleted {
                    subject: subject.to_string(),
                    version: e.version,
                });
            }
            ops.push(StoreOp::DeleteVersion {
                subject: subject.to_string(),
                version: e.version,
            });
            ops.extend(Self::orphan_ops(&st, &[(subject.to_string(), e)]));
        } else {
            if e.deleted {
                return Err(RegistryError::VersionSoftDeleted {
                    subject: subject.to_string(),
                    version: e.version,
                });
            }
            ops.push(StoreOp::PutVersion {
                subject: subject.to_string(),
                entry: VersionEntry { deleted: true, ..e },
            });
        }
        drop(st);
        self.commit(&mut store, ops)?;
        Ok(e.version)
    }

    /// Compatibility of a candidate schema with one version of a subject
    /// (`Some(sel)`) or with the versions the subject's level names
    /// (`None`). Empty = compatible.
    pub fn check_compatibility(
        &self,
        subject: &str,
        sel: Option<VersionSel>,
        req: &SchemaRequest,
    ) -> Result<Vec<String>, RegistryError> {
        let parsed = self.parse_request(req)?;
        let (targets, level) = {
            let st = self.inner.state.read();
            let level = st.level(Some(subject));
            let targets = match sel {
                Some(sel) => vec![st.select(subject, sel, false)?],
                None => st.live_versions(subject),
            };
            (targets, level)
        };
        let level = match (sel, level) {
            // Against one given version the transitive flag is moot.
            (Some(_), CompatibilityLevel::BackwardTransitive) => CompatibilityLevel::Backward,
            (Some(_), CompatibilityLevel::ForwardTransitive) => CompatibilityLevel::Forward,
            (Some(_), CompatibilityLevel::FullTransitive) => CompatibilityLevel::Full,
            (_, l) => l,
        };
        self.compat_errors(&parsed, &targets, level)
    }

    // -- config and mode ---------------------------------------------------

    /// The compatibility level: global (`None`), or a subject's own (error
    /// 40408 when it has none, unless `default_to_global`).
    pub fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel, RegistryError> {
        let st = self.inner.state.read();
        match subject {
            None => Ok(st.level(None)),
            Some(s) => match st.subject_level.get(s) {
                Some(l) => Ok(*l),
                None if default_to_global => Ok(st.level(None)),
                None => Err(RegistryError::SubjectCompatibilityNotConfigured(
                    s.to_string(),
                )),
            },
        }
    }

    /// The level that applies to a subject (its own, else global).
    pub fn effective_config(&self, subject: &str) -> CompatibilityLevel {
        self.inner.state.read().level(Some(subject))
    }

    pub fn set_config(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        self.retrying(|| self.set_config_once(subject, level))
    }

    fn set_config_once(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        if let Some(s) = subject {
            check_subject(s)?;
        }
        let mut store = self.inner.store.lock();
        self.commit(
            &mut store,
            vec![StoreOp::SetConfig {
                subject: subject.map(str::to_string),
                level: Some(level),
            }],
        )
    }

    /// Removes a level; returns the one that was set.
    pub fn delete_config(
        &self,
        subject: Option<&str>,
    ) -> Result<CompatibilityLevel, RegistryError> {
        self.retrying(|| self.delete_config_once(subject))
    }

    fn delete_config_once(
        &self,
        subject: Option<&str>,
    ) -> Result<CompatibilityLevel, RegistryError> {
        let mut store = self.inner.store.lock();
        let prev = {
            let st = self.inner.state.read();
            match subject {
                None => st.level(None),
                Some(s) => *st.subject_level.get(s).ok_or_else(|| {
                    RegistryError::SubjectCompatibilityNotConfigured(s.to_string())
                })?,
            }
        };
        self.commit(
            &mut store,
            vec![StoreOp::SetConfig {
                subject: subject.map(str::to_string),
                level: None,
            }],
        )?;
        Ok(prev)
    }

    pub fn mode(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<Mode, RegistryError> {
        let st = self.inner.state.read();
        match subject {
            None => Ok(st.mode(None)),
            Some(s) => match st.subject_mode.get(s) {
                Some(m) => Ok(*m),
                None if default_to_global => Ok(st.mode(None)),
                None => Err(RegistryError::SubjectModeNotConfigured(s.to_string())),
            },
        }
    }

    pub fn set_mode(
        &self,
        subject: Option<&str>,
        mode: Mode,
        force: bool,
    ) -> Result<(), RegistryError> {
        self.retrying(|| self.set_mode_once(subject, mode, force))
    }

    fn set_mode_once(
        &self,
        subject: Option<&str>,
        mode: Mode,
        force: bool,
    ) -> Result<(), RegistryError> {
        if let Some(s) = subject {
            check_subject(s)?;
        }
        let mut store = self.inner.store.lock();
        if mode == Mode::Import && !force {
            let st = self.inner.state.read();
            let non_empty = match subject {
                None => st.subjects.values().any(|l| l.iter().any(|e| !e.deleted)),
                Some(s) => st
                    .subjects
                    .get(s)
                    .is_some_and(|l| l.iter().any(|e| !e.deleted)),
            };
            if non_empty {
                return Err(RegistryError::OperationNotPermitted(
                    "Cannot import since found existing subjects".into(),
                ));
            }
        }
        self.commit(
            &mut store,
            vec![StoreOp::SetMode {
                subject: subject.map(str::to_string),
                mode: Some(mode),
            }],
        )
    }

    pub fn delete_mode(&self, subject: Option<&str>) -> Result<Mode, RegistryError> {
        self.retrying(|| self.delete_mode_once(subject))
    }

    fn delete_mode_once(&self, subject: Option<&str>) -> Result<Mode, RegistryError> {
        let mut store = self.inner.store.lock();
        let prev = {
            let st = self.inner.state.read();
            match subject {
                None => st.mode(None),
                Some(s) => *st
                    .subject_mode
                    .get(s)
                    .ok_or_else(|| RegistryError::SubjectModeNotConfigured(s.to_string()))?,
            }
        };
        self.commit(
            &mut store,
            vec![StoreOp::SetMode {
                subject: subject.map(str::to_string),
                mode: None,
            }],
        )?;
        Ok(prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ty: SchemaType, s: &str) -> SchemaRequest {
        SchemaRequest::new(ty, s)
    }

    fn avro(fields: &str) -> String {
        format!(r#"{{"type":"record","name":"R","namespace":"t","fields":[{fields}]}}"#)
    }

    fn json(props: &str) -> String {
        format!(r#"{{"type":"object","properties":{{{props}}},"additionalProperties":false}}"#)
    }

    /// One schema change per type: (v1, full-compatible, backward-only,
    /// forward-only, breaking).
    fn changes(ty: SchemaType) -> [String; 5] {
        match ty {
            SchemaType::Avro => [
                avro(r#"{"name":"a","type":"int"}"#),
                avro(r#"{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}"#),
                // int -> long promotion and a new field with a default: new readers
                // read old data, old readers cannot read longs.
                avro(
                    r#"{"name":"a","type":"long"},{"name":"c","type":["null","long"],"default":null}"#,
                ),
                // A new field without a default: only old readers cope.
                avro(r#"{"name":"a","type":"int"},{"name":"e","type":"string"}"#),
                avro(r#"{"name":"a","type":"string"}"#),
            ],
            SchemaType::Json => [
                json(r#""a":{"type":"integer"}"#),
                json(r#""a":{"type":"integer","description":"the a"}"#),
                json(r#""a":{"type":"integer"},"b":{"type":"string"}"#),
                json(r#""a":{"type":"integer","maximum":10}"#),
                json(r#""a":{"type":"string"}"#),
            ],
            SchemaType::Protobuf => [
                "syntax = \"proto3\"; message M { int32 a = 1; }".into(),
                "syntax = \"proto3\"; message M { int32 a = 1; string b = 2; }".into(),
                "syntax = \"proto3\"; message M { int32 a = 1; } message N { int32 x = 1; }".into(),
                "syntax = \"proto3\"; message M { int32 a = 1; }".into(),
                "syntax = \"proto3\"; message M { string a = 1; }".into(),
            ],
        }
    }

    #[test]
    fn compatibility_table_per_type_and_level() {
        use CompatibilityLevel::*;
        // expected acceptance of (full, backward-only, forward-only, breaking)
        let table = [
            (None, [true, true, true, true]),
            (Backward, [true, true, false, false]),
            (BackwardTransitive, [true, true, false, false]),
            (Forward, [true, false, true, false]),
            (ForwardTransitive, [true, false, true, false]),
            (Full, [true, false, false, false]),
            (FullTransitive, [true, false, false, false]),
        ];
        for ty in [SchemaType::Avro, SchemaType::Json, SchemaType::Protobuf] {
            let c = changes(ty);
            for (level, expect) in table {
                for (i, want) in expect.iter().enumerate() {
                    let reg = Registry::in_memory().unwrap();
                    let subject = "s";
                    // Protobuf forward-only case: v1 has the extra message.
                    let (v1, v2) = if ty == SchemaType::Protobuf && i == 2 {
                        (c[2].clone(), c[0].clone())
                    } else {
                        (c[0].clone(), c[i + 1].clone())
                    };
                    reg.set_config(Some(subject), level).unwrap();
                    reg.register(subject, &req(ty, &v1), false).unwrap();
                    let r = reg.register(subject, &req(ty, &v2), false);
                    assert_eq!(
                        r.is_ok(),
                        *want,
                        "{ty} {level} change #{i}: {v1} -> {v2}: {r:?}"
                    );
                    if let Err(e) = r {
                        assert_eq!(e.error_code(), 409);
                    }
                }
            }
        }
    }

    #[test]
    fn transitive_levels_check_every_version() {
        let v1 = avro(r#"{"name":"a","type":"int"}"#);
        let v2 = avro("");
        let v3 = avro(r#"{"name":"a","type":"string","default":"z"}"#);
        for (level, v3_ok) in [
            (CompatibilityLevel::Backward, true),
            (CompatibilityLevel::BackwardTransitive, false),
        ] {
            let reg = Registry::in_memory().unwrap();
            reg.set_config(None, level).unwrap();
            reg.register("s", &req(SchemaType::Avro, &v1), false)
                .unwrap();
            reg.register("s", &req(SchemaType::Avro, &v2), false)
                .unwrap();
            assert_eq!(
                reg.register("s", &req(SchemaType::Avro, &v3), false)
                    .is_ok(),
                v3_ok,
                "{level}"
            );
        }
    }

    #[test]
    fn ids_are_global_and_deduplicated() {
        let reg = Registry::in_memory().unwrap();
        let a = avro(r#"{"name":"a","type":"int"}"#);
        let spaced = a.replace(',', " , ");
        let r1 = reg
            .register("x", &req(SchemaType::Avro, &a), false)
            .unwrap();
        let again = reg
            .register("x", &req(SchemaType::Avro, &spaced), false)
            .unwrap();
        assert_eq!(
            r1,
            Registered {
                id: r1.id,
                version: 1,
                created: true
            }
        );
        assert_eq!(
            again,
            Registered {
                id: r1.id,
                version: 1,
                created: false
            }
        );
        let other = reg
            .register("y", &req(SchemaType::Avro, &a), false)
            .unwrap();
        assert_eq!(other.id, r1.id);
        assert_eq!(other.version, 1);
        assert_eq!(reg.subjects_for_id(r1.id, false).unwrap(), vec!["x", "y"]);
        // Same text as another type is another schema.
        let j = reg
            .register("z", &req(SchemaType::Json, r#"{"type":"object"}"#), false)
            .unwrap();
        assert_ne!(j.id, r1.id);
        let found = reg
            .lookup("y", &req(SchemaType::Avro, &spaced), false)
            .unwrap();
        assert_eq!((found.id, found.version), (r1.id, 1));
        assert_eq!(
            reg.lookup("y", &req(SchemaType::Avro, &avro("")), false)
                .unwrap_err()
                .error_code(),
            40403
        );
        assert_eq!(
            reg.lookup("nope", &req(SchemaType::Avro, &a), false)
                .unwrap_err()
                .error_code(),
            40401
        );
    }

    #[test]
    fn soft_and_permanent_deletes() {
        let reg = Registry::in_memory().unwrap();
        reg.set_config(None, CompatibilityLevel::None).unwrap();
        let v1 = reg
            .register(
                "s",
                &req(SchemaType::Avro, &avro(r#"{"name":"a","type":"int"}"#)),
                false,
            )
            .unwrap();
        let v2 = reg
            .register(
                "s",
                &req(SchemaType::Avro, &avro(r#"{"name":"b","type":"int"}"#)),
                false,
            )
            .unwrap();
        assert_eq!(
            reg.delete_subject("s", true).unwrap_err().error_code(),
            40405
        );
        assert_eq!(
            reg.delete_version("s", VersionSel::Number(2), true)
                .unwrap_err()
                .error_code(),
            40407
        );
        assert_eq!(
            reg.delete_version("s", VersionSel::Number(2), false)
                .unwrap(),
            2
        );
        assert_eq!(
            reg.delete_version("s", VersionSel::Number(2), false)
                .unwrap_err()
                .error_code(),
            40406
        );
        assert_eq!(
            reg.version("s", VersionSel::Number(2), false)
                .unwrap_err()
                .error_code(),
            40402
        );
        assert!(
            reg.version("s", VersionSel::Number(2), true)
                .unwrap()
                .deleted
        );
        assert_eq!(
            reg.version("s", VersionSel::Latest, false).unwrap().version,
            1
        );
        assert_eq!(reg.versions("s", false, false).unwrap(), vec![1]);
        assert_eq!(reg.versions("s", true, false).unwrap(), vec![1, 2]);
        // Soft-deleted schemas stay readable by id (old data still decodes).
        assert!(reg.schema_by_id(v2.id).is_ok());
        assert_eq!(reg.delete_subject("s", false).unwrap(), vec![1]);
        assert_eq!(
            reg.delete_subject("s", false).unwrap_err().error_code(),
            40404
        );
        assert!(reg.subjects(false, false, None).is_empty());
        assert_eq!(reg.subjects(true, false, None), vec!["s"]);
        assert_eq!(
            reg.versions("s", false, false).unwrap_err().error_code(),
            40401
        );
        assert_eq!(reg.delete_subject("s", true).unwrap(), vec![1, 2]);
        assert!(reg.subjects(true, false, None).is_empty());
        assert_eq!(reg.schema_by_id(v1.id).unwrap_err().error_code(), 40403);
        // Ids are never reused.
        let v3 = reg
            .register(
                "s",
                &req(SchemaType::Avro, &avro(r#"{"name":"c","type":"int"}"#)),
                false,
            )
            .unwrap();
        assert!(v3.id > v2.id);
        assert_eq!(v3.version, 1);
    }

    #[test]
    fn references_and_referenced_by() {
        let reg = Registry::in_memory().unwrap();
        let dep = r#"{"type":"record","name":"Addr","namespace":"t","fields":[{"name":"city","type":"string"}]}"#;
        let d = reg
            .register("addr", &req(SchemaType::Avro, dep), false)
            .unwrap();
        let mut main = req(
            SchemaType::Avro,
            r#"{"type":"record","name":"P","namespace":"t","fields":[{"name":"a","type":"t.Addr"}]}"#,
        );
        assert_eq!(
            reg.register("p", &main, false).unwrap_err().error_code(),
            42201
        );
        main.references = vec![SchemaReference {
            name: "t.Addr".into(),
            subject: "addr".into(),
            version: 1,
        }];
        let p = reg.register("p", &main, false).unwrap();
        assert_ne!(p.id, d.id);
        assert_eq!(
            reg.referenced_by("addr", VersionSel::Number(1)).unwrap(),
            vec![p.id]
        );
        assert_eq!(
            reg.delete_version("addr", VersionSel::Number(1), false)
                .unwrap_err()
                .error_code(),
            42206
        );
        assert_eq!(
            reg.delete_subject("addr", false).unwrap_err().error_code(),
            42206
        );
        reg.delete_subject("p", false).unwrap();
        assert!(reg
            .referenced_by("addr", VersionSel::Number(1))
            .unwrap()
            .is_empty());
        reg.delete_subject("addr", false).unwrap();
    }

    #[test]
    fn config_and_mode() {
        let reg = Registry::in_memory().unwrap();
        assert_eq!(
            reg.config(None, false).unwrap(),
            CompatibilityLevel::Backward
        );
        assert_eq!(
            reg.config(Some("s"), false).unwrap_err().error_code(),
            40408
        );
        assert_eq!(
            reg.config(Some("s"), true).unwrap(),
            CompatibilityLevel::Backward
        );
        reg.set_config(None, CompatibilityLevel::Full).unwrap();
        reg.set_config(Some("s"), CompatibilityLevel::None).unwrap();
        assert_eq!(reg.effective_config("s"), CompatibilityLevel::None);
        assert_eq!(reg.effective_config("t"), CompatibilityLevel::Full);
        assert_eq!(
            reg.delete_config(Some("s")).unwrap(),
            CompatibilityLevel::None
        );
        assert_eq!(reg.delete_config(None).unwrap(), CompatibilityLevel::Full);
        assert_eq!(
            reg.config(None, false).unwrap(),
            CompatibilityLevel::Backward
        );
        assert_eq!(
            "bogus"
                .parse::<CompatibilityLevel>()
                .unwrap_err()
                .error_code(),
            42203
        );

        reg.set_mode(Some("ro"), Mode::ReadOnly, false).unwrap();
        let a = avro(r#"{"name":"a","type":"int"}"#);
        assert_eq!(
            reg.register("ro", &req(SchemaType::Avro, &a), false)
                .unwrap_err()
                .error_code(),
            42205
        );
        reg.register("rw", &req(SchemaType::Avro, &a), false)
            .unwrap();
        assert_eq!(
            reg.set_mode(None, Mode::Import, false)
                .unwrap_err()
                .error_code(),
            42205
        );
        // IMPORT keeps given ids and versions.
        reg.set_mode(Some("imp"), Mode::Import, false).unwrap();
        let mut r = req(SchemaType::Avro, &avro(r#"{"name":"z","type":"int"}"#));
        r.id = Some(500);
        r.version = Some(7);
        assert_eq!(
            reg.register("imp", &r, false).unwrap(),
            Registered {
                id: 500,
                version: 7,
                created: true
            }
        );
        let next = reg
            .register(
                "rw2",
                &req(SchemaType::Avro, &avro(r#"{"name":"q","type":"int"}"#)),
                false,
            )
            .unwrap();
        assert_eq!(next.id, 501);
        assert_eq!(
            reg.mode(Some("nomode"), false).unwrap_err().error_code(),
            40409
        );
        assert_eq!(reg.mode(Some("nomode"), true).unwrap(), Mode::ReadWrite);
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let url = sluice_catalog::CatalogUrl::Sqlite(dir.path().join("catalog.db"));
        let open = || Registry::open(sluice_catalog::Catalog::open(&url).unwrap().db()).unwrap();
        let (id, id2) = {
            let reg = open();
            reg.set_config(Some("s"), CompatibilityLevel::Full).unwrap();
            reg.set_mode(Some("m"), Mode::ReadOnly, false).unwrap();
            let a = reg
                .register(
                    "s",
                    &req(SchemaType::Avro, &avro(r#"{"name":"a","type":"int"}"#)),
                    false,
                )
                .unwrap();
            let b = reg
                .register(
                    "j",
                    &req(
                        SchemaType::Protobuf,
                        "syntax = \"proto3\"; message M { int32 a = 1; }",
                    ),
                    false,
                )
                .unwrap();
            reg.delete_subject("j", false).unwrap();
            reg.delete_subject("j", true).unwrap();
            (a.id, b.id)
        };
        let reg = open();
        assert_eq!(reg.version("s", VersionSel::Latest, false).unwrap().id, id);
        assert_eq!(
            reg.config(Some("s"), false).unwrap(),
            CompatibilityLevel::Full
        );
        assert_eq!(reg.mode(Some("m"), false).unwrap(), Mode::ReadOnly);
        assert_eq!(reg.schema_by_id(id2).unwrap_err().error_code(), 40403);
        let c = reg
            .register("c", &req(SchemaType::Json, r#"{"type":"string"}"#), false)
            .unwrap();
        assert!(c.id > id2, "ids are not reused after restart");
    }

    /// Two brokers' registries over one store: an id the other registered
    /// a moment ago (no notification yet) is found by reading through.
    #[test]
    fn an_id_registered_elsewhere_is_read_through() {
        let dir = tempfile::tempdir().unwrap();
        let url = sluice_catalog::CatalogUrl::Sqlite(dir.path().join("catalog.db"));
        let open = || Registry::open(sluice_catalog::Catalog::open(&url).unwrap().db()).unwrap();
        let (a, b) = (open(), open());
        let first = a
            .register(
                "s",
                &req(SchemaType::Avro, &avro(r#"{"name":"a","type":"int"}"#)),
                false,
            )
            .unwrap();
        assert!(b.schema_by_id(first.id).is_ok(), "read through on a miss");
        assert_eq!(
            b.schema_by_id(first.id + 1000).unwrap_err().error_code(),
            40403
        );
    }
}
