//! Fault injection around the real object store, for tests and benchmarks:
//! on command every request fails, is delayed, hangs ("dropped") until the
//! fault is cleared, or waits a random time drawn from a latency model of a
//! real object store (PUTs and GETs each lognormal with a given median and
//! 99th percentile). Only wired in when the broker runs with
//! `SLUICE_FAULT_INJECTION=1`.

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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
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
    /// PUTs and GETs wait a lognormal time with these medians and 99th
    /// percentiles (other requests are not delayed).
    Latency {
        put_p50_ms: f64,
        put_p99_ms: f64,
        get_p50_ms: f64,
        get_p99_ms: f64,
    },
}

/// Which kind of request a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
    Other,
}

/// z of the 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874;

/// A draw from the lognormal distribution with median `p50` and 99th
/// percentile `p99` (milliseconds; `p99 <= p50` gives `p50` exactly).
fn lognormal_ms(p50: f64, p99: f64) -> f64 {
    if p50.is_nan() || p50 <= 0.0 {
        return 0.0;
    }
    let sigma = if p99 > p50 {
        (p99 / p50).ln() / Z99
    } else {
        0.0
    };
    // Box-Muller: one standard normal draw from two uniform ones.
    let (u1, u2) = (fastrand::f64().max(f64::MIN_POSITIVE), fastrand::f64());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    p50 * (sigma * z).exp()
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

    async fn apply(&self, op: Op) -> Result<()> {
        let mut rx = self.tx.subscribe();
        loop {
            let f = *rx.borrow_and_update();
            match f {
                Fault::Off => return Ok(()),
                Fault::Latency {
                    put_p50_ms,
                    put_p99_ms,
                    get_p50_ms,
                    get_p99_ms,
                } => {
                    let ms = match op {
                        Op::Put => lognormal_ms(put_p50_ms, put_p99_ms),
                        Op::Get => lognormal_ms(get_p50_ms, get_p99_ms),
                        Op::Other => 0.0,
                    };
                    if ms > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
                    }
                    return Ok(());
                }
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
        self.control.apply(Op::Put).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.control.apply(Op::Put).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.control.apply(Op::Get).await?;
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
                    control.apply(Op::Other).await?;
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
        self.control.apply(Op::Other).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.control.apply(Op::Other).await?;
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

    #[test]
    fn latency_model_has_its_median_and_tail() {
        let mut draws: Vec<f64> = (0..20_000).map(|_| lognormal_ms(100.0, 200.0)).collect();
        draws.sort_by(f64::total_cmp);
        let at = |q: f64| draws[(q * draws.len() as f64) as usize];
        assert!((90.0..110.0).contains(&at(0.5)), "p50 {}", at(0.5));
        assert!((175.0..225.0).contains(&at(0.99)), "p99 {}", at(0.99));
        assert_eq!(lognormal_ms(50.0, 10.0), 50.0, "no spread without a tail");
        assert_eq!(lognormal_ms(0.0, 10.0), 0.0);
    }
}
