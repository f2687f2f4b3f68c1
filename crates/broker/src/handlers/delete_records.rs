//! DeleteRecords: moves partitions' log start offsets forward (`-1` means
//! the high watermark); whole objects before it are collected later.

use super::code;
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use sluice_storage::ReadError;

pub async fn handle(broker: &Broker, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        let topic = broker.store.topic(t.name.0.as_str());
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                None => pr.error_code = code(ResponseError::UnknownTopicOrPartition),
                Some(part) => match broker.store.delete_records(part, p.offset).await {
                    Ok(low) => pr.low_watermark = low,
                    Err(ReadError::OffsetOutOfRange { .. }) => {
                        pr.error_code = code(ResponseError::OffsetOutOfRange)
                    }
                    Err(ReadError::Storage(e)) => {
                        tracing::error!(error = %e, "delete records failed");
                        pr.error_code = code(ResponseError::KafkaStorageError);
                    }
                },
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
