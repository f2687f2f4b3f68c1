//! What each Kafka API asks of the authorizer, as Kafka's own broker asks
//! it (KafkaApis): which operation on which resource, and how a refusal
//! shows in the response. Requests are checked before their handler runs:
//! the parts the caller may not touch are taken out of the request (the
//! handler never sees them) and answered afterwards with the error code
//! clients expect; a request refused as a whole is answered without its
//! handler. With the authorizer off every check passes and nothing is
//! taken out.

use super::acl::{Operation, ResourceType};
use super::authz::{Authorizer, Caller};
use crate::handlers::{code, str_bytes};
use crate::Broker;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_records_request::DeleteRecordsTopic;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::list_offsets_request::ListOffsetsTopic;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderTopic;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::HashSet;

/// Topics taken out of a request, with their partitions, answered with
/// one error for each partition.
#[derive(Default)]
pub struct Refused {
    topics: Vec<(TopicName, Vec<i32>, ResponseError)>,
}

impl Refused {
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// The response topics answering the refused ones: `topic` makes one
    /// from its name and partitions, `partition` a partition from its index
    /// and error code.
    fn answer<T, P>(
        self,
        topic: impl Fn(TopicName, Vec<P>) -> T,
        partition: impl Fn(i32, i16) -> P,
    ) -> impl Iterator<Item = T> {
        self.topics.into_iter().map(move |(name, parts, e)| {
            let parts = parts.into_iter().map(|p| partition(p, code(e))).collect();
            topic(name, parts)
        })
    }
}

/// A request's topic entry: its name and the partitions it lists.
trait RequestTopic {
    fn topic_name(&self) -> &TopicName;
    fn partition_indexes(&self) -> Vec<i32>;
}

macro_rules! request_topic {
    ($t:ty, $name:ident, $parts:ident, $index:ident) => {
        impl RequestTopic for $t {
            fn topic_name(&self) -> &TopicName {
                &self.$name
            }
            fn partition_indexes(&self) -> Vec<i32> {
                self.$parts.iter().map(|p| p.$index).collect()
            }
        }
    };
}

// Which fields name the topic and its partitions differs per request.
request_topic!(TopicProduceData, name, partition_data, index);
request_topic!(FetchTopic, topic, partitions, partition);
request_topic!(ListOffsetsTopic, name, partitions, partition_index);
request_topic!(DeleteRecordsTopic, name, partitions, partition_index);
request_topic!(OffsetCommitRequestTopic, name, partitions, partition_index);
request_topic!(OffsetDeleteRequestTopic, name, partitions, partition_index);
request_topic!(OffsetForLeaderTopic, topic, partitions, partition);

/// The checks for one request.
pub struct Guard<'a> {
    authz: &'a Authorizer,
    caller: &'a Caller,
    broker: &'a Broker,
}

const TOPIC_DENIED: ResponseError = ResponseError::TopicAuthorizationFailed;
const GROUP_DENIED: ResponseError = ResponseError::GroupAuthorizationFailed;
const CLUSTER_DENIED: ResponseError = ResponseError::ClusterAuthorizationFailed;

impl<'a> Guard<'a> {
    pub fn new(broker: &'a Broker, caller: &'a Caller) -> Self {
        Self {
            authz: &broker.authorizer,
            caller,
            broker,
        }
    }

    fn on(&self) -> bool {
        self.authz.enabled()
    }

    fn topic(&self, op: Operation, name: &str) -> bool {
        self.authz
            .allows(self.caller, op, ResourceType::Topic, name)
    }

    fn group(&self, op: Operation, name: &str) -> bool {
        self.authz
            .allows(self.caller, op, ResourceType::Group, name)
    }

    /// Whether the caller may do `op` on the cluster.
    pub fn cluster(&self, op: Operation) -> bool {
        self.authz.allows_cluster(self.caller, op)
    }

    /// Create on the cluster, or on the topic itself.
    fn may_create(&self, name: &str) -> bool {
        self.cluster(Operation::Create) || self.topic(Operation::Create, name)
    }

    /// Takes the topics that fail `allowed` out of `items`, to be answered
    /// with `error`.
    fn take_out<T: RequestTopic>(
        items: &mut Vec<T>,
        mut allowed: impl FnMut(&T) -> bool,
        refused: &mut Refused,
        error: ResponseError,
    ) {
        let (keep, out): (Vec<T>, Vec<T>) =
            std::mem::take(items).into_iter().partition(|t| allowed(t));
        *items = keep;
        for t in &out {
            refused
                .topics
                .push((t.topic_name().clone(), t.partition_indexes(), error));
        }
    }

    /// Takes the topics the caller may not `op` out of `items`
    /// (TOPIC_AUTHORIZATION_FAILED).
    fn refuse_topics<T: RequestTopic>(&self, items: &mut Vec<T>, op: Operation) -> Refused {
        let mut refused = Refused::default();
        if self.on() {
            Self::take_out(
                items,
                |t| self.topic(op, t.topic_name().0.as_str()),
                &mut refused,
                TOPIC_DENIED,
            );
        }
        refused
    }

    // ---- Produce: Write on each topic; a topic that does not exist is
    // created only with Create.

    pub fn produce(&self, req: &mut ProduceRequest) -> Refused {
        let mut refused = Refused::default();
        if !self.on() {
            return refused;
        }
        if let Some(tid) = &req.transactional_id {
            if !self.authz.allows(
                self.caller,
                Operation::Write,
                ResourceType::TransactionalId,
                tid.0.as_str(),
            ) {
                Self::take_out(
                    &mut req.topic_data,
                    |_| false,
                    &mut refused,
                    ResponseError::TransactionalIdAuthorizationFailed,
                );
                return refused;
            }
        }
        Self::take_out(
            &mut req.topic_data,
            |t| self.topic(Operation::Write, t.name.0.as_str()),
            &mut refused,
            TOPIC_DENIED,
        );
        Self::take_out(
            &mut req.topic_data,
            |t| {
                let name = t.name.0.as_str();
                self.broker.store.topic(name).is_some() || self.may_create(name)
            },
            &mut refused,
            ResponseError::UnknownTopicOrPartition,
        );
        refused
    }

    pub fn answer_produce(resp: &mut ProduceResponse, refused: Refused) {
        resp.responses.extend(refused.answer(
            |name, parts| {
                let mut t = TopicProduceResponse::default();
                t.name = name;
                t.partition_responses = parts;
                t
            },
            |index, error| {
                let mut r = PartitionProduceResponse::default();
                r.index = index;
                r.error_code = error;
                r.base_offset = -1;
                r
            },
        ));
    }

    // ---- Fetch: Read on each topic.

    pub fn fetch(&self, req: &mut FetchRequest) -> Refused {
        self.refuse_topics(&mut req.topics, Operation::Read)
    }

    pub fn answer_fetch(reply: &mut crate::handlers::fetch::FetchReply, refused: Refused) {
        let topics: Vec<FetchableTopicResponse> = refused
            .answer(
                |name, parts| {
                    let mut t = FetchableTopicResponse::default();
                    t.topic = name;
                    t.partitions = parts;
                    t
                },
                |index, error| {
                    let mut pd = PartitionData::default();
                    pd.partition_index = index;
                    pd.error_code = error;
                    pd.high_watermark = -1;
                    pd.last_stable_offset = -1;
                    pd.log_start_offset = -1;
                    pd.records = Some(Bytes::new());
                    pd
                },
            )
            .collect();
        // One (empty) batch list per partition, in response order.
        for t in &topics {
            reply
                .records
                .extend(t.partitions.iter().map(|_| Vec::new()));
        }
        reply.response.responses.extend(topics);
    }

    // ---- ListOffsets: Describe on each topic.

    pub fn list_offsets(&self, req: &mut ListOffsetsRequest) -> Refused {
        self.refuse_topics(&mut req.topics, Operation::Describe)
    }

    pub fn answer_list_offsets(resp: &mut ListOffsetsResponse, refused: Refused) {
        resp.topics.extend(refused.answer(
            |name, parts| {
                let mut t = ListOffsetsTopicResponse::default();
                t.name = name;
                t.partitions = parts;
                t
            },
            |index, error| {
                let mut r = ListOffsetsPartitionResponse::default();
                r.partition_index = index;
                r.error_code = error;
                r.offset = -1;
                r.timestamp = -1;
                r
            },
        ));
    }

    // ---- Metadata: only describable topics are listed; a named topic the
    // caller may not describe, or that would have to be created without
    // Create, is answered TOPIC_AUTHORIZATION_FAILED.

    pub fn metadata(&self, req: &mut MetadataRequest) -> Vec<TopicName> {
        let mut refused = Vec::new();
        if !self.on() {
            return refused;
        }
        let auto = req.allow_auto_topic_creation && self.broker.config.auto_create_topics_enable;
        if let Some(topics) = &mut req.topics {
            topics.retain(|t| {
                let Some(name) = &t.name else { return true };
                let n = name.0.as_str();
                let ok = self.topic(Operation::Describe, n)
                    && (self.broker.store.topic(n).is_some() || !auto || self.may_create(n));
                if !ok {
                    refused.push(name.clone());
                }
                ok
            });
        }
        refused
    }

    pub fn answer_metadata(&self, resp: &mut MetadataResponse, refused: Vec<TopicName>) {
        if !self.on() {
            return;
        }
        resp.topics.retain(|t| {
            t.name
                .as_ref()
                .is_none_or(|n| self.topic(Operation::Describe, n.0.as_str()))
        });
        for name in refused {
            let mut t = MetadataResponseTopic::default();
            t.name = Some(name);
            t.error_code = code(TOPIC_DENIED);
            resp.topics.push(t);
        }
    }

    // ---- Topic administration.

    pub fn create_topics(&self, req: &mut CreateTopicsRequest) -> Vec<TopicName> {
        if !self.on() {
            return Vec::new();
        }
        let (keep, out): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
            .into_iter()
            .partition(|t| self.may_create(t.name.0.as_str()));
        req.topics = keep;
        out.into_iter().map(|t| t.name).collect()
    }

    pub fn answer_create_topics(resp: &mut CreateTopicsResponse, refused: Vec<TopicName>) {
        for name in refused {
            let mut r = CreatableTopicResult::default();
            r.name = name;
            r.error_code = code(TOPIC_DENIED);
            r.error_message = Some(str_bytes("not authorized to create this topic"));
            r.num_partitions = -1;
            r.replication_factor = -1;
            resp.topics.push(r);
        }
    }

    pub fn delete_topics(&self, req: &mut DeleteTopicsRequest) -> Vec<DeletableTopicResult> {
        let mut out = Vec::new();
        if !self.on() {
            return out;
        }
        let name_of = |name: &Option<TopicName>, id: &uuid::Uuid| -> Option<String> {
            match name {
                Some(n) => Some(n.0.as_str().to_string()),
                None => self
                    .broker
                    .store
                    .topic_by_id(id)
                    .map(|t| t.record.name.clone()),
            }
        };
        let mut refuse = |name: Option<TopicName>, id: uuid::Uuid| {
            let mut r = DeletableTopicResult::default();
            r.name = name;
            r.topic_id = id;
            r.error_code = code(TOPIC_DENIED);
            out.push(r);
        };
        req.topics.retain(|t| {
            let ok = name_of(&t.name, &t.topic_id)
                .is_some_and(|n| self.topic(Operation::Delete, &n))
                || (t.name.is_none() && self.broker.store.topic_by_id(&t.topic_id).is_none());
            if !ok {
                refuse(t.name.clone(), t.topic_id);
            }
            ok
        });
        req.topic_names.retain(|n| {
            let ok = self.topic(Operation::Delete, n.0.as_str());
            if !ok {
                refuse(Some(n.clone()), uuid::Uuid::nil());
            }
            ok
        });
        out
    }

    pub fn create_partitions(&self, req: &mut CreatePartitionsRequest) -> Vec<TopicName> {
        if !self.on() {
            return Vec::new();
        }
        let (keep, out): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
            .into_iter()
            .partition(|t| self.topic(Operation::Alter, t.name.0.as_str()));
        req.topics = keep;
        out.into_iter().map(|t| t.name).collect()
    }

    pub fn answer_create_partitions(resp: &mut CreatePartitionsResponse, refused: Vec<TopicName>) {
        for name in refused {
            let mut r = CreatePartitionsTopicResult::default();
            r.name = name;
            r.error_code = code(TOPIC_DENIED);
            resp.results.push(r);
        }
    }

    pub fn delete_records(&self, req: &mut DeleteRecordsRequest) -> Refused {
        self.refuse_topics(&mut req.topics, Operation::Delete)
    }

    pub fn answer_delete_records(resp: &mut DeleteRecordsResponse, refused: Refused) {
        resp.topics.extend(refused.answer(
            |name, parts| {
                let mut t = DeleteRecordsTopicResult::default();
                t.name = name;
                t.partitions = parts;
                t
            },
            |index, error| {
                let mut r = DeleteRecordsPartitionResult::default();
                r.partition_index = index;
                r.low_watermark = -1;
                r.error_code = error;
                r
            },
        ));
    }

    // ---- Configs: topics by their name, the broker as the cluster.

    /// Whether `op` is allowed on a config resource; the error if not.
    fn config_resource(
        &self,
        op: Operation,
        resource_type: i8,
        name: &str,
    ) -> Option<ResponseError> {
        match resource_type {
            2 => (!self.topic(op, name)).then_some(TOPIC_DENIED),
            4 | 8 => (!self.cluster(op)).then_some(CLUSTER_DENIED),
            _ => None,
        }
    }

    /// Takes the config resources the caller may not `op` out of
    /// `resources`; `refusal(type, name, error)` answers each.
    fn refuse_resources<T, R>(
        &self,
        resources: &mut Vec<T>,
        op: Operation,
        id: impl Fn(&T) -> (i8, &StrBytes),
        refusal: impl Fn(i8, StrBytes, i16) -> R,
    ) -> Vec<R> {
        let mut out = Vec::new();
        if !self.on() {
            return out;
        }
        resources.retain(|r| {
            let (t, name) = id(r);
            match self.config_resource(op, t, name.as_str()) {
                None => true,
                Some(e) => {
                    out.push(refusal(t, name.clone(), code(e)));
                    false
                }
            }
        });
        out
    }

    pub fn describe_configs(&self, req: &mut DescribeConfigsRequest) -> Vec<DescribeConfigsResult> {
        self.refuse_resources(
            &mut req.resources,
            Operation::DescribeConfigs,
            |r| (r.resource_type, &r.resource_name),
            |t, name, error| {
                let mut d = DescribeConfigsResult::default();
                d.resource_type = t;
                d.resource_name = name;
                d.error_code = error;
                d.error_message = Some(str_bytes("not authorized"));
                d
            },
        )
    }

    pub fn alter_configs(
        &self,
        req: &mut IncrementalAlterConfigsRequest,
    ) -> Vec<AlterConfigsResourceResponse> {
        self.refuse_resources(
            &mut req.resources,
            Operation::AlterConfigs,
            |r| (r.resource_type, &r.resource_name),
            |t, name, error| {
                let mut d = AlterConfigsResourceResponse::default();
                d.resource_type = t;
                d.resource_name = name;
                d.error_code = error;
                d.error_message = Some(str_bytes("not authorized"));
                d
            },
        )
    }

    // ---- Producer ids: a transactional id needs Write on it; an
    // idempotent producer needs IdempotentWrite on the cluster or, as
    // since Kafka 3.0 (KIP-679), Write on some topic.

    pub fn init_producer_id(&self, req: &InitProducerIdRequest) -> Option<ResponseError> {
        if !self.on() {
            return None;
        }
        match &req.transactional_id {
            Some(tid) => (!self.authz.allows(
                self.caller,
                Operation::Write,
                ResourceType::TransactionalId,
                tid.0.as_str(),
            ))
            .then_some(ResponseError::TransactionalIdAuthorizationFailed),
            None => {
                let any_topic_write = || {
                    self.broker
                        .store
                        .topics()
                        .iter()
                        .any(|t| self.topic(Operation::Write, &t.record.name))
                        || self.topic(Operation::Write, "*")
                };
                (!(self.cluster(Operation::IdempotentWrite) || any_topic_write()))
                    .then_some(CLUSTER_DENIED)
            }
        }
    }

    // ---- Groups: Describe to find the coordinator, Read to be a member
    // and commit, Describe to read offsets and describe, Delete to delete.

    /// The FindCoordinator keys the caller may not describe.
    pub fn find_coordinator(&self, req: &FindCoordinatorRequest, version: i16) -> HashSet<String> {
        if !self.on() {
            return HashSet::new();
        }
        let resource = if req.key_type == 0 {
            ResourceType::Group
        } else {
            ResourceType::TransactionalId
        };
        let keys: Vec<&StrBytes> = if version >= 4 {
            req.coordinator_keys.iter().collect()
        } else {
            vec![&req.key]
        };
        keys.into_iter()
            .filter(|k| {
                !self
                    .authz
                    .allows(self.caller, Operation::Describe, resource, k.as_str())
            })
            .map(|k| k.as_str().to_string())
            .collect()
    }

    pub fn answer_find_coordinator(
        resp: &mut FindCoordinatorResponse,
        refused: &HashSet<String>,
        key_type: i8,
    ) {
        if refused.is_empty() {
            return;
        }
        let e = if key_type == 0 {
            GROUP_DENIED
        } else {
            ResponseError::TransactionalIdAuthorizationFailed
        };
        let deny =
            |error_code: &mut i16, node: &mut BrokerId, host: &mut StrBytes, port: &mut i32| {
                *error_code = code(e);
                *node = BrokerId(-1);
                *host = StrBytes::default();
                *port = -1;
            };
        if resp.coordinators.is_empty() {
            deny(
                &mut resp.error_code,
                &mut resp.node_id,
                &mut resp.host,
                &mut resp.port,
            );
            resp.error_message = None;
        }
        for c in resp.coordinators.iter_mut() {
            if refused.contains(c.key.as_str()) {
                deny(&mut c.error_code, &mut c.node_id, &mut c.host, &mut c.port);
                c.error_message = Some(str_bytes("not authorized to describe this group"));
            }
        }
    }

    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED unless the caller may `op` the
    /// transactional id.
    pub fn txn_error(&self, op: Operation, id: &str) -> Option<ResponseError> {
        (self.on()
            && !self
                .authz
                .allows(self.caller, op, ResourceType::TransactionalId, id))
        .then_some(ResponseError::TransactionalIdAuthorizationFailed)
    }

    /// TOPIC_AUTHORIZATION_FAILED unless the caller may `op` the topic.
    pub fn topic_error(&self, op: Operation, topic: &str) -> Option<ResponseError> {
        (self.on() && !self.topic(op, topic)).then_some(TOPIC_DENIED)
    }

    /// GROUP_AUTHORIZATION_FAILED unless the caller may `op` the group.
    pub fn group_error(&self, op: Operation, group: &str) -> Option<ResponseError> {
        (self.on() && !self.group(op, group)).then_some(GROUP_DENIED)
    }

    /// OffsetCommit: Read on the group (checked by the caller) and on each
    /// topic.
    pub fn offset_commit(&self, req: &mut OffsetCommitRequest) -> Refused {
        self.refuse_topics(&mut req.topics, Operation::Read)
    }

    pub fn answer_offset_commit(resp: &mut OffsetCommitResponse, refused: Refused) {
        resp.topics.extend(refused.answer(
            |name, parts| {
                let mut t = OffsetCommitResponseTopic::default();
                t.name = name;
                t.partitions = parts;
                t
            },
            |index, error| {
                let mut r = OffsetCommitResponsePartition::default();
                r.partition_index = index;
                r.error_code = error;
                r
            },
        ));
    }

    /// OffsetCommit refused as a whole: every partition gets `e`.
    pub fn refuse_offset_commit(
        mut req: OffsetCommitRequest,
        e: ResponseError,
    ) -> OffsetCommitResponse {
        let mut refused = Refused::default();
        Self::take_out(&mut req.topics, |_| false, &mut refused, e);
        let mut resp = OffsetCommitResponse::default();
        Self::answer_offset_commit(&mut resp, refused);
        resp
    }

    /// OffsetFetch: Describe on each group; committed offsets only of
    /// topics the caller may describe.
    pub fn offset_fetch(
        &self,
        req: &mut OffsetFetchRequest,
        version: i16,
    ) -> Option<OffsetFetchResponse> {
        if !self.on() {
            return None;
        }
        if version < 8 {
            if let Some(e) = self.group_error(Operation::Describe, req.group_id.0.as_str()) {
                let mut resp = OffsetFetchResponse::default();
                resp.error_code = code(e);
                return Some(resp);
            }
            return None;
        }
        let mut refused = OffsetFetchResponse::default();
        req.groups.retain(
            |g| match self.group_error(Operation::Describe, g.group_id.0.as_str()) {
                None => true,
                Some(e) => {
                    let mut gr = OffsetFetchResponseGroup::default();
                    gr.group_id = g.group_id.clone();
                    gr.error_code = code(e);
                    refused.groups.push(gr);
                    false
                }
            },
        );
        Some(refused)
    }

    pub fn answer_offset_fetch(
        &self,
        resp: &mut OffsetFetchResponse,
        refused: Option<OffsetFetchResponse>,
    ) {
        if !self.on() {
            return;
        }
        // Offsets of topics the caller may not describe are left out (an
        // asked-for one is answered TOPIC_AUTHORIZATION_FAILED).
        let mut denied_v7 = Vec::new();
        resp.topics.retain(|t| {
            let ok = self.topic(Operation::Describe, t.name.0.as_str());
            if !ok {
                denied_v7.push(t.clone());
            }
            ok
        });
        for mut t in denied_v7 {
            for p in t.partitions.iter_mut() {
                p.committed_offset = -1;
                p.metadata = None;
                p.error_code = code(TOPIC_DENIED);
            }
            resp.topics.push(t);
        }
        for g in resp.groups.iter_mut() {
            for t in g.topics.iter_mut() {
                if !self.topic(Operation::Describe, t.name.0.as_str()) {
                    for p in t.partitions.iter_mut() {
                        p.committed_offset = -1;
                        p.metadata = None;
                        p.error_code = code(TOPIC_DENIED);
                    }
                }
            }
        }
        if let Some(r) = refused {
            resp.groups.extend(r.groups);
        }
    }

    pub fn list_groups(&self, resp: &mut ListGroupsResponse) {
        if self.on() && !self.cluster(Operation::Describe) {
            resp.groups
                .retain(|g| self.group(Operation::Describe, g.group_id.0.as_str()));
        }
    }

    pub fn describe_groups(&self, req: &mut DescribeGroupsRequest) -> Vec<DescribedGroup> {
        let mut out = Vec::new();
        if !self.on() {
            return out;
        }
        req.groups.retain(|g| {
            let ok = self.group(Operation::Describe, g.0.as_str());
            if !ok {
                let mut d = DescribedGroup::default();
                d.group_id = g.clone();
                d.error_code = code(GROUP_DENIED);
                out.push(d);
            }
            ok
        });
        out
    }

    pub fn delete_groups(&self, req: &mut DeleteGroupsRequest) -> Vec<DeletableGroupResult> {
        let mut out = Vec::new();
        if !self.on() {
            return out;
        }
        req.groups_names.retain(|g| {
            let ok = self.group(Operation::Delete, g.0.as_str());
            if !ok {
                let mut d = DeletableGroupResult::default();
                d.group_id = g.clone();
                d.error_code = code(GROUP_DENIED);
                out.push(d);
            }
            ok
        });
        out
    }

    /// OffsetDelete: Delete on the group (checked by the caller), Read on
    /// each topic.
    pub fn offset_delete(&self, req: &mut OffsetDeleteRequest) -> Refused {
        self.refuse_topics(&mut req.topics, Operation::Read)
    }

    pub fn answer_offset_delete(resp: &mut OffsetDeleteResponse, refused: Refused) {
        resp.topics.extend(refused.answer(
            |name, parts| {
                let mut t = OffsetDeleteResponseTopic::default();
                t.name = name;
                t.partitions = parts;
                t
            },
            |index, error| {
                let mut r = OffsetDeleteResponsePartition::default();
                r.partition_index = index;
                r.error_code = error;
                r
            },
        ));
    }

    /// OffsetForLeaderEpoch: Describe on each topic.
    pub fn offset_for_leader_epoch(&self, req: &mut OffsetForLeaderEpochRequest) -> Refused {
        self.refuse_topics(&mut req.topics, Operation::Describe)
    }

    pub fn answer_offset_for_leader_epoch(
        resp: &mut OffsetForLeaderEpochResponse,
        refused: Refused,
    ) {
        resp.topics.extend(refused.answer(
            |name, parts| {
                let mut t = OffsetForLeaderTopicResult::default();
                t.topic = name;
                t.partitions = parts;
                t
            },
            |index, error| {
                let mut r = EpochEndOffset::default();
                r.partition = index;
                r.error_code = error;
                r.leader_epoch = -1;
                r.end_offset = -1;
                r
            },
        ));
    }

    /// CLUSTER_AUTHORIZATION_FAILED unless the caller may `op` the cluster
    /// (DescribeCluster, the ACL APIs).
    pub fn cluster_error(&self, op: Operation) -> Option<ResponseError> {
        (self.on() && !self.cluster(op)).then_some(CLUSTER_DENIED)
    }
}
