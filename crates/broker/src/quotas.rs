//! Client quotas as Kafka has them (KIP-13, KIP-55, KIP-124, KIP-219):
//! `producer_byte_rate` and `consumer_byte_rate` (bytes per second) and
//! `request_percentage` (percent of one request thread's time) for a user,
//! a client id, or both, each by name or `<default>`.
//!
//! A request is charged to the most specific quota entity that sets the
//! key, in Kafka's order (user+client, user+default client, user, default
//! user+client, default user+default client, default user, client, default
//! client). Clients sharing the entity share its meter. A meter keeps
//! [`SAMPLES`] one-second samples; over its quota, the answer carries
//! `throttle_time_ms` = (rate - quota) / quota x window, and the connection
//! reads no further request until that time has passed (KIP-219: the
//! response is not delayed, the channel is muted), so an over-quota client
//! slows to its quota whether or not it honours the throttle time itself.

use sluice_catalog::{Catalog, QuotaStore};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Samples of one second a meter keeps (Kafka's quota.window.num).
pub const SAMPLES: usize = 11;
/// The longest throttle given (the whole window).
const MAX_THROTTLE: Duration = Duration::from_secs(SAMPLES as u64);
/// Idle meters are forgotten after this long.
const METER_IDLE: Duration = Duration::from_secs(60);

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKind {
    Produce,
    Fetch,
    Request,
}

impl QuotaKind {
    pub const ALL: [QuotaKind; 3] = [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request];

    pub fn key(self) -> &'static str {
        match self {
            Self::Produce => "producer_byte_rate",
            Self::Fetch => "consumer_byte_rate",
            Self::Request => "request_percentage",
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == key)
    }
}

/// One component of an entity: a name, or the default (`None`).
pub type Name = Option<String>;

/// Who a quota is for: a user, a client id, or both (each by name or the
/// default). At least one is present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    pub user: Option<Name>,
    pub client_id: Option<Name>,
}

impl Entity {
    /// The catalog's text for it: its components as a JSON list of
    /// `[type, name or null]` pairs.
    pub fn canonical(&self) -> String {
        serde_json::to_string(&self.components()).unwrap_or_default()
    }

    pub fn from_canonical(s: &str) -> Option<Self> {
        let parts: Vec<(String, Option<String>)> = serde_json::from_str(s).ok()?;
        let mut e = Entity {
            user: None,
            client_id: None,
        };
        for (kind, name) in parts {
            match kind.as_str() {
                "user" => e.user = Some(name),
                "client-id" => e.client_id = Some(name),
                _ => return None,
            }
        }
        (e.user.is_some() || e.client_id.is_some()).then_some(e)
    }

    /// Kafka's components: (`user` | `client-id`, name or None for default).
    pub fn components(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            out.push(("user", u.as_deref()));
        }
        if let Some(c) = &self.client_id {
            out.push(("client-id", c.as_deref()));
        }
        out
    }

    /// The candidates for a (user, client id), most specific first.
    fn candidates(user: &str, client: &str) -> [Entity; 8] {
        let e = |u: Option<Name>, c: Option<Name>| Entity {
            user: u,
            client_id: c,
        };
        let (u, c) = (Some(user.to_string()), Some(client.to_string()));
        [
            e(Some(u.clone()), Some(c.clone())),
            e(Some(u.clone()), Some(None)),
            e(Some(u), None),
            e(Some(None), Some(c.clone())),
            e(Some(None), Some(None)),
            e(Some(None), None),
            e(None, Some(c)),
            e(None, Some(None)),
        ]
    }
}

/// Bytes (or thread time) counted in one-second samples.
#[derive(Default)]
struct Meter {
    /// (second since the manager started, amount)
    samples: VecDeque<(u64, f64)>,
    last_used: Option<Instant>,
}

impl Meter {
    fn expire(&mut self, now_s: u64) {
        while self
            .samples
            .front()
            .is_some_and(|(s, _)| *s + (SAMPLES as u64) <= now_s)
        {
            self.samples.pop_front();
        }
    }

    fn record(&mut self, now_s: u64, amount: f64) {
        self.expire(now_s);
        match self.samples.back_mut() {
            Some((s, a)) if *s == now_s => *a += amount,
            _ => self.samples.push_back((now_s, amount)),
        }
    }

    /// The rate and the window it is over (Kafka's: never shorter than
    /// all but one sample, so a first burst is not judged on a sliver).
    fn rate(&mut self, now: Duration) -> (f64, f64) {
        let now_s = now.as_secs();
        self.expire(now_s);
        let total: f64 = self.samples.iter().map(|(_, a)| a).sum();
        let oldest = self.samples.front().map_or(now_s, |(s, _)| *s) as f64;
        let window = (now.as_secs_f64() - oldest).max((SAMPLES - 1) as f64);
        (total / window, window)
    }
}

/// When a connection may read its next request: a throttled request mutes
/// its connection (KIP-219) until then.
pub struct Mute {
    base: Instant,
    until_ms: std::sync::atomic::AtomicU64,
}

impl Mute {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            until_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Mutes the connection for `d` from now (if that is later than now).
    pub fn extend(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let until = (self.base.elapsed() + d).as_millis() as u64;
        self.until_ms
            .fetch_max(until, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long the connection stays muted.
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.until_ms.load(std::sync::atomic::Ordering::Relaxed);
        let now = self.base.elapsed().as_millis() as u64;
        (until > now).then(|| Duration::from_millis(until - now))
    }
}

/// A throttle as the `throttle_time_ms` field of a response.
pub fn throttle_ms(t: Throttle) -> i32 {
    t.as_millis().min(i32::MAX as u128) as i32
}

/// The quotas and their meters.
pub struct Quotas {
    catalog: Arc<Catalog>,
    config: RwLock<Arc<BTreeMap<Entity, BTreeMap<QuotaKind, f64>>>>,
    meters: Mutex<HashMap<(QuotaKind, String, String), Meter>>,
    started: Instant,
}

/// A request's charge: how long its connection must wait.
pub type Throttle = Duration;

/// The quota a request is charged to: its limit and its meter (the quota
/// kind, and the user and client-id tags of the matching entity).
#[derive(Debug, Clone)]
pub struct Charge {
    limit: f64,
    meter: (QuotaKind, String, String),
}

impl Quotas {
    pub fn open(catalog: Arc<Catalog>) -> anyhow::Result<Arc<Self>> {
        let q = Arc::new(Self {
            catalog,
            config: RwLock::new(Arc::new(BTreeMap::new())),
            meters: Mutex::new(HashMap::new()),
            started: Instant::now(),
        });
        q.reload()?;
        Ok(q)
    }

    /// Every configured quota.
    pub fn config(&self) -> Arc<BTreeMap<Entity, BTreeMap<QuotaKind, f64>>> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reads the quotas from the catalog again (blocking).
    pub fn reload(&self) -> sluice_catalog::Result<()> {
        let mut config: BTreeMap<Entity, BTreeMap<QuotaKind, f64>> = BTreeMap::new();
        for (entity, key, value) in self.catalog.all_quotas()? {
            if let (Some(e), Some(k)) = (Entity::from_canonical(&entity), QuotaKind::parse(&key)) {
                config.entry(e).or_default().insert(k, value);
            }
        }
        let mut slot = match self.config.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *slot = Arc::new(config);
        Ok(())
    }

    /// Sets or removes quota values of an entity (blocking).
    pub fn alter(
        &self,
        entity: &Entity,
        changes: &[(QuotaKind, Option<f64>)],
    ) -> sluice_catalog::Result<()> {
        let rows: Vec<(String, Option<f64>)> = changes
            .iter()
            .map(|(k, v)| (k.key().to_string(), *v))
            .collect();
        self.catalog.alter_quotas(&entity.canonical(), &rows)?;
        self.reload()
    }

    /// The quota a (user, client id) is under for `kind`, and its meter.
    fn resolve(
        &self,
        kind: QuotaKind,
        user: &str,
        client: &str,
    ) -> Option<(f64, (QuotaKind, String, String))> {
        let config = self.config();
        if config.is_empty() {
            return None;
        }
        for e in Entity::candidates(user, client) {
            if let Some(limit) = config.get(&e).and_then(|v| v.get(&kind)) {
                let tag = |c: &Option<Name>, actual: &str| {
                    if c.is_some() {
                        actual.to_string()
                    } else {
                        String::new()
                    }
                };
                return Some((
                    *limit,
                    (kind, tag(&e.user, user), tag(&e.client_id, client)),
                ));
            }
        }
        None
    }

    fn throttle_of(rate: f64, window: f64, limit: f64) -> Throttle {
        if rate <= limit {
            return Duration::ZERO;
        }
        if limit <= 0.0 {
            return MAX_THROTTLE;
        }
        Duration::from_secs_f64(((rate - limit) / limit * window).max(0.0)).min(MAX_THROTTLE)
    }

    /// The quota `kind` a (principal, client id) is under, if any: what a
    /// request is charged to. None (no allocation) when no quota applies,
    /// so clients without quotas pay one read of the config per request.
    pub fn charge(&self, kind: QuotaKind, principal: &str, client: &str) -> Option<Charge> {
        let user = principal.strip_prefix("User:").unwrap_or(principal);
        let (limit, meter) = self.resolve(kind, user, client)?;
        Some(Charge { limit, meter })
    }

    /// Charges `amount` (bytes; for requests, milliseconds of thread time)
    /// to the charge's meter; returns the throttle it earns.
    pub fn record(&self, charge: &Charge, amount: f64) -> Throttle {
        let kind = charge.meter.0;
        // Requests are charged in percent of a thread: ms per second / 10.
        let amount = if kind == QuotaKind::Request {
            amount / 10.0
        } else {
            amount
        };
        let t = self.with_meter(charge, |m, now| {
            m.record(now.as_secs(), amount);
            m.rate(now)
        });
        if !t.is_zero() {
            sluice_observe::metrics()
                .quota_throttles
                .with_label_values(&[kind.key()])
                .inc();
        }
        t
    }

    /// The throttle the charge's client is under now, without charging
    /// anything (a fetch is charged when its size is known).
    pub fn current(&self, charge: &Charge) -> Throttle {
        self.with_meter(charge, |m, now| m.rate(now))
    }

    /// Runs `f` on the charge's meter; the throttle of the rate it returns.
    fn with_meter(
        &self,
        charge: &Charge,
        f: impl FnOnce(&mut Meter, Duration) -> (f64, f64),
    ) -> Throttle {
        let now = self.started.elapsed();
        let mut meters = match self.meters.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if meters.len() > 10_000 {
            meters.retain(|_, m| m.last_used.is_some_and(|t| t.elapsed() < METER_IDLE));
        }
        let m = meters.entry(charge.meter.clone()).or_default();
        m.last_used = Some(Instant::now());
        let (rate, window) = f(m, now);
        Self::throttle_of(rate, window, charge.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_round_trip_and_order() {
        let e = Entity {
            user: Some(Some("alice".into())),
            client_id: Some(None),
        };
        assert_eq!(Entity::from_canonical(&e.canonical()), Some(e.clone()));
        assert_eq!(
            e.components(),
            vec![("user", Some("alice")), ("client-id", None)]
        );
        assert_eq!(Entity::from_canonical("[]"), None);
        let c = Entity::candidates("alice", "app");
        assert_eq!(c[0].user, Some(Some("alice".into())));
        assert_eq!(
            c[7],
            Entity {
                user: None,
                client_id: Some(None)
            }
        );
    }

    #[test]
    fn meters_and_throttle() {
        let mut m = Meter::default();
        for s in 0..10u64 {
            m.record(s, 10.0);
        }
        let (rate, window) = m.rate(Duration::from_secs(10));
        assert!((rate - 10.0).abs() < 0.01, "{rate}");
        assert!((window - 10.0).abs() < 0.01);
        // A first burst is judged over the whole window, not its second.
        let mut fresh = Meter::default();
        fresh.record(100, 50.0);
        let (rate, _) = fresh.rate(Duration::from_secs(100));
        assert!((rate - 5.0).abs() < 0.01, "{rate}");
        // Old samples leave the window.
        let (rate, _) = m.rate(Duration::from_secs(30));
        assert_eq!(rate, 0.0);
        assert_eq!(Quotas::throttle_of(5.0, 10.0, 10.0), Duration::ZERO);
        assert_eq!(
            Quotas::throttle_of(20.0, 10.0, 10.0),
            Duration::from_secs(10)
        );
        assert_eq!(Quotas::throttle_of(1000.0, 10.0, 10.0), MAX_THROTTLE);
    }
}
