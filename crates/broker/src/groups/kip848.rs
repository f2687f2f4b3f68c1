//! KIP-848's consumer group protocol (`group.protocol=consumer`): the
//! broker assigns. Members send ConsumerGroupHeartbeat with their
//! subscription (topic names or a regex) and the partitions they own; the
//! group has an epoch that moves whenever its members, their subscriptions
//! or the subscribed topics' partitions change, and a target assignment
//! computed by a server-side assignor (`uniform`, sticky, or `range`) for
//! that epoch. Each member is brought to its target incrementally, with no
//! stop-the-world rebalance: it is first told to give up the partitions it
//! must revoke (keeping its epoch), and once it reports them gone it moves
//! to the group's epoch and is given the partitions of its target that no
//! other member still holds; the rest follow at its next heartbeats, as
//! their holders release them.
//!
//! A member that stops heartbeating for the session timeout, or does not
//! revoke within its rebalance timeout, is removed; the group's epoch moves
//! and its partitions go to the others.

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A partition by topic id.
pub type Tp = (Uuid, i32);
/// The topics a group may subscribe to: name -> (id, partition count).
pub type TopicsView = BTreeMap<String, (Uuid, i32)>;

/// The assignors served, the first the default.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// Kafka's `group.consumer.session.timeout.ms` default.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(45);

/// What a ConsumerGroupHeartbeat says.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub topics: Option<Vec<String>>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// The partitions the member owns now (`None`: unchanged).
    pub owned: Option<BTreeSet<Tp>>,
    pub client_id: String,
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub member_id: String,
    pub member_epoch: i32,
    /// The member's whole assignment, when it changed (`None`: keep yours).
    pub assignment: Option<BTreeSet<Tp>>,
}

#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    rack: Option<String>,
    client_id: String,
    client_host: String,
    epoch: i32,
    previous_epoch: i32,
    topics: Vec<String>,
    /// The regex as sent, and compiled once (matched on every heartbeat).
    regex: Option<(String, regex::Regex)>,
    assignor: Option<String>,
    rebalance_timeout: Duration,
    /// What the member holds, as last told to it.
    owned: BTreeSet<Tp>,
    /// What it reported holding last.
    reported: BTreeSet<Tp>,
    /// Partitions it was told to give up, not yet reported gone.
    revoking: BTreeSet<Tp>,
    revoke_deadline: Option<Instant>,
    last_seen: Instant,
    /// The assignment last sent.
    sent: Option<BTreeSet<Tp>>,
}

/// One member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub topics: Vec<String>,
    pub regex: Option<String>,
    pub assigned: BTreeSet<Tp>,
    pub target: BTreeSet<Tp>,
}

/// A group as ConsumerGroupDescribe and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Default)]
struct State {
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, BTreeSet<Tp>>,
    /// The subscribed topics (and partition counts) the target was
    /// computed for.
    subscribed: Vec<(String, Uuid, i32)>,
    assignor: String,
}

/// A consumer group of the new protocol.
pub struct ConsumerGroup {
    state: Mutex<State>,
}

impl Default for ConsumerGroup {
    fn default() -> Self {
        Self::new()
    }
}

fn fail(e: ResponseError, m: impl Into<String>) -> (ResponseError, Option<String>) {
    (e, Some(m.into()))
}

/// Whether a topic matches a member's subscription.
impl Member {
    fn subscribes(&self, name: &str) -> bool {
        self.topics.iter().any(|t| t == name)
            || self.regex.as_ref().is_some_and(|(_, r)| r.is_match(name))
    }
}

fn compile(regex: &str) -> Result<regex::Regex, (ResponseError, Option<String>)> {
    regex::Regex::new(&format!("^(?:{regex})$")).map_err(|e| {
        fail(
            ResponseError::InvalidRegularExpression,
            format!("subscribed topic regex {regex:?}: {e}"),
        )
    })
}

impl ConsumerGroup {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                assignor: ASSIGNORS[0].to_string(),
                ..State::default()
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.state.lock().members.is_empty()
    }

    /// Handles a heartbeat at `now`, the cluster's topics being `topics`.
    pub fn heartbeat(
        &self,
        hb: Heartbeat,
        topics: &TopicsView,
        now: Instant,
    ) -> Result<Answer, (ResponseError, Option<String>)> {
        if let Some(a) = &hb.assignor {
            if !ASSIGNORS.contains(&a.as_str()) {
                return Err(fail(
                    ResponseError::UnsupportedAssignor,
                    format!("assignor {a:?} is not one of {ASSIGNORS:?}"),
                ));
            }
        }
        // `Some(None)`: the member clears its regex.
        let pattern = match hb.regex.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(r) => Some(Some((r.to_string(), compile(r)?))),
        };
        let mut s = self.state.lock();
        match hb.member_epoch {
            -1 | -2 => {
                // Leaving (-2: a static member leaving for now).
                let known = s.members.remove(&hb.member_id).is_some()
                    || hb.instance_id.as_ref().is_some_and(|i| {
                        let id = s
                            .members
                            .iter()
                            .find(|(_, m)| m.instance_id.as_ref() == Some(i))
                            .map(|(id, _)| id.clone());
                        id.is_some_and(|id| s.members.remove(&id).is_some())
                    });
                if known {
                    s.target.remove(&hb.member_id);
                    s.epoch += 1;
                }
                return Ok(Answer {
                    member_id: hb.member_id,
                    member_epoch: hb.member_epoch,
                    assignment: None,
                });
            }
            _ => {}
        }
        let mut moved = false;
        let member_id = match hb.member_epoch {
            0 => {
                let (id, new) = Self::join(&mut s, &hb, pattern.clone().flatten(), now);
                moved |= new;
                id
            }
            e if e < 0 => {
                return Err(fail(
                    ResponseError::InvalidRequest,
                    format!("member epoch {e} is not valid"),
                ))
            }
            e => {
                let m = s.members.get(&hb.member_id).ok_or_else(|| {
                    fail(
                        ResponseError::UnknownMemberId,
                        format!("member {} is not in the group", hb.member_id),
                    )
                })?;
                if e != m.epoch && e != m.previous_epoch {
                    return Err(fail(
                        ResponseError::FencedMemberEpoch,
                        format!("member epoch {e} is not the member's {}", m.epoch),
                    ));
                }
                hb.member_id.clone()
            }
        };
        // Subscription changes move the group's epoch.
        if let Some(m) = s.members.get_mut(&member_id) {
            m.last_seen = now;
            if let Some(t) = &hb.topics {
                let mut t = t.clone();
                t.sort();
                t.dedup();
                if t != m.topics {
                    m.topics = t;
                    moved = true;
                }
            }
            if let Some(p) = pattern {
                let sent = |x: &Option<(String, regex::Regex)>| x.as_ref().map(|(r, _)| r.clone());
                if sent(&p) != sent(&m.regex) {
                    m.regex = p;
                    moved = true;
                }
            }
            if hb.assignor.is_some() && hb.assignor != m.assignor {
                m.assignor = hb.assignor.clone();
                moved = true;
            }
            if hb.rebalance_timeout_ms > 0 {
                m.rebalance_timeout = Duration::from_millis(hb.rebalance_timeout_ms as u64);
            }
            if let Some(owned) = hb.owned {
                m.reported = owned;
            }
        }
        // The subscribed topics changed (created, deleted, more partitions).
        let subscribed = Self::subscribed(&s, topics);
        if subscribed != s.subscribed {
            s.subscribed = subscribed;
            moved = true;
        }
        if moved {
            s.epoch += 1;
        }
        if s.epoch > s.assignment_epoch {
            Self::assign(&mut s, topics);
        }
        Ok(Self::reconcile(&mut s, &member_id, now))
    }

    /// Adds a member (epoch 0); returns its id (a new one when it sent none)
    /// and whether the group's membership changed.
    fn join(
        s: &mut State,
        hb: &Heartbeat,
        regex: Option<(String, regex::Regex)>,
        now: Instant,
    ) -> (String, bool) {
        let member_id = if hb.member_id.is_empty() {
            Uuid::new_v4().simple().to_string()
        } else {
            hb.member_id.clone()
        };
        // A static member coming back takes its predecessor's place.
        let mut inherited = None;
        if let Some(instance) = &hb.instance_id {
            let old = s
                .members
                .iter()
                .find(|(id, m)| m.instance_id.as_ref() == Some(instance) && **id != member_id)
                .map(|(id, _)| id.clone());
            if let Some(old) = old {
                s.members.remove(&old);
                inherited = s.target.remove(&old);
            }
        }
        let topics = hb.topics.clone().unwrap_or_default();
        let existed = s.members.contains_key(&member_id);
        s.members.insert(
            member_id.clone(),
            Member {
                instance_id: hb.instance_id.clone(),
                rack: hb.rack.clone(),
                client_id: hb.client_id.clone(),
                client_host: hb.client_host.clone(),
                epoch: 0,
                previous_epoch: -1,
                topics,
                regex,
                assignor: hb.assignor.clone(),
                rebalance_timeout: Duration::from_millis(hb.rebalance_timeout_ms.max(1000) as u64),
                owned: BTreeSet::new(),
                reported: BTreeSet::new(),
                revoking: BTreeSet::new(),
                revoke_deadline: None,
                last_seen: now,
                sent: None,
            },
        );
        let changed = match inherited {
            Some(t) => {
                s.target.insert(member_id.clone(), t);
                false
            }
            None => !existed,
        };
        (member_id, changed)
    }

    /// Every (topic, id, partitions) some member subscribes to.
    fn subscribed(s: &State, topics: &TopicsView) -> Vec<(String, Uuid, i32)> {
        topics
            .iter()
            .filter(|(name, _)| s.members.values().any(|m| m.subscribes(name)))
            .map(|(name, (id, n))| (name.clone(), *id, *n))
            .collect()
    }

    /// Computes the target assignment for the group's epoch.
    fn assign(s: &mut State, topics: &TopicsView) {
        // The assignor most members ask for (ties: the first served).
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in s.members.values() {
            if let Some(a) = &m.assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        // `max_by_key` keeps the last of equals: reversed, the first served.
        let assignor = ASSIGNORS
            .iter()
            .rev()
            .copied()
            .max_by_key(|a| votes.get(a).copied().unwrap_or(0))
            .unwrap_or(ASSIGNORS[0]);
        s.assignor = assignor.to_string();
        let eligible: BTreeMap<String, BTreeSet<String>> = s
            .members
            .iter()
            .map(|(id, m)| {
                let names = topics.keys().filter(|t| m.subscribes(t)).cloned().collect();
                (id.clone(), names)
            })
            .collect();
        s.target = if assignor == "range" {
            range_assign(&eligible, topics)
        } else {
            uniform_assign(&eligible, topics, &s.target)
        };
        s.assignment_epoch = s.epoch;
    }

    /// Moves one member toward its target; the answer for it.
    fn reconcile(s: &mut State, member_id: &str, now: Instant) -> Answer {
        let target = s.target.get(member_id).cloned().unwrap_or_default();
        // Held by others (or being revoked by them).
        let held: BTreeSet<Tp> = s
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .flat_map(|(_, m)| m.owned.iter().chain(m.revoking.iter()).copied())
            .collect();
        let assignment_epoch = s.assignment_epoch;
        let Some(m) = s.members.get_mut(member_id) else {
            return Answer {
                member_id: member_id.to_string(),
                member_epoch: -1,
                assignment: None,
            };
        };
        // A revocation is done once the member reports none of them.
        if !m.revoking.is_empty() && m.revoking.is_disjoint(&m.reported) {
            m.revoking.clear();
            m.revoke_deadline = None;
        }
        if m.revoking.is_empty() {
            let revoke: BTreeSet<Tp> = m.owned.difference(&target).copied().collect();
            if !revoke.is_empty() {
                for tp in &revoke {
                    m.owned.remove(tp);
                }
                m.revoking = revoke;
                m.revoke_deadline = Some(now + m.rebalance_timeout);
            } else {
                for tp in target.difference(&held) {
                    m.owned.insert(*tp);
                }
                if m.epoch != assignment_epoch {
                    m.previous_epoch = m.epoch;
                    m.epoch = assignment_epoch;
                }
            }
        }
        let assignment = (m.sent.as_ref() != Some(&m.owned)).then(|| m.owned.clone());
        if assignment.is_some() {
            m.sent = Some(m.owned.clone());
        }
        Answer {
            member_id: member_id.to_string(),
            member_epoch: m.epoch,
            assignment,
        }
    }

    /// Removes members past their session timeout or late to revoke;
    /// returns how many went.
    pub fn expire(&self, now: Instant, session: Duration) -> usize {
        let mut s = self.state.lock();
        let gone: Vec<String> = s
            .members
            .iter()
            .filter(|(_, m)| {
                now.duration_since(m.last_seen) > session
                    || m.revoke_deadline.is_some_and(|d| now > d)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            s.members.remove(id);
            s.target.remove(id);
        }
        if !gone.is_empty() {
            s.epoch += 1;
        }
        gone.len()
    }

    /// Whether a member of this epoch may commit offsets.
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        let s = self.state.lock();
        if member_id.is_empty() && epoch < 0 {
            return if s.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        let m = s
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if epoch > m.epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    pub fn view(&self) -> GroupView {
        let s = self.state.lock();
        let state = if s.members.is_empty() {
            "Empty"
        } else if s.members.iter().all(|(id, m)| {
            m.epoch == s.assignment_epoch
                && m.revoking.is_empty()
                && s.target
                    .get(id)
                    .map_or(m.owned.is_empty(), |t| *t == m.owned)
        }) {
            "Stable"
        } else {
            "Reconciling"
        };
        GroupView {
            state,
            epoch: s.epoch,
            assignment_epoch: s.assignment_epoch,
            assignor: s.assignor.clone(),
            members: s
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack: m.rack.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    epoch: m.epoch,
                    topics: m.topics.clone(),
                    regex: m.regex.as_ref().map(|(r, _)| r.clone()),
                    assigned: m.owned.clone(),
                    target: s.target.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// Kafka's uniform assignor, sticky: every partition of a subscribed topic
/// goes to one member subscribing to it; members keep what their previous
/// target gave them up to an even share, the rest goes to whoever has
/// fewest.
fn uniform_assign(
    eligible: &BTreeMap<String, BTreeSet<String>>,
    topics: &TopicsView,
    previous: &BTreeMap<String, BTreeSet<Tp>>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out: BTreeMap<String, BTreeSet<Tp>> = eligible
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    if eligible.is_empty() {
        return out;
    }
    let partitions: Vec<(String, Tp)> = topics
        .iter()
        .filter(|(name, _)| eligible.values().any(|e| e.contains(*name)))
        .flat_map(|(name, (id, n))| (0..*n).map(move |p| (name.clone(), (*id, p))))
        .collect();
    let share = partitions.len().div_ceil(eligible.len());
    let mut left = Vec::new();
    for (name, tp) in &partitions {
        let keeper = previous
            .iter()
            .find(|(m, t)| t.contains(tp) && eligible.get(*m).is_some_and(|e| e.contains(name)));
        match keeper {
            Some((m, _)) if out.get(m).is_some_and(|o| o.len() < share) => {
                if let Some(o) = out.get_mut(m) {
                    o.insert(*tp);
                }
            }
            _ => left.push((name.clone(), *tp)),
        }
    }
    for (name, tp) in left {
        let to = out
            .iter()
            .filter(|(m, _)| eligible.get(*m).is_some_and(|e| e.contains(&name)))
            .min_by_key(|(m, o)| (o.len(), (*m).clone()))
            .map(|(m, _)| m.clone());
        if let Some(m) = to {
            if let Some(o) = out.get_mut(&m) {
                o.insert(tp);
            }
        }
    }
    out
}

/// Kafka's range assignor: per topic, its subscribers (by member id) get
/// contiguous ranges of partitions, the first ones one more.
fn range_assign(
    eligible: &BTreeMap<String, BTreeSet<String>>,
    topics: &TopicsView,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out: BTreeMap<String, BTreeSet<Tp>> = eligible
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (name, (id, n)) in topics {
        let members: Vec<&String> = eligible
            .iter()
            .filter(|(_, e)| e.contains(name))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let (each, extra) = (*n as usize / members.len(), *n as usize % members.len());
        let mut p = 0i32;
        for (i, m) in members.iter().enumerate() {
            let count = each + usize::from(i < extra);
            for _ in 0..count {
                if let Some(o) = out.get_mut(*m) {
                    o.insert((*id, p));
                }
                p += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(topics: &[(&str, i32)]) -> TopicsView {
        topics
            .iter()
            .enumerate()
            .map(|(i, (n, p))| (n.to_string(), (Uuid::from_u128(i as u128 + 1), *p)))
            .collect()
    }

    fn hb(
        member: &str,
        epoch: i32,
        topics: Option<&[&str]>,
        owned: Option<&BTreeSet<Tp>>,
    ) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: 30_000,
            topics: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
            owned: owned.cloned(),
            ..Default::default()
        }
    }

    #[test]
    fn a_second_member_gets_half_after_the_first_revokes() {
        let g = ConsumerGroup::new();
        let t = view(&[("t", 4)]);
        let now = Instant::now();
        let a = g
            .heartbeat(hb("a", 0, Some(&["t"]), None), &t, now)
            .unwrap();
        assert_eq!(a.member_epoch, 1);
        let a_owned = a.assignment.clone().unwrap();
        assert_eq!(a_owned.len(), 4, "alone, it gets everything");
        let b = g
            .heartbeat(hb("b", 0, Some(&["t"]), None), &t, now)
            .unwrap();
        assert_eq!(
            b.assignment.as_ref().map(|x| x.len()),
            Some(0),
            "nothing free yet"
        );
        // a is told to revoke two, keeping its epoch.
        let a2 = g
            .heartbeat(hb("a", 1, None, Some(&a_owned)), &t, now)
            .unwrap();
        let kept = a2.assignment.clone().unwrap();
        assert_eq!((a2.member_epoch, kept.len()), (1, 2));
        // It reports them gone: its epoch moves.
        let a3 = g.heartbeat(hb("a", 1, None, Some(&kept)), &t, now).unwrap();
        assert_eq!(a3.member_epoch, 2);
        assert!(a3.assignment.is_none(), "unchanged");
        // b gets the released two.
        let b2 = g
            .heartbeat(
                hb("b", b.member_epoch, None, Some(&BTreeSet::new())),
                &t,
                now,
            )
            .unwrap();
        let b_owned = b2.assignment.unwrap();
        assert_eq!((b2.member_epoch, b_owned.len()), (2, 2));
        assert!(b_owned.is_disjoint(&kept));
        assert_eq!(g.view().state, "Stable");
        // b leaves: a gets everything back.
        g.heartbeat(hb("b", -1, None, None), &t, now).unwrap();
        let a4 = g.heartbeat(hb("a", 2, None, Some(&kept)), &t, now).unwrap();
        assert_eq!(a4.assignment.unwrap().len(), 4);
        // Stale epochs and unknown members are refused.
        assert_eq!(
            g.heartbeat(hb("a", 1, None, None), &t, now).unwrap_err().0,
            ResponseError::FencedMemberEpoch
        );
        assert_eq!(
            g.heartbeat(hb("zz", 5, None, None), &t, now).unwrap_err().0,
            ResponseError::UnknownMemberId
        );
    }

    #[test]
    fn regex_subscriptions_follow_new_topics_and_sessions_expire() {
        let g = ConsumerGroup::new();
        let now = Instant::now();
        let mut h = hb("a", 0, Some(&[]), None);
        h.regex = Some("logs-.*".into());
        let t1 = view(&[("logs-a", 2), ("other", 3)]);
        let a = g.heartbeat(h, &t1, now).unwrap();
        assert_eq!(a.assignment.unwrap().len(), 2);
        let t2 = view(&[("logs-a", 2), ("logs-b", 1), ("other", 3)]);
        let a2 = g
            .heartbeat(hb("a", a.member_epoch, None, None), &t2, now)
            .unwrap();
        assert!(
            a2.member_epoch > a.member_epoch,
            "a new matching topic moves the epoch"
        );
        assert_eq!(a2.assignment.unwrap().len(), 3);
        assert_eq!(g.expire(now + Duration::from_secs(50), SESSION_TIMEOUT), 1);
        assert!(g.is_empty());
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let t = view(&[("t", 5)]);
        let eligible: BTreeMap<String, BTreeSet<String>> = ["a", "b"]
            .iter()
            .map(|m| (m.to_string(), ["t".to_string()].into_iter().collect()))
            .collect();
        let out = range_assign(&eligible, &t);
        let parts = |m: &str| out[m].iter().map(|(_, p)| *p).collect::<Vec<_>>();
        assert_eq!(parts("a"), vec![0, 1, 2]);
        assert_eq!(parts("b"), vec![3, 4]);
    }
}
