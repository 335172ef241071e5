//! The in-process store: one GCRA cell per key (`governor`), in a cache bounded to
//! `server.rate_limit_keys` keys. The least recently used key is forgotten first, and a
//! key idle long enough to have its whole burst back is forgotten anyway (it would start
//! from a full budget either way), so memory stays bounded however many keys arrive.

use std::hash::{BuildHasher, Hash, RandomState};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, QuantaClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use moka::sync::Cache;

use super::Decision;
use crate::config::RateLimitConfig;

type Cell = RateLimiter<NotKeyed, InMemoryState, QuantaClock, StateInformationMiddleware>;

pub struct LocalStore {
    quota: Quota,
    clock: QuantaClock,
    /// Keys are hashed with a per-process random key: an attacker cannot pick two keys
    /// that share a budget.
    hasher: RandomState,
    cells: Cache<u64, Arc<Cell>>,
    /// What the cache was sized for, so a reload keeps the store only when it fits.
    settings: (Duration, u32, u64),
}

impl LocalStore {
    pub fn new(limit: &RateLimitConfig, max_keys: u64) -> LocalStore {
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(limit.interval())
            .expect("validated: the interval is at least a microsecond")
            .allow_burst(burst);
        let full_again = limit.interval() * limit.burst;
        LocalStore {
            quota,
            clock: QuantaClock::default(),
            hasher: RandomState::new(),
            cells: Cache::builder()
                .max_capacity(max_keys)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_idle(full_again.max(Duration::from_secs(1)))
                .build(),
            settings: (limit.interval(), limit.burst, max_keys),
        }
    }

    /// Whether this store counts the way `limit` with `max_keys` asks.
    pub fn fits(&self, limit: &RateLimitConfig, max_keys: u64) -> bool {
        self.settings == (limit.interval(), limit.burst, max_keys)
    }

    /// Spends one request of `key`'s budget, if it has one left.
    pub fn check(&self, key: impl Hash) -> Decision {
        let h = self.hasher.hash_one(key);
        let cell = self.cells.get(&h).unwrap_or_else(|| {
            // Two first requests of one key at once may each make a cell; one is kept.
            // Cheaper than `get_with`'s coordination on the path every new key takes.
            let cell = Arc::new(
                RateLimiter::direct_with_clock(self.quota, self.clock.clone())
                    .with_middleware::<StateInformationMiddleware>(),
            );
            self.cells.insert(h, cell.clone());
            cell
        });
        let interval = self.quota.replenish_interval();
        match cell.check() {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let spent = self.quota.burst_size().get() - remaining;
                Decision {
                    allowed: true,
                    remaining,
                    reset: interval * spent,
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    remaining: 0,
                    reset: wait + interval * (self.quota.burst_size().get() - 1),
                    retry_after: wait,
                }
            }
        }
    }

    /// Keys held now (after pending evictions are applied).
    #[cfg(test)]
    pub fn keys(&self) -> u64 {
        self.cells.run_pending_tasks();
        self.cells.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LimitKey, LimitStore, OnStoreError};

    fn limit(requests: u32, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            key: LimitKey::User,
            requests,
            period: Duration::from_secs(60),
            burst,
            store: LimitStore::Local,
            on_store_error: OnStoreError::Local,
            name: Arc::new("user".into()),
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_waits_and_others_are_unaffected() {
        let store = LocalStore::new(&limit(60, 3), 1000);
        for left in [2, 1, 0] {
            let d = store.check("alice");
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let d = store.check("alice");
        assert!(!d.allowed);
        // One request a second comes back.
        assert!(d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_secs(1));
        assert!(store.check("bob").allowed);
    }

    /// Resident memory of this process, from /proc.
    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn a_million_distinct_keys_stay_within_the_key_bound() {
        const BOUND: u64 = 10_000;
        let store = LocalStore::new(&limit(100, 20), BOUND);
        let before = rss_bytes();
        for i in 0..1_000_000u64 {
            assert!(store.check(i).allowed, "every new key has a full budget");
        }
        let keys = store.keys();
        let grown = rss_bytes().saturating_sub(before);
        eprintln!(
            "1M keys: {keys} held, resident memory grew by {} KiB",
            grown >> 10
        );
        assert!(keys <= BOUND, "{keys} keys held, bound {BOUND}");
        // A million cells held would take well over 100 MB; the bound holds it to a
        // few MB (other tests of this binary run alongside, hence the margin).
        assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
    }
}
