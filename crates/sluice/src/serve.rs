//! `sluice serve`: opens the catalog the `--catalog` URL names (SQLite in
//! the data directory by default; PostgreSQL makes this broker one of a
//! cluster), the object store and storage, starts the Kafka listener, the
//! HTTP listener and the background work, and shuts everything down in
//! order on SIGTERM/SIGINT (stop accepting, answer in-flight requests,
//! flush what is queued, give up the cluster lease).

use crate::settings::Settings;
use anyhow::{bail, Context};
use axum::serve::ListenerExt;
use sluice_broker::cluster::Membership;
use sluice_broker::security::sasl::Users;
use sluice_broker::security::ListenerSecurity;
use sluice_broker::{Broker, BrokerConfig, GroupSettings};
use sluice_catalog::{BrokerRecord, BrokerRegistry, Catalog, CatalogUrl, TopicStore};
use sluice_storage::{FlushConfig, LogStore, StorageConfig};
use std::net::SocketAddr;
use std::path::Path;
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

/// The object marking a bucket as one cluster's (see [`claim_store`]).
const MARKER: &str = "sluice-cluster.json";

/// A cluster needs an object store every broker reaches: refuses the
/// default (a folder in this broker's data directory) and any other folder
/// inside it.
fn check_shared_store(url: Option<&str>, data_dir: &Path) -> anyhow::Result<()> {
    let Some(url) = url else {
        bail!(
            "a PostgreSQL catalog makes this broker part of a cluster, whose brokers must share one object store; \
             the default store is a folder only this broker sees: give --object-store s3://bucket/prefix \
             (or file:///path on storage every broker mounts)"
        );
    };
    if let Some(path) = url.strip_prefix("file://") {
        let path = Path::new(path);
        let inside = path
            .canonicalize()
            .unwrap_or_else(|_| path.to_path_buf())
            .starts_with(data_dir);
        if inside {
            bail!(
                "--object-store {url} is inside this broker's data directory {}: the brokers of a cluster must share one object store",
                data_dir.display()
            );
        }
    }
    Ok(())
}

/// Binds the object store to the cluster. The store's marker object holds a
/// token (the first broker to see the store without one writes it, once:
/// `PutMode::Create`); the catalog records the token of the first store a
/// broker brings it. A broker whose store's token is not the catalog's (it
/// was given another bucket, whose data no other broker could read) refuses
/// to start. The marker is written before the catalog claim, so a crash
/// between the two leaves nothing to undo.
async fn claim_store(
    objects: &dyn object_store::ObjectStore,
    catalog: &Arc<Catalog>,
    described: &str,
) -> anyhow::Result<()> {
    use object_store::{ObjectStoreExt, PutMode, PutOptions};
    let path = object_store::path::Path::from(MARKER);
    let read_marker = || async {
        match objects.get(&path).await {
            Ok(got) => {
                let body = got.bytes().await?;
                let v: serde_json::Value = serde_json::from_slice(&body).with_context(|| {
                    format!("{described}/{MARKER} is not Sluice's cluster marker")
                })?;
                let token = v["token"].as_str().unwrap_or_default().to_string();
                anyhow::Ok(Some(token))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).context(format!("cannot read {described}/{MARKER}")),
        }
    };
    let marker = match read_marker().await? {
        Some(t) => t,
        None => {
            let token = uuid::Uuid::new_v4().simple().to_string();
            let c = catalog.clone();
            let cluster_id = tokio::task::spawn_blocking(move || c.cluster_id()).await??;
            let body = serde_json::json!({ "token": token, "cluster_id": cluster_id });
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match objects
                .put_opts(&path, serde_json::to_vec(&body)?.into(), opts)
                .await
            {
                Ok(_) => token,
                // Another broker wrote it first: theirs counts.
                Err(object_store::Error::AlreadyExists { .. }) => read_marker()
                    .await?
                    .with_context(|| format!("{described}/{MARKER} vanished"))?,
                Err(e) => return Err(e).context(format!("cannot write {described}/{MARKER}")),
            }
        }
    };
    let c = catalog.clone();
    let m = marker.clone();
    let recorded = tokio::task::spawn_blocking(move || c.claim_store(&m)).await??;
    if recorded != marker {
        bail!(
            "{described} is not this cluster's object store (its marker {marker}, the catalog's {recorded}): \
             every broker of a cluster must use the same catalog and the same object store"
        );
    }
    Ok(())
}

/// This broker's id: the flag, else the one kept in the data directory,
/// else (in a cluster) a fresh one from the catalog, kept for next time.
fn broker_id(
    s: &Settings,
    data_dir: &Path,
    catalog: &Catalog,
    cluster: bool,
) -> anyhow::Result<i32> {
    if let Some(id) = s.broker_id {
        return Ok(id);
    }
    let file = data_dir.join("broker.id");
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            return text
                .trim()
                .parse()
                .with_context(|| format!("{} does not hold a broker id", file.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
    if !cluster {
        return Ok(1);
    }
    let id = catalog.allocate_broker_id()?;
    std::fs::write(&file, format!("{id}\n"))
        .with_context(|| format!("cannot keep the broker id in {}", file.display()))?;
    tracing::info!(broker_id = id, "allocated a broker id");
    Ok(id)
}

/// Serves the HTTP side on `listener` until `stop`.
async fn serve_http<L>(listener: L, router: axum::Router, mut stop: watch::Receiver<bool>)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    for<'a> SocketAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let r = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|v| *v).await;
    })
    .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// Binds and starts the OTLP receivers that are on; their tasks.
async fn start_otlp(
    s: &Settings,
    broker: &Arc<sluice_broker::Broker>,
    auth: Option<Arc<crate::http_auth::HttpAuth>>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    if s.otlp_http.is_none() && s.otlp_grpc.is_none() {
        return Ok(tasks);
    }
    let sink = crate::otlp_sink::BrokerSink::new(broker.clone(), auth);
    let ingest = sluice_otlp::Ingest::new(sink, s.otlp.clone());
    if let Some(addr) = s.otlp_http {
        let l = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (--otlp-http-listen; `off` turns it off)")
        })?;
        tasks.push(tokio::spawn(serve_http(
            l,
            sluice_otlp::http::router(ingest.clone()),
            stop.clone(),
        )));
    }
    if let Some(addr) = s.otlp_grpc {
        let l = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (--otlp-grpc-listen; `off` turns it off)")
        })?;
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|v| *v).await;
            };
            if let Err(e) = sluice_otlp::grpc::serve(ingest, l, shutdown).await {
                tracing::error!(error = %e, "OTLP/gRPC receiver failed");
            }
        }));
    }
    Ok(tasks)
}

/// Binds every Kafka listener, with the TLS and SASL its protocol needs.
async fn bind_listeners(
    s: &Settings,
    users: &Arc<Users>,
    cluster: bool,
) -> anyhow::Result<Vec<(tokio::net::TcpListener, Arc<ListenerSecurity>)>> {
    let all = &s.security.listeners;
    if cluster && all.len() > 1 {
        anyhow::bail!(
            "a cluster broker takes one listener for now (the catalog records one address per broker); got {}",
            all.len()
        );
    }
    let tls = if all.iter().any(|l| l.advertised.protocol.tls()) {
        Some(s.security.tls.acceptor()?)
    } else {
        None
    };
    let offered = Arc::new(s.security.sasl_mechanisms.clone());
    let mut out = Vec::with_capacity(all.len());
    for l in all {
        let socket = tokio::net::TcpListener::bind(l.bind)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} ({} listener)",
                    l.bind, l.advertised.protocol
                )
            })?;
        let security = ListenerSecurity::new(
            &l.advertised,
            tls.clone(),
            Some((users.clone(), offered.clone())),
            (s.security.sasl_session_lifetime_ms > 0)
                .then(|| Duration::from_millis(s.security.sasl_session_lifetime_ms)),
        );
        out.push((socket, security));
    }
    Ok(out)
}

pub async fn run(s: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("cannot create data directory {}", s.data_dir.display()))?;
    let data_dir = s.data_dir.canonicalize()?;
    let url = CatalogUrl::parse(s.catalog.as_deref(), &data_dir)?;
    let cluster = url.is_shared();
    if cluster {
        check_shared_store(s.object_store.as_deref(), &data_dir)?;
    }
    let catalog = tokio::task::block_in_place(|| Catalog::open(&url))
        .with_context(|| format!("cannot open the catalog {}", url.describe()))?;
    let opened = sluice_storage::store_url::open(
        s.object_store.as_deref(),
        &data_dir,
        &s.object_store_options,
    )?;
    sluice_storage::store_url::check_access(&opened)
        .await
        .context("the object store is not usable")?;
    if cluster {
        claim_store(&*opened.store, &catalog, &opened.description).await?;
    }
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
    let id = tokio::task::block_in_place(|| broker_id(&s, &data_dir, &catalog, cluster))?;
    let k = &s.storage;
    let gc_grace = Duration::from_millis(k.gc_grace_ms);
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
        compaction_max_bytes: k.compaction_max_bytes,
        gc_grace,
        flush: cluster.then(|| FlushConfig {
            writer: id,
            interval: Duration::from_millis(s.cluster.flush_interval_ms),
            bytes: s.cluster.flush_bytes,
            max_in_flight: 4,
            // Within half the grace: the collector never deletes an object
            // a commit could still name.
            timeout: (gc_grace / 2).clamp(Duration::from_millis(500), Duration::from_secs(30)),
        }),
        ..StorageConfig::new(data_dir.join("wal"))
    };
    let store =
        tokio::task::block_in_place(|| LogStore::open(store_config, catalog.clone(), objects))
            .context("cannot open storage")?;
    let registry =
        sluice_registry::Registry::open(catalog.db()).context("cannot open the schema registry")?;
    let me = BrokerRecord {
        broker_id: id,
        host: s.advertise_host.clone(),
        port: s.advertise_port,
        rack: s.rack.clone(),
        epoch: 0,
        lease_expires_ms: 0,
        lease_age_ms: 0,
    };
    let membership = if cluster {
        let lease = Duration::from_millis(s.cluster.lease_ms);
        let registry: Arc<dyn BrokerRegistry> = catalog.clone();
        tokio::task::block_in_place(|| Membership::join(registry, me, lease))
            .context("cannot join the cluster")?
    } else {
        Membership::alone(me)
    };
    let broker = Broker::new(
        BrokerConfig {
            node_id: membership.id(),
            advertised_host: s.advertise_host.clone(),
            advertised_port: s.advertise_port,
            auto_create_topics_enable: s.auto_create_topics_enable,
            num_partitions: s.num_partitions,
            message_max_bytes: s.message_max_bytes,
            metrics_partition_detail: s.metrics_partition_detail,
            authorization: s.security.authorization.clone(),
            ..BrokerConfig::default()
        },
        GroupSettings {
            consumer_session_timeout: Duration::from_millis(s.group_consumer_session_timeout_ms),
            consumer_heartbeat_interval: Duration::from_millis(
                s.group_consumer_heartbeat_interval_ms,
            ),
            ..GroupSettings::default()
        },
        store.clone(),
        catalog.clone(),
        membership.clone(),
        registry.clone(),
    )?;

    let users = Users::new(catalog.clone());
    let listeners = bind_listeners(&s, &users, cluster).await?;
    let http = tokio::net::TcpListener::bind(s.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--http-listen)", s.http_listen))?;
    let (stop_tx, stop_rx) = watch::channel(false);

    if !cluster {
        // Alone, nothing can be between its PUT and its commit now.
        store
            .collect_orphans(Duration::ZERO)
            .await
            .context("cannot list the object store for orphaned objects")?;
    }
    let writes = tokio::spawn(store.clone().run_writes(stop_rx.clone()));
    let maintenance = tokio::spawn(store.clone().run_maintenance(stop_rx.clone()));
    let expiry = tokio::spawn(broker.groups.clone().run_expiry(stop_rx.clone()));
    let reload = tokio::spawn(broker.clone().run_reload(stop_rx.clone()));
    let txn_expiry = tokio::spawn(broker.txns.clone().run_expiry(stop_rx.clone()));
    let member_expiry = tokio::spawn(broker.groups.clone().run_member_expiry(stop_rx.clone()));
    let following = tokio::spawn(sluice_broker::cluster::run(broker.clone(), stop_rx.clone()));
    let rates = tokio::spawn(
        broker
            .clone()
            .run_rate_sampler(Duration::from_secs(2), stop_rx.clone()),
    );
    let replays = tokio::spawn(sluice_ops::dlq::run_recovery(
        broker.clone(),
        Duration::from_secs(5),
        stop_rx.clone(),
    ));
    let mut router = crate::http::router(broker.clone(), fault_control)
        .merge(sluice_registry::router(Arc::new(registry)));
    let http_auth = s.security.http_auth.then(|| {
        crate::http_auth::HttpAuth::new(
            users.clone(),
            broker.authorizer.clone(),
            s.security.http_metrics_open,
        )
    });
    if let Some(auth) = &http_auth {
        router = router.layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            crate::http_auth::check,
        ));
    }
    let otlp_tasks = start_otlp(&s, &broker, http_auth, &stop_rx).await?;
    let http_task = if s.security.http_tls {
        let listener = crate::http_tls::TlsListener::new(http, s.security.tls.acceptor()?)?;
        tokio::spawn(serve_http(listener.tap_io(|_| {}), router, stop_rx.clone()))
    } else {
        tokio::spawn(serve_http(http, router, stop_rx.clone()))
    };
    let servers: Vec<_> = listeners
        .into_iter()
        .map(|(socket, security)| {
            tokio::spawn(sluice_broker::server::serve(
                broker.clone(),
                socket,
                security,
                stop_rx.clone(),
                Duration::from_secs(10),
            ))
        })
        .collect();
    tracing::info!(
        kafka = %s.security.listeners.iter().map(|l| format!("{}://{}", l.advertised.protocol, l.bind)).collect::<Vec<_>>().join(","),
        advertised = %s.security.listeners.iter().map(|l| l.advertised.to_string()).collect::<Vec<_>>().join(","),
        http = %format!("{}://{}", if s.security.http_tls { "https" } else { "http" }, s.http_listen),
        authorizer = if s.security.authorization.is_some() { "acl" } else { "none" },
        http_auth = if s.security.http_auth { "basic" } else { "none" },
        data_dir = %data_dir.display(),
        object_store = %opened.description,
        catalog = %url.describe(),
        broker_id = membership.id(),
        mode = if cluster { "cluster" } else { "embedded" },
        otlp_http = %s.otlp_http.map_or("off".to_string(), |a| a.to_string()),
        otlp_grpc = %s.otlp_grpc.map_or("off".to_string(), |a| a.to_string()),
        "sluice is serving"
    );

    shutdown_signal().await;
    store.stop_appends();
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = server.await;
    }
    let _ = http_task.await;
    for t in otlp_tasks {
        let _ = t.await;
    }
    let _ = writes.await;
    let _ = maintenance.await;
    let _ = expiry.await;
    let _ = reload.await;
    let _ = txn_expiry.await;
    let _ = member_expiry.await;
    let _ = following.await;
    let _ = rates.await;
    let _ = replays.await;
    tokio::task::block_in_place(|| {
        store.shutdown();
        if let Err(e) = membership.leave() {
            tracing::warn!(error = %e, "could not give up the cluster lease; it runs out on its own");
        }
    });
    tracing::info!("sluice stopped cleanly");
    Ok(())
}
