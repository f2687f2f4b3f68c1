//! `sluice scorecard`: the readiness checks a team runs before trusting a
//! platform with AI telemetry (the seeds' list), against any
//! Kafka-compatible bootstrap, through librdkafka:
//!
//! - freshness: produce and end-to-end p99 and event age p99 under steady load;
//! - burst: ten times the rate for a minute, no produce errors, lag drained
//!   within a bound, memory held;
//! - fan-out: four more groups reading at once without slowing producers;
//! - replay: a new group's catch-up rate over the produce rate;
//! - contracts: an invalid record refused or dead-lettered, and the
//!   dead-letter alert's expression true;
//! - observability: lag and lag seconds exported for the group;
//! - durability: every record acknowledged under acks=all read back.
//!
//! The steady phase always runs (the others measure against it). Output:
//! a terminal table, and `--report` as JSON or a self-contained HTML page
//! with charts. Exits non-zero when a check fails.

pub mod probe;
pub mod reader;
pub mod report;

use crate::loadgen::events::{Generator, Kind};
use crate::loadgen::kafka::{self, merged_seconds, Producer, OTHER};
use crate::loadgen::{Burst, Schedule};
use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use reader::{Reader, SEQ_HEADER};
use report::{Check, Phase, Sample, Scorecard, Status};
use serde_json::json;
use sluice_registry::contracts::json_subject;
use sluice_registry::keys;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckName {
    Freshness,
    Burst,
    Fanout,
    Replay,
    Contracts,
    Observability,
    Durability,
}

#[derive(clap::Args)]
pub struct ScorecardArgs {
    /// A Kafka bootstrap server (Sluice embedded, a Sluice cluster, or another broker).
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// An HTTP address serving /metrics: Sluice's HTTP listener (also used
    /// for the contracts check), or a kafka-exporter's for another broker;
    /// a comma-separated list for a cluster (each broker exports the groups
    /// it coordinates). Without it the checks that need the broker's own
    /// figures are skipped.
    #[arg(long)]
    http: Option<String>,
    /// Write the report to FILE.html (with charts) or FILE.json.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Steady load, records per second.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Seconds of steady load (the freshness phase).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// The burst, FACTORx@SECONDS.
    #[arg(long, default_value = "10x@60s")]
    burst: Burst,
    /// Seconds of load while the fan-out groups read.
    #[arg(long, default_value_t = 15.0)]
    fanout_duration: f64,
    /// Consumer groups reading at once in the fan-out check.
    #[arg(long, default_value_t = 4)]
    fanout_groups: usize,
    /// Only these checks (comma-separated; default all). The steady phase always runs.
    #[arg(long, value_enum, value_delimiter = ',')]
    checks: Vec<CheckName>,
    /// Topics are PREFIX.RUN.KIND (RUN: a fresh id per run).
    #[arg(long, default_value = "scorecard")]
    topics_prefix: String,
    /// Partitions of the topics the scorecard creates.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Freshness: the produce p99 bound, ms.
    #[arg(long, default_value_t = 100.0)]
    max_produce_p99_ms: f64,
    /// Freshness: the end-to-end p99 bound, ms.
    #[arg(long, default_value_t = 1000.0)]
    max_e2e_p99_ms: f64,
    /// Freshness: the event age (lag seconds) p99 bound, seconds.
    #[arg(long, default_value_t = 5.0)]
    max_event_age_p99_s: f64,
    /// Fan-out: how many times the steady produce p99 the producers' p99
    /// may reach while the groups read (or the steady p99 + 20 ms, if more).
    #[arg(long, default_value_t = 2.0)]
    fanout_p99_factor: f64,
    /// Burst: seconds the lag may take to drain after the burst.
    #[arg(long, default_value_t = 60.0)]
    drain_bound_s: f64,
    /// Burst: the broker's resident memory bound, MiB.
    #[arg(long, default_value_t = 2048.0)]
    memory_limit_mib: f64,
    /// Replay: the least catch-up rate, as a multiple of the produce rate.
    #[arg(long, default_value_t = 5.0)]
    replay_min_ratio: f64,
    /// Sleep this many ms per record in the freshness group's consumer: a
    /// deliberately slow consumer, to see the freshness check fail.
    #[arg(long, default_value_t = 0)]
    slow_consumer_ms: u64,
    /// A librdkafka property, key=value (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    property: Vec<String>,
}

struct Run<'a> {
    args: &'a ScorecardArgs,
    config: ClientConfig,
    start: Instant,
    start_ms: i64,
    producer: Arc<Producer>,
    generator: Generator,
    /// Records sent to the main topics carry sequence numbers 0..seq.
    seq: u64,
    topics: Vec<String>,
    run_id: String,
    phases: Vec<Phase>,
    checks: Vec<Check>,
    steady: Option<Steady>,
}

/// What the steady phase measured, for the checks that compare with it.
struct Steady {
    produce_p99_ms: f64,
    achieved_rate: f64,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn wants(args: &ScorecardArgs, c: CheckName) -> bool {
    args.checks.is_empty() || args.checks.contains(&c)
}

fn skip(name: &'static str, why: &str) -> Check {
    Check {
        name,
        status: Status::Skip,
        figure: why.to_string(),
        bound: String::new(),
        values: json!(null),
    }
}

fn pass_if(ok: bool) -> Status {
    if ok {
        Status::Pass
    } else {
        Status::Fail
    }
}

/// The nearest-rank quantile of some samples.
fn quantile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// The producers' settings: durability is measured under acks=all with
/// idempotence, whatever -X says.
fn producer_config(base: &ClientConfig) -> ClientConfig {
    let mut c = base.clone();
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "1048576");
    for (k, v) in [("linger.ms", "5"), ("compression.type", "lz4")] {
        if c.get(k).is_none() {
            c.set(k, v);
        }
    }
    c
}

pub fn run(args: ScorecardArgs) -> anyhow::Result<()> {
    if let Some(r) = &args.report {
        match r.extension().and_then(|e| e.to_str()) {
            Some("html") | Some("json") => {}
            _ => bail!("--report takes a .html or .json file, not {}", r.display()),
        }
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.duration > 0.0) {
        bail!("--rate and --duration must be positive");
    }
    let config = kafka::client_config(&args.bootstrap, &args.property)?;
    kafka::check_reachable(&config, Duration::from_secs(30))?;
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let topics: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{}.{run_id}.{}", args.topics_prefix, k.suffix()))
        .collect();
    kafka::ensure_topics(&config, &topics, args.partitions, &[])?;
    let start = Instant::now();
    let start_ms = chrono::Utc::now().timestamp_millis();
    let producer = Arc::new(Producer::new(&producer_config(&config), start)?);
    let mut run = Run {
        args: &args,
        config,
        start,
        start_ms,
        producer,
        generator: Generator::new(rand::random(), 60.0),
        seq: 0,
        topics,
        run_id,
        phases: Vec::new(),
        checks: Vec::new(),
        steady: None,
    };
    let group = format!("{}-{}-fresh", args.topics_prefix, run.run_id);
    eprintln!(
        "scorecard {} against {}: topics {}.{}.*",
        run.run_id, args.bootstrap, args.topics_prefix, run.run_id
    );
    let fresh = Arc::new(Reader::start(
        &run.config,
        &group,
        &run.topics,
        start_ms,
        Duration::from_millis(args.slow_consumer_ms),
        false,
    )?);
    fresh.wait_assigned(Duration::from_secs(60))?;

    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (samples, sampling, producer, fresh) = (
            samples.clone(),
            sampling.clone(),
            run.producer.clone(),
            fresh.clone(),
        );
        let (http, group) = (args.http.clone(), group.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let t = start.elapsed().as_secs_f64();
                let delivered: u64 = producer.stats().delivered_by_kind[..OTHER].iter().sum();
                let read = fresh.received();
                let scrape = http
                    .as_deref()
                    .and_then(|h| probe::scrape_all(h, &group, "").ok())
                    .unwrap_or_default();
                samples.lock().push(Sample {
                    t,
                    lag_records: delivered as i64 - read as i64,
                    metric_lag: scrape.lag,
                    metric_lag_seconds: scrape.lag_seconds,
                    rss_mib: scrape.rss_bytes.map(|b| b / 1024.0 / 1024.0),
                    ..Sample::default()
                });
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    let outcome = run.all_phases(&fresh, &samples, &group);
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    outcome?;
    let fresh = Arc::try_unwrap(fresh)
        .map_err(|_| anyhow::anyhow!("the freshness reader is still shared"))?
        .stop();

    // The timeline: the producer's and the reader's per-second p99 beside
    // the sampled lag.
    let mut timeline = samples.lock().clone();
    {
        let stats = run.producer.stats();
        for s in timeline.iter_mut() {
            let second = s.t.floor() as usize;
            let prev = second.saturating_sub(1);
            s.produce_p99_ms = stats
                .per_second
                .get(prev)
                .filter(|h| !h.is_empty())
                .map(|h| ms(h, 0.99));
            s.e2e_p99_ms = fresh
                .e2e_by_second
                .get(prev)
                .filter(|h| !h.is_empty())
                .map(|h| ms(h, 0.99));
        }
    }
    let card = Scorecard {
        bootstrap: args.bootstrap.clone(),
        http: args.http.clone(),
        started_at: chrono::DateTime::from_timestamp_millis(start_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        settings: json!({
            "rate": args.rate, "duration_s": args.duration,
            "burst": {"factor": args.burst.factor, "length_s": args.burst.length_s},
            "fanout_groups": args.fanout_groups, "fanout_duration_s": args.fanout_duration,
            "slow_consumer_ms": args.slow_consumer_ms, "run": run.run_id,
            "topics": run.topics,
        }),
        checks: std::mem::take(&mut run.checks),
        phases: std::mem::take(&mut run.phases),
        timeline,
    };
    println!("{}", report::table(&card));
    if let Some(path) = &args.report {
        let body = if path.extension().and_then(|e| e.to_str()) == Some("json") {
            serde_json::to_string_pretty(&card)?
        } else {
            report::html(&card)
        };
        std::fs::write(path, body).with_context(|| format!("cannot write {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if !card.passed() {
        bail!(
            "failed: {}",
            card.checks
                .iter()
                .filter(|c| c.status == Status::Fail)
                .map(|c| c.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

impl Run<'_> {
    fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn all_phases(
        &mut self,
        fresh: &Reader,
        samples: &Mutex<Vec<Sample>>,
        group: &str,
    ) -> anyhow::Result<()> {
        let args = self.args;
        self.steady_phase(fresh, samples, group)?;
        if wants(args, CheckName::Burst) {
            self.burst_phase(fresh, samples)?;
        }
        if wants(args, CheckName::Fanout) {
            self.fanout_phase()?;
        }
        if wants(args, CheckName::Replay) || wants(args, CheckName::Durability) {
            self.replay_phase()?;
        }
        if wants(args, CheckName::Contracts) {
            let c = match args.http.as_deref() {
                Some(http) => self.contracts_check(http)?,
                None => skip("contracts", "needs --http (a Sluice HTTP address)"),
            };
            self.checks.push(c);
        }
        Ok(())
    }

    /// Produces on the schedule to the main topics (`other`: to that topic
    /// instead, outside the sequence numbers); answers (records, seconds).
    fn produce(
        &mut self,
        name: &'static str,
        schedule: Schedule,
        other: Option<&str>,
    ) -> anyhow::Result<(u64, f64)> {
        let total = schedule.total();
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{elapsed_precise}] {bar:40} {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(name);
        let t0 = self.t();
        let secs = schedule.run(
            || {
                let e = self.generator.next(chrono::Utc::now().timestamp_millis());
                let result = match other {
                    Some(topic) => self
                        .producer
                        .send(topic, &e.key, &e.value, &e.headers, OTHER, None),
                    None => {
                        let mut headers = e.headers.clone();
                        headers.push((SEQ_HEADER, self.seq.to_string()));
                        let topic = &self.topics[e.kind.index()];
                        let r = self.producer.send(
                            topic,
                            &e.key,
                            &e.value,
                            &headers,
                            e.kind.index(),
                            Some(self.seq),
                        );
                        self.seq += 1;
                        r
                    }
                };
                // A refused send is counted in the producer's statistics,
                // which the checks read.
                if let Err(e) = result {
                    tracing::debug!("send refused: {e:#}");
                }
                Ok(())
            },
            |sent, _| bar.set_position(sent),
        )?;
        self.producer.flush(Duration::from_secs(120))?;
        bar.finish_and_clear();
        self.phases.push(Phase {
            name,
            start: t0,
            end: self.t(),
        });
        Ok((total, secs))
    }

    fn main_delivered(&self) -> u64 {
        self.producer.stats().delivered_by_kind[..OTHER]
            .iter()
            .sum()
    }

    fn produce_hist(&self, from_s: f64, to_s: f64) -> Histogram<u64> {
        merged_seconds(
            &self.producer.stats().per_second,
            from_s.floor() as usize,
            to_s.ceil() as usize,
        )
    }

    fn steady_phase(
        &mut self,
        fresh: &Reader,
        samples: &Mutex<Vec<Sample>>,
        group: &str,
    ) -> anyhow::Result<()> {
        let args = self.args;
        let t0 = self.t();
        let (sent, secs) = self.produce(
            "steady",
            Schedule {
                rate: args.rate,
                duration_s: args.duration,
                burst: None,
            },
            None,
        )?;
        let t1 = self.t();
        // Let the group read what was produced (bounded: a slow consumer
        // is what the check is for).
        let target = self.main_delivered();
        let caught_up = fresh.wait_for(target, Duration::from_secs_f64(args.duration.min(10.0)));
        let produce = self.produce_hist(t0, t1);
        let (mut e2e, read) = {
            let s = fresh.stats();
            (
                s.e2e_between(t0.floor() as usize, t1.ceil() as usize),
                s.received,
            )
        };
        // Records not read yet count at the age they have reached (a
        // lower bound of their end-to-end latency).
        let unread = target.saturating_sub(read);
        if unread > 0 {
            let age_us = ((self.t() - t1) * 1e6).max(1.0) as u64;
            let _ = e2e.record_n(age_us, unread);
        }
        let window: Vec<Sample> = samples
            .lock()
            .iter()
            .filter(|s| s.t >= t0 && s.t <= self.t())
            .cloned()
            .collect();
        let ages: Vec<f64> = window.iter().filter_map(|s| s.metric_lag_seconds).collect();
        let age_p99 = quantile(ages.clone(), 0.99);
        let produce_p99 = ms(&produce, 0.99);
        let e2e_p99 = ms(&e2e, 0.99);
        self.steady = Some(Steady {
            produce_p99_ms: produce_p99,
            achieved_rate: sent as f64 / secs.max(1e-9),
        });
        if wants(args, CheckName::Freshness) {
            let ok = produce_p99 <= args.max_produce_p99_ms
                && e2e_p99 <= args.max_e2e_p99_ms
                && age_p99.is_none_or(|a| a <= args.max_event_age_p99_s);
            let age_text = match age_p99 {
                Some(a) => format!("event age p99 {a:.2} s"),
                None => "event age not exported (no --http)".to_string(),
            };
            self.checks.push(Check {
                name: "freshness",
                status: pass_if(ok),
                figure: format!(
                    "produce p99 {produce_p99:.1} ms, end-to-end p99 {e2e_p99:.1} ms, {age_text} ({sent} records at {:.0}/s{})",
                    sent as f64 / secs.max(1e-9),
                    if caught_up { String::new() } else { format!(", {unread} unread at the end") }
                ),
                bound: format!(
                    "produce p99 <= {} ms, end-to-end p99 <= {} ms, event age p99 <= {} s",
                    args.max_produce_p99_ms, args.max_e2e_p99_ms, args.max_event_age_p99_s
                ),
                values: json!({
                    "produce_p50_ms": ms(&produce, 0.5), "produce_p99_ms": produce_p99,
                    "e2e_p50_ms": ms(&e2e, 0.5), "e2e_p99_ms": e2e_p99,
                    "event_age_p99_s": age_p99, "event_age_samples": ages,
                    "records": sent, "unread_at_end": unread,
                }),
            });
        }
        if wants(args, CheckName::Observability) {
            let c = match args.http {
                None => skip("observability", "needs --http (a /metrics address)"),
                Some(_) => {
                    let lags: Vec<f64> = window.iter().filter_map(|s| s.metric_lag).collect();
                    let ok = !lags.is_empty() && !ages.is_empty();
                    Check {
                        name: "observability",
                        status: pass_if(ok),
                        figure: format!(
                            "group {group}: kafka_consumergroup_lag in {} of {} scrapes (max {}), kafka_consumergroup_lag_seconds in {} (max {:.2} s)",
                            lags.len(),
                            window.len(),
                            lags.iter().copied().fold(0.0, f64::max),
                            ages.len(),
                            ages.iter().copied().fold(0.0, f64::max)
                        ),
                        bound: "both exported for the group".into(),
                        values: json!({"lag_samples": lags.len(), "lag_seconds_samples": ages.len(), "scrapes": window.len()}),
                    }
                }
            };
            self.checks.push(c);
        }
        Ok(())
    }

    fn burst_phase(&mut self, fresh: &Reader, samples: &Mutex<Vec<Sample>>) -> anyhow::Result<()> {
        let args = self.args;
        let lead = 5.0;
        let failed_before = self.producer.stats().failed;
        let t0 = self.t();
        let (sent, _) = self.produce(
            "burst",
            Schedule {
                rate: args.rate,
                duration_s: lead + args.burst.length_s + lead,
                burst: Some((args.burst, lead)),
            },
            None,
        )?;
        let t1 = self.t();
        let errors = self.producer.stats().failed - failed_before;
        let target = self.main_delivered();
        let drained = fresh.wait_for(target, Duration::from_secs_f64(args.drain_bound_s));
        let drain_s = self.t() - t1;
        let rss: Vec<(f64, f64)> = samples
            .lock()
            .iter()
            .filter(|s| s.t >= t0 - 2.0 && s.t <= self.t())
            .filter_map(|s| s.rss_mib.map(|r| (s.t, r)))
            .collect();
        let baseline = rss
            .iter()
            .find(|(t, _)| *t <= t0)
            .or(rss.first())
            .map(|r| r.1);
        let peak = rss
            .iter()
            .map(|r| r.1)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let memory_ok = peak.is_none_or(|p| p <= args.memory_limit_mib);
        let ok = errors == 0 && drained && memory_ok;
        let memory = match (baseline, peak) {
            (Some(b), Some(p)) => format!("broker RSS {b:.0} -> peak {p:.0} MiB"),
            _ => "broker memory not exported".to_string(),
        };
        self.checks.push(Check {
            name: "burst",
            status: pass_if(ok),
            figure: format!(
                "{:.0}/s for {:.0} s ({sent} records): {errors} produce errors, lag {} {:.1} s after, {memory}",
                args.rate * args.burst.factor,
                args.burst.length_s,
                if drained { "drained" } else { "NOT drained" },
                drain_s
            ),
            bound: format!(
                "no errors, drained within {} s, RSS <= {} MiB",
                args.drain_bound_s, args.memory_limit_mib
            ),
            values: json!({"records": sent, "errors": errors, "drained": drained, "drain_s": drain_s,
                           "rss_baseline_mib": baseline, "rss_peak_mib": peak}),
        });
        Ok(())
    }

    fn fanout_phase(&mut self) -> anyhow::Result<()> {
        let args = self.args;
        let topic = format!("{}.{}.fanout", args.topics_prefix, self.run_id);
        kafka::ensure_topics(
            &self.config,
            std::slice::from_ref(&topic),
            args.partitions,
            &[],
        )?;
        let mut readers = Vec::new();
        for i in 0..args.fanout_groups {
            let g = format!("{}-{}-fanout-{i}", args.topics_prefix, self.run_id);
            readers.push(Reader::start(
                &self.config,
                &g,
                std::slice::from_ref(&topic),
                self.start_ms,
                Duration::ZERO,
                false,
            )?);
        }
        for r in &readers {
            r.wait_assigned(Duration::from_secs(60))?;
        }
        let failed_before = self.producer.stats().failed;
        let t0 = self.t();
        let (sent, secs) = self.produce(
            "fan-out",
            Schedule {
                rate: args.rate,
                duration_s: args.fanout_duration,
                burst: None,
            },
            Some(&topic),
        )?;
        let t1 = self.t();
        let errors = self.producer.stats().failed - failed_before;
        let delivered = sent - errors;
        let got: Vec<u64> = readers
            .iter()
            .map(|r| {
                r.wait_for(delivered, Duration::from_secs(60));
                r.received()
            })
            .collect();
        for r in readers {
            r.stop();
        }
        let p99 = ms(&self.produce_hist(t0, t1), 0.99);
        let rate = sent as f64 / secs.max(1e-9);
        let (base_p99, base_rate) = self
            .steady
            .as_ref()
            .map_or((p99, rate), |s| (s.produce_p99_ms, s.achieved_rate));
        let allowed = (args.fanout_p99_factor * base_p99).max(base_p99 + 20.0);
        let all_read = got.iter().all(|&n| n >= delivered);
        let ok = all_read && errors == 0 && rate >= 0.95 * args.rate && p99 <= allowed;
        self.checks.push(Check {
            name: "fan-out",
            status: pass_if(ok),
            figure: format!(
                "{} groups read {} of {delivered} records; produce p99 {p99:.1} ms vs {base_p99:.1} ms alone, {rate:.0}/s vs {base_rate:.0}/s",
                got.len(),
                got.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("/"),
            ),
            bound: format!("every group reads all, produce p99 <= {allowed:.1} ms, rate >= 95% of {}", args.rate),
            values: json!({"groups": got, "records": delivered, "produce_p99_ms": p99,
                           "steady_produce_p99_ms": base_p99, "rate": rate}),
        });
        Ok(())
    }

    fn replay_phase(&mut self) -> anyhow::Result<()> {
        let args = self.args;
        let target = self.main_delivered();
        let group = format!("{}-{}-replay", args.topics_prefix, self.run_id);
        let t0 = self.t();
        let began = Instant::now();
        let reader = Reader::start(
            &self.config,
            &group,
            &self.topics,
            self.start_ms,
            Duration::ZERO,
            true,
        )?;
        reader.wait_assigned(Duration::from_secs(60))?;
        let bound = Duration::from_secs(300);
        let complete = reader.wait_for(target, bound);
        let waited = began.elapsed().as_secs_f64();
        let stats = reader.stop();
        // The catch-up rate runs from the first record read to the last
        // (joining the group is not reading).
        let secs = match (stats.first_record, stats.last_record) {
            (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
            _ => waited,
        };
        self.phases.push(Phase {
            name: "replay",
            start: t0,
            end: self.t(),
        });
        if wants(args, CheckName::Replay) {
            let rate = stats.received as f64 / secs.max(1e-9);
            let ratio = rate / args.rate;
            self.checks.push(Check {
                name: "replay",
                status: pass_if(complete && ratio >= args.replay_min_ratio),
                figure: format!(
                    "a new group read {} records in {secs:.2} s: {rate:.0}/s = {ratio:.1}x the produce rate",
                    stats.received
                ),
                bound: format!("catch-up >= {}x the produce rate", args.replay_min_ratio),
                values: json!({"records": stats.received, "seconds": secs, "rate": rate, "ratio": ratio}),
            });
        }
        if wants(args, CheckName::Durability) {
            let failed: std::collections::HashSet<u64> =
                self.producer.stats().failed_seqs.iter().copied().collect();
            let acked = self.seq - failed.len() as u64;
            let missing: Vec<u64> = (0..self.seq)
                .filter(|s| !failed.contains(s) && !stats.saw(*s))
                .collect();
            let missing_n = missing.len();
            self.checks.push(Check {
                name: "durability",
                status: pass_if(missing_n == 0),
                figure: format!(
                    "{} of {acked} records acknowledged under acks=all (idempotent) read back, {missing_n} missing, {} duplicates",
                    acked - missing_n as u64,
                    stats.duplicates
                ),
                bound: "none missing".into(),
                values: json!({"acknowledged": acked, "missing": missing_n, "first_missing": &missing[..missing_n.min(10)],
                               "duplicates": stats.duplicates}),
            });
        }
        Ok(())
    }

    fn contracts_check(&mut self, http: &str) -> anyhow::Result<Check> {
        let args = self.args;
        let topic = format!("{}.{}.contracts", args.topics_prefix, self.run_id);
        let dlq = sluice_registry::dlq_topic(&topic);
        let bound = "an invalid record refused or dead-lettered, and sluice_dlq_records > 0 (the DeadLetterTopicNotEmpty alert's expression)".to_string();
        let fail = |why: String| Check {
            name: "contracts",
            status: Status::Fail,
            figure: why,
            bound: bound.clone(),
            values: json!(null),
        };
        let first = http.split(',').next().unwrap_or(http).trim();
        if let Err(e) = crate::loadgen::install_contracts(first) {
            return Ok(fail(format!("cannot install the AI contracts: {e:#}")));
        }
        if let Err(e) = kafka::ensure_topics(
            &self.config,
            std::slice::from_ref(&topic),
            1,
            &[
                (keys::VALUE_FORMAT, "json"),
                (keys::VALUE_SUBJECT, &json_subject("inference")),
                (keys::ON_FAILURE, "dlq"),
            ],
        ) {
            return Ok(fail(format!(
                "the broker refused a contract-bound topic: {e:#}"
            )));
        }
        let valid = loop {
            let e = self.generator.next(chrono::Utc::now().timestamp_millis());
            if e.kind == Kind::Inference {
                break e;
            }
        };
        let mut bad: serde_json::Value = serde_json::from_slice(&valid.value)?;
        if let Some(o) = bad.as_object_mut() {
            o.remove("governance");
        }
        let bad = serde_json::to_vec(&bad)?;
        let producer = Producer::new(&producer_config(&self.config), self.start)?;
        producer.send(&topic, &valid.key, &valid.value, &valid.headers, 0, Some(0))?;
        let _ = producer.send(&topic, &valid.key, &bad, &valid.headers, 0, Some(1));
        let _ = producer.flush(Duration::from_secs(30));
        let (valid_ok, bad_refused, error) = {
            let s = producer.stats();
            (
                !s.failed_seqs.contains(&0),
                s.failed_seqs.contains(&1),
                s.last_error.clone(),
            )
        };
        if !valid_ok {
            return Ok(fail(format!(
                "a valid record was refused: {}",
                error.unwrap_or_default()
            )));
        }
        let group = format!("{}-{}-dlq", args.topics_prefix, self.run_id);
        let reader = Reader::start(
            &self.config,
            &group,
            std::slice::from_ref(&dlq),
            self.start_ms,
            Duration::ZERO,
            false,
        );
        let dead_lettered = match &reader {
            Ok(r) => r.wait_for(1, Duration::from_secs(20)),
            Err(_) => false,
        };
        if let Ok(r) = reader {
            r.stop();
        }
        let until = Instant::now() + Duration::from_secs(20);
        let mut depth = None;
        while Instant::now() < until {
            depth = probe::scrape_all(http, "", &dlq)
                .ok()
                .and_then(|s| s.dlq_records);
            if depth.is_some_and(|d| d > 0.0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let alert = depth.is_some_and(|d| d > 0.0);
        let ok = (bad_refused || dead_lettered) && alert;
        Ok(Check {
            name: "contracts",
            status: pass_if(ok),
            figure: format!(
                "a record without its governance envelope was {}; sluice_dlq_records{{topic=\"{dlq}\"}} = {}",
                if dead_lettered {
                    format!("dead-lettered to {dlq}")
                } else if bad_refused {
                    format!("refused ({})", error.unwrap_or_default())
                } else {
                    "ACCEPTED".to_string()
                },
                depth.map_or("absent".to_string(), |d| d.to_string())
            ),
            bound,
            values: json!({"refused": bad_refused, "dead_lettered": dead_lettered, "dlq_records": depth}),
        })
    }
}
