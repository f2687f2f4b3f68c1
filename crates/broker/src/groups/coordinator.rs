//! The group coordinator: every group this broker coordinates (all of them
//! in the embedded mode; in a cluster those that hash to it), and their
//! committed offsets. Offsets are written to the catalog before a commit is
//! acknowledged and cached in memory for OffsetFetch; committed offsets of
//! empty groups expire after `offsets.retention.minutes`. When the
//! cluster's brokers change, [`GroupCoordinator::reassign`] drops the
//! groups that moved away and loads the offsets of those that moved here.

use super::state::{Group, GroupState};
use parking_lot::Mutex;
use sluice_catalog::{CatalogError, CommittedOffset, OffsetStore};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Group settings (Kafka's `group.*` and `offsets.retention.minutes`).
#[derive(Debug, Clone, Copy)]
pub struct GroupSettings {
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub offsets_retention: Duration,
    /// KIP-848 groups: a member silent this long is removed.
    pub consumer_session_timeout: Duration,
    /// KIP-848 groups: how often members heartbeat.
    pub consumer_heartbeat_interval: Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_secs(3),
            min_session_timeout: Duration::from_millis(1000),
            max_session_timeout: Duration::from_secs(1800),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            consumer_session_timeout: super::kip848::SESSION_TIMEOUT,
            consumer_heartbeat_interval: Duration::from_secs(2),
        }
    }
}

type OffsetMap = BTreeMap<(String, i32), CommittedOffset>;

/// Says whether this broker coordinates a group.
pub type Ownership = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The lease commits must hold (a cluster broker's; none alone).
pub type Fencing = Arc<dyn Fn() -> Option<sluice_catalog::Fence> + Send + Sync>;

pub struct GroupCoordinator {
    pub settings: GroupSettings,
    catalog: Arc<dyn OffsetStore>,
    owns: Ownership,
    fence: Fencing,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    /// Groups of KIP-848's consumer protocol.
    consumer_groups: Mutex<HashMap<String, Arc<super::kip848::ConsumerGroup>>>,
    offsets: Mutex<HashMap<String, OffsetMap>>,
}

/// The committed offsets of the groups `owns` accepts.
fn load_offsets(
    catalog: &dyn OffsetStore,
    owns: &dyn Fn(&str) -> bool,
) -> Result<HashMap<String, OffsetMap>, CatalogError> {
    let mut offsets: HashMap<String, OffsetMap> = HashMap::new();
    for (g, o) in catalog.all_offsets()? {
        if owns(&g) {
            offsets
                .entry(g)
                .or_default()
                .insert((o.topic.clone(), o.partition), o);
        }
    }
    Ok(offsets)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, CatalogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CatalogError::Corrupt(format!("catalog task failed: {e}")))?
}

impl GroupCoordinator {
    /// Loads the committed offsets of every group this broker coordinates
    /// (`owns`) from the catalog.
    pub fn open(
        settings: GroupSettings,
        catalog: Arc<dyn OffsetStore>,
        owns: Ownership,
        fence: Fencing,
    ) -> Result<Arc<Self>, CatalogError> {
        let offsets = load_offsets(&*catalog, &*owns)?;
        Ok(Arc::new(Self {
            settings,
            catalog,
            owns,
            fence,
            groups: Mutex::new(HashMap::new()),
            consumer_groups: Mutex::default(),
            offsets: Mutex::new(offsets),
        }))
    }

    /// After the cluster's brokers changed: forgets the groups (members
    /// and cached offsets) this broker no longer coordinates, and loads the
    /// committed offsets of the ones it now does.
    pub async fn reassign(&self) -> Result<(), CatalogError> {
        let catalog = self.catalog.clone();
        let owns = self.owns.clone();
        let fresh = tokio::task::spawn_blocking(move || load_offsets(&*catalog, &*owns))
            .await
            .map_err(|e| CatalogError::Corrupt(format!("catalog task failed: {e}")))??;
        let moved: Vec<Arc<Group>> = {
            let mut groups = self.groups.lock();
            let gone: Vec<String> = groups.keys().filter(|g| !(self.owns)(g)).cloned().collect();
            gone.iter().filter_map(|g| groups.remove(g)).collect()
        };
        for g in moved {
            g.mark_dead();
        }
        self.consumer_groups.lock().retain(|g, _| (self.owns)(g));
        *self.offsets.lock() = fresh;
        Ok(())
    }

    /// Whether this broker coordinates `group`.
    pub fn owns(&self, group: &str) -> bool {
        (self.owns)(group)
    }

    pub fn group(&self, id: &str) -> Option<Arc<Group>> {
        self.groups.lock().get(id).cloned()
    }

    /// A KIP-848 group.
    pub fn consumer_group(&self, id: &str) -> Option<Arc<super::kip848::ConsumerGroup>> {
        self.consumer_groups.lock().get(id).cloned()
    }

    /// A KIP-848 group, created if new; `None` when `id` is a classic
    /// group with members (a group has one protocol at a time).
    pub fn consumer_group_or_create(&self, id: &str) -> Option<Arc<super::kip848::ConsumerGroup>> {
        if self
            .group(id)
            .is_some_and(|g| !g.is_empty() && g.state() != GroupState::Dead)
        {
            return None;
        }
        Some(
            self.consumer_groups
                .lock()
                .entry(id.to_string())
                .or_default()
                .clone(),
        )
    }

    /// How many members a group has (either protocol).
    pub fn member_count(&self, id: &str) -> usize {
        match self.consumer_group(id) {
            Some(g) if !g.is_empty() => g.view().members.len(),
            _ => self
                .group(id)
                .map(|g| g.describe().members.len())
                .unwrap_or(0),
        }
    }

    /// Whether `id` is a KIP-848 group with members (a classic join is
    /// refused).
    pub fn is_consumer_group(&self, id: &str) -> bool {
        self.consumer_group(id).is_some_and(|g| !g.is_empty())
    }

    pub fn get_or_create(&self, id: &str) -> Arc<Group> {
        self.groups
            .lock()
            .entry(id.to_string())
            .or_insert_with(|| Group::new(id.to_string(), self.settings))
            .clone()
    }

    /// Every known group: those with members and those with only offsets.
    /// (group id, state, protocol type).
    pub fn list(&self) -> Vec<(String, GroupState, String)> {
        let mut out: BTreeMap<String, (GroupState, String)> = self
            .offsets
            .lock()
            .keys()
            .map(|g| (g.clone(), (GroupState::Empty, String::new())))
            .collect();
        for (id, g) in self.groups.lock().iter() {
            let d = g.describe();
            if d.state == GroupState::Dead {
                continue;
            }
            out.insert(id.clone(), (d.state, d.protocol_type));
        }
        for (id, g) in self.consumer_groups.lock().iter() {
            let state = if g.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            };
            out.insert(id.clone(), (state, "consumer".to_string()));
        }
        out.into_iter().map(|(g, (s, t))| (g, s, t)).collect()
    }

    /// Removes KIP-848 members past their session or revocation timeouts
    /// (and empty groups without offsets), every second until shutdown.
    pub async fn run_member_expiry(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            let now = std::time::Instant::now();
            let groups: Vec<(String, Arc<super::kip848::ConsumerGroup>)> = self
                .consumer_groups
                .lock()
                .iter()
                .map(|(id, g)| (id.clone(), g.clone()))
                .collect();
            for (id, g) in groups {
                let gone = g.expire(now, self.settings.consumer_session_timeout);
                if gone > 0 {
                    tracing::info!(group = %id, members = gone, "consumer group members timed out");
                }
            }
        }
    }

    /// Whether the group is known at all.
    pub fn exists(&self, id: &str) -> bool {
        self.offsets.lock().contains_key(id)
            || self.is_consumer_group(id)
            || self
                .group(id)
                .is_some_and(|g| g.state() != GroupState::Dead)
    }

    /// Makes offsets durable, then visible.
    pub async fn commit(
        &self,
        group: &str,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), CatalogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let catalog = self.catalog.clone();
        let (g, o) = (group.to_string(), offsets.clone());
        // A coordinator whose lease ran out (it was paused) cannot commit:
        // another broker may coordinate the group by now.
        let fence = (self.fence)();
        blocking(move || catalog.commit_offsets(&g, &o, fence)).await?;
        let mut all = self.offsets.lock();
        let map = all.entry(group.to_string()).or_default();
        for o in offsets {
            map.insert((o.topic.clone(), o.partition), o);
        }
        Ok(())
    }

    /// A group's committed offsets.
    pub fn committed(&self, group: &str) -> Vec<CommittedOffset> {
        self.offsets
            .lock()
            .get(group)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A group's committed offsets by topic, topics in name order, each
    /// topic's (partition, offset) pairs in partition order. Built under the
    /// lock without cloning per-partition records: the lag of every group
    /// is computed from this on each `/metrics` scrape.
    pub fn committed_by_topic(&self, group: &str) -> Vec<(String, Vec<(i32, i64)>)> {
        let all = self.offsets.lock();
        let Some(map) = all.get(group) else {
            return Vec::new();
        };
        let mut by_topic: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
        for ((topic, partition), o) in map {
            by_topic
                .entry(topic.as_str())
                .or_default()
                .push((*partition, o.offset));
        }
        let mut out: Vec<(String, Vec<(i32, i64)>)> = by_topic
            .into_iter()
            .map(|(t, mut v)| {
                v.sort_unstable();
                (t.to_string(), v)
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn committed_one(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Option<CommittedOffset> {
        self.offsets
            .lock()
            .get(group)
            .and_then(|m| m.get(&(topic.to_string(), partition)).cloned())
    }

    /// Deletes an empty group and its offsets.
    pub async fn delete_group(&self, id: &str) -> Result<(), kafka_protocol::error::ResponseError> {
        use kafka_protocol::error::ResponseError;
        if !self.exists(id) {
            return Err(ResponseError::GroupIdNotFound);
        }
        if let Some(g) = self.group(id) {
            if !g.is_empty() {
                return Err(ResponseError::NonEmptyGroup);
            }
        }
        let catalog = self.catalog.clone();
        let g = id.to_string();
        blocking(move || catalog.delete_offsets(&g, None))
            .await
            .map_err(|e| {
                tracing::error!(group = id, error = %e, "deleting group offsets failed");
                ResponseError::KafkaStorageError
            })?;
        self.offsets.lock().remove(id);
        if let Some(g) = self.groups.lock().remove(id) {
            g.mark_dead();
        }
        tracing::info!(group = id, "deleted group");
        Ok(())
    }

    /// Deletes some committed offsets of a group.
    pub async fn delete_offsets(
        &self,
        group: &str,
        pairs: Vec<(String, i32)>,
    ) -> Result<(), CatalogError> {
        let catalog = self.catalog.clone();
        let (g, p) = (group.to_string(), pairs.clone());
        blocking(move || catalog.delete_offsets(&g, Some(&p))).await?;
        let mut all = self.offsets.lock();
        if let Some(map) = all.get_mut(group) {
            for k in pairs {
                map.remove(&k);
            }
            if map.is_empty() {
                all.remove(group);
            }
        }
        Ok(())
    }

    /// Expires committed offsets of empty groups older than the retention.
    pub async fn expire_offsets(&self, now_ms: i64) {
        let retention_ms = self.settings.offsets_retention.as_millis() as i64;
        let candidates: Vec<(String, Vec<(String, i32)>)> = {
            let all = self.offsets.lock();
            all.iter()
                .filter(|(g, _)| self.group(g).is_none_or(|grp| grp.is_empty()))
                .map(|(g, m)| {
                    let old = m
                        .values()
                        .filter(|o| o.commit_ms + retention_ms < now_ms)
                        .map(|o| (o.topic.clone(), o.partition))
                        .collect::<Vec<_>>();
                    (g.clone(), old)
                })
                .filter(|(_, old)| !old.is_empty())
                .collect()
        };
        for (g, pairs) in candidates {
            let n = pairs.len();
            match self.delete_offsets(&g, pairs).await {
                Ok(()) => {
                    tracing::info!(group = %g, offsets = n, "expired committed offsets (offsets.retention.minutes)")
                }
                Err(e) => tracing::warn!(group = %g, error = %e, "offset expiry failed"),
            }
        }
    }

    /// Runs offset expiry periodically until shutdown.
    pub async fn run_expiry(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let every = (self.settings.offsets_retention / 10)
            .clamp(Duration::from_secs(1), Duration::from_secs(600));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            self.expire_offsets(sluice_storage::now_ms()).await;
        }
    }
}
