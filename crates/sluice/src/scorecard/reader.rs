//! A consumer-group reader for the scorecard: a librdkafka consumer on its
//! own thread that counts what it reads, measures each record's end-to-end
//! latency (arrival time minus the producer's CreateTime, both on this
//! host's clock), and can mark the sequence numbers it sees (the
//! durability check) or sleep per record (a deliberately slow consumer).

use anyhow::Context;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::loadgen::kafka::{latency_histogram, merged_seconds};

/// The header carrying a scorecard record's sequence number (decimal).
pub const SEQ_HEADER: &str = "scorecard-seq";

#[derive(Default)]
pub struct ReaderStats {
    pub received: u64,
    /// End-to-end latency in µs, by the second (since the run's start) the
    /// record was produced in.
    pub e2e_by_second: Vec<Histogram<u64>>,
    /// Bit per sequence number seen (when tracking).
    seen: Option<Vec<u64>>,
    pub duplicates: u64,
    pub assigned: bool,
    pub first_record: Option<Instant>,
    pub last_record: Option<Instant>,
}

impl ReaderStats {
    /// Whether sequence number `seq` was read.
    pub fn saw(&self, seq: u64) -> bool {
        self.seen.as_ref().is_some_and(|bits| {
            bits.get((seq / 64) as usize)
                .is_some_and(|w| w & (1 << (seq % 64)) != 0)
        })
    }

    /// End-to-end latency of the records produced in seconds `from..to`.
    pub fn e2e_between(&self, from: usize, to: usize) -> Histogram<u64> {
        merged_seconds(&self.e2e_by_second, from, to)
    }
}

pub struct Reader {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<ReaderStats>>,
    thread: JoinHandle<()>,
}

impl Reader {
    /// Joins `group` on `topics` (from the earliest offset when the group
    /// has none). `start_ms`: the run's start, wall clock. `delay`: sleep
    /// per record. `track`: remember sequence numbers.
    pub fn start(
        base: &ClientConfig,
        group: &str,
        topics: &[String],
        start_ms: i64,
        delay: Duration,
        track: bool,
    ) -> anyhow::Result<Reader> {
        let mut config = base.clone();
        config
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer = config
            .create()
            .with_context(|| format!("cannot create a consumer for group {group}"))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .with_context(|| format!("cannot subscribe group {group}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(ReaderStats {
            seen: track.then(Vec::new),
            ..ReaderStats::default()
        }));
        let (s, st) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name(format!("reader-{group}"))
            .spawn(move || read_loop(consumer, s, st, start_ms, delay))
            .context("cannot start a reader thread")?;
        Ok(Reader {
            stop,
            stats,
            thread,
        })
    }

    /// Waits until the group has given this reader partitions.
    pub fn wait_assigned(&self, timeout: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + timeout;
        while !self.stats.lock().assigned {
            if Instant::now() > until {
                anyhow::bail!("the consumer got no partitions within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn received(&self) -> u64 {
        self.stats.lock().received
    }

    /// Waits until `n` records were read or `timeout` passed; answers
    /// whether they were.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self.received() >= n {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stats(&self) -> parking_lot::MutexGuard<'_, ReaderStats> {
        self.stats.lock()
    }

    /// Stops the reader (it leaves its group).
    pub fn stop(self) -> ReaderStats {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        std::mem::take(&mut *self.stats.lock())
    }
}

fn read_loop(
    consumer: BaseConsumer,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<ReaderStats>>,
    start_ms: i64,
    delay: Duration,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            if !stats.lock().assigned && consumer.assignment().is_ok_and(|a| a.count() > 0) {
                stats.lock().assigned = true;
            }
            continue;
        };
        let Ok(msg) = polled else {
            // Transient consumer errors (a broker restarting, a rebalance)
            // are retried by librdkafka; the check's figures tell the rest.
            continue;
        };
        let now = Instant::now();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let seq = msg.headers().and_then(|hs| {
            hs.iter()
                .find(|h| h.key == SEQ_HEADER)
                .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<u64>().ok())
        });
        {
            let mut s = stats.lock();
            s.assigned = true;
            s.received += 1;
            s.first_record.get_or_insert(now);
            s.last_record = Some(now);
            if let Some(ts) = msg.timestamp().to_millis() {
                let e2e_us = ((now_ms - ts).max(0) as u64 * 1000).max(1);
                let second = ((ts - start_ms).max(0) / 1000) as usize;
                while s.e2e_by_second.len() <= second {
                    s.e2e_by_second.push(latency_histogram());
                }
                let _ = s.e2e_by_second[second].record(e2e_us.min(3_600_000_000));
            }
            if let (Some(seq), Some(bits)) = (seq, s.seen.as_mut()) {
                let (word, bit) = ((seq / 64) as usize, seq % 64);
                if bits.len() <= word {
                    bits.resize(word + 1, 0);
                }
                let dup = bits[word] & (1 << bit) != 0;
                bits[word] |= 1 << bit;
                if dup {
                    s.duplicates += 1;
                }
            }
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
    consumer.unsubscribe();
}
