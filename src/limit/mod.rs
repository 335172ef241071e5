//! Per-route rate limits (`rate_limits`): each counts requests by a key (the verified
//! user, a claim, or the client address) in a store, local to this process
//! ([`local`]) or shared by every replica through Redis ([`redis`]). Every limit of a
//! route applies. When Redis fails or is slower than `redis.timeout`, the limit's
//! `on_store_error` decides: the same limit kept locally, allow, or deny (503).
//!
//! Checking produces data (a [`Checked`]): the pipeline records it and `handle` counts
//! it, adds the `RateLimit` headers, and logs a switch of the shared store once.

mod local;
mod redis;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::config::{Config, LimitKey, LimitStore, OnStoreError, RateLimitConfig};
use crate::error::Error;
use crate::redis::Redis;
use crate::verify::Identity;
use local::LocalStore;
pub use redis::SharedStore;

/// One limit's answer for one request.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    /// Requests left right now.
    pub remaining: u32,
    /// Until the whole burst is back.
    pub reset: Duration,
    /// Until the next request would be allowed (zero when allowed).
    pub retry_after: Duration,
}

/// How one limit ended for one request, for `portcullis_rate_limit_total`.
#[derive(Debug)]
pub struct Record {
    pub policy: Arc<String>,
    /// `allowed`, `limited`, or under `on_store_error`: `fallback_allowed`,
    /// `fallback_limited`, `store_error_allowed`, `store_error_denied`.
    pub result: &'static str,
    /// The round trip to the shared store, if the limit made one.
    pub store: Option<StoreCall>,
}

#[derive(Debug)]
pub struct StoreCall {
    pub elapsed: Duration,
    /// What went wrong (`timeout`, `connection`, `error`), if it did.
    pub error: Option<&'static str>,
    /// `Some(up)` when this call found the store's state changed.
    pub switched: Option<bool>,
}

/// What the limits of a route said about one request.
#[derive(Debug, Default)]
pub struct Checked {
    pub records: Vec<Record>,
    /// `RateLimit-Policy` and `RateLimit` for an allowed request, when the route sends them.
    pub headers: Option<(HeaderValue, HeaderValue)>,
}

/// Who a request counts as.
pub struct Caller<'a> {
    pub identity: Option<&'a Identity>,
    pub client: IpAddr,
}

/// A key as it is counted: the kind is part of it, so a user named like an address
/// never shares that address's budget.
#[derive(Hash)]
enum Key<'a> {
    User(&'a [u8]),
    Client(IpAddr),
    Claim(&'a str),
}

impl Key<'_> {
    fn of<'a>(limit: &RateLimitConfig, caller: &Caller<'a>) -> Key<'a> {
        match (&limit.key, caller.identity) {
            (LimitKey::ClientIp, _) | (_, None) => Key::Client(caller.client),
            (LimitKey::User, Some(id)) => Key::User(id.user_id.as_bytes()),
            (LimitKey::Claim(name), Some(id)) => id
                .limit_claims
                .iter()
                .find(|(n, _)| n == name)
                .map_or(Key::User(id.user_id.as_bytes()), |(_, v)| Key::Claim(v)),
        }
    }

    /// The bytes the shared store names the cell by: the same on every replica.
    fn shared_name(&self, route: &str, policy: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(route.len() + policy.len() + 64);
        out.extend_from_slice(route.as_bytes());
        out.push(0);
        out.extend_from_slice(policy.as_bytes());
        out.push(0);
        match self {
            Key::User(u) => {
                out.push(b'u');
                out.extend_from_slice(u);
            }
            Key::Client(ip) => {
                out.push(b'i');
                out.extend_from_slice(ip.to_string().as_bytes());
            }
            Key::Claim(c) => {
                out.push(b'c');
                out.extend_from_slice(c.as_bytes());
            }
        }
        out
    }
}

struct Limit {
    config: RateLimitConfig,
    /// The count for `store = "local"`, and the fallback for `on_store_error = "local"`.
    local: Arc<LocalStore>,
    shared: Option<Arc<SharedStore>>,
}

/// The limits of one route.
pub struct RouteLimits {
    route: Arc<String>,
    limits: Vec<Limit>,
    /// `RateLimit-Policy`, built once.
    policy: HeaderValue,
    headers: bool,
}

/// The limits of every route, by route name. Built with each snapshot; a reload keeps
/// the counts of every limit that did not change, and the Redis connection if `[redis]`
/// did not.
#[derive(Default)]
pub struct Limits {
    routes: HashMap<Arc<String>, RouteLimits>,
    shared: Option<Arc<SharedStore>>,
}

impl Limits {
    /// Needs a Tokio runtime when the config has `[redis]`.
    pub fn new(config: &Config, previous: Option<&Limits>) -> Limits {
        let shared = config.redis.as_ref().and_then(|rc| {
            let kept = previous
                .and_then(|p| p.shared.as_ref())
                .filter(|s| s.redis().config() == rc);
            if let Some(s) = kept {
                return Some(s.clone());
            }
            match Redis::new(rc) {
                Ok(r) => Some(Arc::new(SharedStore::new(Arc::new(r)))),
                Err(e) => {
                    // Validation already opened this URL; a limit with no store applies
                    // its on_store_error.
                    tracing::error!("cannot use [redis]: {}", crate::error::chain(&e));
                    None
                }
            }
        });
        let max_keys = config.server.rate_limit_keys;
        let mut routes = HashMap::new();
        for route in config.routes.iter().filter(|r| !r.rate_limits.is_empty()) {
            let old = previous.and_then(|p| p.routes.get(&route.name));
            let limits = route
                .rate_limits
                .iter()
                .map(|l| {
                    let local = old
                        .and_then(|o| o.limits.iter().find(|x| x.config == *l))
                        .map(|x| x.local.clone())
                        .filter(|s| s.fits(l, max_keys))
                        .unwrap_or_else(|| Arc::new(LocalStore::new(l, max_keys)));
                    Limit {
                        config: l.clone(),
                        local,
                        shared: (l.store == LimitStore::Redis)
                            .then(|| shared.clone())
                            .flatten(),
                    }
                })
                .collect::<Vec<_>>();
            let policy = route
                .rate_limits
                .iter()
                .map(|l| {
                    format!(
                        "\"{}\";q={};w={}",
                        l.name,
                        l.requests,
                        l.period.as_secs_f64().ceil().max(1.0) as u64
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            routes.insert(
                route.name.clone(),
                RouteLimits {
                    route: route.name.clone(),
                    limits,
                    policy: HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
                    headers: route.rate_limit_headers,
                },
            );
        }
        Limits { routes, shared }
    }

    pub fn for_route(&self, route: &Arc<String>) -> Option<&RouteLimits> {
        self.routes.get(route)
    }
}

impl RouteLimits {
    /// Spends one request of the caller's budget in each limit, in order, and stops at
    /// the first that refuses (the limits before it have counted the request).
    pub async fn check(&self, caller: &Caller<'_>, checked: &mut Checked) -> Result<(), Error> {
        // The limit with the least left speaks for the route in `RateLimit`.
        let mut tightest: Option<(&RateLimitConfig, Decision)> = None;
        for limit in &self.limits {
            let key = Key::of(&limit.config, caller);
            let (outcome, store) = limit.check(&self.route, &key).await;
            checked.records.push(Record {
                policy: limit.config.name.clone(),
                result: outcome.label(),
                store,
            });
            let decision = match outcome {
                Outcome::Counted { decision, .. } => decision,
                Outcome::Unlimited => continue,
                Outcome::Refused => return Err(Error::LimitStoreUnavailable),
            };
            if !decision.allowed {
                return Err(Error::RateLimited {
                    retry_after: header_secs(decision.retry_after),
                    policy: self.policy.clone(),
                    limit: rate_limit_header(&limit.config, &decision),
                });
            }
            if tightest.is_none_or(|(_, d)| decision.remaining < d.remaining) {
                tightest = Some((&limit.config, decision));
            }
        }
        if self.headers
            && let Some((config, decision)) = tightest
        {
            checked.headers = Some((self.policy.clone(), rate_limit_header(config, &decision)));
        }
        Ok(())
    }
}

/// How one limit treated one request.
enum Outcome {
    /// A store counted it: the shared one, or the local one (`fallback`: under
    /// `on_store_error = "local"`).
    Counted { decision: Decision, fallback: bool },
    /// The store failed and `on_store_error = "allow"`.
    Unlimited,
    /// The store failed and `on_store_error = "deny"`.
    Refused,
}

impl Outcome {
    /// The `result` label of `portcullis_rate_limit_total`.
    fn label(&self) -> &'static str {
        match self {
            Outcome::Counted { decision, fallback } => match (decision.allowed, fallback) {
                (true, false) => "allowed",
                (false, false) => "limited",
                (true, true) => "fallback_allowed",
                (false, true) => "fallback_limited",
            },
            Outcome::Unlimited => "store_error_allowed",
            Outcome::Refused => "store_error_denied",
        }
    }
}

impl Limit {
    /// Counts the request in this limit's store; the store call, if one was made.
    async fn check(&self, route: &str, key: &Key<'_>) -> (Outcome, Option<StoreCall>) {
        let Some(shared) = &self.shared else {
            if self.config.store == LimitStore::Local {
                let decision = self.local.check(key);
                let fallback = false;
                return (Outcome::Counted { decision, fallback }, None);
            }
            // `[redis]` could not be used at all.
            return (self.on_store_error(key), None);
        };
        let start = Instant::now();
        let call = shared
            .check(&self.config, &key.shared_name(route, &self.config.name))
            .await;
        let mut store = StoreCall {
            elapsed: start.elapsed(),
            error: None,
            switched: call.switched,
        };
        let outcome = match call.result {
            Ok(decision) => Outcome::Counted {
                decision,
                fallback: false,
            },
            Err(e) => {
                store.error = Some(e.kind());
                self.on_store_error(key)
            }
        };
        (outcome, Some(store))
    }

    fn on_store_error(&self, key: &Key<'_>) -> Outcome {
        match self.config.on_store_error {
            OnStoreError::Local => Outcome::Counted {
                decision: self.local.check(key),
                fallback: true,
            },
            OnStoreError::Allow => Outcome::Unlimited,
            OnStoreError::Deny => Outcome::Refused,
        }
    }
}

/// Whole seconds for a header, rounded up: a client that waits that long is allowed.
fn header_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `RateLimit: "user";r=4;t=30` (draft-ietf-httpapi-ratelimit-headers).
fn rate_limit_header(limit: &RateLimitConfig, d: &Decision) -> HeaderValue {
    let v = format!(
        "\"{}\";r={};t={}",
        limit.name,
        d.remaining,
        header_secs(d.reset)
    );
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// The claims some rate limit counts by, for the verifier to keep from each token.
pub fn claims(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in config.routes.iter().flat_map(|r| &r.rate_limits) {
        if let LimitKey::Claim(name) = &l.key
            && !out.contains(name)
        {
            out.push(name.clone());
        }
    }
    out
}

/// The values of `names` in a token's claims: strings and numbers (an organisation id);
/// any other type is left out, and the request counts as its user.
pub fn claim_values(
    names: &[String],
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|n| {
            let v = match claims.get(n)? {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(x) => x.to_string(),
                _ => return None,
            };
            Some((n.clone(), v))
        })
        .collect()
}
