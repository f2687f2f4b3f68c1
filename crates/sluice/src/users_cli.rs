//! `sluice users add|list|delete`: SASL users (SCRAM credentials) in a
//! broker's catalog, named by `--catalog` or `--data-dir` as `sluice serve`
//! does. Use it against a stopped embedded broker (to create the first
//! admin) or against a cluster's PostgreSQL catalog at any time; running
//! brokers read credentials at each login, so a change applies to the next
//! one. Only salts and SCRAM keys are stored; PLAIN logins are checked
//! against them.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use sluice_broker::security::sasl::to_record;
use sluice_broker::security::scram::{Credential, Mechanism, DEFAULT_ITERATIONS};
use sluice_catalog::{Catalog, CatalogUrl, CredentialStore};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct UsersArgs {
    /// The catalog: sqlite:///path or postgres://... [default: sqlite://DATA_DIR/catalog.db].
    #[arg(long, env = "SLUICE_CATALOG", value_name = "URL", global = true)]
    catalog: Option<String>,
    /// The broker's data directory (for its default catalog) [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Manage the users of a running broker through its HTTP admin API (HOST:PORT) instead
    /// of a catalog; logs in with SLUICE_HTTP_USER / SLUICE_HTTP_PASSWORD.
    #[arg(long, value_name = "HOST:PORT", global = true, conflicts_with_all = ["catalog", "data_dir"])]
    http: Option<String>,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand, Debug)]
enum UsersCommand {
    /// Create a user, or change its password.
    Add {
        name: String,
        /// The password (or SLUICE_USER_PASSWORD).
        #[arg(long, env = "SLUICE_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// Store only this mechanism's keys [default: both SCRAM-SHA-256 and SCRAM-SHA-512].
        #[arg(long, value_name = "SCRAM-SHA-256|SCRAM-SHA-512")]
        mechanism: Option<String>,
        /// PBKDF2 iterations (4096-16384) [default: 4096].
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
        /// The user's tenant: topics with sluice.governance.tenant.binding take from this
        /// user only records whose tenant-id header is this tenant.
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
    },
    /// Set a user's tenant (or clear it, with no TENANT).
    Tenant {
        name: String,
        tenant: Option<String>,
    },
    /// List users and their mechanisms.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a user (all mechanisms, or one).
    Delete {
        name: String,
        #[arg(long, value_name = "SCRAM-SHA-256|SCRAM-SHA-512")]
        mechanism: Option<String>,
    },
}

/// The catalog named by `--catalog` / `--data-dir` as `sluice serve` names
/// it; an embedded catalog (and its directory) is created as the broker
/// would, so a first admin or rule can be added before the first start.
pub fn open_catalog(
    catalog: Option<&str>,
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<std::sync::Arc<Catalog>> {
    let data_dir = data_dir
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("./sluice-data"));
    let url = CatalogUrl::parse(catalog, &data_dir)?;
    if let CatalogUrl::Sqlite(path) = &url {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    Catalog::open(&url).with_context(|| format!("cannot open the catalog {}", url.describe()))
}

fn mechanisms(m: Option<&str>) -> anyhow::Result<Vec<Mechanism>> {
    match m {
        None => Ok(Mechanism::ALL.to_vec()),
        Some(s) => Mechanism::parse(s)
            .map(|m| vec![m])
            .with_context(|| format!("unknown mechanism '{s}' (SCRAM-SHA-256 or SCRAM-SHA-512)")),
    }
}

/// A user name Kafka clients can send (SCRAM escapes ',' and '=' itself).
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control()) {
        bail!("user name must be 1-256 characters without control characters");
    }
    Ok(())
}

/// A user's new credentials (one per mechanism), checked.
pub fn new_credentials(
    name: &str,
    password: &str,
    mechanism: Option<&str>,
    iterations: u32,
) -> anyhow::Result<Vec<sluice_catalog::CredentialRecord>> {
    check_name(name)?;
    if password.is_empty() {
        bail!("the password is empty");
    }
    mechanisms(mechanism)?
        .into_iter()
        .map(|m| {
            Credential::new(m, password, iterations)
                .map(|c| to_record(name, &c))
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect()
}

/// Every user and its mechanisms (`list --json`, `GET /v1/users`).
pub fn list_users(catalog: &Catalog) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in catalog.all_credentials()? {
        users
            .entry(c.user)
            .or_default()
            .push(format!("{} (iterations {})", c.mechanism, c.iterations));
    }
    Ok(users)
}

/// The mechanism name `--mechanism` means, checked.
pub fn mechanism_name(m: Option<&str>) -> anyhow::Result<Option<&'static str>> {
    m.map(|s| mechanisms(Some(s)).map(|v| v[0].name()))
        .transpose()
}

/// `sluice users` through a running broker's HTTP admin API.
fn run_http(http: &str, command: &UsersCommand) -> anyhow::Result<()> {
    use crate::groups_cli::{agent, call, url};
    let agent = agent();
    let path = |name: &str| {
        format!(
            "/v1/users/{}",
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    match command {
        UsersCommand::Add {
            name,
            password,
            mechanism,
            iterations,
            tenant,
        } => {
            let body = serde_json::json!({
                "password": password, "mechanism": mechanism, "iterations": iterations,
                "tenant": tenant,
            });
            let stored: Vec<String> = call(
                agent.put(url(http, &path(name))).send_json(&body),
                "adding a user",
            )?;
            for m in stored {
                println!("{name}: {m} credential stored");
            }
        }
        UsersCommand::List { json } => {
            let users: BTreeMap<String, Vec<String>> =
                call(agent.get(url(http, "/v1/users")).call(), "listing users")?;
            print_users(users, BTreeMap::new(), *json)?;
        }
        UsersCommand::Tenant { name, tenant } => {
            let body = serde_json::json!({ "tenant": tenant });
            let _: serde_json::Value = call(
                agent
                    .put(url(http, &format!("{}/tenant", path(name))))
                    .send_json(&body),
                "setting a user's tenant",
            )?;
            println!("{name}: tenant {}", tenant.as_deref().unwrap_or("cleared"));
        }
        UsersCommand::Delete { name, mechanism } => {
            let mut u = url(http, &path(name));
            if let Some(m) = mechanism_name(mechanism.as_deref())? {
                u.push_str(&format!("?mechanism={m}"));
            }
            let n: usize = call(agent.delete(u).call(), "deleting a user")?;
            println!("{name}: {n} credential(s) deleted");
        }
    }
    Ok(())
}

fn print_users(
    users: BTreeMap<String, Vec<String>>,
    tenants: BTreeMap<String, String>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&users)?);
    } else {
        let rows: Vec<Vec<String>> = users
            .into_iter()
            .map(|(u, m)| {
                let t = tenants.get(&u).cloned().unwrap_or_default();
                vec![u, m.join(", "), t]
            })
            .collect();
        crate::groups_cli::print_table(&["USER", "MECHANISMS", "TENANT"], &rows);
    }
    Ok(())
}

/// Every user's tenant.
pub fn tenants(catalog: &Catalog) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(catalog
        .all_user_attributes()?
        .into_iter()
        .filter(|(_, a, _)| a == "tenant")
        .map(|(u, _, v)| (u, v))
        .collect())
}

/// Checks a tenant name.
pub fn check_tenant(t: &str) -> anyhow::Result<()> {
    if t.is_empty() || t.len() > 256 || t.chars().any(|c| c.is_control()) {
        bail!("a tenant must be 1-256 characters without control characters");
    }
    Ok(())
}

pub fn run(args: UsersArgs) -> anyhow::Result<()> {
    if let Some(http) = &args.http {
        return run_http(http, &args.command);
    }
    let catalog = open_catalog(args.catalog.as_deref(), args.data_dir.as_deref())?;
    match &args.command {
        UsersCommand::Add {
            name,
            password,
            mechanism,
            iterations,
            tenant,
        } => {
            if let Some(t) = tenant {
                check_tenant(t)?;
            }
            for c in new_credentials(name, password, mechanism.as_deref(), *iterations)? {
                catalog.put_credential(&c)?;
                println!("{name}: {} credential stored", c.mechanism);
            }
            if let Some(t) = tenant {
                catalog.set_user_attribute(name, "tenant", Some(t))?;
                println!("{name}: tenant {t}");
            }
        }
        UsersCommand::Tenant { name, tenant } => {
            if let Some(t) = tenant {
                check_tenant(t)?;
            }
            if catalog.credentials(name)?.is_empty() {
                bail!("no such user '{name}'");
            }
            catalog.set_user_attribute(name, "tenant", tenant.as_deref())?;
            println!("{name}: tenant {}", tenant.as_deref().unwrap_or("cleared"));
        }
        UsersCommand::List { json } => {
            print_users(list_users(&catalog)?, tenants(&catalog)?, *json)?;
        }
        UsersCommand::Delete { name, mechanism } => {
            let m = mechanism_name(mechanism.as_deref())?;
            let n = catalog.delete_credentials(name, m)?;
            if m.is_none() {
                catalog.set_user_attribute(name, "tenant", None)?;
            }
            if n == 0 {
                bail!(
                    "no such user '{name}'{}",
                    m.map(|m| format!(" with {m}")).unwrap_or_default()
                );
            }
            println!("{name}: {n} credential(s) deleted");
        }
    }
    Ok(())
}
