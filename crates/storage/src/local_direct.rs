//! The local-filesystem object store used by default. Reads, listings and
//! deletes go to `object_store`'s `LocalFileSystem`; writes are done here,
//! because that store neither makes objects durable (the WAL segments an
//! object replaces are deleted right after its upload, so the object must
//! survive a power loss) nor avoids the page cache (on the machines we
//! measured a buffered write cost four times the CPU of an `O_DIRECT` one).
//! A put writes a temporary file with `O_DIRECT` (falling back to buffered
//! I/O where unsupported), trims it to size, fsyncs it, renames it into
//! place and fsyncs the directory.
//!
//! Ranged reads (the read path's GETs) are done here too, with `O_DIRECT`
//! into an aligned buffer that becomes the returned `Bytes`: objects are
//! written past the page cache, so a buffered read would go to the disk in
//! the kernel's small read-ahead steps and then copy; a direct read is one
//! large request and no copy, and leaves the page cache to the WAL.
//!
//! Reads and writes share the disk with the WAL: each chunk of `READ_CHUNK`
//! or `WRITE_CHUNK` takes a turn of the disk lane (`crate::disk_lane`),
//! which bounds them at the disk and holds new ones back while the WAL
//! commits. An upload's chunks are urgent (producers wait for uploads once
//! the backlog is full), compaction's are background work.

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    Result,
};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use crate::read_buffers::{ReadBuffers, BLOCK};

/// Bytes one direct read request asks the disk for (see the module comment).
/// One request at a time, `dd iflag=direct` read 913 MB/s in 256 KiB
/// requests, 1.2 GB/s in 512 KiB and 1.3 GB/s in 1 MiB ones. In the
/// catch-up benchmark (interleaved runs of two rounds: twelve rounds of
/// 512 KiB, six of 256 KiB) 512 KiB chunks caught up at a median 911 MiB/s
/// (840-979) against 768 (704-803), with the same WAL commit p99 and a
/// median tail p99 of 5.9 ms for both (one 512 KiB round at 11 ms); 1 MiB
/// chunks gave two bad tail rounds (13 and 24 ms) in eight.
const READ_CHUNK: usize = 512 << 10;

/// Idle read buffers kept for reuse (a few read-ahead spans' worth).
const READ_BUFFERS_IDLE_BYTES: usize = 64 << 20;
/// Bytes per direct write, each a turn of the disk lane (a multiple of
/// BLOCK). `dd oflag=direct` wrote 1.5 GB/s in 512 KiB requests and 1.8 in
/// 1 MiB ones; smaller chunks make a WAL commit wait less (see disk_lane).
const WRITE_CHUNK: usize = 512 << 10;

#[derive(Debug)]
pub struct DirectLocalStore {
    root: PathBuf,
    inner: LocalFileSystem,
    buffers: Arc<ReadBuffers>,
}

impl DirectLocalStore {
    pub fn new(root: PathBuf) -> Result<Self> {
        let inner = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Self {
            root,
            inner,
            buffers: ReadBuffers::new(READ_BUFFERS_IDLE_BYTES),
        })
    }
}

impl std::fmt::Display for DirectLocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DirectLocalStore({})", self.root.display())
    }
}

fn io_err(path: &std::path::Path, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "DirectLocalStore",
        source: format!("{}: {e}", path.display()).into(),
    }
}

/// Writes `data` durably to `target` via a temporary file and a rename.
fn write_durably(target: &std::path::Path, data: &[u8], urgent: bool) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = target.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let direct = OpenOptions::new()
        .create_new(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&tmp);
    let result = (|| match direct {
        Ok(file) => {
            // Copied through one aligned window of at most WRITE_CHUNK bytes,
            // so a put holds no second copy of the whole object; each chunk
            // written in a turn of the disk lane.
            let window = data.len().min(WRITE_CHUNK).div_ceil(BLOCK) * BLOCK;
            let mut buf = vec![0u8; window + BLOCK];
            let start = buf.as_ptr().align_offset(BLOCK);
            let mut at = 0;
            while at < data.len() {
                let n = (data.len() - at).min(window);
                let padded = n.div_ceil(BLOCK) * BLOCK;
                let block = &mut buf[start..start + padded];
                block[..n].copy_from_slice(&data[at..at + n]);
                block[n..].fill(0);
                let _turn = crate::disk_lane::turn(urgent);
                file.write_all_at(block, at as u64)?;
                at += n;
            }
            file.set_len(data.len() as u64)?;
            file.sync_all()
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let mut file = OpenOptions::new().create_new(true).write(true).open(&tmp)?;
            file.write_all(data)?;
            file.sync_all()
        }
        Err(e) => Err(e),
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, target)?;
    File::open(dir)?.sync_all()
}

/// Reads `range` of `path` (clipped to the file's end) with `O_DIRECT`
/// (buffered where unsupported). `None` when the range is empty or starts
/// at or past the end.
fn read_range_direct(
    path: &std::path::Path,
    range: std::ops::Range<u64>,
    buffers: &Arc<ReadBuffers>,
    urgent: bool,
) -> std::io::Result<Option<(bytes::Bytes, std::ops::Range<u64>, std::fs::Metadata)>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => File::open(path)?,
        other => other?,
    };
    let meta = file.metadata()?;
    let end = range.end.min(meta.len());
    if range.start >= end {
        return Ok(None);
    }
    let from = range.start / BLOCK as u64 * BLOCK as u64;
    let to = end.div_ceil(BLOCK as u64) * BLOCK as u64;
    let span = usize::try_from(to - from).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut loan = buffers.take(span);
    let window = &mut loan.window()[..span];
    let mut got = 0;
    while got < span {
        let chunk = (span - got).min(READ_CHUNK);
        let n = {
            let _turn = crate::disk_lane::turn(urgent);
            file.read_at(&mut window[got..got + chunk], from + got as u64)?
        };
        if n == 0 {
            break;
        }
        got += n;
    }
    let skew = (range.start - from) as usize;
    let len = (end - range.start) as usize;
    if skew + len > got {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some((
        loan.into_bytes(skew..skew + len),
        range.start..end,
        meta,
    )))
}

#[async_trait]
impl ObjectStore for DirectLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if !matches!(opts.mode, PutMode::Overwrite) {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let target = self.root.join(location.as_ref());
        let data: bytes::Bytes = payload.into();
        let t = target.clone();
        let urgent = crate::disk_lane::is_urgent();
        tokio::task::spawn_blocking(move || write_durably(&t, &data, urgent))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "DirectLocalStore",
                source: Box::new(e),
            })?
            .map_err(|e| io_err(&target, e))?;
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
            && !options.head;
        let Some(GetRange::Bounded(range)) = options.range.clone().filter(|_| plain) else {
            return self.inner.get_opts(location, options).await;
        };
        let file = self.root.join(location.as_ref());
        let at = location.clone();
        let buffers = self.buffers.clone();
        let urgent = crate::disk_lane::is_urgent();
        let read = crate::bulk::handle()
            .spawn_blocking(move || read_range_direct(&file, range, &buffers, urgent))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "DirectLocalStore",
                source: Box::new(e),
            })?;
        match read {
            Ok(Some((data, range, meta))) => Ok(GetResult {
                payload: GetResultPayload::Stream(
                    futures::stream::once(async { Ok(data) }).boxed(),
                ),
                meta: ObjectMeta {
                    location: at,
                    last_modified: meta
                        .modified()
                        .map(chrono::DateTime::<chrono::Utc>::from)
                        .unwrap_or_default(),
                    size: meta.len(),
                    e_tag: None,
                    version: None,
                },
                range,
                attributes: Default::default(),
                extensions: Default::default(),
            }),
            // An empty or out-of-bounds range: the inner store's answer (and
            // error) for it.
            Ok(None) => self.inner.get_opts(location, options).await,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(object_store::Error::NotFound {
                    path: location.to_string(),
                    source: Box::new(e),
                })
            }
            Err(e) => Err(io_err(&self.root.join(location.as_ref()), e)),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn writes_durably_and_reads_back_exact_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirectLocalStore::new(dir.path().to_path_buf()).unwrap();
        for len in [0usize, 1, 4095, 4096, 10_000, (1 << 20) + 4097, 3 << 20] {
            let p = Path::from(format!("data/x{len}.obj"));
            let data = bytes::Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>());
            store.put(&p, data.clone().into()).await.unwrap();
            assert_eq!(store.get(&p).await.unwrap().bytes().await.unwrap(), data);
            if len > 10 {
                assert_eq!(store.get_range(&p, 3..10).await.unwrap(), data.slice(3..10));
                // Unaligned, crossing blocks, and past the end (clipped).
                let mid = len as u64 / 3;
                let r = mid + 1..(2 * mid + 4097).min(len as u64);
                assert_eq!(
                    store.get_range(&p, r.clone()).await.unwrap(),
                    data.slice(r.start as usize..r.end as usize)
                );
                let tail = len as u64 - 5..len as u64 + 100;
                assert_eq!(
                    store.get_range(&p, tail).await.unwrap(),
                    data.slice(len - 5..)
                );
            }
        }
        let listed: Vec<_> =
            futures::TryStreamExt::try_collect::<Vec<_>>(store.list(Some(&Path::from("data"))))
                .await
                .unwrap();
        assert_eq!(listed.len(), 7, "no temporary files are left behind");
        let missing = store.get_range(&Path::from("data/none.obj"), 0..10).await;
        assert!(
            matches!(missing, Err(object_store::Error::NotFound { .. })),
            "{missing:?}"
        );
    }
}
