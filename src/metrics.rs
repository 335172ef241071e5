//! Prometheus metrics, served at `GET /metrics` on the admin listener. Every label value
//! comes from a bounded set: route and provider names from the config, fixed enums for
//! methods, statuses, outcomes and error kinds; never a raw path or a user id.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label value for a request that matched no route, or a token whose issuer is unknown.
pub static NONE: std::sync::LazyLock<Arc<String>> =
    std::sync::LazyLock::new(|| Arc::new("-".to_owned()));

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
pub enum MethodClass {
    GET,
    HEAD,
    POST,
    PUT,
    PATCH,
    DELETE,
    OPTIONS,
    OTHER,
}

impl MethodClass {
    pub fn of(m: &Method) -> MethodClass {
        match *m {
            Method::GET => MethodClass::GET,
            Method::HEAD => MethodClass::HEAD,
            Method::POST => MethodClass::POST,
            Method::PUT => MethodClass::PUT,
            Method::PATCH => MethodClass::PATCH,
            Method::DELETE => MethodClass::DELETE,
            Method::OPTIONS => MethodClass::OPTIONS,
            _ => MethodClass::OTHER,
        }
    }
}

/// `2xx`, `4xx`, ...
fn status_class(s: StatusCode) -> &'static str {
    match s.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<String>,
    method: MethodClass,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    provider: Arc<String>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    provider: Arc<String>,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    route: Arc<String>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    route: Arc<String>,
    policy: Arc<String>,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

fn store_histogram() -> Histogram {
    Histogram::new([
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
    ])
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    auth: Family<AuthLabels, Counter>,
    token_cache: Family<ResultLabel, Counter>,
    jwks_fetches: Family<FetchLabels, Counter>,
    jwks_age: Family<ProviderLabel, Gauge<f64, AtomicU64>>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    in_flight: Gauge,
    connections: Gauge,
    parked: Gauge,
    upstream_queued: Gauge,
    reloads: Family<ResultLabel, Counter>,
    revocations: Gauge,
    revocation_sync_age: Gauge<f64, AtomicU64>,
    rate_limit: Family<LimitLabels, Counter>,
    store_errors: Family<KindLabel, Counter>,
    store_latency: Histogram,
    store_switches: Family<ResultLabel, Counter>,
    store_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by route, method and status class",
            requests.clone(),
        );
        let latency = Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head, by route",
            latency.clone(),
        );
        let auth = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth",
            "Authentication outcomes by provider and reason",
            auth.clone(),
        );
        let token_cache = Family::<ResultLabel, Counter>::default();
        registry.register(
            "token_cache",
            "Verified-token cache lookups (hit or miss)",
            token_cache.clone(),
        );
        let jwks_fetches = Family::<FetchLabels, Counter>::default();
        registry.register(
            "jwks_fetches",
            "JWKS fetches by provider and result",
            jwks_fetches.clone(),
        );
        let jwks_age = Family::<ProviderLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "jwks_last_success_age_seconds",
            "Seconds since the last good JWKS fetch (+Inf before the first)",
            jwks_age.clone(),
        );
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by route and kind",
            upstream_errors.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled now",
            in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now",
            connections.clone(),
        );
        let parked = Gauge::default();
        registry.register(
            "connections_parked",
            "Idle HTTP/1.1 keep-alive connections parked between requests (of connections_open)",
            parked.clone(),
        );
        let upstream_queued = Gauge::default();
        registry.register(
            "upstream_queued",
            "Requests waiting for a slot to their upstream (server.max_upstream_requests)",
            upstream_queued.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access lines dropped because stderr could not keep up",
            crate::access_log::DROPPED.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads by result",
            reloads.clone(),
        );
        let revocations = Gauge::default();
        registry.register(
            "revocations",
            "Revocations in force on this replica (users, tokens and sessions)",
            revocations.clone(),
        );
        let revocation_sync_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "revocation_sync_age_seconds",
            "Seconds since the revocation set was last known current (0 while subscribed to Redis or without it; +Inf before the first load)",
            revocation_sync_age.clone(),
        );
        let rate_limit = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limit",
            "Rate limit decisions by route, policy and result (allowed, limited, fallback_*, store_error_*)",
            rate_limit.clone(),
        );
        let store_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "rate_limit_store_errors",
            "Failed calls to the shared rate-limit store (Redis), by kind",
            store_errors.clone(),
        );
        let store_latency = store_histogram();
        registry.register(
            "rate_limit_store_duration_seconds",
            "Round trips to the shared rate-limit store (Redis), including failed ones",
            store_latency.clone(),
        );
        let store_switches = Family::<ResultLabel, Counter>::default();
        registry.register(
            "rate_limit_store_switches",
            "Switches of the shared rate-limit store: down (on_store_error applies) or up (shared again)",
            store_switches.clone(),
        );
        let store_up = Gauge::default();
        store_up.set(1);
        registry.register(
            "rate_limit_store_up",
            "1 while the shared rate-limit store answers, 0 while on_store_error applies",
            store_up.clone(),
        );
        Metrics {
            revocations,
            revocation_sync_age,
            registry,
            requests,
            latency,
            auth,
            token_cache,
            jwks_fetches,
            jwks_age,
            upstream_errors,
            in_flight,
            connections,
            parked,
            upstream_queued,
            reloads,
            rate_limit,
            store_errors,
            store_latency,
            store_switches,
            store_up,
        }
    }

    pub fn rate_limit(&self, route: &Arc<String>, policy: &Arc<String>, result: &'static str) {
        self.rate_limit
            .get_or_create(&LimitLabels {
                route: route.clone(),
                policy: policy.clone(),
                result,
            })
            .inc();
    }

    /// One round trip to the shared store, its error if it failed, and whether it found
    /// the store's state changed (`Some(up)`).
    pub fn limit_store(&self, elapsed: Duration, error: Option<&'static str>, up: Option<bool>) {
        self.store_latency.observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            self.store_errors.get_or_create(&KindLabel { kind }).inc();
        }
        if let Some(up) = up {
            let result = if up { "up" } else { "down" };
            self.store_switches
                .get_or_create(&ResultLabel { result })
                .inc();
            self.store_up.set(i64::from(up));
        }
    }

    pub fn request(
        &self,
        route: &Arc<String>,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method: MethodClass::of(method),
                status: status_class(status),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel {
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn auth(&self, provider: &Arc<String>, outcome: &'static str) {
        self.auth
            .get_or_create(&AuthLabels {
                provider: provider.clone(),
                outcome,
            })
            .inc();
    }

    pub fn token_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.token_cache
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn jwks_fetch(&self, provider: &Arc<String>, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.jwks_fetches
            .get_or_create(&FetchLabels {
                provider: provider.clone(),
                result,
            })
            .inc();
    }

    pub fn jwks_age(&self, provider: &Arc<String>, age: Option<Duration>) {
        self.jwks_age
            .get_or_create(&ProviderLabel {
                provider: provider.clone(),
            })
            .set(age.map_or(f64::INFINITY, |a| a.as_secs_f64()));
    }

    pub fn upstream_error(&self, route: &Arc<String>, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamLabels {
                route: route.clone(),
                kind,
            })
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// The revocation set's size and how stale it may be, read when scraped.
    pub fn revocations(&self, len: usize, sync_age: f64) {
        self.revocations.set(len as i64);
        self.revocation_sync_age.set(sync_age);
    }

    /// Counts a request in flight until the guard drops.
    pub fn in_flight(&self) -> GaugeGuard {
        GaugeGuard::new(&self.in_flight)
    }

    /// Counts an open connection until the guard drops.
    pub fn connection(&self) -> GaugeGuard {
        GaugeGuard::new(&self.connections)
    }

    /// Counts a parked connection until the guard drops.
    pub fn parked(&self) -> GaugeGuard {
        GaugeGuard::new(&self.parked)
    }

    /// Counts a request waiting for an upstream slot until the guard drops.
    pub fn upstream_queued(&self) -> GaugeGuard {
        GaugeGuard::new(&self.upstream_queued)
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Decrements its gauge when dropped, so early returns and cancelled futures count right.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(g: &Gauge) -> GaugeGuard {
        g.inc();
        GaugeGuard(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
