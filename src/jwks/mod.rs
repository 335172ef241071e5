//! A provider's JWKS, kept fresh in the background. Requests read the current key set
//! without taking a lock; a lock guards only the one fetch in flight, so concurrent
//! unknown-`kid` misses share a single refetch, and a cooldown caps how often those
//! misses may reach the issuer at all. A failed fetch never replaces a good key set.
//! With OIDC discovery, every fetch first reads the issuer's metadata for its `jwks_uri`,
//! under the same schedule, cooldown and outage rules; a document that speaks for
//! another issuer drops the keys (fail closed).

mod discovery;
mod fetch;
mod key;
mod settings;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio_util::sync::CancellationToken;

pub use discovery::document_url;
pub use fetch::{client, transport_problem};
pub use key::{Key, KeySet};
pub use settings::{JwksConfig, JwksLocation};

use crate::alg::Alg;
use crate::metrics::Metrics;

/// Never refresh more often than this on the issuer's `max-age` say-so.
const MIN_REFRESH: Duration = Duration::from_secs(30);
/// First retry delay after a failed fetch; doubles up to the cap below.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct KeyStore {
    provider: Arc<String>,
    config: JwksConfig,
    algorithms: Vec<Alg>,
    client: reqwest::Client,
    current: ArcSwapOption<KeySet>,
    /// Bumped when a fetch ends, whether it succeeded or failed: a caller that waited
    /// for the lock while one ran takes its outcome instead of fetching again (otherwise
    /// misses queued behind a hanging issuer would each wait out a fetch of their own).
    attempts: AtomicU64,
    /// Held for the duration of one fetch; never touched by readers.
    fetch_lock: tokio::sync::Mutex<()>,
    in_flight: AtomicBool,
    last_kid_refetch: Mutex<Option<Instant>>,
    /// When the last fetch that produced a usable key set landed, in [`clock_ms`]; 0
    /// before the first. An atomic, because every request reads it.
    last_success_ms: AtomicU64,
    /// The `jwks_uri` the last accepted discovery document named (discovery only).
    discovered: Mutex<Option<reqwest::Url>>,
    /// The last refusal of a discovery document, so each distinct one is logged once
    /// at error level rather than on every retry.
    refusal: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

/// What an unknown-`kid` refetch produced.
pub enum Refetch {
    /// A fetch (ours or a concurrent one) landed; look again in this set.
    Fresh(Arc<KeySet>),
    /// No fetch was made: the cooldown since the last unknown-`kid` refetch is running,
    /// or the fetch failed.
    Skipped,
}

impl KeyStore {
    /// A store for one provider. `seed`: keys to serve until the first fetch lands (a
    /// reload hands over the previous store's keys, so users stay signed in).
    pub fn new(
        provider: &Arc<String>,
        config: JwksConfig,
        algorithms: Vec<Alg>,
        client: reqwest::Client,
        metrics: Arc<Metrics>,
        seed: Option<Seed>,
    ) -> KeyStore {
        // A seed keeps its age: a reload must not make stale keys look fresh.
        let (keys, last_success_ms) = match seed {
            Some(s) => (Some(s.keys), s.fetched_ms),
            None => (None, 0),
        };
        KeyStore {
            provider: provider.clone(),
            config,
            algorithms,
            client,
            current: ArcSwapOption::new(keys),
            attempts: AtomicU64::new(0),
            fetch_lock: tokio::sync::Mutex::new(()),
            in_flight: AtomicBool::new(false),
            last_kid_refetch: Mutex::new(None),
            last_success_ms: AtomicU64::new(last_success_ms),
            discovered: Mutex::new(None),
            refusal: Mutex::new(None),
            metrics,
        }
    }

    pub fn config(&self) -> &JwksConfig {
        &self.config
    }

    pub fn algorithms(&self) -> &[Alg] {
        &self.algorithms
    }

    pub fn provider(&self) -> &Arc<String> {
        &self.provider
    }

    /// Time since the last fetch that produced a usable key set.
    pub fn last_success_age(&self) -> Option<Duration> {
        match self.last_success_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(clock_ms().saturating_sub(at))),
        }
    }

    /// The keys to verify with: `None` until the first fetch succeeds, and again once the
    /// last good fetch is older than `max_stale` (fail closed). Lock-free.
    #[inline]
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        if self.is_stale() {
            return None;
        }
        self.current.load_full()
    }

    /// Whether keys were loaded once but every refresh since `max_stale` failed.
    pub fn is_stale(&self) -> bool {
        self.last_success_age()
            .is_some_and(|age| age > self.config.max_stale)
    }

    /// What a reload hands to the store that replaces this one.
    pub fn seed(&self) -> Option<Seed> {
        Some(Seed {
            keys: self.current.load_full()?,
            fetched_ms: self.last_success_ms.load(Ordering::Relaxed),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.keys().is_some()
    }

    fn cooling_down(&self) -> bool {
        let last = self
            .last_kid_refetch
            .lock()
            .expect("cooldown clock poisoned");
        last.is_some_and(|t| t.elapsed() < self.config.refresh_cooldown)
    }

    /// A token named a `kid` the current set lacks. Refetches at most once per
    /// `refresh_cooldown`; concurrent callers share one fetch.
    pub async fn refetch_for_unknown_kid(&self) -> Refetch {
        let seen = self.attempts.load(Ordering::Acquire);
        if self.cooling_down() && !self.in_flight.load(Ordering::Acquire) {
            return Refetch::Skipped;
        }
        let _guard = self.fetch_lock.lock().await;
        if self.attempts.load(Ordering::Acquire) != seen {
            return self.keys().map_or(Refetch::Skipped, Refetch::Fresh);
        }
        {
            let mut last = self
                .last_kid_refetch
                .lock()
                .expect("cooldown clock poisoned");
            if last.is_some_and(|t| t.elapsed() < self.config.refresh_cooldown) {
                return Refetch::Skipped;
            }
            *last = Some(Instant::now());
        }
        self.in_flight.store(true, Ordering::Release);
        let result = self.fetch_and_swap("unknown kid").await;
        self.in_flight.store(false, Ordering::Release);
        match result {
            Ok(_) => self.keys().map_or(Refetch::Skipped, Refetch::Fresh),
            Err(()) => Refetch::Skipped,
        }
    }

    /// Fetches and, when the document is usable, swaps it in. Returns the issuer's
    /// `max-age` hint. Errors are logged here; the old set stays. The caller holds
    /// `fetch_lock`.
    async fn fetch_and_swap(&self, reason: &'static str) -> Result<Option<Duration>, ()> {
        let result = self.fetch_and_swap_once(reason).await;
        self.attempts.fetch_add(1, Ordering::AcqRel);
        result
    }

    async fn fetch_and_swap_once(&self, reason: &'static str) -> Result<Option<Duration>, ()> {
        let url = match &self.config.location {
            JwksLocation::Url(url) => url.clone(),
            JwksLocation::Discovery { document, issuer } => {
                self.discover(document, issuer, reason).await?
            }
        };
        let fetched = match fetch::fetch(&self.client, &url, self.config.fetch_timeout).await {
            Ok(f) => f,
            Err(e) => {
                self.metrics.jwks_fetch(&self.provider, false);
                tracing::warn!(
                    provider = %self.provider, %url, reason,
                    error = %crate::error::chain(&e),
                    "JWKS fetch failed; keeping the last good keys"
                );
                return Err(());
            }
        };
        let previous = self.keys();
        match KeySet::parse(&fetched.body, &self.algorithms, previous.as_deref()) {
            Ok(parsed) => {
                for (kid, why) in &parsed.skipped {
                    tracing::warn!(provider = %self.provider, kid = kid.as_deref().unwrap_or("-"), "skipped a JWKS entry: {why}");
                }
                let n = parsed.set.len();
                self.current.store(Some(Arc::new(parsed.set)));
                self.last_success_ms.store(clock_ms(), Ordering::Relaxed);
                self.metrics.jwks_fetch(&self.provider, true);
                tracing::info!(provider = %self.provider, keys = n, reason, "JWKS loaded");
                Ok(fetched.max_age)
            }
            Err(e) => {
                self.metrics.jwks_fetch(&self.provider, false);
                tracing::warn!(provider = %self.provider, %url, reason, "JWKS refused: {e}; keeping the last good keys");
                Err(())
            }
        }
    }

    /// Reads the discovery document for the `jwks_uri` to fetch. An outage (no answer, or
    /// no metadata in it) falls back to the last `jwks_uri` accepted, so keys stay fresh
    /// while only the metadata endpoint is down. A document for another issuer, or one
    /// naming a JWKS the gateway may not fetch, drops the keys: the provider is not ready
    /// and its tokens get 503 until the issuer publishes a document that fits.
    async fn discover(
        &self,
        document: &reqwest::Url,
        issuer: &str,
        reason: &'static str,
    ) -> Result<reqwest::Url, ()> {
        let allow_http = self.config.insecure_allow_http;
        let timeout = self.config.fetch_timeout;
        let result = discovery::jwks_uri(&self.client, document, issuer, timeout, allow_http).await;
        let mut known = self.discovered.lock().expect("discovered uri poisoned");
        match result {
            Ok(uri) => {
                let was_refused = self.refusal.lock().expect("refusal poisoned").take();
                if was_refused.is_some() {
                    tracing::info!(provider = %self.provider, %document, "discovery document accepted again");
                }
                if let Some(old) = known.as_ref().filter(|old| **old != uri) {
                    tracing::info!(provider = %self.provider, from = %old, to = %uri, "jwks_uri moved; following it");
                }
                *known = Some(uri.clone());
                Ok(uri)
            }
            Err(e) if e.is_refusal() => {
                *known = None;
                drop(known);
                self.current.store(None);
                self.metrics.jwks_fetch(&self.provider, false);
                let message = e.to_string();
                let mut last = self.refusal.lock().expect("refusal poisoned");
                if last.as_deref() != Some(message.as_str()) {
                    tracing::error!(
                        provider = %self.provider, %document, reason,
                        "discovery document refused: {message}; the provider has no keys until it is fixed"
                    );
                    *last = Some(message);
                } else {
                    tracing::debug!(provider = %self.provider, %document, reason, "discovery document still refused");
                }
                Err(())
            }
            Err(e) => match known.clone() {
                Some(uri) => {
                    tracing::warn!(
                        provider = %self.provider, %document, reason, error = %crate::error::chain(&e),
                        "OIDC discovery failed; fetching keys from the last known jwks_uri"
                    );
                    Ok(uri)
                }
                None => {
                    self.metrics.jwks_fetch(&self.provider, false);
                    tracing::warn!(
                        provider = %self.provider, %document, reason, error = %crate::error::chain(&e),
                        "OIDC discovery failed; keeping the last good keys"
                    );
                    Err(())
                }
            },
        }
    }

    /// Loads the keys at start (retrying with capped exponential backoff while the issuer
    /// is down), then refreshes every `refresh_interval`, sooner if the issuer's
    /// `max-age` asks for it. Returns when `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        let mut reason = "start";
        loop {
            let result = {
                let _guard = self.fetch_lock.lock().await;
                self.fetch_and_swap(reason).await
            };
            let wait = match result {
                Ok(max_age) => {
                    backoff = FIRST_BACKOFF;
                    let interval = self.config.refresh_interval;
                    max_age.map_or(interval, |m| interval.min(m.max(MIN_REFRESH)))
                }
                Err(()) => {
                    let wait = backoff;
                    backoff = (backoff * 2)
                        .min(MAX_BACKOFF)
                        .min(self.config.refresh_interval.max(FIRST_BACKOFF));
                    wait
                }
            };
            reason = if self.is_ready() { "periodic" } else { "start" };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return,
            }
        }
    }
}

/// The keys a reload carries over, with when they were fetched.
pub struct Seed {
    keys: Arc<KeySet>,
    fetched_ms: u64,
}

/// Milliseconds on a process-wide monotonic clock, never 0.
fn clock_ms() -> u64 {
    static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    let epoch = *EPOCH;
    epoch.elapsed().as_millis() as u64 + 1
}
