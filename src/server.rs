//! The gateway's lifecycle: start, reload, shut down. It binds the proxy listener
//! (HTTP/1.1 and HTTP/2; h2c, or h2 over TLS when `server.tls` is set) and the admin
//! listener once: a reload swaps the config snapshot, never the sockets. On shutdown
//! the listeners close first, then open connections drain for a bounded time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::admin;
use crate::config::{Config, ConfigError};
use crate::jwks::KeyStore;
use crate::listener::Listener;
use crate::proxy;
use crate::state::{Shared, Snapshot};

/// How many connections the kernel may hold completed but not yet accepted (it caps
/// this at `net.core.somaxconn`). When thousands of clients connect at once, the accept
/// loop takes them in turns with the connections already open; with the 1024 that
/// `TcpListener::bind` asks for, the queue overflowed and the kernel dropped handshakes,
/// which clients retried after 1 s and 3 s (the multi-second tail of the 10k-connection
/// benchmark). nginx's bench configuration asks for 32768 too.
const LISTEN_BACKLOG: u32 = 32768;

/// Binds the proxy listener with room for a burst of connections ([`LISTEN_BACKLOG`]).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted gateway can bind while old connections
    // of the previous one linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

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
        let proxy_listener = listen(config.server.listen)
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
        listeners.spawn(Listener::proxy(&snapshot.config.server).serve(
            proxy_listener,
            shared.clone(),
            control.cancel.child_token(),
            move |conn| {
                let shared = proxy_shared.clone();
                move |req| proxy::handle(shared.clone(), conn, req)
            },
        ));
        let admin_control = control.clone();
        listeners.spawn(Listener::admin().serve(
            admin_listener,
            shared.clone(),
            control.cancel.child_token(),
            move |conn| {
                let control = admin_control.clone();
                move |req| {
                    let control = control.clone();
                    async move {
                        admin::handle(&control.shared, conn.peer, || control.reload(), req).await
                    }
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
        tracing::info!("shutting down: draining in-flight requests");
        self.control.cancel.cancel();
        while self.listeners.join_next().await.is_some() {}
        tracing::info!("portcullis stopped");
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
