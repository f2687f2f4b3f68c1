//! Request dispatch: parses the request header, checks the API and version
//! against what Sluice supports, decodes the body with `kafka-protocol`,
//! routes it to its handler and encodes the response frame.
//!
//! Only versions exercised by the test suite are advertised. An ApiVersions
//! request of a newer version gets UNSUPPORTED_VERSION in the v0 layout with
//! the supported ranges (KIP-511), so clients can retry lower. Any other
//! unsupported key or version, or an undecodable body, closes the connection
//! (as Kafka does).

use crate::fetch_frame::{self, Frame};
use crate::handlers;
use crate::Broker;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::net::SocketAddr;
use std::sync::Arc;

/// (API, lowest version, highest version) Sluice serves.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    // Served only on SASL listeners (the connection handles them itself).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// What a handler may need to know about the connection a request came on.
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// This broker's host and port as told to clients of this listener.
    pub advertised: (String, i32),
}

impl ConnInfo {
    /// This broker's address in a response, as this listener advertises it
    /// (a broker with several listeners registers one address).
    fn localize(&self, broker: &Broker, node_id: i32, host: &mut StrBytes, port: &mut i32) {
        if node_id == broker.membership.id()
            && (host.as_str() != self.advertised.0 || *port != self.advertised.1)
        {
            *host = StrBytes::from_string(self.advertised.0.clone());
            *port = self.advertised.1;
        }
    }
}

/// Why a request frame closes its connection.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("request frame too short for a header ({0} bytes)")]
    ShortFrame(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("unsupported version {version} of {key:?} (supported {min}..={max})")]
    UnsupportedVersion {
        key: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("API {0:?} is not served by Sluice")]
    NotServed(ApiKey),
    #[error("malformed {key:?} v{version} request: {reason}")]
    Malformed {
        key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// A decoded request ready for its handler.
pub enum Incoming {
    Request {
        key: ApiKey,
        version: i16,
        header: RequestHeader,
        body: Box<RequestKind>,
    },
    /// An ApiVersions request of a version newer than ours.
    ApiVersionsTooNew { correlation_id: i32 },
}

fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// Parses a request frame.
pub fn decode(frame: Bytes) -> Result<Incoming, DispatchError> {
    if frame.len() < 8 {
        return Err(DispatchError::ShortFrame(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| DispatchError::UnknownApi(raw_key))?;
    let (min, max) = supported_range(key).ok_or(DispatchError::NotServed(key))?;
    if version < min || version > max {
        if key == ApiKey::ApiVersions && version > max {
            return Ok(Incoming::ApiVersionsTooNew { correlation_id });
        }
        return Err(DispatchError::UnsupportedVersion {
            key,
            version,
            min,
            max,
        });
    }
    let malformed = |e: anyhow::Error| DispatchError::Malformed {
        key,
        version,
        reason: e.to_string(),
    };
    let mut buf = frame;
    let header =
        RequestHeader::decode(&mut buf, key.request_header_version(version)).map_err(malformed)?;
    let body = RequestKind::decode(key, &mut buf, version).map_err(malformed)?;
    Ok(Incoming::Request {
        key,
        version,
        header,
        body: Box::new(body),
    })
}

/// The ApiVersions response body listing every supported range.
pub fn api_versions(error: Option<ResponseError>) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error.map(|e| e.code()).unwrap_or(0);
    r.api_keys = SUPPORTED
        .iter()
        .map(|(k, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect();
    r
}

/// Encodes a response frame (length prefix, header, body).
pub fn encode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<BytesMut> {
    // Fetch responses, the large ones, are written by `fetch_frame`.
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, key.response_header_version(version))?;
    body.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// A handled request: its response frame now, or a future that produces it
/// (`None`: no response, as for acks=0).
pub enum Handled {
    Ready(Option<Frame>),
    Deferred(BoxFuture<'static, anyhow::Result<Option<Frame>>>),
}

/// Handles one request. Everything that changes state happens before this
/// returns, so a connection's requests take effect in the order they were
/// sent; only waiting (produce durability, fetch long polls, group joins)
/// is left to the deferred future, which may overlap later requests.
pub async fn handle(
    broker: &Arc<Broker>,
    incoming: Incoming,
    conn: &ConnInfo,
) -> anyhow::Result<Handled> {
    let peer = conn.peer;
    let (key, version, header, body) = match incoming {
        Incoming::ApiVersionsTooNew { correlation_id } => {
            let body =
                ResponseKind::ApiVersions(api_versions(Some(ResponseError::UnsupportedVersion)));
            return encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
                .map(|b| Handled::Ready(Some(b.into())));
        }
        Incoming::Request {
            key,
            version,
            header,
            body,
        } => (key, version, header, body),
    };
    let correlation_id = header.correlation_id;
    let encode = move |body: ResponseKind| -> anyhow::Result<Option<Frame>> {
        encode_response(key, version, correlation_id, &body).map(|b| Some(Frame::from(b)))
    };
    let ready = |body: ResponseKind| encode(body).map(Handled::Ready);
    let timer = RequestTimer::start(key);
    let handled = match *body {
        RequestKind::ApiVersions(_) => ready(ResponseKind::ApiVersions(api_versions(None))),
        RequestKind::Produce(r) => {
            let durable = handlers::produce::handle(broker, r, version).await;
            Ok(Handled::Deferred(Box::pin(async move {
                match durable.await {
                    Some(resp) => encode(ResponseKind::Produce(resp)),
                    None => Ok(None),
                }
            })))
        }
        RequestKind::Fetch(r) => {
            let b = broker.clone();
            Ok(Handled::Deferred(Box::pin(async move {
                let reply = handlers::fetch::handle(&b, r, version).await;
                let background = reply.from_objects;
                let frame = match fetch_frame::encode(
                    version,
                    correlation_id,
                    &reply.response,
                    &reply.records,
                ) {
                    Some(frame) => Some(frame),
                    None => encode(ResponseKind::Fetch(reply.into_joined()))?,
                };
                Ok(frame.map(|f| Frame { background, ..f }))
            })))
        }
        RequestKind::JoinGroup(r) => {
            let client_id = header
                .client_id
                .as_ref()
                .map(|c| c.as_str())
                .unwrap_or_default();
            let joined = handlers::groups::join_group(broker, r, version, client_id, peer);
            Ok(Handled::Deferred(Box::pin(async move {
                encode(ResponseKind::JoinGroup(joined.await))
            })))
        }
        RequestKind::SyncGroup(r) => {
            let synced = handlers::groups::sync_group(broker, r, version);
            Ok(Handled::Deferred(Box::pin(async move {
                encode(ResponseKind::SyncGroup(synced.await))
            })))
        }
        RequestKind::ListOffsets(r) => ready(ResponseKind::ListOffsets(
            handlers::list_offsets::handle(broker, r, version).await,
        )),
        RequestKind::Metadata(r) => {
            let client_id = header
                .client_id
                .as_ref()
                .map(|c| c.as_str())
                .unwrap_or_default();
            let mut resp = handlers::metadata::handle(broker, r, version, client_id).await;
            for b in resp.brokers.iter_mut() {
                conn.localize(broker, b.node_id.0, &mut b.host, &mut b.port);
            }
            ready(ResponseKind::Metadata(resp))
        }
        RequestKind::CreateTopics(r) => ready(ResponseKind::CreateTopics(
            handlers::topics::create_topics(broker, r, version).await,
        )),
        RequestKind::DeleteTopics(r) => ready(ResponseKind::DeleteTopics(
            handlers::topics::delete_topics(broker, r, version).await,
        )),
        RequestKind::CreatePartitions(r) => ready(ResponseKind::CreatePartitions(
            handlers::topics::create_partitions(broker, r).await,
        )),
        RequestKind::DescribeConfigs(r) => ready(ResponseKind::DescribeConfigs(
            handlers::configs::describe(broker, r, version),
        )),
        RequestKind::IncrementalAlterConfigs(r) => ready(ResponseKind::IncrementalAlterConfigs(
            handlers::configs::incremental_alter(broker, r).await,
        )),
        RequestKind::DescribeCluster(r) => {
            let mut resp = handlers::metadata::describe_cluster(broker, r);
            for b in resp.brokers.iter_mut() {
                conn.localize(broker, b.broker_id.0, &mut b.host, &mut b.port);
            }
            ready(ResponseKind::DescribeCluster(resp))
        }
        RequestKind::InitProducerId(r) => ready(ResponseKind::InitProducerId(
            handlers::producer_id::handle(broker, r).await,
        )),
        RequestKind::FindCoordinator(r) => {
            let mut resp = handlers::groups::find_coordinator(broker, r, version);
            conn.localize(broker, resp.node_id.0, &mut resp.host, &mut resp.port);
            for c in resp.coordinators.iter_mut() {
                conn.localize(broker, c.node_id.0, &mut c.host, &mut c.port);
            }
            ready(ResponseKind::FindCoordinator(resp))
        }
        RequestKind::Heartbeat(r) => ready(ResponseKind::Heartbeat(handlers::groups::heartbeat(
            broker, r,
        ))),
        RequestKind::LeaveGroup(r) => ready(ResponseKind::LeaveGroup(
            handlers::groups::leave_group(broker, r, version),
        )),
        RequestKind::OffsetCommit(r) => ready(ResponseKind::OffsetCommit(
            handlers::groups::offset_commit(broker, r).await,
        )),
        RequestKind::OffsetFetch(r) => ready(ResponseKind::OffsetFetch(
            handlers::groups::offset_fetch(broker, r, version),
        )),
        RequestKind::ListGroups(r) => ready(ResponseKind::ListGroups(
            handlers::groups::list_groups(broker, r, version),
        )),
        RequestKind::DescribeGroups(r) => ready(ResponseKind::DescribeGroups(
            handlers::groups::describe_groups(broker, r, version),
        )),
        RequestKind::DeleteGroups(r) => ready(ResponseKind::DeleteGroups(
            handlers::groups::delete_groups(broker, r).await,
        )),
        RequestKind::OffsetDelete(r) => ready(ResponseKind::OffsetDelete(
            handlers::groups::offset_delete(broker, r).await,
        )),
        RequestKind::DeleteRecords(r) => ready(ResponseKind::DeleteRecords(
            handlers::delete_records::handle(broker, r).await,
        )),
        _ => Err(DispatchError::NotServed(key).into()),
    };
    Ok(match handled? {
        Handled::Ready(r) => {
            timer.finish();
            Handled::Ready(r)
        }
        Handled::Deferred(f) => Handled::Deferred(Box::pin(async move {
            let r = f.await;
            timer.finish();
            r
        })),
    })
}

/// Counts a request and observes its latency when its response is ready.
struct RequestTimer {
    api: &'static str,
    started: std::time::Instant,
}

impl RequestTimer {
    fn start(key: ApiKey) -> Self {
        Self {
            api: api_name(key),
            started: std::time::Instant::now(),
        }
    }

    fn finish(self) {
        let m = sluice_observe::metrics();
        m.requests.with_label_values(&[self.api]).inc();
        m.request_seconds
            .with_label_values(&[self.api])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The API's name as Kafka spells it, for metric labels.
fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DeleteRecords => "DeleteRecords",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(key: i16, version: i16, rest: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(7);
        b.put_slice(rest);
        b.freeze()
    }

    #[test]
    fn rejects_unknown_and_unsupported() {
        assert!(matches!(
            decode(frame(999, 0, &[0, 0])),
            Err(DispatchError::UnknownApi(999))
        ));
        assert!(matches!(
            decode(frame(0, 2, &[0, 0])),
            Err(DispatchError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            decode(Bytes::from_static(&[0, 1])),
            Err(DispatchError::ShortFrame(2))
        ));
        assert!(matches!(
            decode(frame(18, 99, &[])),
            Ok(Incoming::ApiVersionsTooNew { correlation_id: 7 })
        ));
        // Metadata v1 with a truncated body.
        assert!(matches!(
            decode(frame(3, 1, &[0, 0])),
            Err(DispatchError::Malformed { .. })
        ));
    }

    #[test]
    fn api_versions_v3_sends_no_default_tagged_fields() {
        let body = ResponseKind::ApiVersions(api_versions(None));
        let buf = encode_response(ApiKey::ApiVersions, 3, 1, &body).unwrap();
        // The body ends with throttle_time_ms and an empty tagged-field count.
        assert_eq!(buf[buf.len() - 1], 0);
        assert_eq!(&buf[buf.len() - 5..buf.len() - 1], &[0, 0, 0, 0]);
    }
}
