//! `sluice replay TOPIC --from TIME|OFFSET --to TIME|OFFSET --into TOPIC2`:
//! copies a window of a topic into another through a running broker
//! (`POST /v1/replays`), showing progress until it is done, then a table
//! per partition. TIME is RFC 3339 or epoch milliseconds (13+ digits); any
//! other number is an offset; `--to` is exclusive.

use crate::groups_cli::{agent, call, print_table, url, ApiArgs};
use anyhow::bail;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sluice_ops::replay::Point;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The topic to read.
    topic: String,
    /// Where the window starts: RFC 3339 time, epoch ms, or offset.
    #[arg(long)]
    from: String,
    /// Where it ends (exclusive): RFC 3339 time, epoch ms, or offset.
    #[arg(long)]
    to: String,
    /// The topic to write into.
    #[arg(long)]
    into: String,
    /// Only these partitions (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',')]
    partitions: Option<Vec<i32>>,
    /// Only records with this header value: HEADER=VALUE.
    #[arg(long)]
    filter: Option<String>,
    /// At most this many MB/s.
    #[arg(long, value_name = "MB/s")]
    max_rate: Option<f64>,
    /// Start it and print its id without waiting.
    #[arg(long)]
    detach: bool,
    /// Copy the window from its start even if it was copied before (a
    /// window already copied, or partly, otherwise copies only what is left).
    #[arg(long)]
    again: bool,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let point = |what: &str, s: &str| Point::parse(s).map_err(|e| anyhow::anyhow!("--{what}: {e}"));
    let (from, to) = (point("from", &args.from)?, point("to", &args.to)?);
    if args.max_rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--max-rate must be a positive number of MB/s");
    }
    let body = json!({
        "topic": args.topic, "from": from, "to": to, "into": args.into,
        "partitions": args.partitions, "filter": args.filter,
        "max_rate_bytes": args.max_rate.map(|r| r * 1_000_000.0),
        "again": args.again,
    });
    let agent = agent();
    let http = &args.api.http;
    let started: Value = call(
        agent.post(url(http, "/v1/replays")).send_json(&body),
        "starting the replay",
    )?;
    let id = started["id"].as_str().unwrap_or_default().to_string();
    if args.detach {
        println!("{id}");
        return Ok(());
    }
    let total: i64 = started["partitions"]
        .as_object()
        .map(|ps| {
            ps.values()
                .map(|p| p["end"].as_i64().unwrap_or(0) - p["start"].as_i64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    let resumed: Vec<String> = started["partitions"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(p, v)| v["resumed_from"].as_i64().map(|o| format!("{p}@{o}")))
        .collect();
    if !resumed.is_empty() {
        eprintln!(
            "resuming window {} (partition@offset: {}); --again copies it from its start",
            started["window"].as_str().unwrap_or(""),
            resumed.join(", ")
        );
    }
    let bar = ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} offsets {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let path = format!("/v1/replays/{id}");
    let status = loop {
        let s: Value = call(
            agent.get(url(http, &path)).call(),
            "reading the replay's progress",
        )?;
        let done: i64 = s["partitions"]
            .as_object()
            .map(|ps| {
                ps.values()
                    .map(|p| p["position"].as_i64().unwrap_or(0) - p["start"].as_i64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        bar.set_position(done.max(0) as u64);
        bar.set_message(format!("{} written", s["records_written"]));
        if s["state"] != "running" {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    bar.finish_and_clear();
    let rows: Vec<Vec<String>> = status["partitions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(p, v)| {
            vec![
                p.clone(),
                v["start"].to_string(),
                v["end"].to_string(),
                v["read"].to_string(),
                v["written"].to_string(),
            ]
        })
        .collect();
    print_table(&["PARTITION", "FROM", "TO", "READ", "WRITTEN"], &rows);
    println!(
        "replay {id}: {} of {} records read written into {} ({} bytes)",
        status["records_written"], status["records_read"], args.into, status["bytes_written"]
    );
    if status["state"] == "stopped" {
        println!("replay {id} was stopped; run the same command to resume the window");
        return Ok(());
    }
    if status["state"] != "done" {
        bail!(
            "replay {id} failed: {}",
            status["error"].as_str().unwrap_or("unknown error")
        );
    }
    Ok(())
}
