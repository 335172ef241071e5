//! Everything derived from one configuration, built once and shared by every request as
//! an immutable snapshot; a reload builds a whole new snapshot and swaps it in.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, Upstream, UpstreamProtocol};
use crate::headers::IdentityHeaders;
use crate::limit::Limits;
use crate::metrics::Metrics;
use crate::revoke::Revocations;
use crate::route::RouteTable;
use crate::upstream::{self, Slots, UpstreamClient};
use crate::verify::Authenticator;

pub struct Snapshot {
    pub config: Config,
    pub routes: RouteTable,
    pub auth: Authenticator,
    pub identity_headers: IdentityHeaders,
    /// The revocation set, the same one across reloads.
    pub revocations: Arc<Revocations>,
    /// Each route's rate limits; a reload keeps the counts of the limits that did not
    /// change, and the Redis connection.
    pub limits: Limits,
    /// Each upstream's slots, by scheme and authority; a reload keeps those whose bound
    /// did not change, so requests in flight across it still count.
    slots: HashMap<(bool, String), Arc<Slots>>,
}

impl Snapshot {
    /// Builds a snapshot; `previous` (on reload) hands over the key stores it can.
    fn new(config: Config, shared: &Parts, previous: Option<&Snapshot>) -> Snapshot {
        let limit = config.server.max_upstream_requests;
        let mut slots = HashMap::new();
        let routes = RouteTable::new(&config.routes, |r| {
            // Plain HTTP/1.1 and system-rooted HTTPS share one pool that outlives reloads.
            let client =
                if r.upstream.protocol == UpstreamProtocol::Http1 && r.upstream.tls.is_none() {
                    shared.default_client.clone()
                } else {
                    upstream::client(&r.upstream, &shared.default_tls)
                };
            let key = (
                r.upstream.https,
                r.upstream.authority.as_str().to_ascii_lowercase(),
            );
            let slots = slots
                .entry(key)
                .or_insert_with_key(|key| {
                    previous
                        .and_then(|p| p.slots.get(key))
                        .filter(|s| s.limit() == limit)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Slots::new(limit, shared.metrics.clone())))
                })
                .clone();
            (client, slots)
        });
        let (jwks_client, metrics) = (&shared.jwks_client, &shared.metrics);
        let auth = Authenticator::new(&config, jwks_client, metrics, previous.map(|p| &p.auth));
        let identity_headers = IdentityHeaders::new(
            std::iter::once(&config.identity.user_id_header)
                .chain(config.identity.claim_headers.iter().map(|(_, h)| h))
                .chain(&config.identity.strip_headers),
        );
        let limits = Limits::new(&config, previous.map(|p| &p.limits));
        Snapshot {
            config,
            routes,
            auth,
            identity_headers,
            revocations: shared.revocations.clone(),
            limits,
            slots,
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
    parts: Parts,
    pub metrics: Arc<Metrics>,
}

/// The long-lived pieces a snapshot is built with.
struct Parts {
    jwks_client: reqwest::Client,
    metrics: Arc<Metrics>,
    /// TLS to upstreams with the system's roots.
    default_tls: Arc<rustls::ClientConfig>,
    default_client: UpstreamClient,
    revocations: Arc<Revocations>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let metrics = Arc::new(Metrics::new());
        let default_tls =
            crate::tls::client_config(None, None).expect("system roots need no files");
        let default_upstream = Upstream {
            https: false,
            authority: http::uri::Authority::from_static("localhost"),
            base_path: String::new(),
            protocol: UpstreamProtocol::Http1,
            tls: None,
        };
        let parts = Parts {
            jwks_client: crate::jwks::client(),
            metrics: metrics.clone(),
            default_client: upstream::client(&default_upstream, &default_tls),
            default_tls,
            revocations: Arc::new(Revocations::for_config(&config)),
        };
        let snapshot = Snapshot::new(config, &parts, None);
        Shared {
            snapshot: arc_swap::ArcSwap::from_pointee(snapshot),
            parts,
            metrics,
        }
    }

    /// The revocation set, which outlives reloads.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.parts.revocations
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
        let new = Arc::new(Snapshot::new(config, &self.parts, Some(&old)));
        self.snapshot.store(new.clone());
        new
    }
}
