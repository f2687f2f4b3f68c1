//! `sluice acls add|list|remove`: Kafka ACLs in a broker's catalog, in
//! `kafka-acls.sh`'s vocabulary (`--allow-principal User:alice --operation
//! Write --topic T --resource-pattern-type prefixed`). Like `sluice users`
//! it works on the catalog named by `--catalog` / `--data-dir`: running
//! brokers pick a change up within two seconds (a cluster's at once, by
//! the catalog's notification). Kafka clients manage the same rules with
//! CreateAcls, DescribeAcls and DeleteAcls.

use crate::users_cli::open_catalog;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use sluice_broker::handlers::acls::check_rule;
use sluice_broker::security::acl::{
    AclFilter, AclRule, Operation, PatternFilter, PatternType, Permission, ResourceType,
};
use sluice_broker::security::authz::{from_record, to_record};
use sluice_catalog::AclStore;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AclsArgs {
    /// The catalog: sqlite:///path or postgres://... [default: sqlite://DATA_DIR/catalog.db].
    #[arg(long, env = "SLUICE_CATALOG", value_name = "URL", global = true)]
    catalog: Option<String>,
    /// The broker's data directory (for its default catalog) [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: AclsCommand,
}

/// The resources a command is about (any number of each).
#[derive(Args, Debug, Default)]
struct Resources {
    /// A topic (or, with --resource-pattern-type prefixed, a topic name prefix; * for all).
    #[arg(long, value_name = "NAME")]
    topic: Vec<String>,
    /// A consumer group (or prefix; * for all).
    #[arg(long, value_name = "NAME")]
    group: Vec<String>,
    /// The cluster itself.
    #[arg(long)]
    cluster: bool,
    /// A transactional id (or prefix; * for all).
    #[arg(long, value_name = "ID")]
    transactional_id: Vec<String>,
}

impl Resources {
    fn list(&self) -> Vec<(ResourceType, String)> {
        let mut out = Vec::new();
        out.extend(self.topic.iter().map(|n| (ResourceType::Topic, n.clone())));
        out.extend(self.group.iter().map(|n| (ResourceType::Group, n.clone())));
        if self.cluster {
            out.push((ResourceType::Cluster, "kafka-cluster".into()));
        }
        out.extend(
            self.transactional_id
                .iter()
                .map(|n| (ResourceType::TransactionalId, n.clone())),
        );
        out
    }
}

/// Who a rule is for, and what it allows or denies.
#[derive(Args, Debug, Default)]
struct Grants {
    /// A principal to allow (User:NAME, User:* for everyone); repeatable.
    #[arg(long, value_name = "PRINCIPAL")]
    allow_principal: Vec<String>,
    /// A principal to deny; repeatable.
    #[arg(long, value_name = "PRINCIPAL")]
    deny_principal: Vec<String>,
    /// Hosts the allow rules are for [default: *].
    #[arg(long, value_name = "HOST")]
    allow_host: Vec<String>,
    /// Hosts the deny rules are for [default: *].
    #[arg(long, value_name = "HOST")]
    deny_host: Vec<String>,
    /// Operations: All, Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite; repeatable.
    #[arg(long, value_name = "OPERATION")]
    operation: Vec<String>,
    /// Shorthand for a producer: Write, Describe and Create on the topics (and
    /// Write and Describe on the transactional ids).
    #[arg(long)]
    producer: bool,
    /// Shorthand for a consumer: Read and Describe on the topics, Read on the groups.
    #[arg(long)]
    consumer: bool,
}

#[derive(Subcommand, Debug)]
enum AclsCommand {
    /// Add rules: every principal x host x operation x resource given.
    Add {
        #[command(flatten)]
        resources: Resources,
        #[command(flatten)]
        grants: Grants,
        /// literal or prefixed [default: literal].
        #[arg(long, value_name = "TYPE", default_value = "literal")]
        resource_pattern_type: String,
    },
    /// List rules, all or those about the given resources / principal.
    List {
        #[command(flatten)]
        resources: Resources,
        /// Only rules for this principal.
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
        /// any, match (every rule that applies to the named resource), literal or prefixed
        /// [default: any].
        #[arg(long, value_name = "TYPE", default_value = "any")]
        resource_pattern_type: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove rules: the ones `add` with the same arguments would add, or, with only
    /// resources given, every rule on them.
    Remove {
        #[command(flatten)]
        resources: Resources,
        #[command(flatten)]
        grants: Grants,
        /// literal or prefixed [default: literal].
        #[arg(long, value_name = "TYPE", default_value = "literal")]
        resource_pattern_type: String,
    },
}

fn pattern(s: &str) -> anyhow::Result<PatternType> {
    PatternType::parse(s)
        .with_context(|| format!("--resource-pattern-type must be literal or prefixed, not {s:?}"))
}

/// The rules `add` (or a precise `remove`) means.
fn rules(
    resources: &Resources,
    grants: &Grants,
    pattern: PatternType,
) -> anyhow::Result<Vec<AclRule>> {
    let targets = resources.list();
    if targets.is_empty() {
        bail!("name a resource: --topic, --group, --cluster or --transactional-id");
    }
    if grants.allow_principal.is_empty() && grants.deny_principal.is_empty() {
        bail!("name a principal: --allow-principal or --deny-principal");
    }
    let mut ops: Vec<Operation> = Vec::new();
    for o in &grants.operation {
        ops.push(Operation::parse(o).with_context(|| {
            format!("unknown operation {o:?} (All, Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite)")
        })?);
    }
    if ops.is_empty() && !grants.producer && !grants.consumer {
        bail!("name an operation: --operation, --producer or --consumer");
    }
    let hosts = |h: &Vec<String>| {
        if h.is_empty() {
            vec!["*".to_string()]
        } else {
            h.clone()
        }
    };
    let mut out = Vec::new();
    for (permission, principals, hosts) in [
        (
            Permission::Allow,
            &grants.allow_principal,
            hosts(&grants.allow_host),
        ),
        (
            Permission::Deny,
            &grants.deny_principal,
            hosts(&grants.deny_host),
        ),
    ] {
        for principal in principals {
            for host in &hosts {
                for (rt, name) in &targets {
                    let mut these = ops.clone();
                    match rt {
                        ResourceType::Topic if grants.producer => {
                            these.extend([Operation::Write, Operation::Describe, Operation::Create])
                        }
                        ResourceType::TransactionalId if grants.producer => {
                            these.extend([Operation::Write, Operation::Describe])
                        }
                        _ => {}
                    }
                    match rt {
                        ResourceType::Topic if grants.consumer => {
                            these.extend([Operation::Read, Operation::Describe])
                        }
                        ResourceType::Group if grants.consumer => these.push(Operation::Read),
                        _ => {}
                    }
                    these.sort();
                    these.dedup();
                    for operation in these {
                        let rule = AclRule {
                            resource_type: *rt,
                            resource_name: name.clone(),
                            pattern,
                            principal: principal.clone(),
                            host: host.clone(),
                            operation,
                            permission,
                        };
                        check_rule(&rule).map_err(|e| anyhow::anyhow!("{e}"))?;
                        out.push(rule);
                    }
                }
            }
        }
    }
    Ok(out)
}

fn show(rules: &[AclRule], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<serde_json::Value> = rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "resource_type": r.resource_type.name(),
                    "resource_name": r.resource_name,
                    "pattern_type": r.pattern.name(),
                    "principal": r.principal,
                    "host": r.host,
                    "operation": r.operation.name(),
                    "permission": match r.permission { Permission::Allow => "ALLOW", Permission::Deny => "DENY" },
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                format!("{}:{}", r.resource_type.name(), r.resource_name),
                r.pattern.name().to_string(),
                r.principal.clone(),
                r.host.clone(),
                r.operation.name().to_string(),
                match r.permission {
                    Permission::Allow => "ALLOW".into(),
                    Permission::Deny => "DENY".into(),
                },
            ]
        })
        .collect();
    crate::groups_cli::print_table(
        &[
            "RESOURCE",
            "PATTERN",
            "PRINCIPAL",
            "HOST",
            "OPERATION",
            "PERMISSION",
        ],
        &rows,
    );
    Ok(())
}

pub fn run(args: AclsArgs) -> anyhow::Result<()> {
    let catalog = open_catalog(args.catalog.as_deref(), args.data_dir.as_deref())?;
    let stored = || -> anyhow::Result<Vec<AclRule>> {
        Ok(catalog.all_acls()?.iter().filter_map(from_record).collect())
    };
    match &args.command {
        AclsCommand::Add {
            resources,
            grants,
            resource_pattern_type,
        } => {
            let new = rules(resources, grants, pattern(resource_pattern_type)?)?;
            let records: Vec<_> = new.iter().map(to_record).collect();
            catalog.put_acls(&records)?;
            println!("{} rule(s) added:", new.len());
            show(&new, false)?;
        }
        AclsCommand::List {
            resources,
            principal,
            resource_pattern_type,
            json,
        } => {
            let pattern = match resource_pattern_type.to_ascii_lowercase().as_str() {
                "any" => PatternFilter::Any,
                "match" => PatternFilter::Match,
                other => PatternFilter::Exactly(pattern(other)?),
            };
            let targets = resources.list();
            let filters: Vec<AclFilter> = if targets.is_empty() {
                vec![AclFilter {
                    pattern,
                    principal: principal.clone(),
                    ..AclFilter::any()
                }]
            } else {
                targets
                    .into_iter()
                    .map(|(rt, name)| AclFilter {
                        resource_type: Some(rt),
                        resource_name: Some(name),
                        pattern,
                        principal: principal.clone(),
                        ..AclFilter::any()
                    })
                    .collect()
            };
            let shown: Vec<AclRule> = stored()?
                .into_iter()
                .filter(|r| filters.iter().any(|f| f.matches(r)))
                .collect();
            show(&shown, *json)?;
        }
        AclsCommand::Remove {
            resources,
            grants,
            resource_pattern_type,
        } => {
            let pattern = pattern(resource_pattern_type)?;
            let only_resources = grants.allow_principal.is_empty()
                && grants.deny_principal.is_empty()
                && grants.operation.is_empty()
                && !grants.producer
                && !grants.consumer;
            let doomed: Vec<AclRule> = if only_resources {
                let targets = resources.list();
                if targets.is_empty() {
                    bail!("name a resource: --topic, --group, --cluster or --transactional-id");
                }
                stored()?
                    .into_iter()
                    .filter(|r| {
                        r.pattern == pattern
                            && targets
                                .iter()
                                .any(|(t, n)| *t == r.resource_type && *n == r.resource_name)
                    })
                    .collect()
            } else {
                rules(resources, grants, pattern)?
            };
            let records: Vec<_> = doomed.iter().map(to_record).collect();
            let n = catalog.delete_acls(&records)?;
            if n == 0 {
                bail!("no matching rule");
            }
            println!("{n} rule(s) removed");
        }
    }
    Ok(())
}
