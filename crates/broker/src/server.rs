//! The Kafka listener. Each connection has a reader that parses frames and
//! starts one task per request, and a writer that sends the responses in
//! request order (pipelining), so a slow fetch never reorders answers. A
//! bounded queue between them limits the requests in flight per connection.
//! A bad frame closes only its own connection; a handler that fails or
//! panics closes its connection after the responses before it are sent.
//! A listener may wrap its connections in TLS and require SASL
//! authentication before anything but ApiVersions and the SASL requests.

use crate::dispatch;
use crate::security::authz::Caller;
use crate::security::{sasl, tls, ListenerSecurity, AUTHENTICATION_TIMEOUT};
use crate::stream::{self, ConnRead, ConnWrite};
use crate::Broker;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
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
    security: Arc<ListenerSecurity>,
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
                    conns.spawn(accept(broker.clone(), stream, peer, security.clone(), shutdown.clone()));
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

/// Completes the TLS handshake where the listener wants one (bounded by
/// [`AUTHENTICATION_TIMEOUT`]), then serves the connection.
async fn accept(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    security: Arc<ListenerSecurity>,
    shutdown: watch::Receiver<bool>,
) {
    let mut caller = Caller::anonymous(peer.ip().to_string());
    let halves = match &security.tls {
        None => stream::plain(stream),
        Some(acceptor) => {
            match tokio::time::timeout(AUTHENTICATION_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // Mutual TLS: the client certificate names the principal.
                    if let Some(p) = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(tls::client_principal)
                    {
                        caller.become_principal(&broker.catalog, p).await;
                    }
                    stream::tls(tls)
                }
                Ok(Err(e)) => {
                    sluice_observe::metrics().tls_failures.inc();
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    sluice_observe::metrics().tls_failures.inc();
                    tracing::info!(%peer, "TLS handshake not finished in time; closing");
                    return;
                }
            }
        }
    };
    connection(broker, halves, peer, caller, security, shutdown).await
}

/// What to do with a request on a connection that has not authenticated.
enum Gate {
    Pass,
    Sasl,
    Refuse,
}

fn gate(key: ApiKey, sasl: bool, authenticated: bool) -> Gate {
    match key {
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate if sasl => Gate::Sasl,
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => Gate::Refuse,
        ApiKey::ApiVersions => Gate::Pass,
        _ if sasl && !authenticated => Gate::Refuse,
        _ => Gate::Pass,
    }
}

async fn connection(
    broker: Arc<Broker>,
    (mut reader, writer): (ConnRead, ConnWrite),
    peer: SocketAddr,
    caller: Caller,
    security: Arc<ListenerSecurity>,
    mut shutdown: watch::Receiver<bool>,
) {
    let m = sluice_observe::metrics();
    m.connections.inc();
    let (tx, rx) = mpsc::channel::<Pending>(broker.config.max_inflight_per_connection.max(1));
    let writer_task = tokio::spawn(write_responses(writer, rx, peer));
    let mut session = security.sasl.as_ref().map(|(users, offered)| {
        sasl::Session::new(users.clone(), offered.clone(), security.sasl_lifetime)
    });
    let mut conn = dispatch::ConnInfo {
        peer,
        advertised: security.advertised.clone(),
        caller,
        mute: crate::quotas::Mute::new(),
    };
    let auth_deadline = tokio::time::Instant::now() + AUTHENTICATION_TIMEOUT;
    loop {
        // A throttled client's next request waits (KIP-219's muting).
        if let Some(wait) = conn.mute.remaining() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
        let authenticated = session.as_ref().is_none_or(sasl::Session::authenticated);
        let frame = tokio::select! {
            f = read_frame(&mut reader, broker.config.max_request_bytes) => f,
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep_until(auth_deadline), if !authenticated => {
                tracing::info!(%peer, "client did not authenticate in time; closing");
                break;
            }
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
        if let Some(s) = session.as_mut().filter(|s| s.expects_raw_tokens()) {
            // After SaslHandshake v0 the exchange goes on in bare frames.
            let step = s.raw_token(frame.freeze()).await;
            let (done_tx, done_rx) = oneshot::channel();
            if let Some(reply) = step {
                let _ = done_tx.send(Some(reply.into()));
                if tx.send(done_rx).await.is_err() {
                    break;
                }
                continue;
            }
            tracing::info!(%peer, "closing connection: SASL authentication failed");
            break;
        }
        let incoming = match dispatch::decode(frame.freeze()) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad request");
                break;
            }
        };
        let (done_tx, done_rx) = oneshot::channel();
        let key = match &incoming {
            dispatch::Incoming::Request { key, .. } => *key,
            dispatch::Incoming::ApiVersionsTooNew { .. } => ApiKey::ApiVersions,
        };
        match gate(key, session.is_some(), authenticated) {
            Gate::Refuse => {
                tracing::info!(%peer, ?key, "closing connection: request not allowed before SASL authentication");
                break;
            }
            Gate::Sasl => {
                let Some(s) = session.as_mut() else { break };
                let (frame, close) = match sasl_step(s, incoming).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "closing connection: SASL request failed");
                        break;
                    }
                };
                let _ = done_tx.send(Some(frame));
                if tx.send(done_rx).await.is_err() || close {
                    break;
                }
                // A SASL login names the principal (over a TLS client's).
                if let Some(p) = s.principal() {
                    conn.caller.become_principal(&broker.catalog, p).await;
                }
                continue;
            }
            Gate::Pass => {}
        }
        if key != ApiKey::ApiVersions && session.as_ref().is_some_and(|s| s.expired()) {
            tracing::info!(%peer, "closing connection: the SASL session expired without re-authentication");
            break;
        }
        // State changes happen here, in the order the requests arrived;
        // only the waiting part runs beside later requests.
        match dispatch::handle(&broker, incoming, &conn).await {
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

/// Answers a SaslHandshake or SaslAuthenticate request; says whether the
/// connection must close after the answer (a failed login).
async fn sasl_step(
    session: &mut sasl::Session,
    incoming: dispatch::Incoming,
) -> anyhow::Result<(crate::fetch_frame::Frame, bool)> {
    let dispatch::Incoming::Request {
        key,
        version,
        header,
        body,
    } = incoming
    else {
        anyhow::bail!("not a SASL request");
    };
    let (resp, close) = match *body {
        RequestKind::SaslHandshake(r) => (
            ResponseKind::SaslHandshake(session.handshake(&r, version)),
            false,
        ),
        RequestKind::SaslAuthenticate(r) => {
            let step = session.authenticate(&r, version).await;
            (ResponseKind::SaslAuthenticate(step.response), step.close)
        }
        _ => anyhow::bail!("not a SASL request"),
    };
    let frame = dispatch::encode_response(key, version, header.correlation_id, &resp)?;
    Ok((frame.into(), close))
}

/// Frames below this size go through the connection's buffer (coalescing
/// small responses); larger ones are written with `writev` straight from
/// their parts, so record batches are not copied in user space.
const DIRECT_WRITE_BYTES: usize = 64 * 1024;

/// Writes `frame` to the connection. Large catch-up frames (read from
/// objects) are written by a task on the bulk runtime, whose threads give
/// the CPU to produce and tail-fetch work (`sluice_storage::bulk`); other
/// large frames are written here, so a tail consumer's answers never wait
/// for the CPU behind live traffic.
async fn write_frame(
    writer: Writer,
    frame: crate::fetch_frame::Frame,
) -> (Option<Writer>, std::io::Result<()>) {
    let mut writer = writer;
    if frame.len() < DIRECT_WRITE_BYTES {
        for part in &frame.parts {
            if let Err(e) = writer.write_all(part).await {
                return (Some(writer), Err(e));
            }
        }
        return (Some(writer), Ok(()));
    }
    if !frame.background {
        let written = write_vectored_all(&mut writer, &frame).await;
        return (Some(writer), written);
    }
    let task = sluice_storage::bulk::handle().spawn(async move {
        let written = write_vectored_all(&mut writer, &frame).await;
        (writer, written)
    });
    match task.await {
        Ok((writer, written)) => (Some(writer), written),
        Err(e) => (None, Err(std::io::Error::other(e))),
    }
}

/// Bytes handed to the kernel per `writev` of a large frame. On kernels
/// without full preemption (`PREEMPT_NONE`/`VOLUNTARY`, the usual server
/// builds, and the one we benchmark on) a thread copying a multi-MiB frame
/// into a socket keeps its CPU until the copy is done, whatever its
/// priority; coming back to user space every 256 KiB lets the bulk
/// threads' idle CPU class take effect. Measured together with that class
/// (BENCHMARKS.md, two runs each): tail p99 during a catch-up 9.5 / 6.4 ms,
/// against 9.0 / 12.7 ms with the class alone; alone the bounded writes
/// gave 13.7 / 16.2 ms, within the noise of none (25.7 / 13.6 ms).
const WRITE_CALL_BYTES: usize = 256 * 1024;

/// Flushes the buffer, then writes the frame's parts with `writev`, at most
/// `WRITE_CALL_BYTES` per call.
async fn write_vectored_all(
    writer: &mut Writer,
    frame: &crate::fetch_frame::Frame,
) -> std::io::Result<()> {
    writer.flush().await?;
    let inner = writer.get_mut();
    let parts = &frame.parts;
    let mut at = advance(parts, (0, 0), 0);
    while at.0 < parts.len() {
        let window = write_window(parts, at, WRITE_CALL_BYTES);
        let n = inner.write_vectored(&window).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        at = advance(parts, at, n);
    }
    Ok(())
}

/// The slices of the next `writev`: up to `cap` bytes of `parts`, starting
/// at byte `at.1` of part `at.0`.
fn write_window(
    parts: &[bytes::Bytes],
    at: (usize, usize),
    cap: usize,
) -> Vec<std::io::IoSlice<'_>> {
    let mut window = Vec::new();
    let mut left = cap;
    let (mut part, mut offset) = at;
    while left > 0 && part < parts.len() {
        let rest = &parts[part][offset..];
        let n = rest.len().min(left);
        if n > 0 {
            window.push(std::io::IoSlice::new(&rest[..n]));
            left -= n;
        }
        (part, offset) = (part + 1, 0);
    }
    window
}

/// The position `n` bytes after `at`, past any empty parts (so a finished
/// frame ends at `(parts.len(), 0)`).
fn advance(parts: &[bytes::Bytes], at: (usize, usize), mut n: usize) -> (usize, usize) {
    let (mut part, mut offset) = at;
    while part < parts.len() {
        let rest = parts[part].len() - offset;
        if n < rest {
            return (part, offset + n);
        }
        n -= rest;
        (part, offset) = (part + 1, 0);
    }
    (part, 0)
}

type Writer = BufWriter<ConnWrite>;

/// The next response to write: one already in hand, or one to wait for.
enum Next {
    Ready(Result<Option<crate::fetch_frame::Frame>, oneshot::error::RecvError>),
    Waiting(Pending),
}

/// Writes responses in request order. Responses that are ready together
/// share one buffered write; the buffer is flushed as soon as the next
/// response is not ready yet. (Waiting for the queue to empty instead held
/// a pipelined producer's acknowledgements back behind its later requests,
/// which in a cluster wait for their flush: measured in BENCHMARKS.md,
/// "Cluster mode".)
async fn write_responses(writer: ConnWrite, mut rx: mpsc::Receiver<Pending>, peer: SocketAddr) {
    use futures::FutureExt;
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut next: Option<Next> = None;
    loop {
        let got = match next.take() {
            Some(Next::Ready(v)) => v,
            Some(Next::Waiting(p)) => p.await,
            None => match rx.recv().await {
                Some(p) => p.await,
                None => break,
            },
        };
        match got {
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
        next = match rx.try_recv() {
            Ok(mut p) => match (&mut p).now_or_never() {
                Some(v) => Some(Next::Ready(v)),
                None => Some(Next::Waiting(p)),
            },
            Err(_) => None,
        };
        if !matches!(next, Some(Next::Ready(_))) {
            if let Err(e) = writer.flush().await {
                tracing::debug!(%peer, error = %e, "connection write error");
                break;
            }
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Writes `parts` through `write_window`/`advance` the way
    /// `write_vectored_all` does, with a writer that takes at most `take`
    /// bytes per call; returns the bytes written and each call's size.
    fn write_all_bounded(parts: &[Bytes], cap: usize, take: usize) -> (Vec<u8>, Vec<usize>) {
        let (mut out, mut calls) = (Vec::new(), Vec::new());
        let mut at = advance(parts, (0, 0), 0);
        while at.0 < parts.len() {
            let window = write_window(parts, at, cap);
            let offered: usize = window.iter().map(|s| s.len()).sum();
            let n = offered.min(take);
            let mut left = n;
            for s in &window {
                let k = s.len().min(left);
                out.extend_from_slice(&s[..k]);
                left -= k;
            }
            calls.push(offered);
            at = advance(parts, at, n);
        }
        (out, calls)
    }

    #[test]
    fn bounded_writes_send_every_byte_in_order() {
        let parts: Vec<Bytes> = [0usize, 5, 0, 300, 1, 0, 700, 2]
            .iter()
            .enumerate()
            .map(|(i, &n)| Bytes::from(vec![i as u8; n]))
            .collect();
        let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        for (cap, take) in [
            (256, usize::MAX),
            (256, 100),
            (1, usize::MAX),
            (10_000, 7),
            (64, 64),
        ] {
            let (out, calls) = write_all_bounded(&parts, cap, take);
            assert_eq!(out, whole, "cap {cap}, take {take}");
            assert!(
                calls.iter().all(|&c| c > 0 && c <= cap),
                "cap {cap}: {calls:?}"
            );
        }
    }

    #[test]
    fn a_frame_of_empty_parts_needs_no_write() {
        let parts = vec![Bytes::new(), Bytes::new()];
        assert_eq!(advance(&parts, (0, 0), 0), (2, 0));
        assert_eq!(write_all_bounded(&parts, 256, 256).1, Vec::<usize>::new());
    }
}
