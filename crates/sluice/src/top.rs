//! `sluice top`: a live terminal view of topics (throughput, size) and
//! consumer groups (lag, lag seconds, Burrow status), refreshed every
//! `--interval`, read from the broker's HTTP admin API.

use crate::groups_cli::{agent, call, format_table, url};
use clap::Args;
use sluice_ops::admin::{GroupDetail, GroupSummary, TopicSummary};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct TopArgs {
    /// HTTP address of the broker.
    #[arg(long, env = "SLUICE_HTTP", default_value = "127.0.0.1:8081")]
    http: String,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Print one frame and exit.
    #[arg(long)]
    once: bool,
}

fn human_bytes(v: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

fn frame(agent: &ureq::Agent, http: &str) -> anyhow::Result<String> {
    let topics: Vec<TopicSummary> =
        call(agent.get(url(http, "/v1/topics")).call(), "listing topics")?;
    let groups: Vec<GroupSummary> =
        call(agent.get(url(http, "/v1/groups")).call(), "listing groups")?;
    let mut out = String::new();
    out.push_str(&format!(
        "sluice top — {}  ({} topics, {} groups)\n\n",
        chrono::Utc::now().format("%H:%M:%S"),
        topics.len(),
        groups.len()
    ));
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| {
            vec![
                t.topic.clone(),
                t.partitions.to_string(),
                t.messages.to_string(),
                human_bytes(t.size_bytes as f64),
                format!("{}/s", human_bytes(t.bytes_in_per_sec)),
                format!("{:.0}", t.records_in_per_sec),
                format!("{}/s", human_bytes(t.bytes_out_per_sec)),
            ]
        })
        .collect();
    out.push_str(&format_table(
        &[
            "TOPIC",
            "PARTITIONS",
            "MESSAGES",
            "SIZE",
            "IN",
            "RECORDS/S",
            "OUT",
        ],
        &rows,
    ));
    out.push('\n');
    let mut rows = Vec::new();
    for g in &groups {
        let d: GroupDetail = call(
            agent
                .get(url(http, &format!("/v1/groups/{}", g.group)))
                .call(),
            "describing a group",
        )?;
        let trend: f64 = d.partitions.iter().map(|p| p.trend).sum();
        rows.push(vec![
            d.group.clone(),
            d.state.clone(),
            d.members.len().to_string(),
            d.total_lag.to_string(),
            format!("{:.1}", d.max_lag_seconds),
            format!("{trend:+.1}/s"),
            d.status.clone(),
        ]);
    }
    out.push_str(&format_table(
        &[
            "GROUP",
            "STATE",
            "MEMBERS",
            "LAG",
            "LAG-SECONDS",
            "TREND",
            "STATUS",
        ],
        &rows,
    ));
    Ok(out)
}

pub fn run(args: TopArgs) -> anyhow::Result<()> {
    let agent = agent();
    let interval = Duration::from_secs_f64(args.interval.max(0.2));
    loop {
        let text = frame(&agent, &args.http)?;
        if args.once {
            print!("{text}");
            return Ok(());
        }
        // Clear the screen and move home, then draw the frame.
        print!("\x1b[2J\x1b[H{text}");
        use std::io::Write;
        std::io::stdout().flush()?;
        std::thread::sleep(interval);
    }
}
