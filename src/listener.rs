//! The accept loop both listeners run: at most so many connections at once, TLS where
//! the listener terminates it, and a bounded drain on shutdown. What sets the proxy
//! listener apart from the admin one is data (a [`Listener`]), so there is one loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::conn::{self, Handler, Protocols};
use crate::metrics::Metrics;
use crate::proxy::Conn;
use crate::state::Shared;

/// How one listener serves its connections. Read when it starts: a reload keeps the
/// listener and these with it.
pub struct Listener {
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Whether connections speak TLS when `server.tls` is set. The certificate is read
    /// at each accept, so new connections get the one a reload loaded.
    pub terminates_tls: bool,
    /// Whether its connections count in the metrics.
    pub counts_metrics: bool,
    /// How long open connections may finish once the listener has closed.
    pub drain: Duration,
}

impl Listener {
    /// The listener clients reach upstreams through.
    pub fn proxy(server: &ServerConfig) -> Listener {
        Listener {
            max_connections: server.max_connections,
            terminates_tls: true,
            counts_metrics: true,
            drain: server.shutdown_timeout,
        }
    }

    /// The admin listener: a few probes and operators, never TLS, not counted.
    pub fn admin() -> Listener {
        Listener {
            max_connections: 64,
            terminates_tls: false,
            counts_metrics: false,
            drain: Duration::from_secs(1),
        }
    }

    /// Accepts connections on `socket` until `cancel`, then drains them.
    /// `make_handler` gives each connection the handler its requests go to.
    pub async fn serve<F, H>(
        self,
        socket: TcpListener,
        shared: Arc<Shared>,
        cancel: CancellationToken,
        make_handler: F,
    ) where
        F: Fn(Conn) -> H,
        H: Handler,
    {
        let server = shared.current().config.server.clone();
        let served = Arc::new(Served {
            protocols: Protocols::new(&server),
            metrics: self.counts_metrics.then(|| shared.metrics.clone()),
            handshake_timeout: server.header_read_timeout,
            cancel,
        });
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let tracker = TaskTracker::new();
        while let Some((permit, stream, peer)) = served.accept(&socket, &slots).await {
            let _ = stream.set_nodelay(true);
            let tls = if self.terminates_tls {
                let snapshot = shared.current();
                snapshot
                    .config
                    .server
                    .tls
                    .as_ref()
                    .map(|t| t.config.clone())
            } else {
                None
            };
            let handler = make_handler(Conn {
                peer,
                tls: tls.is_some(),
            });
            tracker.spawn(
                served
                    .clone()
                    .connection(permit, stream, peer, tls, handler),
            );
        }
        drop(socket);
        tracker.close();
        if tokio::time::timeout(self.drain, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = tracker.len(),
                "drain timed out; closing the remaining connections"
            );
        }
    }
}

/// What every connection of one listener is served with.
struct Served {
    protocols: Protocols,
    metrics: Option<Arc<Metrics>>,
    handshake_timeout: Duration,
    cancel: CancellationToken,
}

impl Served {
    /// The next connection, once a slot is free; `None` once the listener is cancelled.
    async fn accept(
        &self,
        socket: &TcpListener,
        slots: &Arc<Semaphore>,
    ) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = self.cancel.cancelled() => return None,
        };
        loop {
            tokio::select! {
                accepted = socket.accept() => match accepted {
                    Ok((stream, peer)) => return Some((permit, stream, peer)),
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = self.cancel.cancelled() => return None,
            }
        }
    }

    /// Serves one connection to its end, after a TLS handshake when `tls` is set, holding
    /// its slot until then. One future for the whole connection, not one wrapped in
    /// another: each layer of `async` keeps its own copy of what it was given, and an
    /// idle connection's task is most of what it costs.
    async fn connection<H: Handler>(
        self: Arc<Self>,
        _slot: OwnedSemaphorePermit,
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: H,
    ) {
        let metrics = self.metrics.as_deref();
        let _open = metrics.map(Metrics::connection);
        let cancel = self.cancel.clone();
        match tls {
            None => conn::serve(&self.protocols, stream, handler, metrics, cancel).await,
            // Boxed, so a plaintext connection's task has no room for TLS state.
            Some(config) => {
                let served = &self;
                Box::pin(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(served.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            conn::serve(&served.protocols, tls_stream, handler, metrics, cancel)
                                .await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                })
                .await
            }
        }
    }
}
