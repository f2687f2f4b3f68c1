//! Broker settings from three sources, strongest first: command-line flags,
//! `SLUICE_*` environment variables (both through clap), then the TOML file
//! given by `--config`, then built-in defaults.

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use sluice_broker::security::acl::Policy;
use sluice_broker::security::listeners::{parse_listeners, Endpoint, SecurityProtocol};
use sluice_broker::security::sasl::{parse_mechanisms, SaslMechanism};
use sluice_broker::security::tls::TlsFiles;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys: data_dir, listen, advertise, listeners,
    /// advertised_listeners, tls_cert, tls_key, tls_client_ca, sasl_mechanisms, authorizer,
    /// super_users, allow_everyone_if_no_acl_found, http_auth, http_metrics_open, http_tls,
    /// http_listen, auto_create_topics_enable, num_partitions, message_max_bytes, object_store,
    /// catalog, broker_id, rack, metrics_partition_detail, the storage and cluster settings by
    /// their flag names with underscores, and an [object_store_options] table).
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the write-ahead log, the catalog and local objects [default: ./sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the Kafka listener [default: 127.0.0.1:9092].
    #[arg(long, env = "SLUICE_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address clients are told to connect to [default: the listen address].
    #[arg(long, env = "SLUICE_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Kafka listeners in Kafka's form, e.g. PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093
    /// (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL; one per protocol); replaces --listen.
    #[arg(long, env = "SLUICE_LISTENERS", value_name = "LIST")]
    pub listeners: Option<String>,
    /// What clients are told for each listener, same form [default: each listener's address].
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENERS", value_name = "LIST")]
    pub advertised_listeners: Option<String>,
    /// PEM certificate chain of the SSL and SASL_SSL listeners.
    #[arg(long, env = "SLUICE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: TLS clients must present a certificate signed by one (mutual TLS).
    #[arg(long, env = "SLUICE_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// SASL mechanisms the SASL listeners offer [default: PLAIN,SCRAM-SHA-256,SCRAM-SHA-512].
    #[arg(long, env = "SLUICE_SASL_MECHANISMS", value_name = "LIST")]
    pub sasl_mechanisms: Option<String>,
    /// How long a SASL login lasts (Kafka's connections.max.reauth.ms, KIP-368): clients
    /// re-authenticate on their connection before then or it is closed; 0 = for the
    /// connection's life [default: 0].
    #[arg(long, env = "SLUICE_SASL_SESSION_LIFETIME_MS", value_name = "MS")]
    pub sasl_session_lifetime_ms: Option<u64>,
    /// `acl` authorizes every request with Kafka's ACLs (see `sluice acls`); `none` allows
    /// everything [default: none].
    #[arg(long, env = "SLUICE_AUTHORIZER", value_name = "acl|none")]
    pub authorizer: Option<String>,
    /// Principals allowed everything, `;`-separated, e.g. User:admin;User:ops.
    #[arg(long, env = "SLUICE_SUPER_USERS", value_name = "LIST")]
    pub super_users: Option<String>,
    /// With the authorizer on, allow a request on a resource no ACL names
    /// (allow.everyone.if.no.acl.found) [default: false].
    #[arg(long, env = "SLUICE_ALLOW_EVERYONE_IF_NO_ACL_FOUND", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_everyone_if_no_acl_found: Option<bool>,
    /// `basic`: HTTP requests (admin API, schema registry, metrics) need a Sluice user's HTTP
    /// Basic credentials and pass the ACLs; `none`: open [default: basic with --authorizer acl,
    /// else none].
    #[arg(long, env = "SLUICE_HTTP_AUTH", value_name = "basic|none")]
    pub http_auth: Option<String>,
    /// Leave GET /metrics open when --http-auth is basic (for scrapers without credentials)
    /// [default: false].
    #[arg(long, env = "SLUICE_HTTP_METRICS_OPEN", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub http_metrics_open: Option<bool>,
    /// Serve the HTTP listener over TLS with --tls-cert and --tls-key [default: false].
    #[arg(long, env = "SLUICE_HTTP_TLS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub http_tls: Option<bool>,
    /// Address of the HTTP listener (GET /healthz) [default: 127.0.0.1:8081].
    #[arg(long, env = "SLUICE_HTTP_LISTEN", value_name = "HOST:PORT")]
    pub http_listen: Option<String>,
    /// OTLP/HTTP receiver (POST /v1/traces, /v1/logs, /v1/metrics), or `off`
    /// [default: 127.0.0.1:4318].
    #[arg(long, env = "SLUICE_OTLP_HTTP_LISTEN", value_name = "HOST:PORT|off")]
    pub otlp_http_listen: Option<String>,
    /// OTLP/gRPC receiver, or `off` [default: 127.0.0.1:4317].
    #[arg(long, env = "SLUICE_OTLP_GRPC_LISTEN", value_name = "HOST:PORT|off")]
    pub otlp_grpc_listen: Option<String>,
    /// Topic of received spans [default: otlp_spans].
    #[arg(long, env = "SLUICE_OTLP_SPANS_TOPIC", value_name = "TOPIC")]
    pub otlp_spans_topic: Option<String>,
    /// Topic of received logs [default: otlp_logs].
    #[arg(long, env = "SLUICE_OTLP_LOGS_TOPIC", value_name = "TOPIC")]
    pub otlp_logs_topic: Option<String>,
    /// Topic of received metrics [default: otlp_metrics].
    #[arg(long, env = "SLUICE_OTLP_METRICS_TOPIC", value_name = "TOPIC")]
    pub otlp_metrics_topic: Option<String>,
    /// Encoding of the OTLP topics' values, as the Collector's Kafka exporter names them
    /// [default: otlp_proto].
    #[arg(
        long,
        env = "SLUICE_OTLP_ENCODING",
        value_name = "otlp_proto|otlp_json"
    )]
    pub otlp_encoding: Option<String>,
    /// Topic of the inference events made from GenAI spans, or `off` (no GenAI events)
    /// [default: ai.inference].
    #[arg(
        long,
        env = "SLUICE_OTLP_GENAI_INFERENCE_TOPIC",
        value_name = "TOPIC|off"
    )]
    pub otlp_genai_inference_topic: Option<String>,
    /// Topic of the tool-call events made from GenAI spans [default: ai.tool_call].
    #[arg(long, env = "SLUICE_OTLP_GENAI_TOOL_CALL_TOPIC", value_name = "TOPIC")]
    pub otlp_genai_tool_call_topic: Option<String>,
    /// Largest OTLP request body, after decompression [default: 16777216].
    #[arg(long, env = "SLUICE_OTLP_MAX_BODY_BYTES", value_name = "BYTES")]
    pub otlp_max_body_bytes: Option<usize>,
    /// OTLP request bytes handled at once; past it senders get 429 / RESOURCE_EXHAUSTED
    /// [default: the larger of 4 bodies and 67108864].
    #[arg(long, env = "SLUICE_OTLP_MAX_INFLIGHT_BYTES", value_name = "BYTES")]
    pub otlp_max_inflight_bytes: Option<usize>,
    /// Resource (or span) attribute naming a GenAI event's tenant [default: tenant.id].
    #[arg(long, env = "SLUICE_OTLP_GENAI_TENANT_ATTRIBUTE", value_name = "NAME")]
    pub otlp_genai_tenant_attribute: Option<String>,
    /// Resource (or span) attribute naming a GenAI event's data classification
    /// [default: data.classification].
    #[arg(
        long,
        env = "SLUICE_OTLP_GENAI_CLASSIFICATION_ATTRIBUTE",
        value_name = "NAME"
    )]
    pub otlp_genai_classification_attribute: Option<String>,
    /// Create unknown topics on produce and metadata requests (auto.create.topics.enable) [default: true].
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS_ENABLE", value_name = "BOOL")]
    pub auto_create_topics_enable: Option<bool>,
    /// Partitions of auto-created topics (num.partitions) [default: 1].
    #[arg(long, env = "SLUICE_NUM_PARTITIONS", value_name = "N")]
    pub num_partitions: Option<i32>,
    /// Largest record batch accepted, in bytes (message.max.bytes) [default: 1048588].
    #[arg(long, env = "SLUICE_MESSAGE_MAX_BYTES", value_name = "BYTES")]
    pub message_max_bytes: Option<usize>,
    /// Where objects live: file:///path or s3://bucket/prefix (S3 settings from AWS_* variables
    /// or the config file's [object_store_options]) [default: file://DATA_DIR/objects].
    #[arg(long, env = "SLUICE_OBJECT_STORE", value_name = "URL")]
    pub object_store: Option<String>,
    /// The catalog: sqlite:///path (one broker) or postgres://user:password@host:port/dbname
    /// (a cluster of brokers sharing it and the object store; PG* variables fill what the URL
    /// leaves out) [default: sqlite://DATA_DIR/catalog.db].
    #[arg(long, env = "SLUICE_CATALOG", value_name = "URL")]
    pub catalog: Option<String>,
    /// This broker's id (0-1000); in a cluster it is allocated by the catalog and kept in the
    /// data directory when not given [default: 1 alone, allocated in a cluster].
    #[arg(long, env = "SLUICE_BROKER_ID", value_name = "N")]
    pub broker_id: Option<i32>,
    /// This broker's zone (rack), given to clients that name theirs (client.rack, or zone= in
    /// client.id) so they use brokers of their own zone [default: none].
    #[arg(long, env = "SLUICE_RACK", value_name = "ZONE")]
    pub rack: Option<String>,
    /// Cluster: how long produce requests gather before one object PUT [default: 50].
    #[arg(long, env = "SLUICE_FLUSH_INTERVAL_MS", value_name = "MS")]
    pub flush_interval_ms: Option<u64>,
    /// Cluster: a flush is written as soon as it holds this many bytes [default: 4194304].
    #[arg(long, env = "SLUICE_FLUSH_BYTES", value_name = "BYTES")]
    pub flush_bytes: Option<usize>,
    /// Cluster: how long a broker that stopped renewing keeps its lease (its groups and
    /// partitions move to other brokers after that) [default: 10000].
    #[arg(long, env = "SLUICE_LEASE_MS", value_name = "MS")]
    pub lease_ms: Option<u64>,
    /// Upload to objects as soon as this much durable data waits [default: 8388608].
    #[arg(long, env = "SLUICE_UPLOAD_BYTES", value_name = "BYTES")]
    pub upload_bytes: Option<usize>,
    /// Upload at least this often when data waits [default: 250].
    #[arg(long, env = "SLUICE_UPLOAD_INTERVAL_MS", value_name = "MS")]
    pub upload_interval_ms: Option<u64>,
    /// Memory for already-uploaded tail data kept for tail readers [default: 268435456].
    #[arg(long, env = "SLUICE_TAIL_CACHE_BYTES", value_name = "BYTES")]
    pub tail_cache_bytes: Option<usize>,
    /// Memory for object blocks read by catch-up readers (separate from the tail) [default: 268435456].
    #[arg(long, env = "SLUICE_BLOCK_CACHE_BYTES", value_name = "BYTES")]
    pub block_cache_bytes: Option<usize>,
    /// Producers wait (backpressure) while this much data is not yet uploaded [default: 1073741824].
    #[arg(long, env = "SLUICE_MAX_UNUPLOADED_BYTES", value_name = "BYTES")]
    pub max_unuploaded_bytes: Option<usize>,
    /// Retention time of topics without retention.ms (log.retention.ms; -1 keeps forever) [default: 604800000].
    #[arg(
        long,
        env = "SLUICE_LOG_RETENTION_MS",
        value_name = "MS",
        allow_negative_numbers = true
    )]
    pub log_retention_ms: Option<i64>,
    /// Retention size per partition of topics without retention.bytes (-1: no limit) [default: -1].
    #[arg(
        long,
        env = "SLUICE_LOG_RETENTION_BYTES",
        value_name = "BYTES",
        allow_negative_numbers = true
    )]
    pub log_retention_bytes: Option<i64>,
    /// How often retention, compaction and object garbage collection run [default: 30000].
    #[arg(long, env = "SLUICE_MAINTENANCE_INTERVAL_MS", value_name = "MS")]
    pub maintenance_interval_ms: Option<u64>,
    /// Compact a partition's small upload objects once they hold this much [default: 4194304].
    #[arg(long, env = "SLUICE_COMPACTION_MIN_BYTES", value_name = "BYTES")]
    pub compaction_min_bytes: Option<u64>,
    /// Largest object compaction writes; it is built in memory by the broker running the
    /// upkeep, so this bounds that memory [default: 67108864].
    #[arg(long, env = "SLUICE_COMPACTION_MAX_BYTES", value_name = "BYTES")]
    pub compaction_max_bytes: Option<u64>,
    /// Delete unreferenced objects only after this long [default: 60000].
    #[arg(long, env = "SLUICE_GC_GRACE_MS", value_name = "MS")]
    pub gc_grace_ms: Option<u64>,
    /// KIP-848 groups: a member silent this long is removed (Kafka's
    /// group.consumer.session.timeout.ms) [default: 45000].
    #[arg(
        long,
        env = "SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS",
        value_name = "MS"
    )]
    pub group_consumer_session_timeout_ms: Option<u64>,
    /// KIP-848 groups: how often members heartbeat (Kafka's
    /// group.consumer.heartbeat.interval.ms) [default: 2000].
    #[arg(
        long,
        env = "SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
        value_name = "MS"
    )]
    pub group_consumer_heartbeat_interval_ms: Option<u64>,
    /// Put Burrow's status and the lag rate of every group-partition on /metrics, not only per
    /// group (doubles the page at many partitions; /metrics?detail=partition asks once) [default: false].
    #[arg(long, env = "SLUICE_METRICS_PARTITION_DETAIL", value_name = "BOOL")]
    pub metrics_partition_detail: Option<bool>,
}

/// The TOML file's keys.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    advertise: Option<String>,
    listeners: Option<String>,
    advertised_listeners: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    sasl_mechanisms: Option<String>,
    sasl_session_lifetime_ms: Option<u64>,
    authorizer: Option<String>,
    super_users: Option<String>,
    allow_everyone_if_no_acl_found: Option<bool>,
    http_auth: Option<String>,
    http_metrics_open: Option<bool>,
    http_tls: Option<bool>,
    http_listen: Option<String>,
    otlp_http_listen: Option<String>,
    otlp_grpc_listen: Option<String>,
    otlp_spans_topic: Option<String>,
    otlp_logs_topic: Option<String>,
    otlp_metrics_topic: Option<String>,
    otlp_encoding: Option<String>,
    otlp_genai_inference_topic: Option<String>,
    otlp_genai_tool_call_topic: Option<String>,
    otlp_max_body_bytes: Option<usize>,
    otlp_max_inflight_bytes: Option<usize>,
    otlp_genai_tenant_attribute: Option<String>,
    otlp_genai_classification_attribute: Option<String>,
    auto_create_topics_enable: Option<bool>,
    num_partitions: Option<i32>,
    message_max_bytes: Option<usize>,
    object_store: Option<String>,
    catalog: Option<String>,
    broker_id: Option<i32>,
    rack: Option<String>,
    flush_interval_ms: Option<u64>,
    flush_bytes: Option<usize>,
    lease_ms: Option<u64>,
    upload_bytes: Option<usize>,
    upload_interval_ms: Option<u64>,
    tail_cache_bytes: Option<usize>,
    block_cache_bytes: Option<usize>,
    max_unuploaded_bytes: Option<usize>,
    log_retention_ms: Option<i64>,
    log_retention_bytes: Option<i64>,
    maintenance_interval_ms: Option<u64>,
    compaction_min_bytes: Option<u64>,
    compaction_max_bytes: Option<u64>,
    gc_grace_ms: Option<u64>,
    group_consumer_session_timeout_ms: Option<u64>,
    group_consumer_heartbeat_interval_ms: Option<u64>,
    metrics_partition_detail: Option<bool>,
    /// S3 options by `object_store` key name (endpoint, region, access_key_id, allow_http, ...).
    #[serde(default)]
    object_store_options: std::collections::BTreeMap<String, String>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub advertise_host: String,
    pub advertise_port: i32,
    pub http_listen: SocketAddr,
    /// The OTLP receivers (None: off) and what they write.
    pub otlp_http: Option<SocketAddr>,
    pub otlp_grpc: Option<SocketAddr>,
    pub otlp: sluice_otlp::OtlpConfig,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub message_max_bytes: usize,
    pub metrics_partition_detail: bool,
    pub object_store: Option<String>,
    pub object_store_options: std::collections::BTreeMap<String, String>,
    pub catalog: Option<String>,
    pub broker_id: Option<i32>,
    pub rack: Option<String>,
    pub cluster: ClusterKnobs,
    pub storage: StorageKnobs,
    pub security: SecuritySettings,
    pub group_consumer_session_timeout_ms: u64,
    pub group_consumer_heartbeat_interval_ms: u64,
}

/// One Kafka listener: where it binds and what clients are told.
#[derive(Debug, Clone)]
pub struct ListenerSetting {
    pub bind: SocketAddr,
    pub advertised: Endpoint,
}

/// Listeners, TLS files and SASL mechanisms.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// The first is the one a cluster registers (`listen`, `advertise_*`).
    pub listeners: Vec<ListenerSetting>,
    pub tls: TlsFiles,
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// 0: a login lasts for the connection's life.
    pub sasl_session_lifetime_ms: u64,
    /// `--authorizer acl`: the policy (None: authorization is off).
    pub authorization: Option<Policy>,
    /// HTTP requests need Basic credentials (and pass the ACLs).
    pub http_auth: bool,
    /// `/metrics` stays open with `http_auth`.
    pub http_metrics_open: bool,
    /// The HTTP listener speaks TLS.
    pub http_tls: bool,
}

/// The authorization policy of `--authorizer`, `--super-users` and
/// `--allow-everyone-if-no-acl-found`.
fn resolve_authorization(
    authorizer: Option<String>,
    super_users: Option<String>,
    allow_if_no_acl: Option<bool>,
) -> anyhow::Result<Option<Policy>> {
    let on = match authorizer.as_deref().map(str::trim) {
        None | Some("") | Some("none") => false,
        Some("acl") => true,
        Some(other) => bail!("--authorizer must be acl or none, not {other:?}"),
    };
    let mut supers = Vec::new();
    for u in super_users.iter().flat_map(|s| s.split(';')) {
        let u = u.trim();
        if u.is_empty() {
            continue;
        }
        match u.split_once(':') {
            Some(("User", name)) if !name.is_empty() => supers.push(u.to_string()),
            _ => bail!("--super-users: {u:?} is not of the form User:NAME"),
        }
    }
    if !on {
        if !supers.is_empty() || allow_if_no_acl.is_some() {
            bail!("--super-users and --allow-everyone-if-no-acl-found need --authorizer acl");
        }
        return Ok(None);
    }
    Ok(Some(Policy {
        super_users: supers,
        allow_if_no_acl: allow_if_no_acl.unwrap_or(false),
    }))
}

/// Listeners from `--listeners` / `--advertised-listeners`, or the one
/// PLAINTEXT listener of `--listen` / `--advertise`.
fn resolve_listeners(
    listeners: Option<String>,
    advertised: Option<String>,
    listen: Option<String>,
    advertise: Option<String>,
) -> anyhow::Result<Vec<ListenerSetting>> {
    let Some(list) = listeners else {
        if advertised.is_some() {
            bail!("--advertised-listeners needs --listeners");
        }
        let listen_s = listen.unwrap_or_else(|| "127.0.0.1:9092".into());
        let bind = parse_addr("--listen", &listen_s)?;
        let (host, port) = split_host_port("--advertise", &advertise.unwrap_or(listen_s))?;
        return Ok(vec![ListenerSetting {
            bind,
            advertised: Endpoint {
                protocol: SecurityProtocol::Plaintext,
                host,
                port: port as u16,
            },
        }]);
    };
    if listen.is_some() || advertise.is_some() {
        bail!("give either --listeners (with --advertised-listeners) or --listen (with --advertise), not both");
    }
    let binds = parse_listeners(&list).map_err(|e| anyhow::anyhow!("--listeners: {e}"))?;
    let told = match advertised {
        Some(a) => {
            parse_listeners(&a).map_err(|e| anyhow::anyhow!("--advertised-listeners: {e}"))?
        }
        None => Vec::new(),
    };
    if let Some(extra) = told
        .iter()
        .find(|t| !binds.iter().any(|b| b.protocol == t.protocol))
    {
        bail!("--advertised-listeners names {extra}, which is not in --listeners");
    }
    binds
        .into_iter()
        .map(|b| {
            let host = if b.host.is_empty() { "0.0.0.0" } else { b.host.as_str() };
            let bind = parse_addr("--listeners", &format!("{host}:{}", b.port))?;
            let advertised = match told.iter().find(|t| t.protocol == b.protocol) {
                Some(t) => t.clone(),
                None if bind.ip().is_unspecified() => bail!(
                    "listener {b} binds every interface: say what clients should connect to with --advertised-listeners"
                ),
                None => b.clone(),
            };
            Ok(ListenerSetting { bind, advertised })
        })
        .collect()
}

/// Cluster-mode tuning (each a flag, a TOML key and a SLUICE_* variable).
#[derive(Debug, Clone)]
pub struct ClusterKnobs {
    pub flush_interval_ms: u64,
    pub flush_bytes: usize,
    pub lease_ms: u64,
}

/// Storage tuning (each a flag, a TOML key and a SLUICE_* variable).
#[derive(Debug, Clone)]
pub struct StorageKnobs {
    pub upload_bytes: usize,
    pub upload_interval_ms: u64,
    pub tail_cache_bytes: usize,
    pub block_cache_bytes: usize,
    pub max_unuploaded_bytes: usize,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub maintenance_interval_ms: u64,
    pub compaction_min_bytes: u64,
    pub compaction_max_bytes: u64,
    pub gc_grace_ms: u64,
}

fn parse_addr(what: &str, s: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .with_context(|| format!("{what} '{s}' is not a HOST:PORT address"))?
        .next()
        .with_context(|| format!("{what} '{s}' resolves to no address"))
}

fn split_host_port(what: &str, s: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("{what} '{s}' must be HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("{what} '{s}' has an invalid port"))?;
    if host.is_empty() {
        bail!("{what} '{s}' has no host");
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port as i32))
}

impl Settings {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file: FileSettings = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => FileSettings::default(),
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./sluice-data"));
        let listeners = resolve_listeners(
            args.listeners.or(file.listeners),
            args.advertised_listeners.or(file.advertised_listeners),
            args.listen.or(file.listen),
            args.advertise.or(file.advertise),
        )?;
        let primary = &listeners[0];
        let (advertise_host, advertise_port) = (
            primary.advertised.host.clone(),
            primary.advertised.port as i32,
        );
        let tls = TlsFiles {
            cert: args.tls_cert.or(file.tls_cert),
            key: args.tls_key.or(file.tls_key),
            client_ca: args.tls_client_ca.or(file.tls_client_ca),
        };
        if listeners.iter().any(|l| l.advertised.protocol.tls())
            && (tls.cert.is_none() || tls.key.is_none())
        {
            bail!("an SSL or SASL_SSL listener needs --tls-cert and --tls-key");
        }
        let sasl_mechanisms = parse_mechanisms(
            &args
                .sasl_mechanisms
                .or(file.sasl_mechanisms)
                .unwrap_or_else(|| "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into()),
        )
        .map_err(|e| anyhow::anyhow!("--sasl-mechanisms: {e}"))?;
        let authorization = resolve_authorization(
            args.authorizer.or(file.authorizer),
            args.super_users.or(file.super_users),
            args.allow_everyone_if_no_acl_found
                .or(file.allow_everyone_if_no_acl_found),
        )?;
        let http_auth = match args.http_auth.or(file.http_auth).as_deref().map(str::trim) {
            None | Some("") => authorization.is_some(),
            Some("basic") => true,
            Some("none") => false,
            Some(other) => bail!("--http-auth must be basic or none, not {other:?}"),
        };
        let http_tls = args.http_tls.or(file.http_tls).unwrap_or(false);
        if http_tls && (tls.cert.is_none() || tls.key.is_none()) {
            bail!("--http-tls needs --tls-cert and --tls-key");
        }
        let http_metrics_open = args
            .http_metrics_open
            .or(file.http_metrics_open)
            .unwrap_or(false);
        let http_s = args
            .http_listen
            .or(file.http_listen)
            .unwrap_or_else(|| "127.0.0.1:8081".into());
        let http_listen = parse_addr("--http-listen", &http_s)?;
        let listen_or_off =
            |what: &str, v: Option<String>, default: &str| -> anyhow::Result<Option<SocketAddr>> {
                let v = v.unwrap_or_else(|| default.into());
                match v.trim() {
                    "off" => Ok(None),
                    other => parse_addr(what, other).map(Some),
                }
            };
        let otlp_http = listen_or_off(
            "--otlp-http-listen",
            args.otlp_http_listen.or(file.otlp_http_listen),
            "127.0.0.1:4318",
        )?;
        let otlp_grpc = listen_or_off(
            "--otlp-grpc-listen",
            args.otlp_grpc_listen.or(file.otlp_grpc_listen),
            "127.0.0.1:4317",
        )?;
        let otlp = {
            let d = sluice_otlp::OtlpConfig::default();
            let topic =
                |what: &str, v: Option<String>, default: String| -> anyhow::Result<String> {
                    let t = v.map(|t| t.trim().to_string()).unwrap_or(default);
                    sluice_broker::handlers::validate_topic_name(&t)
                        .map_err(|e| anyhow::anyhow!("{what} '{t}': {e}"))?;
                    Ok(t)
                };
            let encoding_s = args
                .otlp_encoding
                .or(file.otlp_encoding)
                .unwrap_or_else(|| "otlp_proto".into());
            let encoding = sluice_otlp::Encoding::parse(encoding_s.trim()).with_context(|| {
                format!("--otlp-encoding must be otlp_proto or otlp_json, not {encoding_s:?}")
            })?;
            let genai_d = sluice_otlp::genai::GenAiTopics::default();
            let attribute =
                |what: &str, v: Option<String>, default: &str| -> anyhow::Result<String> {
                    let a = v
                        .map(|a| a.trim().to_string())
                        .unwrap_or_else(|| default.to_string());
                    if a.is_empty() {
                        bail!("{what} must name an attribute");
                    }
                    Ok(a)
                };
            let inference = args
                .otlp_genai_inference_topic
                .or(file.otlp_genai_inference_topic);
            let genai = if inference.as_deref().map(str::trim) == Some("off") {
                None
            } else {
                Some(sluice_otlp::genai::GenAiTopics {
                    inference_topic: topic(
                        "--otlp-genai-inference-topic",
                        inference,
                        genai_d.inference_topic.clone(),
                    )?,
                    tool_call_topic: topic(
                        "--otlp-genai-tool-call-topic",
                        args.otlp_genai_tool_call_topic
                            .or(file.otlp_genai_tool_call_topic),
                        genai_d.tool_call_topic.clone(),
                    )?,
                    tenant_attribute: attribute(
                        "--otlp-genai-tenant-attribute",
                        args.otlp_genai_tenant_attribute
                            .or(file.otlp_genai_tenant_attribute),
                        &genai_d.tenant_attribute,
                    )?,
                    classification_attribute: attribute(
                        "--otlp-genai-classification-attribute",
                        args.otlp_genai_classification_attribute
                            .or(file.otlp_genai_classification_attribute),
                        &genai_d.classification_attribute,
                    )?,
                })
            };
            let max_body_bytes = args
                .otlp_max_body_bytes
                .or(file.otlp_max_body_bytes)
                .unwrap_or(d.max_body_bytes);
            if !(1024..=(1 << 30)).contains(&max_body_bytes) {
                bail!(
                    "otlp_max_body_bytes must be between 1024 and 1073741824, got {max_body_bytes}"
                );
            }
            sluice_otlp::OtlpConfig {
                spans_topic: topic(
                    "--otlp-spans-topic",
                    args.otlp_spans_topic.or(file.otlp_spans_topic),
                    d.spans_topic.clone(),
                )?,
                logs_topic: topic(
                    "--otlp-logs-topic",
                    args.otlp_logs_topic.or(file.otlp_logs_topic),
                    d.logs_topic.clone(),
                )?,
                metrics_topic: topic(
                    "--otlp-metrics-topic",
                    args.otlp_metrics_topic.or(file.otlp_metrics_topic),
                    d.metrics_topic.clone(),
                )?,
                encoding,
                genai,
                max_body_bytes,
                max_inflight_bytes: match args.otlp_max_inflight_bytes.or(file.otlp_max_inflight_bytes) {
                    Some(n) if n < max_body_bytes => bail!(
                        "otlp_max_inflight_bytes ({n}) must be at least otlp_max_body_bytes ({max_body_bytes})"
                    ),
                    Some(n) => n,
                    None => (4 * max_body_bytes).max(d.max_inflight_bytes),
                },
            }
        };
        let num_partitions = args.num_partitions.or(file.num_partitions).unwrap_or(1);
        if !(1..=100_000).contains(&num_partitions) {
            bail!("num_partitions must be between 1 and 100000, got {num_partitions}");
        }
        let message_max_bytes = args
            .message_max_bytes
            .or(file.message_max_bytes)
            .unwrap_or(1_048_588);
        if message_max_bytes < 1024 {
            bail!("message_max_bytes must be at least 1024, got {message_max_bytes}");
        }
        let broker_id = args.broker_id.or(file.broker_id);
        if let Some(id) = broker_id {
            if !(0..=1000).contains(&id) {
                bail!("broker_id must be between 0 and 1000 (ids above are allocated by the catalog), got {id}");
            }
        }
        let flush_interval_ms = args
            .flush_interval_ms
            .or(file.flush_interval_ms)
            .unwrap_or(50);
        if !(1..=60_000).contains(&flush_interval_ms) {
            bail!("flush_interval_ms must be between 1 and 60000, got {flush_interval_ms}");
        }
        let flush_bytes = args.flush_bytes.or(file.flush_bytes).unwrap_or(4 << 20);
        if !(1024..=(256 << 20)).contains(&flush_bytes) {
            bail!("flush_bytes must be between 1024 and 268435456, got {flush_bytes}");
        }
        let lease_ms = args.lease_ms.or(file.lease_ms).unwrap_or(10_000);
        if !(500..=600_000).contains(&lease_ms) {
            bail!("lease_ms must be between 500 and 600000, got {lease_ms}");
        }
        let sasl_session_lifetime_ms = args
            .sasl_session_lifetime_ms
            .or(file.sasl_session_lifetime_ms)
            .unwrap_or(0);
        if sasl_session_lifetime_ms != 0 && sasl_session_lifetime_ms < 1000 {
            bail!("sasl_session_lifetime_ms must be 0 (off) or at least 1000, got {sasl_session_lifetime_ms}");
        }
        let compaction_max_bytes = args
            .compaction_max_bytes
            .or(file.compaction_max_bytes)
            .unwrap_or(64 << 20);
        if !((1 << 20)..=(1 << 30)).contains(&compaction_max_bytes) {
            bail!("compaction_max_bytes must be between 1048576 and 1073741824, got {compaction_max_bytes}");
        }
        let rack = args
            .rack
            .or(file.rack)
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        Ok(Self {
            data_dir,
            advertise_host,
            advertise_port,
            http_listen,
            otlp_http,
            otlp_grpc,
            otlp,
            auto_create_topics_enable: args
                .auto_create_topics_enable
                .or(file.auto_create_topics_enable)
                .unwrap_or(true),
            num_partitions,
            message_max_bytes,
            metrics_partition_detail: args
                .metrics_partition_detail
                .or(file.metrics_partition_detail)
                .unwrap_or(false),
            object_store: args.object_store.or(file.object_store),
            object_store_options: file.object_store_options,
            catalog: args.catalog.or(file.catalog),
            broker_id,
            rack,
            group_consumer_session_timeout_ms: args
                .group_consumer_session_timeout_ms
                .or(file.group_consumer_session_timeout_ms)
                .unwrap_or(45000)
                .max(1000),
            group_consumer_heartbeat_interval_ms: args
                .group_consumer_heartbeat_interval_ms
                .or(file.group_consumer_heartbeat_interval_ms)
                .unwrap_or(2000)
                .max(100),
            cluster: ClusterKnobs {
                flush_interval_ms,
                flush_bytes,
                lease_ms,
            },
            storage: StorageKnobs {
                upload_bytes: args.upload_bytes.or(file.upload_bytes).unwrap_or(8388608),
                upload_interval_ms: args
                    .upload_interval_ms
                    .or(file.upload_interval_ms)
                    .unwrap_or(250),
                tail_cache_bytes: args
                    .tail_cache_bytes
                    .or(file.tail_cache_bytes)
                    .unwrap_or(268435456),
                block_cache_bytes: args
                    .block_cache_bytes
                    .or(file.block_cache_bytes)
                    .unwrap_or(268435456),
                max_unuploaded_bytes: args
                    .max_unuploaded_bytes
                    .or(file.max_unuploaded_bytes)
                    .unwrap_or(1073741824),
                log_retention_ms: args
                    .log_retention_ms
                    .or(file.log_retention_ms)
                    .unwrap_or(604800000),
                log_retention_bytes: args
                    .log_retention_bytes
                    .or(file.log_retention_bytes)
                    .unwrap_or(-1),
                maintenance_interval_ms: args
                    .maintenance_interval_ms
                    .or(file.maintenance_interval_ms)
                    .unwrap_or(30000),
                compaction_min_bytes: args
                    .compaction_min_bytes
                    .or(file.compaction_min_bytes)
                    .unwrap_or(4194304),
                compaction_max_bytes,
                gc_grace_ms: args.gc_grace_ms.or(file.gc_grace_ms).unwrap_or(60000),
            },
            security: SecuritySettings {
                listeners,
                tls,
                sasl_mechanisms,
                sasl_session_lifetime_ms,
                authorization,
                http_auth,
                http_metrics_open,
                http_tls,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let dir = std::env::temp_dir().join(format!("sluice-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.toml");
        std::fs::write(
            &path,
            "num_partitions = 4\nlisten = \"127.0.0.1:9999\"\nauto_create_topics_enable = false\n",
        )
        .unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:7777".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.security.listeners[0].bind.port(), 7777);
        assert_eq!(s.advertise_port, 7777);
        assert_eq!(s.num_partitions, 4);
        assert!(!s.auto_create_topics_enable);
        assert_eq!(s.http_listen.port(), 8081);
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let err = Settings::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("no_such_key"));
    }

    #[test]
    fn listeners_and_their_advertised_addresses() {
        let l = resolve_listeners(
            Some("PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093".into()),
            Some("SASL_SSL://kafka.example:9093".into()),
            None,
            None,
        )
        .unwrap();
        assert_eq!(l[0].advertised.address(), "127.0.0.1:9092");
        assert_eq!(l[1].bind.port(), 9093);
        assert_eq!(l[1].advertised.to_string(), "SASL_SSL://kafka.example:9093");
        let err = |a: Option<&str>, b: Option<&str>, c: Option<&str>| {
            format!(
                "{:#}",
                resolve_listeners(
                    a.map(Into::into),
                    b.map(Into::into),
                    c.map(Into::into),
                    None
                )
                .unwrap_err()
            )
        };
        assert!(err(Some("SSL://0.0.0.0:1"), None, None).contains("--advertised-listeners"));
        assert!(err(Some("SSL://h:1"), Some("SASL_SSL://h:2"), None).contains("not in --listeners"));
        assert!(err(Some("SSL://127.0.0.1:1"), None, Some("127.0.0.1:2")).contains("not both"));
        assert!(err(None, Some("SSL://h:1"), None).contains("needs --listeners"));
        let one = resolve_listeners(
            None,
            None,
            Some("127.0.0.1:7000".into()),
            Some("broker:7000".into()),
        )
        .unwrap();
        assert_eq!(one[0].advertised.to_string(), "PLAINTEXT://broker:7000");
    }
}
