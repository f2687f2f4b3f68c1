//! Per-second rates of monotonic counters, sampled periodically: the rate is
//! the change between the newest sample and one about `window` older; and a
//! short history of a few such rates, for charts that should show the recent
//! past when they are first opened.

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

    /// Records the current value of a counter. A counter seen for the first
    /// time is taken to have been 0 at `zero_at`: the previous sampling,
    /// when it did not exist yet (or the process start). Without that, a
    /// topic created and written between two samplings would show no
    /// throughput for what it took in then.
    pub fn sample(&self, key: &str, value: f64, now: Instant, zero_at: Instant) {
        let mut all = self.samples.lock();
        let q = all.entry(key.to_string()).or_default();
        if q.is_empty() && zero_at < now {
            q.push_back((zero_at, 0.0));
        }
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

/// The last `capacity` samples of `N` values, each with its wall-clock time
/// in Unix milliseconds, oldest first.
pub struct History<const N: usize> {
    capacity: usize,
    points: Mutex<VecDeque<(i64, [f64; N])>>,
}

impl<const N: usize> History<N> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            points: Mutex::new(VecDeque::with_capacity(capacity.max(1))),
        }
    }

    /// Appends a sample, forgetting the oldest past the capacity.
    pub fn push(&self, unix_ms: i64, values: [f64; N]) {
        let mut q = self.points.lock();
        if q.len() == self.capacity {
            q.pop_front();
        }
        q.push_back((unix_ms, values));
    }

    /// The samples, oldest first.
    pub fn points(&self) -> Vec<(i64, [f64; N])> {
        self.points.lock().iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_rates_over_the_window() {
        let r = RateTracker::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        r.sample("a", 0.0, t0, t0);
        r.sample("a", 50.0, s(5), t0);
        assert!((r.rate("a") - 10.0).abs() < 1e-9);
        assert_eq!(r.rate("b"), 0.0);
        r.sample("a", 50.0, s(20), s(5));
        r.sample("a", 50.0, s(21), s(20));
        assert_eq!(r.rate("a"), 0.0);
        // A counter that appeared since the previous sampling counts from
        // 0 then: 40 in the 2 s since.
        r.sample("b", 40.0, s(23), s(21));
        assert!((r.rate("b") - 20.0).abs() < 1e-9);
    }

    #[test]
    fn history_keeps_the_newest_samples_in_order() {
        let h = History::<2>::new(3);
        assert!(h.points().is_empty());
        for i in 0..5 {
            h.push(i, [i as f64, -(i as f64)]);
        }
        assert_eq!(
            h.points(),
            vec![(2, [2.0, -2.0]), (3, [3.0, -3.0]), (4, [4.0, -4.0])]
        );
    }
}
