//! [`ProducerStore`]: producer id allocation and the idempotent-producer
//! state saved with uploads and flushes.

use super::Catalog;
use crate::sql::{read, write};
use crate::{
    CatalogError, PartitionTxns, ProducerBatch, ProducerStateRecord, ProducerStore, Result,
};

impl ProducerStore for Catalog {
    fn producer_states(&self) -> Result<Vec<ProducerStateRecord>> {
        let rows = read(&*self.db, |tx| {
            tx.query(
                "SELECT topic_id, partition, producer_id, epoch, batches FROM producer_state",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let batches: Vec<ProducerBatch> = serde_json::from_str(&r.text(4)?)
                    .map_err(|e| CatalogError::Corrupt(format!("producer state: {e}")))?;
                Ok(ProducerStateRecord {
                    topic: r.uuid(0)?,
                    partition: r.int32(1)?,
                    producer_id: r.int(2)?,
                    epoch: i16::try_from(r.int(3)?)
                        .map_err(|_| CatalogError::Corrupt("producer epoch".into()))?,
                    batches,
                })
            })
            .collect()
    }

    fn partition_txns(&self) -> Result<Vec<PartitionTxns>> {
        super::txns::load_partition_txns(self)
    }

    fn allocate_producer_id(&self) -> Result<i64> {
        write(&*self.db, |tx| {
            tx.query_opt(
                "INSERT INTO counters (name, value) VALUES ('producer_id', 1000)
                 ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
                &[],
            )?
            .ok_or_else(|| CatalogError::Corrupt("no producer id returned".into()))?
            .int(0)
        })
    }
}
