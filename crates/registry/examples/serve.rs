//! Serves the registry REST API alone, for trying clients against it before
//! the broker wires it in: `cargo run -p sluice-registry --example serve --
//! 127.0.0.1:8081 /tmp/registry.db` (the database is created if missing).
//! `GET /healthz` answers 200 like the broker's listener.

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use sluice_registry::{install_ai_contracts, router, Registry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8081".to_string());
    let db = PathBuf::from(args.next().unwrap_or_else(|| "registry.db".to_string()));
    let install = args.next().as_deref() == Some("--install-contracts");
    let catalog = sluice_catalog::Catalog::open(&sluice_catalog::CatalogUrl::Sqlite(db))?;
    let registry = Arc::new(Registry::open(catalog.db())?);
    if install {
        for (subject, id) in install_ai_contracts(&registry)? {
            println!("installed {subject} id={id}");
        }
    }
    let app = router(registry).route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("registry listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
