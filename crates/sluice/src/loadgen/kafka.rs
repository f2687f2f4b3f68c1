//! librdkafka plumbing shared by `sluice loadgen` and `sluice scorecard`: a
//! producer (the `rdkafka` crate's `ThreadedProducer`) that records every
//! delivery's latency in HDR histograms (overall and per second of the run,
//! for charts), and topic creation through the Admin API. Works against any
//! Kafka-compatible bootstrap.

use super::events::Kind;
use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kinds of record a run tracks separately: the profile's kinds, and one
/// slot ([`OTHER`]) for records outside them.
pub const KINDS: usize = Kind::ALL.len() + 1;
/// The statistics slot of records outside the profile's kinds.
pub const OTHER: usize = Kind::ALL.len();

/// A client configuration: `bootstrap.servers` plus `-X key=value` extras
/// (librdkafka property names, as kcat takes them).
pub fn client_config(bootstrap: &str, extra: &[String]) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for kv in extra {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("-X takes key=value, not {kv:?}");
        };
        c.set(k.trim(), v.trim());
    }
    Ok(c)
}

/// The histograms of seconds `from..to` of a per-second series, merged.
pub fn merged_seconds(per_second: &[Histogram<u64>], from: usize, to: usize) -> Histogram<u64> {
    let mut h = latency_histogram();
    for s in per_second.iter().take(to).skip(from) {
        let _ = h.add(s);
    }
    h
}

/// A latency histogram in microseconds, 1 µs .. 1 hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

/// What the deliveries of a run came to.
pub struct Stats {
    /// Send-to-acknowledgement latency of every delivered record, µs.
    pub latency_us: Histogram<u64>,
    /// The same, per second of the run (index = second since the start).
    pub per_second: Vec<Histogram<u64>>,
    pub delivered: u64,
    pub failed: u64,
    pub delivered_by_kind: [u64; KINDS],
    pub bytes_by_kind: [u64; KINDS],
    pub last_error: Option<String>,
    /// Sequence numbers (see [`Producer::send`]) whose delivery failed.
    pub failed_seqs: Vec<u64>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency_us: latency_histogram(),
            per_second: Vec::new(),
            delivered: 0,
            failed: 0,
            delivered_by_kind: [0; KINDS],
            bytes_by_kind: [0; KINDS],
            last_error: None,
            failed_seqs: Vec::new(),
        }
    }
}

/// What travels with a record to its delivery report.
pub struct Sent {
    at: Instant,
    kind: usize,
    bytes: usize,
    seq: Option<u64>,
}

pub struct Ctx {
    start: Instant,
    stats: Arc<Mutex<Stats>>,
}

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        let mut s = self.stats.lock();
        match result {
            Ok(_) => {
                let us = sent.at.elapsed().as_micros().max(1) as u64;
                s.delivered += 1;
                if let Some(n) = s.delivered_by_kind.get_mut(sent.kind) {
                    *n += 1;
                }
                if let Some(n) = s.bytes_by_kind.get_mut(sent.kind) {
                    *n += sent.bytes as u64;
                }
                let _ = s.latency_us.record(us);
                let second = sent.at.saturating_duration_since(self.start).as_secs() as usize;
                while s.per_second.len() <= second {
                    s.per_second.push(latency_histogram());
                }
                let _ = s.per_second[second].record(us);
            }
            Err((e, _)) => {
                s.failed += 1;
                s.last_error = Some(e.to_string());
                if let Some(seq) = sent.seq {
                    s.failed_seqs.push(seq);
                }
            }
        }
    }
}

/// A producer that measures what it sends.
pub struct Producer {
    inner: ThreadedProducer<Ctx>,
    stats: Arc<Mutex<Stats>>,
}

impl Producer {
    /// `start`: the instant per-second statistics count from.
    pub fn new(config: &ClientConfig, start: Instant) -> anyhow::Result<Producer> {
        let stats = Arc::new(Mutex::new(Stats::new()));
        let ctx = Ctx {
            start,
            stats: stats.clone(),
        };
        let inner: ThreadedProducer<Ctx> = config
            .create_with_context(ctx)
            .context("cannot create the producer")?;
        Ok(Producer { inner, stats })
    }

    /// Queues one record; waits while librdkafka's queue is full (the
    /// broker's backpressure reaching the producer). `kind` indexes the
    /// per-kind counts; `seq` names the record in [`Stats::failed_seqs`]
    /// should its delivery fail.
    pub fn send(
        &self,
        topic: &str,
        key: &str,
        value: &[u8],
        headers: &[(&str, String)],
        kind: usize,
        seq: Option<u64>,
    ) -> anyhow::Result<()> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let sent = Box::new(Sent {
            at: Instant::now(),
            kind,
            bytes: value.len(),
            seq,
        });
        let mut record = BaseRecord::with_opaque_to(topic, sent)
            .key(key)
            .payload(value)
            .headers(h);
        loop {
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    let mut s = self.stats.lock();
                    s.failed += 1;
                    s.last_error = Some(e.to_string());
                    s.failed_seqs.extend(seq);
                    return Err(e).context(format!("cannot produce to {topic}"));
                }
            }
        }
    }

    /// Waits for every queued record's delivery report, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.inner
            .flush(timeout)
            .context("records were still in flight when the flush timed out")
    }

    pub fn stats(&self) -> parking_lot::MutexGuard<'_, Stats> {
        self.stats.lock()
    }
}

/// What librdkafka reported on the probe client: its last error, and
/// whether the broker refused the login. librdkafka reports a refused
/// SASL login as a log line ("SASL authentication error"), not always as
/// an error event, so both are read.
#[derive(Default)]
struct ProbeReport {
    last: Mutex<Option<String>>,
    refused: std::sync::atomic::AtomicBool,
}

impl ProbeReport {
    fn note(&self, message: &str, refused: bool) {
        *self.last.lock() = Some(message.to_string());
        let text = message.to_ascii_lowercase();
        if refused
            || text.contains("sasl authentication error")
            || text.contains("authentication failed")
        {
            self.refused
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl ClientContext for ProbeReport {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if matches!(
            level,
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning
        ) {
            self.note(&format!("{fac}: {message}"), false);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let refused = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
        );
        self.note(reason, refused);
    }
}

impl ProducerContext for ProbeReport {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Checks that the bootstrap answers with these settings, within
/// `timeout`: a wrong address, TLS setting or password becomes one clear
/// error at once rather than a timeout later (librdkafka retries them
/// quietly).
pub fn check_reachable(config: &ClientConfig, timeout: Duration) -> anyhow::Result<()> {
    use rdkafka::producer::BaseProducer;
    let client: BaseProducer<ProbeReport> = config
        .create_with_context(ProbeReport::default())
        .context("cannot create a Kafka client")?;
    let until = Instant::now() + timeout;
    loop {
        if client
            .client()
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok()
        {
            return Ok(());
        }
        client.poll(Duration::from_millis(100));
        let report = client.context();
        let last = report.last.lock().clone();
        if report.refused.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("the broker refused the login: {}", last.unwrap_or_default());
        }
        if Instant::now() > until {
            match last {
                Some(reason) => bail!("cannot reach the bootstrap servers: {reason}"),
                None => bail!("cannot reach the bootstrap servers within {timeout:?}"),
            }
        }
    }
}

/// Creates the topics that do not exist yet (`partitions` each, with
/// `configs`); an existing topic is left as it is.
pub fn ensure_topics(
    config: &ClientConfig,
    names: &[String],
    partitions: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("cannot create the admin client")?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| {
            configs.iter().fold(
                NewTopic::new(n, partitions, TopicReplication::Fixed(-1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures::executor::block_on(admin.create_topics(&topics, &opts))
        .context("CreateTopics failed")?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}
