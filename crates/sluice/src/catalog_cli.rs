//! `sluice catalog migrate --from sqlite:///path/catalog.db --to
//! postgres://...`: moves a stopped embedded broker's metadata into a
//! cluster's catalog, so that brokers sharing the embedded broker's bucket
//! serve everything it held. No data is copied: the objects stay where they
//! are. Refused when the target catalog is not empty, or when the embedded
//! broker's write-ahead log still holds data that is not in objects (a
//! crash, or a shutdown that could not upload everything).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use sluice_catalog::{Catalog, CatalogUrl, LogIndex, TopicStore};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CatalogArgs {
    #[command(subcommand)]
    command: CatalogCommand,
}

#[derive(Subcommand, Debug)]
enum CatalogCommand {
    /// Move a stopped broker's catalog into another (embedded to cluster).
    Migrate {
        /// The catalog to move (a stopped embedded broker's).
        #[arg(long, value_name = "URL")]
        from: String,
        /// The catalog to move it into (empty; the cluster's).
        #[arg(long, value_name = "URL")]
        to: String,
        /// The embedded broker's write-ahead log [default: the `wal` folder
        /// beside a SQLite source's file].
        #[arg(long, value_name = "DIR")]
        wal_dir: Option<PathBuf>,
    },
}

pub fn run(args: CatalogArgs) -> anyhow::Result<()> {
    match args.command {
        CatalogCommand::Migrate { from, to, wal_dir } => migrate(&from, &to, wal_dir),
    }
}

fn migrate(from: &str, to: &str, wal_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let here = std::env::current_dir()?;
    let from_url = CatalogUrl::parse(Some(from), &here)?;
    let to_url = CatalogUrl::parse(Some(to), &here)?;
    if from_url == to_url {
        bail!("--from and --to name the same catalog");
    }
    let wal_dir = match (wal_dir, &from_url) {
        (Some(d), _) => Some(d),
        (None, CatalogUrl::Sqlite(path)) => path.parent().map(|p| p.join("wal")),
        (None, CatalogUrl::Postgres(_)) => None,
    };
    if let CatalogUrl::Sqlite(path) = &from_url {
        if !path.is_file() {
            bail!(
                "{} does not exist: --from must name an existing catalog",
                path.display()
            );
        }
    }
    let source = Catalog::open(&from_url)
        .with_context(|| format!("cannot open the source catalog {}", from_url.describe()))?;
    if let Some(dir) = &wal_dir {
        check_wal_uploaded(&source, dir)?;
    }
    let target = Catalog::open(&to_url)
        .with_context(|| format!("cannot open the target catalog {}", to_url.describe()))?;
    if let Some(what) = sluice_catalog::migrate::not_empty(&target)? {
        bail!(
            "the target catalog {} is not empty ({what}): migrate into a new, empty database",
            to_url.describe()
        );
    }
    println!("moving {} into {}", from_url.describe(), to_url.describe());
    let copied = sluice_catalog::migrate::copy(&source, &target, |_, _| {})?;
    let rows: Vec<Vec<String>> = copied
        .iter()
        .map(|(t, n)| vec![t.to_string(), n.to_string()])
        .collect();
    crate::groups_cli::print_table(&["TABLE", "ROWS"], &rows);
    println!(
        "done: start the cluster's brokers with --catalog {} and the embedded broker's --object-store",
        to_url.describe()
    );
    Ok(())
}

/// Refuses when the WAL in `dir` holds batches the catalog does not index.
fn check_wal_uploaded(source: &Catalog, dir: &std::path::Path) -> anyhow::Result<()> {
    let names: HashMap<uuid::Uuid, String> = source
        .list_topics()?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let ends: HashMap<(uuid::Uuid, i32), i64> = source
        .partition_states()?
        .into_iter()
        .map(|s| ((s.topic, s.partition), s.uploaded_end))
        .collect();
    let missing = sluice_storage::wal::unuploaded(dir, |t, p| {
        names
            .contains_key(&t)
            .then(|| ends.get(&(t, p)).copied().unwrap_or(0))
    })
    .with_context(|| format!("cannot read the write-ahead log in {}", dir.display()))?;
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = missing
        .iter()
        .take(5)
        .map(|(t, p, o)| {
            format!(
                "{} partition {p} from offset {o}",
                names.get(t).map(String::as_str).unwrap_or("?")
            )
        })
        .collect();
    bail!(
        "the write-ahead log in {} holds data that is not in objects yet ({}{}): start the broker again and stop it with SIGTERM, which uploads everything, then migrate",
        dir.display(),
        shown.join(", "),
        if missing.len() > 5 { ", ..." } else { "" }
    )
}
