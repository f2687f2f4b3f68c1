//! Broker settings from three sources, strongest first: command-line flags,
//! `SLUICE_*` environment variables (both through clap), then the TOML file
//! given by `--config`, then built-in defaults.

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys: data_dir, listen, advertise,
    /// http_listen, auto_create_topics_enable, num_partitions, message_max_bytes, object_store,
    /// and an [object_store_options] table).
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
    /// Address of the HTTP listener (GET /healthz) [default: 127.0.0.1:8081].
    #[arg(long, env = "SLUICE_HTTP_LISTEN", value_name = "HOST:PORT")]
    pub http_listen: Option<String>,
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
}

/// The TOML file's keys.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    advertise: Option<String>,
    http_listen: Option<String>,
    auto_create_topics_enable: Option<bool>,
    num_partitions: Option<i32>,
    message_max_bytes: Option<usize>,
    object_store: Option<String>,
    /// S3 options by `object_store` key name (endpoint, region, access_key_id, allow_http, ...).
    #[serde(default)]
    object_store_options: std::collections::BTreeMap<String, String>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise_host: String,
    pub advertise_port: i32,
    pub http_listen: SocketAddr,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub message_max_bytes: usize,
    pub object_store: Option<String>,
    pub object_store_options: std::collections::BTreeMap<String, String>,
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
        let listen_s = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        let listen = parse_addr("--listen", &listen_s)?;
        let advertise_s = args
            .advertise
            .or(file.advertise)
            .unwrap_or_else(|| listen_s.clone());
        let (advertise_host, advertise_port) = split_host_port("--advertise", &advertise_s)?;
        let http_s = args
            .http_listen
            .or(file.http_listen)
            .unwrap_or_else(|| "127.0.0.1:8081".into());
        let http_listen = parse_addr("--http-listen", &http_s)?;
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
        Ok(Self {
            data_dir,
            listen,
            advertise_host,
            advertise_port,
            http_listen,
            auto_create_topics_enable: args
                .auto_create_topics_enable
                .or(file.auto_create_topics_enable)
                .unwrap_or(true),
            num_partitions,
            message_max_bytes,
            object_store: args.object_store.or(file.object_store),
            object_store_options: file.object_store_options,
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
        assert_eq!(s.listen.port(), 7777);
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
}
