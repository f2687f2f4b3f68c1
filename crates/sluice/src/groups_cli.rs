//! `sluice groups`: list, describe, reset offsets of and delete consumer
//! groups through a running broker's HTTP admin API. `describe` prints the
//! columns of `kafka-consumer-groups.sh --describe`; `reset-offsets` is a dry
//! run unless `--execute` is given.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice_ops::admin::{GroupDetail, GroupSummary, ResetPlanRow, ResetRequest, ResetTarget};

/// Where the broker's HTTP API is (shared by every client subcommand).
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// HTTP address of the broker.
    #[arg(
        long,
        env = "SLUICE_HTTP",
        default_value = "127.0.0.1:8081",
        global = true
    )]
    pub http: String,
}

#[derive(Args, Debug)]
pub struct GroupsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Subcommand, Debug)]
enum GroupsCommand {
    /// List consumer groups with their state and member count.
    List,
    /// Show a group's partitions: committed offset, log end, lag and owner.
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets (the group must be empty).
    Delete { group: String },
}

#[derive(Args, Debug)]
struct ResetArgs {
    group: String,
    /// Topic to reset (repeatable).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Reset every topic the group has offsets for.
    #[arg(long, conflicts_with = "topics")]
    all_topics: bool,
    #[arg(long, group = "target")]
    to_earliest: bool,
    #[arg(long, group = "target")]
    to_latest: bool,
    /// Milliseconds since the epoch, or an RFC 3339 time such as 2026-11-23T10:00:00Z.
    #[arg(long, group = "target", value_name = "TIME")]
    to_datetime: Option<String>,
    #[arg(long, group = "target", value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// Apply the plan (without it, only show what would change).
    #[arg(long)]
    execute: bool,
}

/// The URL of `path` on the broker's HTTP listener: `--http` is HOST:PORT
/// (plain HTTP) or a URL (`https://HOST:PORT` for a broker with
/// `--http-tls`).
pub fn url(http: &str, path: &str) -> String {
    if http.starts_with("http://") || http.starts_with("https://") {
        format!("{}{path}", http.trim_end_matches('/'))
    } else {
        format!("http://{http}{path}")
    }
}

fn api_error(e: ureq::Error, body: Option<String>) -> anyhow::Error {
    if let Some(b) = body {
        if let Ok(v) = serde_json::from_str::<Value>(&b) {
            if let Some(m) = v.get("message").and_then(Value::as_str) {
                return anyhow::anyhow!("{m}");
            }
        }
    }
    anyhow::anyhow!("{e}")
}

pub fn call<T: DeserializeOwned>(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
) -> anyhow::Result<T> {
    let mut resp =
        resp.with_context(|| format!("cannot reach the broker's HTTP API for {what}"))?;
    let status = resp.status();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    if !status.is_success() {
        return Err(api_error(
            ureq::Error::StatusCode(status.as_u16()),
            Some(text),
        ));
    }
    serde_json::from_str(&text).with_context(|| format!("unexpected answer for {what}"))
}

/// The HTTP client of the CLIs; with `SLUICE_HTTP_USER` and
/// `SLUICE_HTTP_PASSWORD` set it logs in with HTTP Basic authentication
/// (a broker with `--http-auth basic`); `SLUICE_HTTP_CA` names a PEM file
/// of the CA certificates to trust for `https://` (instead of the WebPKI
/// roots).
pub fn agent() -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)));
    if let Ok(path) = std::env::var("SLUICE_HTTP_CA") {
        match std::fs::read(&path) {
            Ok(pem) => {
                let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                if certs.is_empty() {
                    eprintln!("warning: SLUICE_HTTP_CA {path} holds no PEM certificate");
                }
                config = config.tls_config(
                    ureq::tls::TlsConfig::builder()
                        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)))
                        .build(),
                );
            }
            Err(e) => eprintln!("warning: cannot read SLUICE_HTTP_CA {path}: {e}"),
        }
    }
    if let (Ok(user), Ok(password)) = (
        std::env::var("SLUICE_HTTP_USER"),
        std::env::var("SLUICE_HTTP_PASSWORD"),
    ) {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        if let Ok(value) = ureq::http::HeaderValue::from_str(&format!("Basic {token}")) {
            config = config.middleware(
                move |mut req: ureq::http::Request<ureq::SendBody>,
                      next: ureq::middleware::MiddlewareNext| {
                    req.headers_mut()
                        .insert(ureq::http::header::AUTHORIZATION, value.clone());
                    next.handle(req)
                },
            );
        }
    }
    config.build().into()
}

/// Formats rows as an aligned table.
pub fn format_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        out.push_str(s.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// Prints rows as an aligned table.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", format_table(header, rows));
}

fn dash(v: Option<impl ToString>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).with_context(|| {
        format!("'{s}' is neither milliseconds since the epoch nor an RFC 3339 time")
    })?;
    Ok(t.timestamp_millis())
}

pub fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let agent = agent();
    let http = &args.api.http;
    match args.command {
        GroupsCommand::List => {
            let groups: Vec<GroupSummary> =
                call(agent.get(url(http, "/v1/groups")).call(), "listing groups")?;
            let rows: Vec<Vec<String>> = groups
                .into_iter()
                .map(|g| vec![g.group, g.state, g.protocol_type, g.members.to_string()])
                .collect();
            print_table(&["GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"], &rows);
        }
        GroupsCommand::Describe { group } => {
            let d: GroupDetail = call(
                agent.get(url(http, &format!("/v1/groups/{group}"))).call(),
                "describing the group",
            )?;
            if d.partitions.is_empty() {
                println!(
                    "Consumer group '{}' ({}) has no committed offsets and no assigned partitions.",
                    d.group, d.state
                );
            }
            let rows: Vec<Vec<String>> = d
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        d.group.clone(),
                        p.topic.clone(),
                        p.partition.to_string(),
                        dash(p.current_offset),
                        p.log_end_offset.to_string(),
                        dash(p.lag),
                        format!("{:.1}", p.lag_seconds),
                        p.status.clone(),
                        dash(p.consumer_id.clone()),
                        dash(p.host.clone()),
                        dash(p.client_id.clone()),
                    ]
                })
                .collect();
            print_table(
                &[
                    "GROUP",
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "LAG-SECONDS",
                    "STATUS",
                    "CONSUMER-ID",
                    "HOST",
                    "CLIENT-ID",
                ],
                &rows,
            );
        }
        GroupsCommand::ResetOffsets(r) => {
            let target = match (r.to_earliest, r.to_latest, &r.to_datetime, r.to_offset) {
                (true, _, _, _) => ResetTarget::Earliest,
                (_, true, _, _) => ResetTarget::Latest,
                (_, _, Some(t), _) => ResetTarget::Timestamp(parse_time(t)?),
                (_, _, _, Some(o)) => ResetTarget::Offset(o),
                _ => bail!("choose where to reset: --to-earliest, --to-latest, --to-datetime TIME or --to-offset N"),
            };
            if r.topics.is_empty() && !r.all_topics {
                bail!("choose the topics to reset: --topic NAME (repeatable) or --all-topics");
            }
            let req = ResetRequest {
                topics: r.topics,
                target,
                execute: r.execute,
            };
            let plan: Vec<ResetPlanRow> = call(
                agent
                    .post(url(http, &format!("/v1/groups/{}/reset-offsets", r.group)))
                    .send_json(&req),
                "resetting offsets",
            )?;
            let rows: Vec<Vec<String>> = plan
                .iter()
                .map(|p| {
                    vec![
                        r.group.clone(),
                        p.topic.clone(),
                        p.partition.to_string(),
                        dash(p.current_offset),
                        p.new_offset.to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "GROUP",
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "NEW-OFFSET",
                ],
                &rows,
            );
            if !req.execute {
                println!("\nDry run: nothing changed. Add --execute to apply.");
            }
        }
        GroupsCommand::Delete { group } => {
            let mut resp = agent
                .delete(url(http, &format!("/v1/groups/{group}")))
                .call()
                .context("cannot reach the broker's HTTP API")?;
            if !resp.status().is_success() {
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                return Err(api_error(
                    ureq::Error::StatusCode(resp.status().as_u16()),
                    Some(text),
                ));
            }
            println!("Deleted consumer group '{group}'.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times() {
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_time("2026-11-23T10:00:00+01:00").unwrap(),
            parse_time("2026-11-23T09:00:00Z").unwrap()
        );
        assert_eq!(parse_time("2000-03-01T00:00:00Z").unwrap(), 951_868_800_000);
        assert!(parse_time("yesterday").is_err());
    }
}
