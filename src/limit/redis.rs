//! The shared store: one GCRA cell per key in Redis, updated by one Lua script (EVALSHA)
//! in one round trip, so every replica spends the same budget. Time comes from Redis's
//! own clock, so replicas with skewed clocks still agree. Each key expires once its
//! budget is whole again: Redis never holds more than the keys active within a window,
//! and a Redis restart loses at most that window.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_lc_rs::digest;
use redis::Script;

use super::Decision;
use crate::config::RateLimitConfig;
use crate::redis::{Redis, StoreError};

/// KEYS[1]: the cell. ARGV[1]: the interval (µs) one request costs; ARGV[2]: the burst.
/// The cell holds the theoretical arrival time (TAT) in µs of Redis time. Returns
/// {allowed, remaining, retry_after µs, reset µs}.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
";

/// The shared store of one `[redis]`, and whether it answered last time (so a switch
/// to `on_store_error` and back is reported once, not per request).
pub struct SharedStore {
    redis: Arc<Redis>,
    script: Script,
    up: AtomicBool,
}

/// What one call to the shared store did.
pub struct Call {
    pub result: Result<Decision, StoreError>,
    /// `Some(up)` when this call changed whether the store answers.
    pub switched: Option<bool>,
}

impl SharedStore {
    pub fn new(redis: Arc<Redis>) -> SharedStore {
        SharedStore {
            redis,
            script: Script::new(GCRA),
            up: AtomicBool::new(true),
        }
    }

    pub fn redis(&self) -> &Arc<Redis> {
        &self.redis
    }

    /// Spends one request of the budget of `key` (bytes that name the route, the policy
    /// and the caller), if it has one left.
    pub async fn check(&self, limit: &RateLimitConfig, key: &[u8]) -> Call {
        let mut invocation = self.script.key(cell_name(key));
        invocation
            .arg(limit.interval().as_micros() as u64)
            .arg(limit.burst);
        let result = self
            .redis
            .invoke::<(i64, i64, i64, i64)>(&invocation)
            .await
            .map(|(allowed, remaining, retry_us, reset_us)| Decision {
                allowed: allowed == 1,
                remaining: remaining.clamp(0, u32::MAX as i64) as u32,
                retry_after: micros(retry_us),
                reset: micros(reset_us),
            });
        let up = result.is_ok();
        // Read first: the flag is written only when it changes, not by every request.
        let switched = (self.up.load(Ordering::Relaxed) != up
            && self.up.swap(up, Ordering::Relaxed) != up)
            .then_some(up);
        Call { result, switched }
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

/// `portcullis:rl:` and a digest of the key: fixed length, and no user id in Redis.
fn cell_name(key: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, key);
    let mut name = String::with_capacity(14 + 32);
    name.push_str("portcullis:rl:");
    for b in &d.as_ref()[..16] {
        let _ = write!(name, "{b:02x}");
    }
    name
}
