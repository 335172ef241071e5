//! Everything derived from one configuration, built once and shared by every request as
//! an immutable snapshot.

use std::sync::Arc;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;
use crate::headers::IdentityHeaders;
use crate::route::RouteTable;
use crate::verify::Authenticator;

/// Request bodies go upstream as streamed by the client, with their trailers filtered.
pub type RequestBody = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;
pub type UpstreamClient = Client<HttpConnector, RequestBody>;

pub struct Snapshot {
    pub config: Config,
    pub routes: RouteTable,
    pub auth: Authenticator,
    pub identity_headers: IdentityHeaders,
}

impl Snapshot {
    pub fn new(config: Config, jwks_client: &reqwest::Client) -> Snapshot {
        let routes = RouteTable::new(&config.routes);
        let auth = Authenticator::new(&config, jwks_client);
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

/// What every connection shares.
pub struct Shared {
    pub snapshot: arc_swap::ArcSwap<Snapshot>,
    pub upstream: UpstreamClient,
}

impl Shared {
    pub fn new(snapshot: Snapshot) -> Arc<Shared> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let upstream = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build(connector);
        Arc::new(Shared {
            snapshot: arc_swap::ArcSwap::from_pointee(snapshot),
            upstream,
        })
    }
}
