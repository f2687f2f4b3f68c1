//! Opening the object store named by `--object-store`: `file:///path` (the
//! default is a folder in the data directory) or `s3://bucket/prefix` for any
//! S3-compatible bucket, configured from the standard `AWS_*` variables
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, ...) and/or explicit options
//! from the config file. A missing bucket or bad credentials fail at start-up
//! with a message naming the problem.

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    #[error("object store URL '{0}' is not understood: use file:///path or s3://bucket[/prefix]")]
    Unsupported(String),
    #[error("unknown S3 option '{0}'")]
    UnknownOption(String),
    #[error("cannot create the object directory {0}: {1}")]
    Dir(String, std::io::Error),
    #[error("object store {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// An opened object store and a printable description of it.
pub struct OpenedStore {
    pub store: Arc<dyn ObjectStore>,
    pub description: String,
}

/// Opens the object store for `url` (or the default under `data_dir`).
pub fn open(
    url: Option<&str>,
    data_dir: &Path,
    options: &BTreeMap<String, String>,
) -> Result<OpenedStore, StoreUrlError> {
    let default_url;
    let url = match url {
        Some(u) => u,
        None => {
            default_url = format!("file://{}", data_dir.join("objects").display());
            &default_url
        }
    };
    if let Some(path) = url.strip_prefix("file://") {
        std::fs::create_dir_all(path).map_err(|e| StoreUrlError::Dir(path.to_string(), e))?;
        let store = crate::local_direct::DirectLocalStore::new(path.into()).map_err(|source| {
            StoreUrlError::Store {
                url: url.to_string(),
                source,
            }
        })?;
        return Ok(OpenedStore {
            store: Arc::new(store),
            description: url.to_string(),
        });
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return Err(StoreUrlError::Unsupported(url.to_string()));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        // `from_env` reads AWS_ENDPOINT; the AWS CLI convention is AWS_ENDPOINT_URL.
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            builder = builder.with_endpoint(endpoint);
        }
        if let Ok(region) = std::env::var("AWS_REGION") {
            builder = builder.with_region(region);
        }
        for (k, v) in options {
            let key = AmazonS3ConfigKey::from_str(k)
                .map_err(|_| StoreUrlError::UnknownOption(k.clone()))?;
            builder = builder.with_config(key, v);
        }
        let s3 = builder.build().map_err(|source| StoreUrlError::Store {
            url: url.to_string(),
            source,
        })?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, prefix))
        };
        return Ok(OpenedStore {
            store,
            description: url.to_string(),
        });
    }
    Err(StoreUrlError::Unsupported(url.to_string()))
}

/// Proves the store is usable with working credentials by writing, reading
/// back and deleting a small probe object (a missing bucket, bad
/// credentials or a read-only store fail here, at start-up).
pub async fn check_access(opened: &OpenedStore) -> Result<(), StoreUrlError> {
    let fail = |source| StoreUrlError::Store {
        url: opened.description.clone(),
        source,
    };
    let probe = ObjectPath::from(format!(
        "sluice-access-check/{}",
        uuid::Uuid::new_v4().simple()
    ));
    opened
        .store
        .put(&probe, bytes::Bytes::from_static(b"sluice").into())
        .await
        .map_err(fail)?;
    opened.store.get(&probe).await.map_err(fail)?;
    opened.store.delete(&probe).await.map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_local_and_rejects_unknown_schemes() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(None, dir.path(), &BTreeMap::new()).unwrap();
        check_access(&opened).await.unwrap();
        assert!(dir.path().join("objects").is_dir());
        assert!(matches!(
            open(Some("gs://x"), dir.path(), &BTreeMap::new()),
            Err(StoreUrlError::Unsupported(_))
        ));
        let opts = BTreeMap::from([("no_such_option".to_string(), "1".to_string())]);
        assert!(matches!(
            open(Some("s3://bucket/p"), dir.path(), &opts),
            Err(StoreUrlError::UnknownOption(_))
        ));
    }
}
