//! InitProducerId for idempotent producers: a fresh id from the catalog, or
//! the same id with a bumped epoch when the client asks for one (KIP-360).
//! Transactional ids are refused: transactions are not supported yet.

use super::code;
use crate::Broker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

pub async fn handle(broker: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req.transactional_id.is_some() {
        tracing::warn!(
            "refusing InitProducerId with a transactional id: transactions are not supported"
        );
        resp.error_code = code(ResponseError::TransactionalIdAuthorizationFailed);
        return resp;
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        return resp;
    }
    let catalog = broker.catalog.clone();
    match tokio::task::spawn_blocking(move || {
        sluice_catalog::ProducerStore::allocate_producer_id(&*catalog)
    })
    .await
    {
        Ok(Ok(id)) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "producer id allocation failed");
            resp.error_code = code(ResponseError::KafkaStorageError);
        }
        Err(e) => {
            tracing::error!(error = %e, "producer id allocation task failed");
            resp.error_code = code(ResponseError::KafkaStorageError);
        }
    }
    resp
}
