//! Listeners: the proxy (HTTP/1.1 and h2c) and the admin endpoint (`/healthz`,
//! `/readyz`), each on its own socket so admin paths never shadow upstream ones. On
//! shutdown the listeners close first, then in-flight requests drain for a bounded time.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::body::{Body, full};
use crate::config::Config;
use crate::jwks;
use crate::proxy::{self, Conn};
use crate::state::{Shared, Snapshot};
use crate::verify::ProviderKeys;

/// A running gateway. Dropping it does not stop it; call [`Gateway::shutdown`].
pub struct Gateway {
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    shared: Arc<Shared>,
}

impl Gateway {
    /// Binds both listeners, starts fetching keys in the background, and returns at once:
    /// the listeners accept while keys load (`/readyz` says when they have).
    pub async fn start(config: Config) -> anyhow::Result<Gateway> {
        let proxy_listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let admin_listener = TcpListener::bind(config.server.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin)", config.server.admin_listen))?;
        let proxy_addr = proxy_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let server = config.server.clone();

        let snapshot = Snapshot::new(config, &jwks::client());
        for p in snapshot.auth.providers() {
            if p.config.audiences.is_empty() {
                tracing::warn!(
                    provider = %p.config.name,
                    "no audiences configured: tokens this issuer minted for any audience are accepted"
                );
            }
        }
        let stores: Vec<_> = snapshot
            .auth
            .providers()
            .iter()
            .filter_map(|p| match &p.keys {
                ProviderKeys::Jwks(store) => Some(store.clone()),
                ProviderKeys::Secret(_) => None,
            })
            .collect();
        let shared = Shared::new(snapshot);
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for store in stores {
            tasks.spawn(store.run(cancel.child_token()));
        }

        let proxy_shared = shared.clone();
        tasks.spawn(serve(
            proxy_listener,
            server.header_read_timeout,
            server.shutdown_timeout,
            cancel.child_token(),
            move |peer| {
                let shared = proxy_shared.clone();
                let conn = Conn { peer, tls: false };
                service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(proxy::handle(shared, conn, req).await) }
                })
            },
        ));
        let admin_shared = shared.clone();
        tasks.spawn(serve(
            admin_listener,
            server.header_read_timeout,
            Duration::from_secs(1),
            cancel.child_token(),
            move |_peer| {
                let shared = admin_shared.clone();
                service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(admin(&shared, &req)) }
                })
            },
        ));
        tracing::info!(%proxy_addr, %admin_addr, "portcullis listening");
        Ok(Gateway {
            proxy_addr,
            admin_addr,
            cancel,
            tasks,
            shared,
        })
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Whether every provider has keys (what `/readyz` reports).
    pub fn is_ready(&self) -> bool {
        self.shared.snapshot.load().is_ready()
    }

    /// Stops accepting, lets in-flight requests finish (bounded by
    /// `server.shutdown_timeout`), stops background refreshes.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        tracing::info!("portcullis stopped");
    }

    /// Runs until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down: draining in-flight requests");
        self.shutdown().await;
    }
}

async fn serve<F, S>(
    listener: TcpListener,
    header_read_timeout: Duration,
    drain_timeout: Duration,
    cancel: CancellationToken,
    make_service: F,
) where
    F: Fn(SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), make_service(peer))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing the remaining connections");
    }
}

fn admin(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, r#"{"status":"ok"}"#.to_owned()),
        "/readyz" => {
            let snap = shared.snapshot.load();
            let waiting: Vec<&str> = snap
                .auth
                .providers()
                .iter()
                .filter(|p| !p.is_ready())
                .map(|p| p.config.name.as_str())
                .collect();
            if waiting.is_empty() {
                (StatusCode::OK, r#"{"status":"ready"}"#.to_owned())
            } else {
                let body =
                    serde_json::json!({ "status": "waiting for keys", "providers": waiting });
                (StatusCode::SERVICE_UNAVAILABLE, body.to_string())
            }
        }
        _ => (StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#.to_owned()),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
