//! Client quotas as Kafka has them (KIP-13, KIP-55, KIP-124, KIP-219):
//! `producer_byte_rate` and `consumer_byte_rate` (bytes per second) and
//! `request_percentage` (percent of one request thread's time) for a user,
//! a client id, or both, each by name or `<default>`.
//!
//! A request is charged to the most specific quota entity that sets the
//! key, in Kafka's order (user+client, user+default client, user, default
//! user+client, default user+default client, default user, client, default
//! client). Clients sharing the entity share its meter.
//!
//! A meter is a token bucket, as Kafka's controller mutation quota is
//! (KIP-599): credit accrues at the quota, up to [`BURST_SECONDS`] of it
//! (what Kafka's sampled rate lets a fresh client send at once), and each
//! request takes its bytes from it. In debt, the answer carries
//! `throttle_time_ms` = debt / quota, and the connection reads no further
//! request until that time has passed (KIP-219: the response is not
//! delayed, the channel is muted), so an over-quota client slows to its
//! quota whether or not it honours the throttle time itself.
//!
//! Why not Kafka's sampled rate (eleven one-second samples, throttle =
//! (rate - quota) / quota x window): a flat-out client's burst sits in one
//! sample, and when that sample leaves the window the client's whole
//! window of credit returns at once. Measured here with a 5 MiB/s quota:
//! a ~50 MB burst every ~11 s and a trickle between, so any 20 s of it read
//! 3.5 or 6 MiB/s depending on how many bursts it held. The bucket returns
//! credit as time passes and holds the client at its quota throughout.

use sluice_catalog::{Catalog, QuotaStore};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Seconds of quota a meter's credit holds at most: Kafka's sampled rate
/// judges a fresh client over its eleven samples less one, so it may send
/// ten seconds of its quota at once; the bucket allows the same.
pub const BURST_SECONDS: f64 = 10.0;
/// The longest throttle given (Kafka's whole window), and the deepest debt
/// a meter keeps (requests read while muted cannot dig it deeper).
const MAX_THROTTLE: Duration = Duration::from_secs(11);
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

/// A token bucket of bytes (or thread time).
#[derive(Default)]
struct Meter {
    /// Credit, in the quota's unit; below zero, a debt. None: never used
    /// (a fresh meter starts with a full bucket).
    credit: Option<f64>,
    /// When the credit was last brought up to date (since the manager
    /// started).
    at: Duration,
    last_used: Option<Instant>,
}

impl Meter {
    /// Brings the credit up to `now` at `limit` per second; returns it.
    fn refill(&mut self, now: Duration, limit: f64) -> f64 {
        let burst = limit.max(0.0) * BURST_SECONDS;
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        let credit = match self.credit {
            None => burst,
            Some(c) => (c + limit.max(0.0) * elapsed).min(burst),
        };
        self.credit = Some(credit);
        self.at = now;
        credit
    }

    /// Takes `amount` from the credit, keeping the debt within what one
    /// longest throttle pays back.
    fn take(&mut self, now: Duration, limit: f64, amount: f64) -> f64 {
        let floor = -limit.max(0.0) * MAX_THROTTLE.as_secs_f64();
        let credit = (self.refill(now, limit) - amount).max(floor);
        self.credit = Some(credit);
        credit
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

    /// The wait that pays back a debt (`credit` below zero) at `limit`.
    fn throttle_of(credit: f64, limit: f64) -> Throttle {
        if credit >= 0.0 {
            return Duration::ZERO;
        }
        if limit <= 0.0 {
            return MAX_THROTTLE;
        }
        Duration::from_secs_f64(-credit / limit).min(MAX_THROTTLE)
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
        let t = self.with_meter(charge, |m, now, limit| m.take(now, limit, amount));
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
        self.with_meter(charge, |m, now, limit| m.refill(now, limit))
    }

    /// Runs `f` on the charge's meter; the throttle of the credit it
    /// returns.
    fn with_meter(
        &self,
        charge: &Charge,
        f: impl FnOnce(&mut Meter, Duration, f64) -> f64,
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
        let credit = f(m, now, charge.limit);
        let throttle = Self::throttle_of(credit, charge.limit);
        tracing::trace!(meter = ?charge.meter, credit, throttle_ms = throttle.as_millis() as u64, "quota meter");
        throttle
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
    fn meters_are_token_buckets() {
        let s = Duration::from_secs;
        let limit = 10.0;
        let mut m = Meter::default();
        // A fresh meter holds BURST_SECONDS of credit.
        assert_eq!(m.take(s(100), limit, 60.0), 40.0);
        assert_eq!(Quotas::throttle_of(40.0, limit), Duration::ZERO);
        // Past it: in debt, throttled for debt / limit.
        let c = m.take(s(100), limit, 60.0);
        assert_eq!(c, -20.0);
        assert_eq!(Quotas::throttle_of(c, limit), s(2));
        // Credit returns with time, at the limit, up to the burst.
        assert_eq!(m.refill(s(103), limit), 10.0);
        assert_eq!(m.refill(s(1000), limit), 100.0);
        // Held at the quota: a request of one second's worth every second
        // is never throttled once the burst is spent; faster is.
        let mut m = Meter::default();
        m.take(s(0), limit, 100.0);
        for t in 1..=20 {
            assert_eq!(m.take(s(t), limit, 10.0), 0.0);
        }
        assert!(m.take(s(20), limit, 5.0) < 0.0);
        // The debt is bounded by one longest throttle; a zero quota always
        // throttles the most.
        let c = m.take(s(20), limit, 1e12);
        assert_eq!(Quotas::throttle_of(c, limit), MAX_THROTTLE);
        assert_eq!(m.refill(s(20), limit), -110.0);
        assert_eq!(Quotas::throttle_of(-1.0, 0.0), MAX_THROTTLE);
    }
}
