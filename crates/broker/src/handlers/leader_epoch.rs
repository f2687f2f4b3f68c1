//! Leader epochs (KIP-320) and OffsetForLeaderEpoch. Sluice's partitions
//! live in shared storage and are never truncated: any broker serves them
//! and a log never diverges, so every partition has one leader epoch,
//! [`LEADER_EPOCH`], for its whole life, told the same way in Metadata,
//! ListOffsets and OffsetForLeaderEpoch. A client that validates its
//! position (librdkafka, franz-go) asks for the end offset of that epoch and
//! gets the log end: nothing to truncate. A request naming a newer epoch
//! than the partition's gets UNKNOWN_LEADER_EPOCH, an older one
//! FENCED_LEADER_EPOCH, as Kafka answers.

use super::code;
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

/// The leader epoch of every partition.
pub const LEADER_EPOCH: i32 = 0;

/// The error for a request's `current_leader_epoch` (-1: not given).
pub fn check_current(current_leader_epoch: i32) -> Option<ResponseError> {
    match current_leader_epoch {
        e if e < 0 || e == LEADER_EPOCH => None,
        e if e > LEADER_EPOCH => Some(ResponseError::UnknownLeaderEpoch),
        _ => Some(ResponseError::FencedLeaderEpoch),
    }
}

pub fn handle(broker: &Broker, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        let topic = broker.store.topic(t.topic.0.as_str());
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            match topic.as_ref().and_then(|t| t.partition(p.partition)) {
                None => e.error_code = code(ResponseError::UnknownTopicOrPartition),
                Some(part) => match check_current(p.current_leader_epoch) {
                    Some(err) => e.error_code = code(err),
                    // The epoch asked for is the partition's (or a later
                    // one, which ends where the log ends too); none before.
                    None if p.leader_epoch >= LEADER_EPOCH => {
                        e.leader_epoch = LEADER_EPOCH;
                        e.end_offset = part.offsets().1;
                    }
                    None => {}
                },
            }
            tr.partitions.push(e);
        }
        resp.topics.push(tr);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_epochs() {
        assert_eq!(check_current(-1), None);
        assert_eq!(check_current(LEADER_EPOCH), None);
        assert_eq!(
            check_current(LEADER_EPOCH + 1),
            Some(ResponseError::UnknownLeaderEpoch)
        );
    }
}
