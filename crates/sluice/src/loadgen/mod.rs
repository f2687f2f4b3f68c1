//! `sluice loadgen`: AI telemetry load against any Kafka-compatible
//! bootstrap, through librdkafka, at a target rate, with an optional burst;
//! shows progress while it runs and ends with per-topic counts and value
//! sizes and a latency histogram. The record shapes are in [`events`].

pub mod events;
pub mod kafka;
pub mod report;

use anyhow::{bail, Context};
use events::{Generator, Kind};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sluice_registry::keys;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Profile {
    /// Inferences with prompts and raw responses, tool-call bursts,
    /// retrievals, and feedback arriving later.
    AiTelemetry,
}

/// A burst: `FACTORx@LENGTH`, e.g. `10x@60s` = ten times the rate for 60 s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Burst {
    pub factor: f64,
    pub length_s: f64,
}

impl FromStr for Burst {
    type Err = String;
    fn from_str(s: &str) -> Result<Burst, String> {
        let bad = || format!("a burst is FACTORx@SECONDS, like 10x@60s, not {s:?}");
        let (f, l) = s.split_once('@').ok_or_else(bad)?;
        let factor: f64 = f
            .trim()
            .strip_suffix(['x', 'X'])
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        let l = l.trim();
        let length_s: f64 = l
            .strip_suffix('s')
            .unwrap_or(l)
            .parse()
            .map_err(|_| bad())?;
        if !(factor.is_finite() && factor >= 1.0 && length_s.is_finite() && length_s > 0.0) {
            return Err(format!(
                "{s:?}: the factor must be at least 1 and the length positive"
            ));
        }
        Ok(Burst { factor, length_s })
    }
}

/// The record schedule of a run: how many records are due `t` seconds in.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub rate: f64,
    pub duration_s: f64,
    /// The burst and when it starts (seconds into the run).
    pub burst: Option<(Burst, f64)>,
}

impl Schedule {
    pub fn due(&self, t: f64) -> u64 {
        let t = t.clamp(0.0, self.duration_s);
        let extra = match self.burst {
            Some((b, start)) => {
                let overlap = (t.min(start + b.length_s) - start).max(0.0);
                (b.factor - 1.0) * overlap
            }
            None => 0.0,
        };
        (self.rate * (t + extra)).floor() as u64
    }

    pub fn total(&self) -> u64 {
        self.due(self.duration_s)
    }

    /// Calls `send` once per record as each comes due, until the schedule's
    /// end (a sender that falls behind catches up as fast as it can go),
    /// and `progress(sent, t)` after each catch-up. Answers the seconds it
    /// took; the first error from `send` ends it.
    pub fn run(
        &self,
        mut send: impl FnMut() -> anyhow::Result<()>,
        mut progress: impl FnMut(u64, f64),
    ) -> anyhow::Result<f64> {
        let total = self.total();
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let t = start.elapsed().as_secs_f64();
            let due = self.due(t).min(total);
            if sent >= due {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            while sent < due {
                send()?;
                sent += 1;
            }
            progress(sent, t);
        }
        Ok(start.elapsed().as_secs_f64())
    }

    pub fn rate_at(&self, t: f64) -> f64 {
        match self.burst {
            Some((b, start)) if t >= start && t < start + b.length_s => self.rate * b.factor,
            _ => self.rate,
        }
    }
}

#[derive(clap::Args)]
pub struct LoadgenArgs {
    /// The workload.
    #[arg(long, value_enum, default_value = "ai-telemetry")]
    profile: Profile,
    /// A Kafka bootstrap server (any Kafka-compatible broker).
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Records per second, all topics together.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds to run; the run produces rate x duration records (plus the burst's).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// A burst, FACTORx@SECONDS: e.g. 10x@60s is ten times the rate for 60 s.
    #[arg(long)]
    burst: Option<Burst>,
    /// When the burst starts, in seconds (default: a third of the way in).
    #[arg(long)]
    burst_start: Option<f64>,
    /// Topics are PREFIX.inference, .model_inference, .tool_call, .retrieval, .feedback.
    #[arg(long, default_value = "ai")]
    topics_prefix: String,
    /// Mean delay of feedback after the inference it rates, in seconds
    /// (feedback not yet due when the run ends is not sent).
    #[arg(long, default_value_t = 120.0)]
    feedback_delay: f64,
    /// Partitions of the topics loadgen creates.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// A Sluice HTTP address: install the AI contracts there and create the
    /// topics bound to them, so the broker checks every record.
    #[arg(long)]
    http: Option<String>,
    /// The generator's seed (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// A librdkafka property, key=value (repeatable), e.g. -X compression.type=zstd.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    property: Vec<String>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

pub fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let Profile::AiTelemetry = args.profile;
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of records per second");
    }
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    let schedule = Schedule {
        rate: args.rate,
        duration_s: args.duration,
        burst: args
            .burst
            .map(|b| (b, args.burst_start.unwrap_or(args.duration / 3.0))),
    };
    let mut config = kafka::client_config(&args.bootstrap, &args.property)?;
    for (k, v) in [
        ("acks", "all"),
        ("linger.ms", "5"),
        ("compression.type", "lz4"),
        ("message.max.bytes", "1048576"),
    ] {
        if config.get(k).is_none() {
            config.set(k, v);
        }
    }
    kafka::check_reachable(&config, Duration::from_secs(30))?;
    let topics: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{}.{}", args.topics_prefix, k.suffix()))
        .collect();
    prepare_topics(&config, &topics, args.partitions, args.http.as_deref())?;

    let seed = args.seed.unwrap_or_else(rand::random);
    let mut generator = Generator::new(seed, args.feedback_delay);
    let total = schedule.total();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} records {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let producer = kafka::Producer::new(&config, start)?;
    let mut sizes: Vec<Vec<u32>> = vec![Vec::new(); Kind::ALL.len()];
    let mut last_tick = Instant::now();
    let sending = schedule.run(
        || {
            let e = generator.next(chrono::Utc::now().timestamp_millis());
            let topic = &topics[e.kind.index()];
            producer.send(topic, &e.key, &e.value, &e.headers, e.kind.index(), None)?;
            sizes[e.kind.index()].push(e.value.len() as u32);
            Ok(())
        },
        |sent, t| {
            if last_tick.elapsed() >= Duration::from_millis(200) {
                last_tick = Instant::now();
                bar.set_position(sent);
                let s = producer.stats();
                bar.set_message(format!(
                    "({:.0}/s target, p99 {:.1} ms, {} failed)",
                    schedule.rate_at(t),
                    s.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
                    s.failed
                ));
            }
        },
    )?;
    let sent = total;
    bar.set_position(sent);
    producer.flush(Duration::from_secs(60))?;
    bar.finish_and_clear();
    let elapsed = start.elapsed();

    let stats = producer.stats();
    let summary = json!({
        "profile": "ai-telemetry",
        "bootstrap": args.bootstrap,
        "seed": seed,
        "rate": args.rate,
        "duration_s": args.duration,
        "burst": schedule.burst.map(|(b, s)| json!({"factor": b.factor, "length_s": b.length_s, "start_s": s})),
        "records": sent,
        "planned_records": total,
        "delivered": stats.delivered,
        "failed": stats.failed,
        "send_seconds": sending,
        "elapsed_seconds": elapsed.as_secs_f64(),
        "achieved_rate": sent as f64 / sending.max(1e-9),
        "pending_feedback_not_sent": generator.pending_feedback(),
        "topics": Kind::ALL.iter().map(|k| {
            let s = report::SizeSummary::of(&mut sizes[k.index()]);
            json!({
                "topic": topics[k.index()],
                "kind": k.suffix(),
                "records": sizes[k.index()].len(),
                "delivered": stats.delivered_by_kind[k.index()],
                "bytes": stats.bytes_by_kind[k.index()],
                "value_bytes": s,
            })
        }).collect::<Vec<_>>(),
        "latency_ms": report::latency_summary(&stats.latency_us),
    });
    println!("{}", report::topics_table(&summary));
    println!("{}", report::latency_chart(&stats.latency_us));
    println!(
        "{} records in {:.1} s ({:.0}/s), {} delivered, {} failed; {} feedback records not yet due",
        sent,
        sending,
        sent as f64 / sending.max(1e-9),
        stats.delivered,
        stats.failed,
        generator.pending_feedback()
    );
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if stats.failed > 0 {
        bail!(
            "{} records failed: {}",
            stats.failed,
            stats.last_error.as_deref().unwrap_or("unknown error")
        );
    }
    Ok(())
}

/// Creates the profile's topics; with a Sluice HTTP address, installs the
/// AI contracts first and binds each contract topic to its JSON subject.
fn prepare_topics(
    config: &rdkafka::ClientConfig,
    topics: &[String],
    partitions: i32,
    http: Option<&str>,
) -> anyhow::Result<()> {
    let Some(http) = http else {
        return kafka::ensure_topics(config, topics, partitions, &[]);
    };
    install_contracts(http)?;
    for k in Kind::ALL {
        let name = [topics[k.index()].clone()];
        match k.contract_subject() {
            Some(subject) => kafka::ensure_topics(
                config,
                &name,
                partitions,
                &[
                    (keys::VALUE_FORMAT, "json"),
                    (keys::VALUE_SUBJECT, &subject),
                ],
            )?,
            None => kafka::ensure_topics(config, &name, partitions, &[])?,
        }
    }
    Ok(())
}

/// Installs the AI contracts through a Sluice HTTP address (HOST:PORT or
/// a URL; `SLUICE_HTTP_USER`/`SLUICE_HTTP_PASSWORD` log in).
pub fn install_contracts(http: &str) -> anyhow::Result<()> {
    let url = crate::groups_cli::url(http, "/v1/schemas/ai-contracts");
    let _: serde_json::Value = crate::groups_cli::call(
        crate::groups_cli::agent().post(&url).send_empty(),
        "installing the AI contracts",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_parse_and_bad_ones_are_named() {
        assert_eq!(
            "10x@60s".parse::<Burst>(),
            Ok(Burst {
                factor: 10.0,
                length_s: 60.0
            })
        );
        assert_eq!("2.5x@3".parse::<Burst>().map(|b| b.factor), Ok(2.5));
        for bad in ["10@60s", "x@60s", "10x", "0.5x@1s", "10x@-1s", "10x@s"] {
            let e = bad.parse::<Burst>().expect_err(bad);
            assert!(
                e.contains("FACTORx@SECONDS") || e.contains("at least"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_schedule_adds_the_burst() {
        let s = Schedule {
            rate: 100.0,
            duration_s: 30.0,
            burst: Some((
                Burst {
                    factor: 10.0,
                    length_s: 5.0,
                },
                10.0,
            )),
        };
        assert_eq!(s.due(10.0), 1000);
        assert_eq!(s.due(15.0), 1000 + 5000);
        assert_eq!(s.total(), 3000 + 4500);
        assert_eq!(s.rate_at(12.0), 1000.0);
        assert_eq!(s.rate_at(15.0), 100.0);
    }
}
