//! `sluice cluster status`: the live brokers of the cluster a broker belongs
//! to (through any broker's HTTP listener), with address, zone, lease age,
//! the groups each coordinates and the background jobs each runs; `--json`
//! prints `GET /v1/cluster` as it is.

use crate::groups_cli::{agent, call, print_table, url, ApiArgs};
use clap::{Args, Subcommand};
use sluice_ops::cluster::ClusterView;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Live brokers, their leases, groups and background jobs.
    Status {
        /// Print the JSON of GET /v1/cluster.
        #[arg(long)]
        json: bool,
    },
}

/// A list cut to `max` names, with how many were left out.
fn names(all: &[String], max: usize) -> String {
    if all.is_empty() {
        return "-".into();
    }
    let mut s = all.iter().take(max).cloned().collect::<Vec<_>>().join(",");
    if all.len() > max {
        s.push_str(&format!(" (+{} more)", all.len() - max));
    }
    s
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Status { json } => {
            let view: ClusterView = call(
                agent().get(url(&args.api.http, "/v1/cluster")).call(),
                "the cluster's status",
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
                return Ok(());
            }
            println!(
                "cluster {} ({}), {} live broker(s), answered by broker {}",
                view.cluster_id,
                view.mode,
                view.brokers.len(),
                view.broker_id
            );
            let rows: Vec<Vec<String>> = view
                .brokers
                .iter()
                .map(|b| {
                    vec![
                        format!("{}{}", b.broker_id, if b.this { "*" } else { "" }),
                        format!("{}:{}", b.host, b.port),
                        b.rack.clone().unwrap_or_else(|| "-".into()),
                        if view.mode == "cluster" {
                            format!("{:.1}s", b.lease_age_ms as f64 / 1000.0)
                        } else {
                            "-".into()
                        },
                        b.groups.len().to_string(),
                        names(&b.groups, 5),
                        names(&b.jobs, 4),
                    ]
                })
                .collect();
            print_table(
                &[
                    "BROKER",
                    "ADDRESS",
                    "ZONE",
                    "LEASE-AGE",
                    "GROUPS",
                    "COORDINATES",
                    "JOBS",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut() {
        let g: Vec<String> = (0..7).map(|i| format!("g{i}")).collect();
        assert_eq!(names(&g, 2), "g0,g1 (+5 more)");
        assert_eq!(names(&[], 2), "-");
    }
}
