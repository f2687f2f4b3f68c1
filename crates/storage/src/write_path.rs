//! The seam between the storage facade and how produced batches become
//! durable. Two implementations, chosen once at start-up by the catalog
//! (the `--catalog` URL): [`crate::embedded::EmbeddedWrites`] (a local
//! write-ahead log, offsets assigned in memory, background uploads to
//! objects) and [`crate::cluster::ClusterWrites`] (flushes straight to the
//! shared object store, offsets assigned by the catalog's commit).

use crate::log::{AppendError, AppendOutcome, LogStore};
use crate::partition::PartitionLog;
use futures::future::BoxFuture;
use sluice_protocol::batch::CheckedBatch;
use std::sync::Arc;
use tokio::sync::watch;

/// An append whose batches are queued on the write path, in call order.
pub struct PendingAppend(pub(crate) BoxFuture<'static, Result<AppendOutcome, AppendError>>);

impl PendingAppend {
    /// Second half of an append: resolves once the data is durable.
    pub async fn wait(self) -> Result<AppendOutcome, AppendError> {
        self.0.await
    }
}

/// Where produced batches go to become durable.
pub(crate) trait WritePath: Send + Sync + 'static {
    /// Queues `batches` for `p` (their bytes already budgeted), keeping the
    /// order of calls; `log_append_time` (>= 0) stamps them with the
    /// broker's time. Returns the pending append (or why it was refused)
    /// and the bytes now on their way to objects, whose budget comes back
    /// through [`LogStore::release_upload_budget`] once they are there.
    fn submit(
        &self,
        store: &LogStore,
        p: &Arc<PartitionLog>,
        batches: Vec<CheckedBatch>,
        log_append_time: i64,
    ) -> (Result<PendingAppend, AppendError>, usize);

    /// Runs the background work (uploads, or flushes and their commits)
    /// until `shutdown` turns true, finishing what was queued before it.
    fn run(
        self: Arc<Self>,
        store: Arc<LogStore>,
        shutdown: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()>;

    /// A deleted topic's partitions dropped `freed` bytes that were on
    /// their way to objects.
    fn forget(&self, freed: usize);

    /// Stops taking appends and finishes what is queued (blocking).
    fn shutdown(&self);
}
