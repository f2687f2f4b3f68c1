//! The Kafka listener. Each connection has a reader that parses frames and
//! starts one task per request, and a writer that sends the responses in
//! request order (pipelining), so a slow fetch never reorders answers. A
//! bounded queue between them limits the requests in flight per connection.
//! A bad frame closes only its own connection; a handler that fails or
//! panics closes its connection after the responses before it are sent.

use crate::dispatch;
use crate::Broker;
use sluice_protocol::frame::{read_frame, FrameError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

type Pending = oneshot::Receiver<Option<crate::fetch_frame::Frame>>;

/// Accepts connections until `shutdown` turns true, then stops reading new
/// requests and waits (up to `drain`) for in-flight ones to be answered.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    sluice_observe::metrics().connections_accepted.inc();
                    conns.spawn(connection(broker.clone(), stream, peer, shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
    drop(listener);
    let all_done = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, all_done).await.is_err() {
        tracing::warn!("connections still busy after the drain period; closing them");
        conns.abort_all();
    }
}

async fn connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let m = sluice_observe::metrics();
    m.connections.inc();
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Pending>(broker.config.max_inflight_per_connection.max(1));
    let writer_task = tokio::spawn(write_responses(writer, rx, peer));
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut reader, broker.config.max_request_bytes) => f,
            _ = shutdown.changed() => break,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "connection read error");
                break;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                break;
            }
        };
        let incoming = match dispatch::decode(frame.freeze()) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad request");
                break;
            }
        };
        let (done_tx, done_rx) = oneshot::channel();
        // State changes happen here, in the order the requests arrived;
        // only the waiting part runs beside later requests.
        match dispatch::handle(&broker, incoming, peer).await {
            Ok(dispatch::Handled::Ready(resp)) => {
                let _ = done_tx.send(resp);
            }
            Ok(dispatch::Handled::Deferred(fut)) => {
                tokio::spawn(async move {
                    match fut.await {
                        Ok(resp) => {
                            let _ = done_tx.send(resp);
                        }
                        Err(e) => {
                            // Dropping `done_tx` makes the writer close the connection.
                            tracing::warn!(%peer, error = %e, "closing connection: request failed");
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: request failed");
                break;
            }
        }
        if tx.send(done_rx).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer_task.await;
    m.connections.dec();
}

/// Frames below this size go through the connection's buffer (coalescing
/// small responses); larger ones are written with `writev` straight from
/// their parts, so record batches are not copied in user space.
const DIRECT_WRITE_BYTES: usize = 64 * 1024;

/// Writes `frame` to the connection. Large frames (catch-up fetches) are
/// written by a task on the bulk runtime, so copying them into the socket
/// does not hold up the main workers' produce and tail-fetch work.
async fn write_frame(
    writer: Writer,
    frame: crate::fetch_frame::Frame,
) -> (Option<Writer>, std::io::Result<()>) {
    if frame.len() < DIRECT_WRITE_BYTES {
        let mut writer = writer;
        for part in &frame.parts {
            if let Err(e) = writer.write_all(part).await {
                return (Some(writer), Err(e));
            }
        }
        return (Some(writer), Ok(()));
    }
    let task = sluice_storage::bulk::handle().spawn(async move {
        let mut writer = writer;
        let written = write_vectored_all(&mut writer, &frame).await;
        (writer, written)
    });
    match task.await {
        Ok((writer, written)) => (Some(writer), written),
        Err(e) => (None, Err(std::io::Error::other(e))),
    }
}

/// Flushes the buffer, then writes the frame's parts with `writev`.
async fn write_vectored_all(
    writer: &mut Writer,
    frame: &crate::fetch_frame::Frame,
) -> std::io::Result<()> {
    writer.flush().await?;
    let inner = writer.get_mut();
    let mut slices: Vec<std::io::IoSlice> = frame
        .parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| std::io::IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = inner.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

type Writer = BufWriter<tokio::net::tcp::OwnedWriteHalf>;

async fn write_responses(
    writer: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pending>,
    peer: SocketAddr,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(pending) = rx.recv().await {
        match pending.await {
            Ok(Some(frame)) => {
                let (back, written) = write_frame(writer, frame).await;
                let Some(back) = back else {
                    tracing::debug!(%peer, "connection writer task failed");
                    return;
                };
                writer = back;
                if let Err(e) = written {
                    tracing::debug!(%peer, error = %e, "connection write error");
                    break;
                }
            }
            Ok(None) => {}
            Err(_) => break,
        }
        if rx.is_empty() {
            if let Err(e) = writer.flush().await {
                tracing::debug!(%peer, error = %e, "connection write error");
                break;
            }
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}
