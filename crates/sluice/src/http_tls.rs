//! HTTPS for the HTTP listener (`--http-tls true`): an axum listener whose
//! connections finish their TLS handshake (rustls, the Kafka listeners'
//! certificate) before axum sees them. Handshakes run in their own tasks,
//! bounded in time, so a slow or silent client never holds up the others.

use axum::serve::Listener;
use sluice_broker::security::AUTHENTICATION_TIMEOUT;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Handshaken connections waiting for axum.
const READY_QUEUE: usize = 64;

pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, ready_tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(AUTHENTICATION_TIMEOUT, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = ready_tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            sluice_observe::metrics().tls_failures.inc();
                            tracing::debug!(%peer, error = %e, "HTTPS handshake failed");
                        }
                        Err(_) => {
                            sluice_observe::metrics().tls_failures.inc();
                            tracing::debug!(%peer, "HTTPS handshake not finished in time");
                        }
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Self {
            local,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task only ends with the listener; never here.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
