//! `sluice quotas alter|describe`: client quotas in a broker's catalog, in
//! `kafka-configs.sh`'s vocabulary (`alter --user alice --add-config
//! producer_byte_rate=5242880`). Like `sluice acls` it writes the catalog
//! named by `--catalog` / `--data-dir`; running brokers pick changes up
//! within two seconds (a cluster's at once). Kafka clients manage the same
//! quotas with AlterClientQuotas and DescribeClientQuotas. Quotas hold per
//! broker, as Kafka's do.

use crate::users_cli::open_catalog;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use sluice_broker::handlers::client_quotas::check_value;
use sluice_broker::quotas::{Entity, QuotaKind};
use sluice_catalog::QuotaStore;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct QuotasArgs {
    /// The catalog: sqlite:///path or postgres://... [default: sqlite://DATA_DIR/catalog.db].
    #[arg(long, env = "SLUICE_CATALOG", value_name = "URL", global = true)]
    catalog: Option<String>,
    /// The broker's data directory (for its default catalog) [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: QuotasCommand,
}

/// Which entity: a user and/or a client id, each named or the default.
#[derive(Args, Debug, Default)]
struct Who {
    /// The user (SASL user name, or a mutual-TLS subject).
    #[arg(long, value_name = "NAME", conflicts_with = "user_default")]
    user: Option<String>,
    /// The default user quota (every user without a quota of its own).
    #[arg(long)]
    user_default: bool,
    /// The client id.
    #[arg(long, value_name = "ID", conflicts_with = "client_default")]
    client_id: Option<String>,
    /// The default client-id quota.
    #[arg(long)]
    client_default: bool,
}

impl Who {
    fn entity(&self) -> Option<Entity> {
        let user = match (&self.user, self.user_default) {
            (Some(u), _) => Some(Some(u.clone())),
            (None, true) => Some(None),
            (None, false) => None,
        };
        let client_id = match (&self.client_id, self.client_default) {
            (Some(c), _) => Some(Some(c.clone())),
            (None, true) => Some(None),
            (None, false) => None,
        };
        (user.is_some() || client_id.is_some()).then_some(Entity { user, client_id })
    }
}

#[derive(Subcommand, Debug)]
enum QuotasCommand {
    /// Set or remove quotas of a user and/or client id.
    Alter {
        #[command(flatten)]
        who: Who,
        /// KEY=VALUE,... with keys producer_byte_rate, consumer_byte_rate (bytes per second),
        /// request_percentage (percent of one request thread).
        #[arg(long, value_name = "CONFIGS")]
        add_config: Option<String>,
        /// KEY,... to remove.
        #[arg(long, value_name = "KEYS")]
        delete_config: Option<String>,
    },
    /// Show the quotas (all, or of one entity).
    Describe {
        #[command(flatten)]
        who: Who,
        #[arg(long)]
        json: bool,
    },
}

fn kind(key: &str) -> anyhow::Result<QuotaKind> {
    QuotaKind::parse(key.trim()).with_context(|| {
        format!(
            "unknown quota {key:?} (producer_byte_rate, consumer_byte_rate, request_percentage)"
        )
    })
}

fn describe_entity(e: &Entity) -> String {
    e.components()
        .into_iter()
        .map(|(k, n)| format!("{k}={}", n.unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn run(args: QuotasArgs) -> anyhow::Result<()> {
    let catalog = open_catalog(args.catalog.as_deref(), args.data_dir.as_deref())?;
    match &args.command {
        QuotasCommand::Alter {
            who,
            add_config,
            delete_config,
        } => {
            let entity = who.entity().context(
                "name the entity: --user NAME, --user-default, --client-id ID and/or --client-default",
            )?;
            let mut changes: Vec<(String, Option<f64>)> = Vec::new();
            for pair in add_config.iter().flat_map(|s| s.split(',')) {
                let (k, v) = pair
                    .split_once('=')
                    .with_context(|| format!("--add-config: {pair:?} is not KEY=VALUE"))?;
                let k = kind(k)?;
                let v: f64 = v.trim().parse().with_context(|| {
                    format!("--add-config: {} value {v:?} is not a number", k.key())
                })?;
                check_value(k, v).map_err(|e| anyhow::anyhow!("--add-config: {e}"))?;
                changes.push((k.key().to_string(), Some(v)));
            }
            for key in delete_config.iter().flat_map(|s| s.split(',')) {
                changes.push((kind(key)?.key().to_string(), None));
            }
            if changes.is_empty() {
                bail!("nothing to change: give --add-config and/or --delete-config");
            }
            catalog.alter_quotas(&entity.canonical(), &changes)?;
            println!("quotas of {} updated", describe_entity(&entity));
        }
        QuotasCommand::Describe { who, json } => {
            let only = who.entity();
            let mut by_entity: BTreeMap<Entity, BTreeMap<String, f64>> = BTreeMap::new();
            for (entity, key, value) in catalog.all_quotas()? {
                let Some(e) = Entity::from_canonical(&entity) else {
                    continue;
                };
                if only.as_ref().is_some_and(|o| *o != e) {
                    continue;
                }
                by_entity.entry(e).or_default().insert(key, value);
            }
            if *json {
                let rows: Vec<serde_json::Value> = by_entity
                    .iter()
                    .map(|(e, values)| {
                        let entity: serde_json::Map<String, serde_json::Value> = e
                            .components()
                            .into_iter()
                            .map(|(k, n)| {
                                (
                                    k.to_string(),
                                    n.map_or(serde_json::Value::Null, |s| s.into()),
                                )
                            })
                            .collect();
                        serde_json::json!({"entity": entity, "quotas": values})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let rows: Vec<Vec<String>> = by_entity
                    .iter()
                    .flat_map(|(e, values)| {
                        values
                            .iter()
                            .map(|(k, v)| vec![describe_entity(e), k.clone(), v.to_string()])
                            .collect::<Vec<_>>()
                    })
                    .collect();
                crate::groups_cli::print_table(&["ENTITY", "QUOTA", "VALUE"], &rows);
            }
        }
    }
    Ok(())
}
