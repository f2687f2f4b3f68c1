//! One consumer group's membership, driven by requests and timers (no
//! polling): Kafka's classic protocol with its states
//!
//! `Empty → PreparingRebalance → CompletingRebalance → Stable`, and back to
//! `PreparingRebalance` whenever membership or subscriptions change.
//!
//! Join responses are held until every known member has rejoined (or the
//! rebalance timeout removes the laggards); the first rebalance of an empty
//! group waits `group.initial.rebalance.delay.ms`, extended while new members
//! keep arriving. Each member has a session timer, re-armed by every
//! heartbeat; timers are tokio tasks that carry an epoch and do nothing when
//! a newer event superseded them. Static members (`group.instance.id`) that
//! come back within their session get their old assignment without a
//! rebalance; the previous instance is fenced.

use super::GroupSettings;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A group's state, named as Kafka names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request in the coordinator's terms.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a member without an id must first ask for one.
    pub require_known_member_id: bool,
}

/// What a JoinGroup is answered with.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: (member id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(e: ResponseError, member_id: &str) -> Self {
        Self {
            error: e.code(),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// What a SyncGroup is answered with.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(e: ResponseError) -> Self {
        Self {
            error: e.code(),
            ..Default::default()
        }
    }
}

/// Either an immediate answer or one that arrives when the group moves on.
pub enum Deferred<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

impl<T: Default> Deferred<T> {
    pub async fn resolve(self, on_drop: T) -> T {
        match self {
            Deferred::Now(v) => v,
            Deferred::Later(rx) => rx.await.unwrap_or(on_drop),
        }
    }
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    /// Whether the member sent SyncGroup for the current generation.
    synced: bool,
    session_epoch: u64,
    join_seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A read-only view for DescribeGroups and the admin API.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub generation: i32,
    pub leader: String,
    /// (member id, instance id, client id, host, metadata, assignment).
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug)]
struct Inner {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: HashMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending: HashMap<String, u64>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    /// Bumped whenever a join-phase timer must be forgotten.
    join_epoch: u64,
    /// Time left to extend the initial delayed join, and whether someone new arrived.
    initial_delay: Option<(Duration, bool)>,
    next_seq: u64,
    /// When the group last became empty (for offset expiry).
    empty_since: Option<Instant>,
}

/// One consumer group.
pub struct Group {
    pub id: String,
    settings: GroupSettings,
    inner: Mutex<Inner>,
}

impl Group {
    pub fn new(id: String, settings: GroupSettings) -> Arc<Self> {
        Arc::new(Self {
            id,
            settings,
            inner: Mutex::new(Inner {
                state: GroupState::Empty,
                generation: 0,
                protocol_type: None,
                protocol: None,
                leader: None,
                members: HashMap::new(),
                pending: HashMap::new(),
                static_members: HashMap::new(),
                join_epoch: 0,
                initial_delay: None,
                next_seq: 0,
                empty_since: Some(Instant::now()),
            }),
        })
    }

    pub fn state(&self) -> GroupState {
        self.inner.lock().state
    }

    /// True when the group has no members (offsets may be managed freely).
    pub fn is_empty(&self) -> bool {
        let g = self.inner.lock();
        g.members.is_empty() && g.pending.is_empty()
    }

    /// How long the group has been empty.
    pub fn empty_for(&self) -> Option<Duration> {
        let g = self.inner.lock();
        if g.members.is_empty() {
            g.empty_since.map(|t| t.elapsed())
        } else {
            None
        }
    }

    /// Marks the group deleted.
    pub fn mark_dead(&self) {
        self.inner.lock().state = GroupState::Dead;
    }

    pub fn describe(&self) -> GroupDescription {
        let g = self.inner.lock();
        let protocol = g.protocol.clone().unwrap_or_default();
        let mut members: Vec<&Member> = g.members.values().collect();
        members.sort_by_key(|m| m.join_seq);
        GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            generation: g.generation,
            leader: g.leader.clone().unwrap_or_default(),
            members: members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
            protocol,
        }
    }

    /// JoinGroup.
    pub fn join(self: &Arc<Self>, req: JoinRequest) -> Deferred<JoinResult> {
        let mut g = self.inner.lock();
        if g.state == GroupState::Dead {
            return Deferred::Now(JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                &req.member_id,
            ));
        }
        if req.protocols.is_empty()
            || req.protocol_type.is_empty()
            || (!g.members.is_empty()
                && g.protocol_type.as_deref() != Some(req.protocol_type.as_str()))
            || !self.supports_protocols(&g, &req.protocols)
        {
            return Deferred::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        if req.session_timeout < self.settings.min_session_timeout
            || req.session_timeout > self.settings.max_session_timeout
        {
            return Deferred::Now(JoinResult::error(
                ResponseError::InvalidSessionTimeout,
                &req.member_id,
            ));
        }

        if req.member_id.is_empty() {
            let new_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if let Some(instance) = req.instance_id.clone() {
                if let Some(old_id) = g.static_members.get(&instance).cloned() {
                    return self.rejoin_static(&mut g, req, old_id, new_id);
                }
            } else if req.require_known_member_id {
                let epoch = g.join_epoch;
                g.pending.insert(new_id.clone(), epoch);
                self.schedule_pending_expiry(new_id.clone(), req.session_timeout);
                return Deferred::Now(JoinResult::error(ResponseError::MemberIdRequired, &new_id));
            }
            return self.add_and_join(&mut g, req, new_id);
        }

        let member_id = req.member_id.clone();
        if g.pending.remove(&member_id).is_some() {
            return self.add_and_join(&mut g, req, member_id);
        }
        if let Some(instance) = &req.instance_id {
            if let Some(current) = g.static_members.get(instance) {
                if *current != member_id {
                    return Deferred::Now(JoinResult::error(
                        ResponseError::FencedInstanceId,
                        &member_id,
                    ));
                }
            }
        }
        if !g.members.contains_key(&member_id) {
            return Deferred::Now(JoinResult::error(
                ResponseError::UnknownMemberId,
                &member_id,
            ));
        }
        let (tx, rx) = oneshot::channel();
        let state = g.state;
        let is_leader = g.leader.as_deref() == Some(member_id.as_str());
        let protocol = g.protocol.clone().unwrap_or_default();
        let m = g.members.get_mut(&member_id).expect("checked above");
        let changed = m.protocols != req.protocols;
        m.protocols = req.protocols;
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        match state {
            GroupState::Stable | GroupState::CompletingRebalance
                if !(changed || state == GroupState::Stable && is_leader) =>
            {
                // Nothing changed: answer with the current generation.
                self.touch_session(&mut g, &member_id);
                let result = self.join_result_for(&g, &member_id, &protocol, false);
                return Deferred::Now(result);
            }
            _ => {}
        }
        if let Some(old) = g
            .members
            .get_mut(&member_id)
            .and_then(|m| m.join_waiter.replace(tx))
        {
            let _ = old.send(JoinResult::error(
                ResponseError::RebalanceInProgress,
                &member_id,
            ));
        }
        match state {
            GroupState::PreparingRebalance => self.maybe_complete_join(&mut g),
            _ => self.prepare_rebalance(&mut g, "member rejoined"),
        }
        Deferred::Later(rx)
    }

    fn supports_protocols(&self, g: &Inner, protocols: &[(String, Bytes)]) -> bool {
        if g.members.is_empty() {
            return true;
        }
        // At least one of the member's protocols must be supported by everyone.
        protocols.iter().any(|(name, _)| {
            g.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn add_and_join(
        self: &Arc<Self>,
        g: &mut Inner,
        req: JoinRequest,
        member_id: String,
    ) -> Deferred<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let seq = g.next_seq;
        g.next_seq += 1;
        if g.members.is_empty() {
            g.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.instance_id {
            g.static_members.insert(instance.clone(), member_id.clone());
        }
        g.members.insert(
            member_id.clone(),
            Member {
                id: member_id.clone(),
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(tx),
                sync_waiter: None,
                synced: false,
                session_epoch: 0,
                join_seq: seq,
            },
        );
        g.empty_since = None;
        self.touch_session(g, &member_id);
        match g.state {
            GroupState::PreparingRebalance => {
                if let Some((_, arrived)) = g.initial_delay.as_mut() {
                    *arrived = true;
                }
                self.maybe_complete_join(g);
            }
            _ => self.prepare_rebalance(g, "new member joined"),
        }
        Deferred::Later(rx)
    }

    /// A static member came back under a new member id.
    fn rejoin_static(
        self: &Arc<Self>,
        g: &mut Inner,
        req: JoinRequest,
        old_id: String,
        new_id: String,
    ) -> Deferred<JoinResult> {
        let Some(mut m) = g.members.remove(&old_id) else {
            g.static_members
                .remove(req.instance_id.as_deref().unwrap_or_default());
            return self.add_and_join(g, req, new_id);
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(ResponseError::FencedInstanceId, &old_id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(ResponseError::FencedInstanceId));
        }
        let changed = m.protocols != req.protocols;
        m.id = new_id.clone();
        m.protocols = req.protocols;
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        if g.leader.as_deref() == Some(old_id.as_str()) {
            g.leader = Some(new_id.clone());
        }
        if let Some(instance) = &req.instance_id {
            g.static_members.insert(instance.clone(), new_id.clone());
        }
        let state = g.state;
        if state == GroupState::Stable && !changed {
            g.members.insert(new_id.clone(), m);
            self.touch_session(g, &new_id);
            tracing::info!(group = %self.id, member = %new_id, "static member rejoined; keeping its assignment without a rebalance");
            let protocol = g.protocol.clone().unwrap_or_default();
            let is_leader = g.leader.as_deref() == Some(new_id.as_str());
            return Deferred::Now(self.join_result_for(g, &new_id, &protocol, is_leader));
        }
        let (tx, rx) = oneshot::channel();
        m.join_waiter = Some(tx);
        g.members.insert(new_id.clone(), m);
        self.touch_session(g, &new_id);
        match state {
            GroupState::PreparingRebalance => self.maybe_complete_join(g),
            _ => self.prepare_rebalance(g, "static member rejoined with new metadata"),
        }
        Deferred::Later(rx)
    }

    fn join_result_for(
        &self,
        g: &Inner,
        member_id: &str,
        protocol: &str,
        skip_assignment: bool,
    ) -> JoinResult {
        let leader = g.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            let mut ms: Vec<&Member> = g.members.values().collect();
            ms.sort_by_key(|m| m.join_seq);
            ms.into_iter()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.metadata_for(protocol),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: 0,
            generation: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
            skip_assignment,
        }
    }

    /// Moves to PreparingRebalance and arms the join timer.
    fn prepare_rebalance(self: &Arc<Self>, g: &mut Inner, reason: &str) {
        if g.state == GroupState::CompletingRebalance {
            for m in g.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let initial = g.state == GroupState::Empty;
        g.state = GroupState::PreparingRebalance;
        g.join_epoch += 1;
        let rebalance_timeout = g
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        tracing::debug!(group = %self.id, reason, generation = g.generation, "preparing rebalance");
        if initial && !self.settings.initial_rebalance_delay.is_zero() {
            let delay = self.settings.initial_rebalance_delay;
            g.initial_delay = Some((rebalance_timeout.saturating_sub(delay), false));
            self.schedule_join_timer(g.join_epoch, delay);
        } else {
            g.initial_delay = None;
            self.schedule_join_timer(g.join_epoch, rebalance_timeout);
            self.maybe_complete_join(g);
        }
    }

    /// Calls `f` with the group after `delay` (a timer; the callback checks
    /// the epoch or generation it was armed for and ignores stale firings).
    fn after(self: &Arc<Self>, delay: Duration, f: impl FnOnce(&Arc<Self>) + Send + 'static) {
        let group = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            f(&group);
        });
    }

    fn schedule_join_timer(self: &Arc<Self>, epoch: u64, after: Duration) {
        self.after(after, move |g| g.on_join_timer(epoch));
    }

    fn on_join_timer(self: &Arc<Self>, epoch: u64) {
        let mut g = self.inner.lock();
        if g.join_epoch != epoch || g.state != GroupState::PreparingRebalance {
            return;
        }
        if let Some((remaining, arrived)) = g.initial_delay {
            let delay = self.settings.initial_rebalance_delay;
            if arrived && !remaining.is_zero() {
                let step = delay.min(remaining);
                g.initial_delay = Some((remaining - step, false));
                self.schedule_join_timer(epoch, step);
                return;
            }
            g.initial_delay = None;
        }
        self.complete_join(&mut g);
    }

    /// Completes the join phase if every member has rejoined.
    fn maybe_complete_join(self: &Arc<Self>, g: &mut Inner) {
        if g.state == GroupState::PreparingRebalance
            && g.initial_delay.is_none()
            && g.pending.is_empty()
            && g.members.values().all(|m| m.join_waiter.is_some())
        {
            self.complete_join(g);
        }
    }

    fn complete_join(self: &Arc<Self>, g: &mut Inner) {
        // Members that did not rejoin in time leave the group.
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removing it");
            self.remove_member(g, &id);
        }
        g.join_epoch += 1;
        g.generation += 1;
        if g.members.is_empty() {
            g.state = GroupState::Empty;
            g.protocol = None;
            g.leader = None;
            g.empty_since = Some(Instant::now());
            tracing::info!(group = %self.id, generation = g.generation, "group is empty");
            return;
        }
        g.protocol = Some(self.select_protocol(g));
        if !g.leader.as_ref().is_some_and(|l| g.members.contains_key(l)) {
            g.leader = g
                .members
                .values()
                .min_by_key(|m| m.join_seq)
                .map(|m| m.id.clone());
        }
        g.state = GroupState::CompletingRebalance;
        let protocol = g.protocol.clone().unwrap_or_default();
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in &ids {
            let result = self.join_result_for(g, id, &protocol, false);
            if let Some(m) = g.members.get_mut(id) {
                m.synced = false;
                m.assignment = Bytes::new();
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(result);
                }
            }
            self.touch_session(g, id);
        }
        tracing::info!(
            group = %self.id, generation = g.generation, members = ids.len(), protocol = %protocol,
            "rebalance: join phase complete"
        );
        let timeout = g
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        let generation = g.generation;
        self.after(timeout, move |group| group.on_sync_timeout(generation));
    }

    fn on_sync_timeout(self: &Arc<Self>, generation: i32) {
        let mut g = self.inner.lock();
        if g.generation != generation || g.state != GroupState::CompletingRebalance {
            return;
        }
        let laggards: Vec<String> = g
            .members
            .values()
            .filter(|m| !m.synced)
            .map(|m| m.id.clone())
            .collect();
        for id in laggards {
            self.remove_member(&mut g, &id);
        }
        self.prepare_rebalance(&mut g, "members did not sync in time");
    }

    fn select_protocol(&self, g: &Inner) -> String {
        let mut members: Vec<&Member> = g.members.values().collect();
        members.sort_by_key(|m| m.join_seq);
        let candidates: Vec<&String> = members[0]
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in &members {
            if let Some((_, pick)) = m
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n))
                .map(|(n, b)| (b, n))
            {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == pick) {
                    v.0 += 1;
                }
            }
        }
        // Most votes wins; ties go to the first member's preference order.
        votes
            .iter()
            .enumerate()
            .max_by_key(|(i, (n, _))| (*n, usize::MAX - i))
            .map(|(_, (_, c))| (*c).clone())
            .unwrap_or_default()
    }

    fn remove_member(&self, g: &mut Inner, id: &str) {
        if let Some(mut m) = g.members.remove(id) {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(ResponseError::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(ResponseError::UnknownMemberId));
            }
            if let Some(instance) = &m.instance_id {
                if g.static_members.get(instance).map(String::as_str) == Some(id) {
                    g.static_members.remove(instance);
                }
            }
            if g.leader.as_deref() == Some(id) {
                g.leader = None;
            }
        }
        if g.members.is_empty() {
            g.empty_since = Some(Instant::now());
        }
    }

    /// Re-arms a member's session timer.
    fn touch_session(self: &Arc<Self>, g: &mut Inner, member_id: &str) {
        let Some(m) = g.members.get_mut(member_id) else {
            return;
        };
        m.session_epoch += 1;
        let (epoch, timeout) = (m.session_epoch, m.session_timeout);
        let id = member_id.to_string();
        self.after(timeout, move |group| group.on_session_timeout(&id, epoch));
    }

    fn on_session_timeout(self: &Arc<Self>, member_id: &str, epoch: u64) {
        let mut g = self.inner.lock();
        let Some(m) = g.members.get(member_id) else {
            return;
        };
        if m.session_epoch != epoch {
            return;
        }
        if m.join_waiter.is_some() || m.sync_waiter.is_some() {
            // Waiting on the group, not on the client: keep it alive.
            self.touch_session(&mut g, member_id);
            return;
        }
        tracing::info!(group = %self.id, member = member_id, "session timed out; removing member");
        self.remove_member(&mut g, member_id);
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(&mut g, "member session expired")
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(&mut g),
            _ => {}
        }
    }

    fn schedule_pending_expiry(self: &Arc<Self>, member_id: String, timeout: Duration) {
        self.after(timeout, move |group| {
            let mut g = group.inner.lock();
            if g.pending.remove(&member_id).is_some() {
                group.maybe_complete_join(&mut g);
            }
        });
    }

    /// Validates a member and generation for Heartbeat, SyncGroup and OffsetCommit.
    fn check_member(
        &self,
        g: &Inner,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            if let Some(current) = g.static_members.get(instance) {
                if current != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !g.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != g.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// SyncGroup.
    pub fn sync(
        self: &Arc<Self>,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Deferred<SyncResult> {
        let mut g = self.inner.lock();
        if g.state == GroupState::Dead {
            return Deferred::Now(SyncResult::error(ResponseError::CoordinatorNotAvailable));
        }
        if let Err(e) = self.check_member(&g, member_id, instance_id, generation) {
            return Deferred::Now(SyncResult::error(e));
        }
        let protocol_type = g.protocol_type.clone();
        let protocol_name = g.protocol.clone();
        match g.state {
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {
                Deferred::Now(SyncResult::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                self.touch_session(&mut g, member_id);
                let assignment = g
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                Deferred::Now(SyncResult {
                    error: 0,
                    protocol_type,
                    protocol_name,
                    assignment,
                })
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(member_id) {
                    m.synced = true;
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncResult::error(ResponseError::RebalanceInProgress));
                    }
                }
                self.touch_session(&mut g, member_id);
                if g.leader.as_deref() == Some(member_id) {
                    let assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in g.members.values_mut() {
                        m.assignment = assigned.get(&m.id).cloned().unwrap_or_default();
                    }
                    g.state = GroupState::Stable;
                    tracing::info!(group = %self.id, generation = g.generation, "rebalance complete; group is stable");
                    for m in g.members.values_mut() {
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncResult {
                                error: 0,
                                protocol_type: protocol_type.clone(),
                                protocol_name: protocol_name.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                }
                Deferred::Later(rx)
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        self: &Arc<Self>,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let mut g = self.inner.lock();
        if g.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(e) = self.check_member(&g, member_id, instance_id, generation) {
            // A member of an older generation must rejoin during a rebalance.
            if e == ResponseError::IllegalGeneration && g.state == GroupState::PreparingRebalance {
                self.touch_session(&mut g, member_id);
                return Err(ResponseError::RebalanceInProgress);
            }
            return Err(e);
        }
        self.touch_session(&mut g, member_id);
        match g.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for one member, by member id and/or instance id.
    pub fn leave(
        self: &Arc<Self>,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<String, ResponseError> {
        let mut g = self.inner.lock();
        let id = match instance_id {
            Some(instance) => {
                let current = g
                    .static_members
                    .get(instance)
                    .cloned()
                    .ok_or(ResponseError::UnknownMemberId)?;
                if !member_id.is_empty() && member_id != current {
                    return Err(ResponseError::FencedInstanceId);
                }
                current
            }
            None => member_id.to_string(),
        };
        if g.pending.remove(&id).is_some() {
            self.maybe_complete_join(&mut g);
            return Ok(id);
        }
        if !g.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        tracing::info!(group = %self.id, member = %id, "member left");
        self.remove_member(&mut g, &id);
        match g.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(&mut g, "member left")
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(&mut g),
            _ => {}
        }
        Ok(id)
    }

    /// Whether an OffsetCommit from this member may be applied.
    pub fn check_commit(
        self: &Arc<Self>,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let mut g = self.inner.lock();
        if g.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            // Commits outside group management: only while nobody is a member.
            return if g.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        if g.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        self.check_member(&g, member_id, instance_id, generation)?;
        self.touch_session(&mut g, member_id);
        Ok(())
    }
}
