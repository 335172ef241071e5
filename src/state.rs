//! Everything derived from one configuration, built once and shared by every request as
//! an immutable snapshot; a reload builds a whole new snapshot and swaps it in.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;
use crate::headers::IdentityHeaders;
use crate::metrics::Metrics;
use crate::route::RouteTable;
use crate::verify::Authenticator;

/// Request bodies go upstream as streamed by the client, with their trailers filtered.
pub type RequestBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type UpstreamClient = Client<HttpConnector, RequestBody>;

pub struct Snapshot {
    pub config: Config,
    pub routes: RouteTable,
    pub auth: Authenticator,
    pub identity_headers: IdentityHeaders,
}

impl Snapshot {
    /// Builds a snapshot; `previous` (on reload) hands over the key stores it can.
    fn new(
        config: Config,
        jwks_client: &reqwest::Client,
        metrics: &Arc<Metrics>,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let routes = RouteTable::new(&config.routes);
        let auth = Authenticator::new(&config, jwks_client, metrics, previous.map(|p| &p.auth));
        let identity_headers = IdentityHeaders::new(
            std::iter::once(&config.identity.user_id_header)
                .chain(config.identity.claim_headers.iter().map(|(_, h)| h)),
        );
        Snapshot {
            config,
            routes,
            auth,
            identity_headers,
        }
    }

    /// Whether every provider has keys to verify with.
    pub fn is_ready(&self) -> bool {
        self.auth.providers().iter().all(|p| p.is_ready())
    }
}

/// What every connection shares, across reloads.
pub struct Shared {
    snapshot: arc_swap::ArcSwap<Snapshot>,
    pub upstream: UpstreamClient,
    pub jwks_client: reqwest::Client,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let jwks_client = crate::jwks::client();
        let metrics = Arc::new(Metrics::new());
        let snapshot = Snapshot::new(config, &jwks_client, &metrics, None);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let upstream = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Shared {
            snapshot: arc_swap::ArcSwap::from_pointee(snapshot),
            upstream,
            jwks_client,
            metrics,
        }
    }

    /// The snapshot in force: one atomic load, no lock.
    #[inline]
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Builds a snapshot of `config` that inherits what it can from the current one, and
    /// puts it in force. Requests already running finish on the snapshot they started with.
    pub fn install(&self, config: Config) -> Arc<Snapshot> {
        let old = self.current();
        let new = Arc::new(Snapshot::new(
            config,
            &self.jwks_client,
            &self.metrics,
            Some(&old),
        ));
        self.snapshot.store(new.clone());
        new
    }
}
