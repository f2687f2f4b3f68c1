//! ListOffsets: earliest (-2), latest (-1: the high watermark, or for
//! `isolation_level` read_committed the last stable offset) and by
//! timestamp (the first record at or after it, exact to the record).

use super::code;
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub async fn handle(broker: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        let topic = broker.store.topic(t.name.0.as_str());
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            if version >= 4 {
                pr.leader_epoch = super::leader_epoch::LEADER_EPOCH;
            }
            let Some(part) = topic.as_ref().and_then(|t| t.partition(p.partition_index)) else {
                pr.error_code = code(ResponseError::UnknownTopicOrPartition);
                tr.partitions.push(pr);
                continue;
            };
            if let Some(e) = super::leader_epoch::check_current(p.current_leader_epoch) {
                pr.error_code = code(e);
                tr.partitions.push(pr);
                continue;
            }
            let (log_start, hw) = part.offsets();
            match p.timestamp {
                LATEST if req.isolation_level == 1 => pr.offset = part.last_stable_offset(),
                LATEST => pr.offset = hw,
                EARLIEST => pr.offset = log_start,
                ts if ts >= 0 => match broker.store.offset_for_timestamp(part, ts).await {
                    Ok(Some((offset, found))) => {
                        pr.offset = offset;
                        pr.timestamp = found;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "timestamp lookup failed");
                        pr.error_code = code(ResponseError::KafkaStorageError);
                    }
                },
                _ => pr.error_code = code(ResponseError::InvalidRequest),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
