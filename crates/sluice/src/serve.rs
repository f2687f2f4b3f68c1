//! `sluice serve`: opens the catalog and storage in the data directory,
//! starts the Kafka listener, the HTTP listener and the uploader, and shuts
//! everything down in order on SIGTERM/SIGINT (stop accepting, answer
//! in-flight requests, flush the WAL).

use crate::settings::Settings;
use anyhow::Context;
use sluice_broker::{Broker, BrokerConfig, GroupSettings};
use sluice_catalog::SqliteCatalog;
use sluice_storage::{LogStore, StorageConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub async fn run(s: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("cannot create data directory {}", s.data_dir.display()))?;
    let data_dir = s.data_dir.canonicalize()?;
    let catalog: Arc<dyn sluice_catalog::Catalog> = Arc::new(
        SqliteCatalog::open(&data_dir.join("catalog.db")).context("cannot open the catalog")?,
    );
    let opened = sluice_storage::store_url::open(
        s.object_store.as_deref(),
        &data_dir,
        &s.object_store_options,
    )?;
    sluice_storage::store_url::check_access(&opened)
        .await
        .context("the object store is not usable")?;
    let fault_control = std::env::var("SLUICE_FAULT_INJECTION")
        .is_ok_and(|v| v == "1")
        .then(sluice_storage::faults::FaultControl::default);
    let objects: Arc<dyn object_store::ObjectStore> = match &fault_control {
        Some(control) => {
            tracing::warn!("object store fault injection is enabled (SLUICE_FAULT_INJECTION=1): for tests only");
            Arc::new(sluice_storage::faults::FaultyStore::new(
                opened.store.clone(),
                control.clone(),
            ))
        }
        None => opened.store.clone(),
    };
    let k = &s.storage;
    let store_config = StorageConfig {
        upload_bytes: k.upload_bytes,
        upload_interval: Duration::from_millis(k.upload_interval_ms.max(1)),
        tail_cache_bytes: k.tail_cache_bytes,
        block_cache_bytes: k.block_cache_bytes,
        max_unuploaded_bytes: k.max_unuploaded_bytes.max(1 << 20),
        default_retention_ms: k.log_retention_ms,
        default_retention_bytes: k.log_retention_bytes,
        maintenance_interval: Duration::from_millis(k.maintenance_interval_ms.max(10)),
        compaction_min_bytes: k.compaction_min_bytes,
        gc_grace: Duration::from_millis(k.gc_grace_ms),
        ..StorageConfig::new(data_dir.join("wal"))
    };
    let store =
        tokio::task::block_in_place(|| LogStore::open(store_config, catalog.clone(), objects))
            .context("cannot open storage")?;
    let registry = sluice_registry::Registry::open(&data_dir.join("catalog.db"))
        .context("cannot open the schema registry")?;
    let broker = Broker::new(
        BrokerConfig {
            advertised_host: s.advertise_host.clone(),
            advertised_port: s.advertise_port,
            auto_create_topics_enable: s.auto_create_topics_enable,
            num_partitions: s.num_partitions,
            message_max_bytes: s.message_max_bytes,
            metrics_partition_detail: s.metrics_partition_detail,
            ..BrokerConfig::default()
        },
        GroupSettings::default(),
        store.clone(),
        catalog,
        registry.clone(),
    )?;

    let kafka = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", s.listen))?;
    let http = tokio::net::TcpListener::bind(s.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--http-listen)", s.http_listen))?;
    let (stop_tx, stop_rx) = watch::channel(false);

    store
        .collect_orphans()
        .await
        .context("cannot list the object store for orphaned objects")?;
    let uploader = tokio::spawn(store.clone().run_uploader(stop_rx.clone()));
    let maintenance = tokio::spawn(store.clone().run_maintenance(stop_rx.clone()));
    let expiry = tokio::spawn(broker.groups.clone().run_expiry(stop_rx.clone()));
    let rates = tokio::spawn(
        broker
            .clone()
            .run_rate_sampler(Duration::from_secs(2), stop_rx.clone()),
    );
    let mut http_stop = stop_rx.clone();
    let router = crate::http::router(broker.clone(), fault_control)
        .merge(sluice_registry::router(Arc::new(registry)));
    let http_task = tokio::spawn(async move {
        let r = axum::serve(http, router)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|v| *v).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    let server = tokio::spawn(sluice_broker::server::serve(
        broker.clone(),
        kafka,
        stop_rx.clone(),
        Duration::from_secs(10),
    ));
    tracing::info!(
        kafka = %s.listen,
        advertised = %format!("{}:{}", s.advertise_host, s.advertise_port),
        http = %s.http_listen,
        data_dir = %data_dir.display(),
        object_store = %opened.description,
        "sluice is serving"
    );

    shutdown_signal().await;
    store.stop_appends();
    let _ = stop_tx.send(true);
    let _ = server.await;
    let _ = http_task.await;
    let _ = uploader.await;
    let _ = maintenance.await;
    let _ = expiry.await;
    let _ = rates.await;
    tokio::task::block_in_place(|| store.shutdown());
    tracing::info!("sluice stopped cleanly");
    Ok(())
}
