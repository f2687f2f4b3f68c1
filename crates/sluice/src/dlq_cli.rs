//! `sluice dlq`: inspect dead-letter topics with their failure context
//! (Kafka Connect and Spring headers) and replay records to their original
//! topics, through the broker's HTTP admin API. Replays show a progress bar,
//! skip records replayed before (unless `--again`), and can write a report.

use crate::groups_cli::{agent, call, print_table, url, ApiArgs};
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sluice_ops::admin::TopicDetail;
use sluice_ops::dlq::{DlqPage, ReplayRequest, ReplayResult};
use std::io::Write;

#[derive(Args, Debug)]
pub struct DlqArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// List dead-lettered records with their failure context.
    Inspect {
        topic: String,
        /// Most records to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-produce dead-lettered records to their original topic (or --to).
    Replay(ReplayArgs),
}

#[derive(Args, Debug)]
struct ReplayArgs {
    topic: String,
    /// Produce to this topic instead of each record's original topic.
    #[arg(long)]
    to: Option<String>,
    /// Only records whose original topic is this.
    #[arg(long)]
    original_topic: Option<String>,
    /// Only records whose exception class or message contains this text.
    #[arg(long)]
    error_contains: Option<String>,
    /// Show what would be replayed; produce nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replay records that were already replayed before.
    #[arg(long)]
    again: bool,
    /// Write every replayed record (source and target offsets) as JSON lines to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
    /// Records per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

fn short_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn topic_detail(agent: &ureq::Agent, http: &str, topic: &str) -> anyhow::Result<TopicDetail> {
    call(
        agent.get(url(http, &format!("/v1/topics/{topic}"))).call(),
        "reading the topic",
    )
}

pub fn run(args: DlqArgs) -> anyhow::Result<()> {
    let agent = agent();
    let http = &args.api.http;
    match args.command {
        DlqCommand::Inspect { topic, limit, json } => {
            let detail = topic_detail(&agent, http, &topic)?;
            let mut rows = Vec::new();
            let mut shown = 0;
            'partitions: for p in &detail.partition_details {
                let mut from = p.log_start_offset;
                while from < p.log_end_offset && shown < limit {
                    let page: DlqPage = call(
                        agent
                            .get(url(
                                http,
                                &format!(
                                    "/v1/dlq/{topic}/records?partition={}&from={from}&limit={}",
                                    p.partition,
                                    limit - shown
                                ),
                            ))
                            .call(),
                        "reading dead letters",
                    )?;
                    if page.records.is_empty() {
                        break;
                    }
                    for r in page.records {
                        shown += 1;
                        if json {
                            println!("{}", serde_json::to_string(&r)?);
                            continue;
                        }
                        let c = &r.context;
                        let original =
                            match (&c.original_topic, c.original_partition, c.original_offset) {
                                (Some(t), Some(p), Some(o)) => format!("{t}/{p}@{o}"),
                                (Some(t), _, _) => t.clone(),
                                _ => "-".into(),
                            };
                        let error = match (&c.exception_class, &c.exception_message) {
                            (Some(cl), Some(m)) => {
                                format!("{}: {m}", cl.rsplit('.').next().unwrap_or(cl))
                            }
                            (Some(cl), None) => cl.clone(),
                            (None, Some(m)) => m.clone(),
                            _ => "-".into(),
                        };
                        rows.push(vec![
                            r.partition.to_string(),
                            r.offset.to_string(),
                            short_time(r.timestamp),
                            c.source.clone(),
                            original,
                            error.chars().take(80).collect(),
                            if r.replayed {
                                "yes".into()
                            } else {
                                "no".into()
                            },
                        ]);
                    }
                    from = page.next_offset;
                    if shown >= limit {
                        break 'partitions;
                    }
                }
            }
            if !json {
                print_table(
                    &[
                        "PARTITION",
                        "OFFSET",
                        "TIMESTAMP",
                        "SOURCE",
                        "ORIGINAL",
                        "ERROR",
                        "REPLAYED",
                    ],
                    &rows,
                );
                println!("\n{shown} of {} records shown.", detail.summary.messages);
            }
        }
        DlqCommand::Replay(r) => {
            let detail = topic_detail(&agent, http, &r.topic)?;
            let total: u64 = detail
                .partition_details
                .iter()
                .map(|p| (p.log_end_offset - p.log_start_offset).max(0) as u64)
                .sum();
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} records scanned {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let mut report = match &r.report {
                Some(path) => Some(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                ),
                None => None,
            };
            let mut sum = ReplayResult::default();
            let mut failures = Vec::new();
            for p in &detail.partition_details {
                let mut from = p.log_start_offset;
                while from < p.log_end_offset {
                    let req = ReplayRequest {
                        partition: p.partition,
                        from_offset: from,
                        max_records: r.batch.max(1),
                        to: r.to.clone(),
                        original_topic: r.original_topic.clone(),
                        error_contains: r.error_contains.clone(),
                        dry_run: r.dry_run,
                        again: r.again,
                    };
                    let res: ReplayResult = call(
                        agent
                            .post(url(http, &format!("/v1/dlq/{}/replay", r.topic)))
                            .send_json(&req),
                        "replaying",
                    )?;
                    if res.scanned == 0 || res.next_offset <= from {
                        break;
                    }
                    bar.inc(res.scanned as u64);
                    sum.scanned += res.scanned;
                    sum.matched += res.matched;
                    sum.replayed += res.replayed;
                    sum.skipped_already_replayed += res.skipped_already_replayed;
                    sum.failed += res.failed;
                    bar.set_message(format!("({} replayed)", sum.replayed));
                    for row in &res.rows {
                        if let Some(f) = report.as_mut() {
                            writeln!(f, "{}", serde_json::to_string(row)?)?;
                        }
                        if let Some(e) = &row.error {
                            failures.push(format!("{}/{}: {e}", row.partition, row.offset));
                        }
                        if r.dry_run {
                            sum.rows.push(row.clone());
                        }
                    }
                    from = res.next_offset;
                }
            }
            bar.finish_and_clear();
            if r.dry_run {
                let rows: Vec<Vec<String>> = sum
                    .rows
                    .iter()
                    .filter(|x| x.error.is_none())
                    .map(|x| {
                        vec![
                            x.partition.to_string(),
                            x.offset.to_string(),
                            x.target_topic.clone(),
                            x.target_partition.to_string(),
                        ]
                    })
                    .collect();
                print_table(
                    &["PARTITION", "OFFSET", "TARGET-TOPIC", "TARGET-PARTITION"],
                    &rows,
                );
                println!("\nDry run: nothing was produced.");
            }
            print_table(
                &[
                    "SCANNED",
                    "MATCHED",
                    "REPLAYED",
                    "ALREADY-REPLAYED",
                    "FAILED",
                ],
                &[vec![
                    sum.scanned.to_string(),
                    sum.matched.to_string(),
                    sum.replayed.to_string(),
                    sum.skipped_already_replayed.to_string(),
                    sum.failed.to_string(),
                ]],
            );
            for f in failures.iter().take(20) {
                eprintln!("failed: {f}");
            }
            if sum.failed > 0 {
                anyhow::bail!("{} records could not be replayed", sum.failed);
            }
        }
    }
    Ok(())
}
