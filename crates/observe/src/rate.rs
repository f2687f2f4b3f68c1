//! Per-second rates of monotonic counters, sampled periodically: the rate is
//! the change between the newest sample and one about `window` older.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Rates for many keyed counters.
pub struct RateTracker {
    window: Duration,
    samples: Mutex<HashMap<String, VecDeque<(Instant, f64)>>>,
}

impl RateTracker {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            samples: Mutex::new(HashMap::new()),
        }
    }

    /// Records the current value of a counter.
    pub fn sample(&self, key: &str, value: f64, now: Instant) {
        let mut all = self.samples.lock();
        let q = all.entry(key.to_string()).or_default();
        q.push_back((now, value));
        while q.len() > 2
            && q.front()
                .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            q.pop_front();
        }
    }

    /// Per-second rate over the window (0 without two samples).
    pub fn rate(&self, key: &str) -> f64 {
        let all = self.samples.lock();
        let Some(q) = all.get(key) else { return 0.0 };
        match (q.front(), q.back()) {
            (Some((t0, v0)), Some((t1, v1))) if t1 > t0 => {
                (v1 - v0).max(0.0) / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Forgets keys not in `keep`.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.samples.lock().retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_rates_over_the_window() {
        let r = RateTracker::new(Duration::from_secs(10));
        let t0 = Instant::now();
        r.sample("a", 0.0, t0);
        r.sample("a", 50.0, t0 + Duration::from_secs(5));
        assert!((r.rate("a") - 10.0).abs() < 1e-9);
        assert_eq!(r.rate("b"), 0.0);
        r.sample("a", 50.0, t0 + Duration::from_secs(20));
        r.sample("a", 50.0, t0 + Duration::from_secs(21));
        assert_eq!(r.rate("a"), 0.0);
    }
}
