//! Listeners and the gateway's lifecycle. The proxy listener serves HTTP/1.1 and HTTP/2
//! (h2c, or h2 over TLS when `server.tls` is set); the admin listener serves `/healthz`,
//! `/readyz`, `/metrics` and `POST /reload` on its own socket, so admin paths never
//! shadow upstream ones. Listeners are bound once: a reload swaps the config snapshot,
//! never the sockets. On shutdown the listeners close first, then open connections drain
//! for a bounded time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use http::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::{Body, full};
use crate::config::{Config, ConfigError};
use crate::conn::{self, ClientBody, Handler, Protocols};
use crate::error::chain as error_chain;
use crate::jwks::KeyStore;
use crate::metrics::Metrics;
use crate::proxy::{self, Conn};
use crate::state::{Shared, Snapshot};

/// A running gateway. Dropping it does not stop it; call [`Gateway::shutdown`].
pub struct Gateway {
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    control: Arc<Control>,
    listeners: tokio::task::JoinSet<()>,
}

/// What reloads and shutdown act on.
struct Control {
    /// The file a reload re-reads; `None` when started from an in-memory config.
    path: Option<PathBuf>,
    shared: Arc<Shared>,
    /// Stops the listeners and every background task.
    cancel: CancellationToken,
    /// The refresh loop of each key store in use, to stop those a reload drops.
    refreshers: Mutex<Vec<(Arc<KeyStore>, CancellationToken)>>,
    /// One reload at a time.
    reload_lock: tokio::sync::Mutex<()>,
}

/// Why a reload was refused; the old config keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the gateway was started without a config file to re-read")]
    NoFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Gateway {
    /// Loads `path` and starts; `reload` re-reads the same file.
    pub async fn start_from(path: PathBuf) -> anyhow::Result<Gateway> {
        let config = Config::load(&path)?;
        Self::launch(config, Some(path)).await
    }

    /// Starts on an in-memory config (which cannot be reloaded).
    pub async fn start(config: Config) -> anyhow::Result<Gateway> {
        Self::launch(config, None).await
    }

    /// Binds both listeners, starts fetching keys in the background, and returns at once:
    /// the listeners accept while keys load (`/readyz` says when they have).
    async fn launch(config: Config, path: Option<PathBuf>) -> anyhow::Result<Gateway> {
        let proxy_listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let admin_listener = TcpListener::bind(config.server.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin)", config.server.admin_listen))?;
        let proxy_addr = proxy_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;

        let shared = Arc::new(Shared::new(config));
        let control = Arc::new(Control {
            path,
            shared: shared.clone(),
            cancel: CancellationToken::new(),
            refreshers: Mutex::new(Vec::new()),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        let snapshot = shared.current();
        warn_about(&snapshot);
        control.sync_refreshers(&snapshot);
        tokio::spawn(crate::revoke::sync::run(
            shared.revocations().clone(),
            control.cancel.child_token(),
        ));

        let mut listeners = tokio::task::JoinSet::new();
        let proxy_shared = shared.clone();
        listeners.spawn(serve(
            proxy_listener,
            shared.clone(),
            true,
            control.cancel.child_token(),
            move |conn| {
                let shared = proxy_shared.clone();
                move |req| proxy::handle(shared.clone(), conn, req)
            },
        ));
        let admin_control = control.clone();
        listeners.spawn(serve(
            admin_listener,
            shared.clone(),
            false,
            control.cancel.child_token(),
            move |_conn| {
                let control = admin_control.clone();
                move |req| {
                    let control = control.clone();
                    async move { admin(&control, req).await }
                }
            },
        ));
        tracing::info!(%proxy_addr, %admin_addr, tls = snapshot.config.server.tls.is_some(), "portcullis listening");
        Ok(Gateway {
            proxy_addr,
            admin_addr,
            control,
            listeners,
        })
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Whether every provider has keys and the revocation set is loaded (what `/readyz`
    /// reports).
    pub fn is_ready(&self) -> bool {
        self.control.shared.current().is_ready() && self.control.shared.revocations().is_loaded()
    }

    /// Re-reads the config file and swaps in the new config. A file that does not
    /// validate is refused and the old config keeps serving.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        self.control.reload().await
    }

    /// Stops accepting, lets open connections finish (bounded by
    /// `server.shutdown_timeout`), stops background refreshes.
    pub async fn shutdown(mut self) {
        self.control.cancel.cancel();
        while self.listeners.join_next().await.is_some() {}
        tracing::info!("portcullis stopped");
    }

    /// Runs until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down: draining in-flight requests");
        self.shutdown().await;
    }
}

impl Control {
    async fn reload(&self) -> Result<(), ReloadError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let result = self.try_reload();
        self.shared.metrics.reload(result.is_ok());
        match &result {
            Ok(()) => tracing::info!("config reloaded"),
            Err(e) => {
                // One log line, however many problems the file has.
                let reason = e.to_string().replace("\n  ", "; ");
                tracing::error!(
                    "config reload refused; the previous config keeps serving: {reason}"
                )
            }
        }
        result
    }

    fn try_reload(&self) -> Result<(), ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoFile)?;
        let config = Config::load(path)?;
        let old = self.shared.current();
        for (what, was, now) in [
            (
                "server.listen",
                old.config.server.listen,
                config.server.listen,
            ),
            (
                "server.admin_listen",
                old.config.server.admin_listen,
                config.server.admin_listen,
            ),
        ] {
            if was != now {
                tracing::warn!(
                    "{what} changed from {was} to {now}; listeners are kept, restart to move them"
                );
            }
        }
        let snapshot = self.shared.install(config);
        warn_about(&snapshot);
        self.sync_refreshers(&snapshot);
        Ok(())
    }

    /// Starts a refresh loop for each key store of `snapshot` that has none, and stops
    /// the loops of stores it no longer uses.
    fn sync_refreshers(&self, snapshot: &Snapshot) {
        let mut running = self.refreshers.lock().expect("refreshers poisoned");
        let wanted: Vec<&Arc<KeyStore>> = snapshot.auth.key_stores().collect();
        running.retain(|(store, token)| {
            let keep = wanted.iter().any(|w| Arc::ptr_eq(w, store));
            if !keep {
                token.cancel();
            }
            keep
        });
        for store in wanted {
            if !running.iter().any(|(s, _)| Arc::ptr_eq(s, store)) {
                let token = self.cancel.child_token();
                tokio::spawn(store.clone().run(token.clone()));
                running.push((store.clone(), token));
            }
        }
    }
}

fn warn_about(snapshot: &Snapshot) {
    for p in snapshot.auth.providers() {
        if p.config.audiences.is_empty() {
            tracing::warn!(
                provider = %p.config.name,
                "no audiences configured: tokens this issuer minted for any audience are accepted"
            );
        }
    }
}

/// Accepts connections until `cancel`, then drains them. `proxy` marks the listener
/// whose connections count in the metrics and may use TLS.
async fn serve<F, H>(
    listener: TcpListener,
    shared: Arc<Shared>,
    proxy: bool,
    cancel: CancellationToken,
    make_handler: F,
) where
    F: Fn(Conn) -> H,
    H: Handler,
{
    // Limits are read at start: they shape the listener, which a reload keeps.
    let server = shared.current().config.server.clone();
    let protocols = Arc::new(Protocols::new(&server));
    let slots = Arc::new(Semaphore::new(if proxy {
        server.max_connections
    } else {
        64
    }));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = cancel.cancelled() => break,
        };
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
        let tls = if proxy {
            shared
                .current()
                .config
                .server
                .tls
                .as_ref()
                .map(|t| t.config.clone())
        } else {
            None
        };
        let conn = Conn {
            peer,
            tls: tls.is_some(),
        };
        let handler = make_handler(conn);
        let (protocols, cancel, shared) = (protocols.clone(), cancel.clone(), shared.clone());
        let handshake_timeout = server.header_read_timeout;
        match tls {
            None => {
                tracker.spawn(async move {
                    let _permit = permit;
                    let metrics = proxy.then_some(&*shared.metrics);
                    let _open = metrics.map(Metrics::connection);
                    conn::serve(&protocols, stream, handler, metrics, cancel).await;
                });
            }
            // A task of its own, so plaintext connections do not carry TLS state.
            Some(config) => {
                tracker.spawn(async move {
                    let _permit = permit;
                    let metrics = proxy.then_some(&*shared.metrics);
                    let _open = metrics.map(Metrics::connection);
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            conn::serve(&protocols, tls_stream, handler, metrics, cancel).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    tracker.close();
    let drain = if proxy {
        server.shutdown_timeout
    } else {
        Duration::from_secs(1)
    };
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            "drain timed out; closing the remaining connections"
        );
    }
}

async fn admin(control: &Control, req: Request<ClientBody>) -> Response<Body> {
    let shared = &control.shared;
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => (
            StatusCode::OK,
            "application/json",
            r#"{"status":"ok"}"#.to_owned(),
        ),
        (&Method::GET, "/readyz") => {
            let snap = shared.current();
            let waiting: Vec<&str> = snap
                .auth
                .providers()
                .iter()
                .filter(|p| !p.is_ready())
                .map(|p| p.config.name.as_str())
                .collect();
            if !shared.revocations().is_loaded() {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    r#"{"status":"waiting for the revocation set"}"#.to_owned(),
                )
            } else if waiting.is_empty() && !shared.revocations().is_current() {
                // Still serving, with the revocations it holds: Redis is being retried.
                (
                    StatusCode::OK,
                    "application/json",
                    r#"{"status":"ready","revocations":"stale: reconnecting to Redis"}"#.to_owned(),
                )
            } else if waiting.is_empty() {
                (
                    StatusCode::OK,
                    "application/json",
                    r#"{"status":"ready"}"#.to_owned(),
                )
            } else {
                let body =
                    serde_json::json!({ "status": "waiting for keys", "providers": waiting });
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    body.to_string(),
                )
            }
        }
        (&Method::GET, "/metrics") => {
            let snap = shared.current();
            for store in snap.auth.key_stores() {
                shared
                    .metrics
                    .jwks_age(store.provider(), store.last_success_age());
            }
            let revocations = shared.revocations();
            shared
                .metrics
                .revocations(revocations.len(), revocations.sync_age());
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                shared.metrics.encode(),
            )
        }
        (&Method::POST, "/reload") => match control.reload().await {
            Ok(()) => (
                StatusCode::OK,
                "application/json",
                r#"{"status":"reloaded"}"#.to_owned(),
            ),
            Err(e) => {
                let body = serde_json::json!({ "status": "refused", "reason": error_chain(&e) });
                (
                    StatusCode::BAD_REQUEST,
                    "application/json",
                    body.to_string(),
                )
            }
        },
        (&Method::POST, "/revoke") => {
            let keep = shared.current().config.revocation.keep;
            return crate::revoke::admin::post(shared.revocations(), keep, req).await;
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/reload" | "/revoke") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            r#"{"error":"method_not_allowed"}"#.to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"error":"not_found"}"#.to_owned(),
        ),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}
