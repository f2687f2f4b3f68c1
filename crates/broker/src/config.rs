//! Broker-level settings (Kafka's server.properties equivalents).

/// Settings the request handlers need.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This broker's node id.
    pub node_id: i32,
    /// Host and port clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `num.partitions`: partitions of auto-created topics.
    pub num_partitions: i32,
    /// `message.max.bytes`: largest record batch accepted.
    pub message_max_bytes: usize,
    /// `socket.request.max.bytes`: largest request frame accepted.
    pub max_request_bytes: usize,
    /// Requests one connection may have in flight (pipelined).
    pub max_inflight_per_connection: usize,
    /// Per-partition Burrow status and lag rate on `/metrics` by default.
    pub metrics_partition_detail: bool,
    /// `--authorizer acl`: the policy requests are authorized under
    /// (None: authorization is off).
    pub authorization: Option<crate::security::acl::Policy>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            auto_create_topics_enable: true,
            num_partitions: 1,
            message_max_bytes: 1_048_588,
            max_request_bytes: 104_857_600,
            max_inflight_per_connection: 64,
            metrics_partition_detail: false,
            authorization: None,
        }
    }
}
