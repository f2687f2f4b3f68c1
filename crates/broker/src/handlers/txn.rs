//! The transaction APIs on the wire: InitProducerId with a transactional
//! id, AddPartitionsToTxn (the client versions, 0-3), AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn, DescribeTransactions and ListTransactions, each
//! authorized as Kafka does (Write on the transactional id; Write on the
//! topics added; Read on the group whose offsets are committed; Describe
//! to see a transaction) and answered by [`crate::transactions`].

use super::{code, str_bytes};
use crate::security::acl::Operation;
use crate::security::guard::Guard;
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use sluice_catalog::{TxnOffset, TxnRecord};
use std::collections::BTreeMap;

fn err_code(r: Result<(), ResponseError>) -> i16 {
    match r {
        Ok(()) => 0,
        Err(e) => code(e),
    }
}

/// Partitions refused on their own (not authorized, unknown), by topic.
type Refusals = BTreeMap<(TopicName, i32), ResponseError>;

/// A partition's answer: its own refusal, else the request's result.
fn partition_code(
    own: &Refusals,
    topic: &TopicName,
    p: i32,
    result: Result<(), ResponseError>,
) -> i16 {
    match own.get(&(topic.clone(), p)) {
        Some(e) => code(*e),
        None => err_code(result),
    }
}

/// InitProducerId for a transactional producer.
pub async fn init_producer_id(
    broker: &Broker,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    let id = req
        .transactional_id
        .as_ref()
        .map(|t| t.0.as_str())
        .unwrap_or_default();
    match broker
        .txns
        .init_producer(
            id,
            req.transaction_timeout_ms,
            req.producer_id.0,
            req.producer_epoch,
        )
        .await
    {
        Ok((pid, epoch)) => {
            resp.producer_id = ProducerId(pid);
            resp.producer_epoch = epoch;
        }
        Err(e) => resp.error_code = code(e),
    }
    resp
}

/// AddPartitionsToTxn v0-3: every partition gets the transaction's answer,
/// or its own refusal (unknown, not authorized) with the others
/// OPERATION_NOT_ATTEMPTED, as Kafka answers.
pub async fn add_partitions(
    broker: &Broker,
    guard: &Guard<'_>,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let id = req.v3_and_below_transactional_id.0.as_str();
    let mut own = Refusals::new();
    let mut wanted = Vec::new();
    let whole = guard.txn_error(Operation::Write, id);
    for t in &req.v3_and_below_topics {
        let name = t.name.0.as_str();
        let denied = guard.topic_error(Operation::Write, name);
        let topic = broker.store.topic(name);
        for p in &t.partitions {
            let e = whole.or(denied).or_else(|| {
                topic
                    .as_ref()
                    .and_then(|top| top.partition(*p))
                    .is_none()
                    .then_some(ResponseError::UnknownTopicOrPartition)
            });
            match e {
                Some(e) => {
                    own.insert((t.name.clone(), *p), e);
                }
                None => wanted.push((name.to_string(), *p)),
            }
        }
    }
    let result = if own.is_empty() {
        broker
            .txns
            .add_partitions(
                id,
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                &wanted,
            )
            .await
    } else {
        Err(ResponseError::OperationNotAttempted)
    };
    let mut resp = AddPartitionsToTxnResponse::default();
    for t in req.v3_and_below_topics {
        let mut tr = AddPartitionsToTxnTopicResult::default();
        for p in &t.partitions {
            let mut pr = AddPartitionsToTxnPartitionResult::default();
            pr.partition_index = *p;
            pr.partition_error_code = partition_code(&own, &t.name, *p, result);
            tr.results_by_partition.push(pr);
        }
        tr.name = t.name;
        resp.results_by_topic_v3_and_below.push(tr);
    }
    resp
}

pub async fn add_offsets(
    broker: &Broker,
    guard: &Guard<'_>,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = req.transactional_id.0.as_str();
    let group = req.group_id.0.as_str();
    let mut resp = AddOffsetsToTxnResponse::default();
    let refused = guard
        .txn_error(Operation::Write, id)
        .or_else(|| guard.group_error(Operation::Read, group));
    resp.error_code = match refused {
        Some(e) => code(e),
        None => err_code(
            broker
                .txns
                .add_offsets(id, req.producer_id.0, req.producer_epoch, group)
                .await,
        ),
    };
    resp
}

pub async fn txn_offset_commit(
    broker: &Broker,
    guard: &Guard<'_>,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let id = req.transactional_id.0.as_str();
    let group = req.group_id.0.as_str();
    let whole = guard
        .txn_error(Operation::Write, id)
        .or_else(|| guard.group_error(Operation::Read, group));
    let mut own = Refusals::new();
    let mut offsets = Vec::new();
    for t in &req.topics {
        let denied = guard.topic_error(Operation::Read, t.name.0.as_str());
        for p in &t.partitions {
            let metadata_too_long = p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > 4096)
                .then_some(ResponseError::OffsetMetadataTooLarge);
            match whole.or(denied).or(metadata_too_long) {
                Some(e) => {
                    own.insert((t.name.clone(), p.partition_index), e);
                }
                None => offsets.push(TxnOffset {
                    group: group.to_string(),
                    topic: t.name.0.as_str().to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.as_str().to_string()),
                }),
            }
        }
    }
    let result = if offsets.is_empty() {
        Ok(())
    } else {
        broker
            .txns
            .commit_offsets(id, req.producer_id.0, req.producer_epoch, group, offsets)
            .await
    };
    let mut resp = TxnOffsetCommitResponse::default();
    for t in req.topics {
        let mut tr = TxnOffsetCommitResponseTopic::default();
        for p in &t.partitions {
            let mut pr = TxnOffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = partition_code(&own, &t.name, p.partition_index, result);
            tr.partitions.push(pr);
        }
        tr.name = t.name;
        resp.topics.push(tr);
    }
    resp
}

pub async fn end_txn(broker: &Broker, guard: &Guard<'_>, req: EndTxnRequest) -> EndTxnResponse {
    let id = req.transactional_id.0.as_str();
    let mut resp = EndTxnResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    resp.error_code = match guard.txn_error(Operation::Write, id) {
        Some(e) => code(e),
        None => err_code(
            broker
                .txns
                .end_txn(id, req.producer_id.0, req.producer_epoch, req.committed)
                .await,
        ),
    };
    resp
}

fn topics_of(t: &TxnRecord) -> Vec<TopicData> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, p) in &t.partitions {
        by_topic.entry(topic).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut d = TopicData::default();
            d.topic = TopicName(str_bytes(topic));
            d.partitions = partitions;
            d
        })
        .collect()
}

/// DescribeTransactions: answered by any broker (in a cluster from the
/// catalog), not only the coordinator.
pub async fn describe(
    broker: &Broker,
    guard: &Guard<'_>,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut resp = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let mut s = describe_transactions_response::TransactionState::default();
        let refused = guard.txn_error(Operation::Describe, id.0.as_str());
        let found = match refused {
            Some(_) => Ok(None),
            None => broker.txns.describe(id.0.as_str()).await,
        };
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                s.error_code = code(e);
                s.producer_id = ProducerId(-1);
                s.transactional_id = id;
                resp.transaction_states.push(s);
                continue;
            }
        };
        match (refused, found) {
            (Some(e), _) => s.error_code = code(e),
            (None, None) => s.error_code = code(ResponseError::TransactionalIdNotFound),
            (None, Some(t)) => {
                s.transaction_state = str_bytes(t.state.name());
                s.transaction_timeout_ms = t.timeout_ms;
                s.transaction_start_time_ms = t.started_ms;
                s.producer_id = ProducerId(t.producer_id);
                s.producer_epoch = t.epoch;
                s.topics = topics_of(&t);
            }
        }
        s.producer_id = if s.error_code != 0 {
            ProducerId(-1)
        } else {
            s.producer_id
        };
        s.transactional_id = id;
        resp.transaction_states.push(s);
    }
    resp
}

/// ListTransactions: the transactions this broker coordinates (the admin
/// client asks every broker) that the caller may describe, filtered by
/// state, producer id, how long they have run (v1) and id pattern (v2).
pub async fn list(
    broker: &Broker,
    guard: &Guard<'_>,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut resp = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for f in &req.state_filters {
        match sluice_catalog::TxnState::from_name(f.as_str()) {
            Some(s) => states.push(s),
            None => resp.unknown_state_filters.push(f.clone()),
        }
    }
    let pattern = match req.transactional_id_pattern.as_ref().map(|p| p.as_str()) {
        None | Some("") => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(r) => Some(r),
            Err(_) => {
                resp.error_code = code(ResponseError::InvalidRegularExpression);
                return resp;
            }
        },
    };
    let now = sluice_catalog::now_ms();
    let all = match broker.txns.list().await {
        Ok(all) => all,
        Err(e) => {
            resp.error_code = code(e);
            return resp;
        }
    };
    for t in all {
        let keep = (req.state_filters.is_empty() || states.contains(&t.state))
            && (req.producer_id_filters.is_empty()
                || req.producer_id_filters.iter().any(|p| p.0 == t.producer_id))
            && (req.duration_filter < 0
                || (t.started_ms >= 0 && now - t.started_ms >= req.duration_filter))
            && pattern
                .as_ref()
                .is_none_or(|r| r.is_match(&t.transactional_id))
            && guard
                .txn_error(Operation::Describe, &t.transactional_id)
                .is_none();
        if keep {
            let mut s = list_transactions_response::TransactionState::default();
            s.transactional_id = TransactionalId(str_bytes(t.transactional_id.clone()));
            s.producer_id = ProducerId(t.producer_id);
            s.transaction_state = str_bytes(t.state.name());
            resp.transaction_states.push(s);
        }
    }
    resp
}
