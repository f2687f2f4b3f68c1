//! Fault injection around the real object store, for tests: on command every
//! request fails, is delayed, or hangs ("dropped") until the fault is
//! cleared. Only wired in when the broker runs with `SLUICE_FAULT_INJECTION=1`.

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What the wrapper does to each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Fault {
    #[default]
    Off,
    /// Every request fails at once.
    Fail,
    /// Every request waits this long first.
    Delay { delay_ms: u64 },
    /// Every request hangs until the fault changes.
    Drop,
}

/// Shared switch for a [`FaultyStore`].
#[derive(Debug, Clone)]
pub struct FaultControl {
    tx: Arc<watch::Sender<Fault>>,
}

impl Default for FaultControl {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::channel(Fault::Off).0),
        }
    }
}

impl FaultControl {
    pub fn set(&self, f: Fault) {
        self.tx.send_replace(f);
        tracing::warn!(fault = ?f, "object store fault injection changed");
    }

    pub fn get(&self) -> Fault {
        *self.tx.borrow()
    }

    async fn apply(&self) -> Result<()> {
        let mut rx = self.tx.subscribe();
        loop {
            let f = *rx.borrow_and_update();
            match f {
                Fault::Off => return Ok(()),
                Fault::Fail => {
                    return Err(object_store::Error::Generic {
                        store: "fault-injection",
                        source: "injected failure".into(),
                    })
                }
                Fault::Delay { delay_ms } => {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    return Ok(());
                }
                Fault::Drop => {
                    if rx.changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// An object store that obeys a [`FaultControl`] before each request.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    control: FaultControl,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, control: FaultControl) -> Self {
        Self { inner, control }
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.control.apply().await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.control.apply().await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.control.apply().await?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let control = self.control.clone();
        let inner = self.inner.clone();
        locations
            .then(move |loc| {
                let (control, inner) = (control.clone(), inner.clone());
                async move {
                    let loc = loc?;
                    control.apply().await?;
                    inner.delete(&loc).await?;
                    Ok(loc)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.control.apply().await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.control.apply().await?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn fails_delays_and_drops_on_command() {
        let control = FaultControl::default();
        let store = FaultyStore::new(Arc::new(InMemory::new()), control.clone());
        let p = Path::from("a");
        store
            .put(&p, bytes::Bytes::from_static(b"x").into())
            .await
            .unwrap();
        control.set(Fault::Fail);
        assert!(store.get(&p).await.is_err());
        control.set(Fault::Drop);
        let hung = tokio::time::timeout(Duration::from_millis(100), store.get(&p)).await;
        assert!(hung.is_err(), "dropped requests hang");
        let c2 = control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c2.set(Fault::Off);
        });
        assert!(
            store.get(&p).await.is_ok(),
            "a hung request proceeds once the fault clears"
        );
    }
}
