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
use crate::quotas::{throttle_ms, Mute, QuotaKind};
use crate::security::acl::Operation;
use crate::security::guard::Guard;
use crate::Broker;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    AlterClientQuotasResponse, AlterUserScramCredentialsResponse, ApiKey, ApiVersionsResponse,
    CreateAclsResponse, DeleteAclsResponse, DescribeAclsResponse, DescribeClientQuotasResponse,
    DescribeClusterResponse, DescribeUserScramCredentialsResponse, HeartbeatResponse,
    InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse, OffsetDeleteResponse,
    ProducerId, RequestHeader, RequestKind, ResponseHeader, ResponseKind, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    (ApiKey::AlterConfigs, 0, 2),
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
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // Transactions (AddPartitionsToTxn v4+ is the brokers' batched form).
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    // KIP-848's consumer group protocol.
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    // Served only on SASL listeners (the connection handles them itself).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// What a handler may need to know about the connection a request came on.
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// This broker's host and port as told to clients of this listener.
    pub advertised: (String, i32),
    /// Who the client authenticated as.
    pub caller: crate::security::authz::Caller,
    /// Until when the connection reads no request (quota throttling).
    pub mute: Arc<Mute>,
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
    let guard = Guard::new(broker, &conn.caller);
    let client_id = header
        .client_id
        .as_ref()
        .map(|c| c.as_str())
        .unwrap_or_default();
    let principal = conn.caller.principal.as_str();
    let handled = match *body {
        RequestKind::ApiVersions(_) => ready(ResponseKind::ApiVersions(api_versions(None))),
        RequestKind::Produce(mut r) => {
            let refused = guard.produce(&mut r);
            let bytes: usize = r
                .topic_data
                .iter()
                .flat_map(|t| t.partition_data.iter())
                .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
                .sum();
            let throttle = broker
                .quotas
                .charge(QuotaKind::Produce, principal, client_id)
                .map_or(Duration::ZERO, |c| broker.quotas.record(&c, bytes as f64));
            conn.mute.extend(throttle);
            let durable = handlers::produce::handle(broker, r, version, &conn.caller).await;
            Ok(Handled::Deferred(Box::pin(async move {
                match durable.await {
                    Some(mut resp) => {
                        resp.throttle_time_ms = throttle_ms(throttle);
                        Guard::answer_produce(&mut resp, refused);
                        encode(ResponseKind::Produce(resp))
                    }
                    None => Ok(None),
                }
            })))
        }
        RequestKind::Fetch(mut r) => {
            let refused = guard.fetch(&mut r);
            let b = broker.clone();
            let charge = broker.quotas.charge(QuotaKind::Fetch, principal, client_id);
            let over = charge
                .as_ref()
                .map_or(Duration::ZERO, |c| broker.quotas.current(c));
            conn.mute.extend(over);
            let mute = conn.mute.clone();
            Ok(Handled::Deferred(Box::pin(async move {
                let mut reply = if !over.is_zero() {
                    // Over its quota: an empty answer with the throttle time
                    // (Kafka's throttled fetch response).
                    let mut reply = handlers::fetch::FetchReply::empty();
                    reply.response.throttle_time_ms = throttle_ms(over);
                    return encode(ResponseKind::Fetch(reply.into_joined()));
                } else if r.topics.is_empty() && !refused.is_empty() {
                    handlers::fetch::FetchReply::empty()
                } else {
                    handlers::fetch::handle(&b, r, version).await
                };
                if let Some(c) = &charge {
                    let bytes: usize = reply.records.iter().flatten().map(|x| x.len()).sum();
                    let throttle = b.quotas.record(c, bytes as f64);
                    mute.extend(throttle);
                    reply.response.throttle_time_ms = throttle_ms(throttle);
                }
                Guard::answer_fetch(&mut reply, refused);
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
        RequestKind::JoinGroup(r)
            if guard
                .group_error(Operation::Read, r.group_id.0.as_str())
                .is_some() =>
        {
            let mut resp = JoinGroupResponse::default();
            resp.error_code = ResponseError::GroupAuthorizationFailed.code();
            ready(ResponseKind::JoinGroup(resp))
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let resp = match guard.group_error(Operation::Read, r.group_id.0.as_str()) {
                Some(e) => {
                    let mut resp =
                        kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default();
                    resp.error_code = e.code();
                    resp
                }
                None => handlers::consumer_groups::heartbeat(broker, r, client_id, peer),
            };
            ready(ResponseKind::ConsumerGroupHeartbeat(resp))
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            let refused = |g: &str| guard.group_error(Operation::Describe, g);
            ready(ResponseKind::ConsumerGroupDescribe(
                handlers::consumer_groups::describe(broker, r, &refused),
            ))
        }
        RequestKind::JoinGroup(r) if broker.groups.is_consumer_group(r.group_id.0.as_str()) => {
            let mut resp = JoinGroupResponse::default();
            resp.error_code = ResponseError::InconsistentGroupProtocol.code();
            ready(ResponseKind::JoinGroup(resp))
        }
        RequestKind::JoinGroup(r) => {
            let joined = handlers::groups::join_group(broker, r, version, client_id, peer);
            Ok(Handled::Deferred(Box::pin(async move {
                encode(ResponseKind::JoinGroup(joined.await))
            })))
        }
        RequestKind::SyncGroup(r)
            if guard
                .group_error(Operation::Read, r.group_id.0.as_str())
                .is_some() =>
        {
            let mut resp = SyncGroupResponse::default();
            resp.error_code = ResponseError::GroupAuthorizationFailed.code();
            ready(ResponseKind::SyncGroup(resp))
        }
        RequestKind::SyncGroup(r) => {
            let synced = handlers::groups::sync_group(broker, r, version);
            Ok(Handled::Deferred(Box::pin(async move {
                encode(ResponseKind::SyncGroup(synced.await))
            })))
        }
        RequestKind::ListOffsets(mut r) => {
            let refused = guard.list_offsets(&mut r);
            let mut resp = handlers::list_offsets::handle(broker, r, version).await;
            Guard::answer_list_offsets(&mut resp, refused);
            ready(ResponseKind::ListOffsets(resp))
        }
        RequestKind::Metadata(mut r) => {
            let refused = guard.metadata(&mut r);
            let mut resp = handlers::metadata::handle(broker, r, version, client_id).await;
            guard.answer_metadata(&mut resp, refused);
            for b in resp.brokers.iter_mut() {
                conn.localize(broker, b.node_id.0, &mut b.host, &mut b.port);
            }
            ready(ResponseKind::Metadata(resp))
        }
        RequestKind::CreateTopics(mut r) => {
            let refused = guard.create_topics(&mut r);
            let mut resp = handlers::topics::create_topics(broker, r, version).await;
            Guard::answer_create_topics(&mut resp, refused);
            ready(ResponseKind::CreateTopics(resp))
        }
        RequestKind::DeleteTopics(mut r) => {
            let refused = guard.delete_topics(&mut r);
            let mut resp = handlers::topics::delete_topics(broker, r, version).await;
            resp.responses.extend(refused);
            ready(ResponseKind::DeleteTopics(resp))
        }
        RequestKind::CreatePartitions(mut r) => {
            let refused = guard.create_partitions(&mut r);
            let mut resp = handlers::topics::create_partitions(broker, r).await;
            Guard::answer_create_partitions(&mut resp, refused);
            ready(ResponseKind::CreatePartitions(resp))
        }
        RequestKind::DescribeConfigs(mut r) => {
            let refused = guard.describe_configs(&mut r);
            let mut resp = handlers::configs::describe(broker, r, version);
            resp.results.extend(refused);
            ready(ResponseKind::DescribeConfigs(resp))
        }
        RequestKind::AlterConfigs(r) => {
            let refused = |t: &str| guard.topic_error(Operation::AlterConfigs, t);
            ready(ResponseKind::AlterConfigs(
                handlers::configs::alter_legacy(broker, r, &refused).await,
            ))
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let refused = guard.alter_configs(&mut r);
            let mut resp = handlers::configs::incremental_alter(broker, r).await;
            resp.responses.extend(refused);
            ready(ResponseKind::IncrementalAlterConfigs(resp))
        }
        RequestKind::DescribeCluster(_) if guard.cluster_error(Operation::Describe).is_some() => {
            let mut resp = DescribeClusterResponse::default();
            resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
            resp.cluster_id = StrBytes::from_string(broker.cluster_id.clone());
            ready(ResponseKind::DescribeCluster(resp))
        }
        RequestKind::DescribeCluster(r) => {
            let mut resp = handlers::metadata::describe_cluster(broker, r);
            for b in resp.brokers.iter_mut() {
                conn.localize(broker, b.broker_id.0, &mut b.host, &mut b.port);
            }
            ready(ResponseKind::DescribeCluster(resp))
        }
        RequestKind::InitProducerId(r) => match guard.init_producer_id(&r) {
            Some(e) => {
                let mut resp = InitProducerIdResponse::default();
                resp.error_code = e.code();
                resp.producer_id = ProducerId(-1);
                resp.producer_epoch = -1;
                ready(ResponseKind::InitProducerId(resp))
            }
            None if r.transactional_id.is_some() => ready(ResponseKind::InitProducerId(
                handlers::txn::init_producer_id(broker, r).await,
            )),
            None => ready(ResponseKind::InitProducerId(
                handlers::producer_id::handle(broker, r).await,
            )),
        },
        RequestKind::AddPartitionsToTxn(r) => ready(ResponseKind::AddPartitionsToTxn(
            handlers::txn::add_partitions(broker, &guard, r).await,
        )),
        RequestKind::AddOffsetsToTxn(r) => ready(ResponseKind::AddOffsetsToTxn(
            handlers::txn::add_offsets(broker, &guard, r).await,
        )),
        RequestKind::TxnOffsetCommit(r) => ready(ResponseKind::TxnOffsetCommit(
            handlers::txn::txn_offset_commit(broker, &guard, r).await,
        )),
        RequestKind::EndTxn(r) => ready(ResponseKind::EndTxn(
            handlers::txn::end_txn(broker, &guard, r).await,
        )),
        RequestKind::DescribeTransactions(r) => ready(ResponseKind::DescribeTransactions(
            handlers::txn::describe(broker, &guard, r).await,
        )),
        RequestKind::ListTransactions(r) => ready(ResponseKind::ListTransactions(
            handlers::txn::list(broker, &guard, r).await,
        )),
        RequestKind::FindCoordinator(r) => {
            let refused = guard.find_coordinator(&r, version);
            let key_type = r.key_type;
            let mut resp = handlers::groups::find_coordinator(broker, r, version);
            Guard::answer_find_coordinator(&mut resp, &refused, key_type);
            conn.localize(broker, resp.node_id.0, &mut resp.host, &mut resp.port);
            for c in resp.coordinators.iter_mut() {
                conn.localize(broker, c.node_id.0, &mut c.host, &mut c.port);
            }
            ready(ResponseKind::FindCoordinator(resp))
        }
        RequestKind::Heartbeat(r) => {
            match guard.group_error(Operation::Read, r.group_id.0.as_str()) {
                Some(e) => {
                    let mut resp = HeartbeatResponse::default();
                    resp.error_code = e.code();
                    ready(ResponseKind::Heartbeat(resp))
                }
                None => ready(ResponseKind::Heartbeat(handlers::groups::heartbeat(
                    broker, r,
                ))),
            }
        }
        RequestKind::LeaveGroup(r) => {
            match guard.group_error(Operation::Read, r.group_id.0.as_str()) {
                Some(e) => {
                    let mut resp = LeaveGroupResponse::default();
                    resp.error_code = e.code();
                    ready(ResponseKind::LeaveGroup(resp))
                }
                None => ready(ResponseKind::LeaveGroup(handlers::groups::leave_group(
                    broker, r, version,
                ))),
            }
        }
        RequestKind::OffsetCommit(mut r) => {
            match guard.group_error(Operation::Read, r.group_id.0.as_str()) {
                Some(e) => ready(ResponseKind::OffsetCommit(Guard::refuse_offset_commit(
                    r, e,
                ))),
                None => {
                    let refused = guard.offset_commit(&mut r);
                    let mut resp = handlers::groups::offset_commit(broker, r).await;
                    Guard::answer_offset_commit(&mut resp, refused);
                    ready(ResponseKind::OffsetCommit(resp))
                }
            }
        }
        RequestKind::OffsetFetch(mut r) => {
            let refused = guard.offset_fetch(&mut r, version);
            let mut resp = match &refused {
                Some(whole) if version < 8 => whole.clone(),
                _ => handlers::groups::offset_fetch(broker, r, version),
            };
            guard.answer_offset_fetch(&mut resp, refused.filter(|_| version >= 8));
            ready(ResponseKind::OffsetFetch(resp))
        }
        RequestKind::ListGroups(r) => {
            let mut resp = handlers::groups::list_groups(broker, r, version);
            guard.list_groups(&mut resp);
            ready(ResponseKind::ListGroups(resp))
        }
        RequestKind::DescribeGroups(mut r) => {
            let refused = guard.describe_groups(&mut r);
            let mut resp = handlers::groups::describe_groups(broker, r, version);
            resp.groups.extend(refused);
            ready(ResponseKind::DescribeGroups(resp))
        }
        RequestKind::DeleteGroups(mut r) => {
            let refused = guard.delete_groups(&mut r);
            let mut resp = handlers::groups::delete_groups(broker, r).await;
            resp.results.extend(refused);
            ready(ResponseKind::DeleteGroups(resp))
        }
        RequestKind::OffsetDelete(mut r) => {
            match guard.group_error(Operation::Delete, r.group_id.0.as_str()) {
                Some(e) => {
                    let mut resp = OffsetDeleteResponse::default();
                    resp.error_code = e.code();
                    ready(ResponseKind::OffsetDelete(resp))
                }
                None => {
                    let refused = guard.offset_delete(&mut r);
                    let mut resp = handlers::groups::offset_delete(broker, r).await;
                    Guard::answer_offset_delete(&mut resp, refused);
                    ready(ResponseKind::OffsetDelete(resp))
                }
            }
        }
        RequestKind::DeleteRecords(mut r) => {
            let refused = guard.delete_records(&mut r);
            let mut resp = handlers::delete_records::handle(broker, r).await;
            Guard::answer_delete_records(&mut resp, refused);
            ready(ResponseKind::DeleteRecords(resp))
        }
        RequestKind::CreateAcls(r) => {
            match guard.cluster_error(Operation::Alter) {
                Some(e) => {
                    let mut resp = CreateAclsResponse::default();
                    for _ in &r.creations {
                        let mut c = kafka_protocol::messages::create_acls_response::AclCreationResult::default();
                        c.error_code = e.code();
                        resp.results.push(c);
                    }
                    ready(ResponseKind::CreateAcls(resp))
                }
                None => ready(ResponseKind::CreateAcls(
                    handlers::acls::create(broker, r).await,
                )),
            }
        }
        RequestKind::DescribeAcls(r) => match guard.cluster_error(Operation::Describe) {
            Some(e) => {
                let mut resp = DescribeAclsResponse::default();
                resp.error_code = e.code();
                ready(ResponseKind::DescribeAcls(resp))
            }
            None => ready(ResponseKind::DescribeAcls(handlers::acls::describe(
                broker, r,
            ))),
        },
        RequestKind::DeleteAcls(r) => match guard.cluster_error(Operation::Alter) {
            Some(e) => {
                let mut resp = DeleteAclsResponse::default();
                for _ in &r.filters {
                    let mut f = kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult::default();
                    f.error_code = e.code();
                    resp.filter_results.push(f);
                }
                ready(ResponseKind::DeleteAcls(resp))
            }
            None => ready(ResponseKind::DeleteAcls(
                handlers::acls::delete(broker, r).await,
            )),
        },
        RequestKind::DescribeClientQuotas(r) => {
            match guard.cluster_error(Operation::DescribeConfigs) {
                Some(e) => {
                    let mut resp = DescribeClientQuotasResponse::default();
                    resp.error_code = e.code();
                    ready(ResponseKind::DescribeClientQuotas(resp))
                }
                None => ready(ResponseKind::DescribeClientQuotas(
                    handlers::client_quotas::describe(broker, r),
                )),
            }
        }
        RequestKind::AlterClientQuotas(r) => match guard.cluster_error(Operation::AlterConfigs) {
            Some(e) => {
                let mut resp = AlterClientQuotasResponse::default();
                for entry in &r.entries {
                    let mut out =
                        kafka_protocol::messages::alter_client_quotas_response::EntryData::default(
                        );
                    out.error_code = e.code();
                    for c in &entry.entity {
                        let mut d = kafka_protocol::messages::alter_client_quotas_response::EntityData::default();
                        d.entity_type = c.entity_type.clone();
                        d.entity_name = c.entity_name.clone();
                        out.entity.push(d);
                    }
                    resp.entries.push(out);
                }
                ready(ResponseKind::AlterClientQuotas(resp))
            }
            None => ready(ResponseKind::AlterClientQuotas(
                handlers::client_quotas::alter(broker, r).await,
            )),
        },
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let refused = guard.offset_for_leader_epoch(&mut r);
            let mut resp = handlers::leader_epoch::handle(broker, r);
            Guard::answer_offset_for_leader_epoch(&mut resp, refused);
            ready(ResponseKind::OffsetForLeaderEpoch(resp))
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            match guard.cluster_error(Operation::Describe) {
                Some(e) => {
                    let mut resp = DescribeUserScramCredentialsResponse::default();
                    resp.error_code = e.code();
                    ready(ResponseKind::DescribeUserScramCredentials(resp))
                }
                None => ready(ResponseKind::DescribeUserScramCredentials(
                    handlers::scram_users::describe(broker, r).await,
                )),
            }
        }
        RequestKind::AlterUserScramCredentials(r) => match guard.cluster_error(Operation::Alter) {
            Some(e) => {
                let mut resp = AlterUserScramCredentialsResponse::default();
                for name in r
                    .deletions
                    .iter()
                    .map(|d| &d.name)
                    .chain(r.upsertions.iter().map(|u| &u.name))
                {
                    let mut out = kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
                    out.user = name.clone();
                    out.error_code = e.code();
                    resp.results.push(out);
                }
                ready(ResponseKind::AlterUserScramCredentials(resp))
            }
            None => ready(ResponseKind::AlterUserScramCredentials(
                handlers::scram_users::alter(broker, r).await,
            )),
        },
        _ => Err(DispatchError::NotServed(key).into()),
    };
    // Thread time, for request_percentage quotas (the handling itself, not
    // the wait for durability or data).
    let spent = timer.started.elapsed().as_secs_f64() * 1000.0;
    if let Some(c) = broker
        .quotas
        .charge(QuotaKind::Request, principal, client_id)
    {
        conn.mute.extend(broker.quotas.record(&c, spent));
    }
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
        ApiKey::AlterConfigs => "AlterConfigs",
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
        ApiKey::CreateAcls => "CreateAcls",
        ApiKey::DescribeAcls => "DescribeAcls",
        ApiKey::DeleteAcls => "DeleteAcls",
        ApiKey::DescribeClientQuotas => "DescribeClientQuotas",
        ApiKey::AlterClientQuotas => "AlterClientQuotas",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
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
