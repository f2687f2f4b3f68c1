//! The transaction coordinator: each transactional id's producer id, epoch
//! and transaction (its partitions, groups and pending offsets), saved in
//! the catalog at every transition, so a restart after `kill -9` finds
//! every transaction where it was: an ongoing one stays open (its producer
//! may go on, or its timeout aborts it), a prepared one is completed.
//!
//! Ending a transaction follows Kafka's two phases: the decision is saved
//! first (PrepareCommit / PrepareAbort), then a marker is written to every
//! partition of the transaction through the ordinary write path, then the
//! pending offsets are committed (on commit), then the end is saved
//! (CompleteCommit / CompleteAbort).
//!
//! KIP-890's defence against hanging transactions: a transactional batch is
//! appended only if its partition was added to the producer's ongoing
//! transaction, checked under an append guard that ending the transaction
//! waits for, so no batch of a transaction can land after its marker.
//!
//! In a cluster a transactional id is coordinated by the broker it hashes
//! to (FindCoordinator key type 1); every operation starts from the
//! catalog's row (the coordinator may have moved), and the KIP-890 check
//! happens inside the flush's catalog commit instead, under a shared lock
//! on the transaction's row that the coordinator's decision to end it
//! waits for. A transaction's offsets (TxnOffsetCommit reaches the group's
//! coordinator) are written to its row; its commit writes them to the
//! group's offsets and tells the other brokers.

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use sluice_catalog::{Catalog, CommittedOffset, TxnOffset, TxnRecord, TxnState, TxnStore};
use sluice_protocol::batch::split_and_check;
use sluice_protocol::records::{encode_marker, Marker};
use sluice_storage::LogStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

/// Kafka's `transaction.max.timeout.ms` default: longer timeouts are refused.
pub const MAX_TIMEOUT_MS: i32 = 900_000;
/// How often expired transactions are looked for.
const EXPIRY_CHECK: Duration = Duration::from_secs(1);

type TxnResult<T> = Result<T, ResponseError>;
type Locked = (Arc<Entry>, tokio::sync::OwnedMutexGuard<TxnRecord>);

/// One transactional id: its state behind an async lock (operations on it
/// take turns, catalog writes included), a copy for produce checks, and
/// the guard appends hold while they are queued.
struct Entry {
    txn: Arc<tokio::sync::Mutex<TxnRecord>>,
    view: Mutex<TxnRecord>,
    appends: Arc<RwLock<()>>,
}

impl Entry {
    fn new(t: TxnRecord) -> Arc<Self> {
        Arc::new(Self {
            view: Mutex::new(t.clone()),
            txn: Arc::new(tokio::sync::Mutex::new(t)),
            appends: Arc::new(RwLock::new(())),
        })
    }
}

/// Held by a produce from its transaction check until its batches are
/// queued (their offsets assigned).
pub struct AppendGuard(#[allow(dead_code)] OwnedRwLockReadGuard<()>);

/// What the coordinator needs from the rest of the broker.
pub struct Transactions {
    catalog: Arc<Catalog>,
    membership: Arc<crate::cluster::Membership>,
    store: Arc<LogStore>,
    groups: Arc<crate::groups::GroupCoordinator>,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

fn now_ms() -> i64 {
    sluice_catalog::now_ms()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, sluice_catalog::CatalogError> + Send + 'static,
) -> TxnResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "transaction state: catalog failed");
            Err(ResponseError::CoordinatorNotAvailable)
        }
        Err(e) => {
            tracing::error!(error = %e, "transaction state: catalog task failed");
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}

/// Checks a request's producer id and epoch against the transaction's.
fn check_producer(t: &TxnRecord, producer_id: i64, epoch: i16) -> TxnResult<()> {
    if producer_id != t.producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if epoch < t.epoch {
        return Err(ResponseError::ProducerFenced);
    }
    if epoch > t.epoch {
        return Err(ResponseError::InvalidProducerEpoch);
    }
    Ok(())
}

impl Transactions {
    /// Loads every transactional id's state from the catalog.
    pub fn open(
        catalog: Arc<Catalog>,
        membership: Arc<crate::cluster::Membership>,
        store: Arc<LogStore>,
        groups: Arc<crate::groups::GroupCoordinator>,
    ) -> anyhow::Result<Arc<Self>> {
        let entries = catalog
            .all_txns()?
            .into_iter()
            .map(|t| (t.transactional_id.clone(), Entry::new(t)))
            .collect();
        Ok(Arc::new(Self {
            catalog,
            membership,
            store,
            groups,
            entries: Mutex::new(entries),
        }))
    }

    fn entry(&self, id: &str) -> Option<Arc<Entry>> {
        self.entries.lock().get(id).cloned()
    }

    fn shared(&self) -> bool {
        self.membership.is_cluster()
    }

    /// NOT_COORDINATOR unless this broker coordinates `id`.
    fn check_coordinator(&self, id: &str) -> TxnResult<()> {
        if self.membership.coordinates_txn(id) {
            Ok(())
        } else {
            Err(ResponseError::NotCoordinator)
        }
    }

    /// The id's entry, locked; in a cluster its state read afresh from the
    /// catalog under the lock (another broker may have moved it on);
    /// `None` for an unknown id.
    async fn locked(&self, id: &str) -> TxnResult<Option<Locked>> {
        if !self.shared() {
            return Ok(match self.entry(id) {
                Some(e) => Some((e.clone(), lock_owned(&e).await)),
                None => None,
            });
        }
        let e = match self.entry(id) {
            Some(e) => e,
            None => {
                let (catalog, key) = (self.catalog.clone(), id.to_string());
                let Some(row) = blocking(move || catalog.txn(&key)).await? else {
                    return Ok(None);
                };
                self.entries
                    .lock()
                    .entry(id.to_string())
                    .or_insert_with(|| Entry::new(row))
                    .clone()
            }
        };
        let mut t = lock_owned(&e).await;
        let (catalog, key) = (self.catalog.clone(), id.to_string());
        match blocking(move || catalog.txn(&key)).await? {
            Some(row) => {
                if *t != row {
                    *t = row.clone();
                    *e.view.lock() = row;
                }
                Ok(Some((e, t)))
            }
            None => Ok(None),
        }
    }

    /// Saves `t` and makes it the entry's view.
    async fn save(&self, e: &Entry, t: &mut TxnRecord) -> TxnResult<()> {
        t.updated_ms = now_ms();
        let (catalog, copy) = (self.catalog.clone(), t.clone());
        blocking(move || catalog.put_txn(&copy)).await?;
        *e.view.lock() = t.clone();
        Ok(())
    }

    /// InitProducerId with a transactional id: a new producer id (epoch 0)
    /// for a new id; otherwise the id's open transaction is ended (an
    /// ongoing one aborted, fencing its producer) and the epoch bumped.
    pub async fn init_producer(
        &self,
        id: &str,
        timeout_ms: i32,
        producer_id: i64,
        epoch: i16,
    ) -> TxnResult<(i64, i16)> {
        if id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        self.check_coordinator(id)?;
        let existing = self.locked(id).await?;
        let Some((e, mut t)) = existing else {
            let catalog = self.catalog.clone();
            let pid =
                blocking(move || sluice_catalog::ProducerStore::allocate_producer_id(&*catalog))
                    .await?;
            let mut t = TxnRecord {
                transactional_id: id.to_string(),
                producer_id: pid,
                epoch: 0,
                state: TxnState::Empty,
                timeout_ms,
                started_ms: -1,
                updated_ms: 0,
                partitions: Vec::new(),
                groups: Vec::new(),
            };
            let e = {
                let mut map = self.entries.lock();
                if map.contains_key(id) && !self.shared() {
                    // Another InitProducerId for the same id won the race
                    // (in a cluster the catalog has no row: a stale entry).
                    return Err(ResponseError::ConcurrentTransactions);
                }
                let e = Entry::new(t.clone());
                map.insert(id.to_string(), e.clone());
                e
            };
            let mut guard = e.txn.lock().await;
            if let Err(err) = self.save(&e, &mut t).await {
                self.entries.lock().remove(id);
                return Err(err);
            }
            *guard = t;
            return Ok((pid, 0));
        };
        // KIP-360: a producer recovering its own id gives it with its epoch.
        if producer_id >= 0 && (producer_id != t.producer_id || epoch != t.epoch) {
            return Err(ResponseError::ProducerFenced);
        }
        match t.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => self.complete(&e, &mut t).await?,
            TxnState::Ongoing => {
                // Fence the producer: abort under the next epoch.
                self.bump_epoch(&mut t).await?;
                self.end(&e, &mut t, false).await?;
            }
            _ => {}
        }
        self.bump_epoch(&mut t).await?;
        t.state = TxnState::Empty;
        t.timeout_ms = timeout_ms;
        t.started_ms = -1;
        self.save(&e, &mut t).await?;
        Ok((t.producer_id, t.epoch))
    }

    /// The next epoch, or a new producer id once the epochs run out.
    async fn bump_epoch(&self, t: &mut TxnRecord) -> TxnResult<()> {
        if t.epoch < i16::MAX - 1 {
            t.epoch += 1;
            return Ok(());
        }
        let catalog = self.catalog.clone();
        t.producer_id =
            blocking(move || sluice_catalog::ProducerStore::allocate_producer_id(&*catalog))
                .await?;
        t.epoch = 0;
        Ok(())
    }

    /// Locks the id's state after checking its producer; the transaction
    /// must not be half-ended.
    async fn ongoing_or_new(&self, id: &str, producer_id: i64, epoch: i16) -> TxnResult<Locked> {
        let (e, t) = self
            .locked(id)
            .await?
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        check_producer(&t, producer_id, epoch)?;
        if matches!(t.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok((e, t))
    }

    /// Begins the transaction if none is ongoing.
    fn begin(t: &mut TxnRecord) {
        if t.state != TxnState::Ongoing {
            t.state = TxnState::Ongoing;
            t.started_ms = now_ms();
            t.partitions.clear();
            t.groups.clear();
        }
    }

    /// AddPartitionsToTxn: adds partitions (which must exist) to the
    /// transaction, beginning it.
    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> TxnResult<()> {
        self.check_coordinator(id)?;
        let (e, mut t) = self.ongoing_or_new(id, producer_id, epoch).await?;
        Self::begin(&mut t);
        let mut changed = false;
        for p in partitions {
            if !t.partitions.contains(p) {
                t.partitions.push(p.clone());
                changed = true;
            }
        }
        if changed || t.updated_ms == 0 || e.view.lock().state != TxnState::Ongoing {
            self.save(&e, &mut t).await?;
        }
        Ok(())
    }

    /// AddOffsetsToTxn: the transaction will commit offsets of `group`.
    pub async fn add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> TxnResult<()> {
        self.check_coordinator(id)?;
        let (e, mut t) = self.ongoing_or_new(id, producer_id, epoch).await?;
        let was_ongoing = t.state == TxnState::Ongoing;
        Self::begin(&mut t);
        if !was_ongoing || !t.groups.iter().any(|g| g == group) {
            t.groups.push(group.to_string());
            self.save(&e, &mut t).await?;
        }
        Ok(())
    }

    /// TxnOffsetCommit: offsets the transaction commits for `group` if it
    /// commits.
    pub async fn commit_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<TxnOffset>,
    ) -> TxnResult<()> {
        let (_e, t) = self.ongoing_or_new(id, producer_id, epoch).await?;
        if t.state != TxnState::Ongoing || !t.groups.iter().any(|g| g == group) {
            return Err(ResponseError::InvalidTxnState);
        }
        // Beside the transaction's row, which only its coordinator writes.
        let (catalog, key) = (self.catalog.clone(), id.to_string());
        blocking(move || catalog.put_txn_offsets(&key, &offsets)).await
    }

    /// EndTxn: commits or aborts the ongoing transaction (a retry of an
    /// end already done answers as it did).
    pub async fn end_txn(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> TxnResult<()> {
        self.check_coordinator(id)?;
        let (e, mut t) = self
            .locked(id)
            .await?
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        check_producer(&t, producer_id, epoch)?;
        match (t.state, commit) {
            (TxnState::Ongoing, _) => self.end(&e, &mut t, commit).await,
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                self.complete(&e, &mut t).await
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// Saves the decision, then completes it.
    async fn end(&self, e: &Entry, t: &mut TxnRecord, commit: bool) -> TxnResult<()> {
        t.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.save(e, t).await?;
        self.complete(e, t).await
    }

    /// Writes the markers of a prepared transaction (after every append
    /// already checked has been queued), commits its offsets if it commits,
    /// and saves its end.
    async fn complete(&self, e: &Entry, t: &mut TxnRecord) -> TxnResult<()> {
        let commit = t.state == TxnState::PrepareCommit;
        let marker = if commit {
            Marker::Commit
        } else {
            Marker::Abort
        };
        // Appends that passed their check before the decision are queued
        // by the time this lock is ours; later ones fail their check.
        drop(e.appends.write().await);
        let writes = t
            .partitions
            .iter()
            .map(|(topic, partition)| self.write_marker(topic, *partition, marker, t));
        for r in futures::future::join_all(writes).await {
            r?;
        }
        let (catalog, key) = (self.catalog.clone(), t.transactional_id.clone());
        let pending = blocking(move || catalog.txn_offsets(&key)).await?;
        if commit {
            let mut by_group: HashMap<&str, Vec<CommittedOffset>> = HashMap::new();
            let at = now_ms();
            for o in &pending {
                by_group
                    .entry(o.group.as_str())
                    .or_default()
                    .push(CommittedOffset {
                        topic: o.topic.clone(),
                        partition: o.partition,
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata.clone(),
                        commit_ms: at,
                    });
            }
            let any = !by_group.is_empty();
            for (group, offsets) in by_group {
                if let Err(err) = self.groups.commit(group, offsets).await {
                    tracing::error!(group, error = %err, "committing a transaction's offsets failed");
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
            }
            if any && self.shared() {
                // The groups' coordinators may be other brokers.
                let catalog = self.catalog.clone();
                blocking(move || catalog.announce_offsets()).await?;
            }
        }
        t.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        t.partitions.clear();
        t.groups.clear();
        t.started_ms = -1;
        if !pending.is_empty() {
            let (catalog, key) = (self.catalog.clone(), t.transactional_id.clone());
            blocking(move || catalog.clear_txn_offsets(&key)).await?;
        }
        self.save(e, t).await
    }

    async fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        marker: Marker,
        t: &TxnRecord,
    ) -> TxnResult<()> {
        let Some(top) = self.store.topic(topic) else {
            return Ok(()); // deleted meanwhile: nothing to close
        };
        let Some(p) = top.partition(partition) else {
            return Ok(());
        };
        let bytes = encode_marker(marker, t.producer_id, t.epoch, 0, now_ms())
            .map_err(|_| ResponseError::UnknownServerError)?;
        let batches = split_and_check(&bytes).map_err(|_| ResponseError::UnknownServerError)?;
        match self.store.append(&top, p, batches).await {
            Ok(_) => Ok(()),
            Err(sluice_storage::AppendError::TopicDeleted) => Ok(()),
            Err(err) => {
                tracing::error!(topic, partition, error = %err, "writing a transaction marker failed");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// KIP-890: whether producer `producer_id`/`epoch` of transactional id
    /// `id` may append to `topic`/`partition` now; the guard is held until
    /// the batches are queued.
    pub async fn check_append(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> TxnResult<Option<AppendGuard>> {
        if self.shared() {
            // Checked inside the flush's commit (see the module comment).
            return Ok(None);
        }
        let e = self
            .entry(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        let guard = e.appends.clone().read_owned().await;
        let v = e.view.lock();
        if producer_id != v.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if epoch < v.epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if epoch > v.epoch
            || v.state != TxnState::Ongoing
            || !v
                .partitions
                .iter()
                .any(|(t, p)| t == topic && *p == partition)
        {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(Some(AppendGuard(guard)))
    }

    /// Every transactional id's state (DescribeTransactions,
    /// ListTransactions).
    /// In a cluster, the ones this broker coordinates (from the catalog).
    pub async fn list(&self) -> TxnResult<Vec<TxnRecord>> {
        if self.shared() {
            let catalog = self.catalog.clone();
            let mut rows = blocking(move || catalog.all_txns()).await?;
            rows.retain(|t| self.membership.coordinates_txn(&t.transactional_id));
            return Ok(rows);
        }
        let entries: Vec<Arc<Entry>> = self.entries.lock().values().cloned().collect();
        let mut out: Vec<TxnRecord> = entries.iter().map(|e| e.view.lock().clone()).collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// One transactional id's state (in a cluster from the catalog).
    pub async fn describe(&self, id: &str) -> TxnResult<Option<TxnRecord>> {
        if self.shared() {
            let (catalog, key) = (self.catalog.clone(), id.to_string());
            return blocking(move || catalog.txn(&key)).await;
        }
        Ok(self.entry(id).map(|e| e.view.lock().clone()))
    }

    /// In a cluster: takes in the ids this broker coordinates now (every
    /// few passes), so their timeouts run here when their coordinator died.
    async fn adopt(&self) {
        let catalog = self.catalog.clone();
        let Ok(rows) = blocking(move || catalog.all_txns()).await else {
            return;
        };
        let mut map = self.entries.lock();
        for row in rows {
            if !self.membership.coordinates_txn(&row.transactional_id) {
                continue;
            }
            match map.get(&row.transactional_id) {
                Some(e) => {
                    if let Ok(mut t) = e.txn.try_lock() {
                        *t = row.clone();
                        *e.view.lock() = row;
                    }
                }
                None => {
                    map.insert(row.transactional_id.clone(), Entry::new(row));
                }
            }
        }
    }

    /// Aborts transactions that ran past their timeout (fencing their
    /// producer with a new epoch, as Kafka does) and completes prepared
    /// ones left by a failure, every second until shutdown.
    pub async fn run_expiry(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EXPIRY_CHECK) => {}
                _ = shutdown.changed() => return,
            }
            if self.shared() {
                self.adopt().await;
            }
            let entries: Vec<Arc<Entry>> = self.entries.lock().values().cloned().collect();
            for e in entries {
                let id = e.view.lock().transactional_id.clone();
                if !self.membership.coordinates_txn(&id) {
                    continue;
                }
                let due = {
                    let v = e.view.lock();
                    match v.state {
                        TxnState::Ongoing => v.started_ms + v.timeout_ms as i64 <= now_ms(),
                        TxnState::PrepareCommit | TxnState::PrepareAbort => true,
                        _ => false,
                    }
                };
                if !due {
                    continue;
                }
                let Ok(mut t) = e.txn.try_lock() else {
                    continue; // an operation is at it
                };
                if self.shared() {
                    // Another coordinator may have moved it on.
                    let (catalog, key) = (self.catalog.clone(), id.clone());
                    match blocking(move || catalog.txn(&key)).await {
                        Ok(Some(row)) => {
                            *t = row.clone();
                            *e.view.lock() = row;
                        }
                        _ => continue,
                    }
                }
                let r = match t.state {
                    TxnState::Ongoing if t.started_ms + t.timeout_ms as i64 <= now_ms() => {
                        tracing::info!(
                            transactional_id = %t.transactional_id,
                            timeout_ms = t.timeout_ms,
                            "aborting a transaction past its timeout"
                        );
                        match self.bump_epoch(&mut t).await {
                            Ok(()) => self.end(&e, &mut t, false).await,
                            Err(err) => Err(err),
                        }
                    }
                    TxnState::PrepareCommit | TxnState::PrepareAbort => {
                        self.complete(&e, &mut t).await
                    }
                    _ => Ok(()),
                };
                if let Err(err) = r {
                    tracing::warn!(transactional_id = %t.transactional_id, error = ?err, "ending a transaction failed; retrying");
                }
            }
        }
    }
}

async fn lock_owned(e: &Arc<Entry>) -> tokio::sync::OwnedMutexGuard<TxnRecord> {
    e.txn.clone().lock_owned().await
}
