//! Revocation: tokens the gateway refuses although they verify. A user (`sub`, every
//! token issued before a time), one token (`jti`) or one session (the provider's
//! `session_claim`) can be revoked. Every replica holds the whole set in memory and reads
//! it without a lock on every request (also on a verified-token cache hit), so the check
//! is a few hash lookups and never a network call. Each entry lives only as long as a
//! token it could refuse (`revocation.max_token_lifetime` plus the largest provider
//! leeway), then disappears from memory and, with `[redis]`, from Redis.
//!
//! [`sync`] shares the set through Redis; [`admin`] is `POST /revoke`.

pub mod admin;
mod set;
pub mod sync;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TokenError;
use crate::token::Claims;
use crate::verify::Identity;
pub(crate) use set::Set;

/// Longest `sub`, `jti` or session id accepted in a revocation.
pub const MAX_ID_LEN: usize = 1024;

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A user: tokens whose `iat` is before `before` are refused.
    Sub,
    /// One token, by its `jti`.
    Jti,
    /// One session, by the claim the provider's `session_claim` names.
    Sid,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sub => "sub",
            Kind::Jti => "jti",
            Kind::Sid => "sid",
        }
    }
}

/// One revocation, as stored in Redis and sent to every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kind: Kind,
    pub id: String,
    /// For `sub`: tokens issued (`iat`) before this Unix time are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// Unix time after which no token the entry could refuse is still valid.
    pub expires: i64,
}

impl Entry {
    /// A revocation of `id`, made now, kept for `keep` (past `before`, for a user).
    pub fn new(kind: Kind, id: String, before: Option<i64>, keep: Duration) -> Entry {
        let keep = i64::try_from(keep.as_secs()).unwrap_or(i64::MAX / 2);
        let from = match kind {
            // Without a time: every token issued up to now. `iat` is in whole seconds and
            // a token of this very second may predate the call, so the default is the next
            // second (a sign-in in the same second needs a new token a moment later).
            Kind::Sub => before.unwrap_or_else(|| unix_now() + 1),
            Kind::Jti | Kind::Sid => unix_now(),
        };
        Entry {
            kind,
            before: (kind == Kind::Sub).then_some(from),
            id,
            expires: from.saturating_add(keep).saturating_add(1),
        }
    }

    pub fn is_live(&self, now: i64) -> bool {
        self.expires > now
    }
}

/// What a verified token carries that a revocation can name, read once when it is
/// verified (and cached with it).
#[derive(Debug, Default)]
pub struct Marks {
    pub iat: Option<f64>,
    pub jti: Option<Box<str>>,
    pub session: Option<Box<str>>,
}

impl Marks {
    /// `iat`, `jti` and the provider's session claim (a top-level string), when present.
    pub fn of(claims: &Claims, session_claim: Option<&str>) -> Marks {
        let text = |name: &str| match claims.all.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(Box::from(s.as_str())),
            _ => None,
        };
        Marks {
            iat: claims.iat,
            jti: text("jti"),
            session: session_claim.and_then(text),
        }
    }
}

/// The revocation set of this replica. Reads load a snapshot without a lock; writers
/// (the admin endpoint, the Redis subscriber, the expiry sweep) build a new snapshot and
/// swap it in, one at a time.
pub struct Revocations {
    set: arc_swap::ArcSwap<Set>,
    write: std::sync::Mutex<()>,
    /// The set has been loaded from Redis (always true without `[redis]`).
    loaded: AtomicBool,
    /// The subscription to Redis is up: the set is current, not the last one seen.
    connected: AtomicBool,
    /// When the set was last known to be current, for the sync-age metric.
    last_sync: std::sync::Mutex<Option<std::time::Instant>>,
    /// Where revocations are shared (`[redis]`); `None`: this process only.
    store: Option<sync::Store>,
}

impl Revocations {
    /// An empty set, shared through `store` when there is one: it must then be loaded
    /// from Redis before the gateway is ready.
    pub fn new(store: Option<sync::Store>) -> Revocations {
        let local = store.is_none();
        Revocations {
            set: arc_swap::ArcSwap::from_pointee(Set::default()),
            write: std::sync::Mutex::new(()),
            loaded: AtomicBool::new(local),
            connected: AtomicBool::new(local),
            last_sync: std::sync::Mutex::new(None),
            store,
        }
    }

    /// For the config in force when the gateway starts: shared when it has `[redis]`.
    pub fn for_config(config: &crate::config::Config) -> Revocations {
        let store = config
            .redis
            .as_ref()
            .and_then(|rc| match sync::Store::new(rc) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(
                        "revocations: cannot use [redis]: {}",
                        crate::error::chain(&e)
                    );
                    None
                }
            });
        Revocations::new(store)
    }

    /// Whether `id` has been revoked. One atomic load and up to three hash lookups.
    #[inline]
    pub fn check(&self, id: &Identity) -> Result<(), TokenError> {
        let set = self.set.load();
        if set.is_empty() {
            return Ok(());
        }
        if set.refuses(id.user_id(), &id.marks, unix_now()) {
            return Err(TokenError::Revoked);
        }
        Ok(())
    }

    /// Adds entries (a user's entries keep the latest `before`).
    pub fn add(&self, entries: impl IntoIterator<Item = Entry>) {
        let _one_writer = self.write.lock().expect("revocation writer poisoned");
        let mut next = Set::clone(&self.set.load());
        let now = unix_now();
        for e in entries {
            next.insert(e, now);
        }
        self.set.store(Arc::new(next));
    }

    /// Entries held here that `others` (a load from Redis) lacks: Redis lost them (a
    /// restart without persistence) while this replica still enforces them.
    pub fn missing_from(&self, others: &[Entry]) -> Vec<Entry> {
        let known: std::collections::HashSet<(Kind, &str)> =
            others.iter().map(|e| (e.kind, e.id.as_str())).collect();
        let now = unix_now();
        self.set
            .load()
            .entries()
            .into_iter()
            .filter(|e| e.is_live(now) && !known.contains(&(e.kind, e.id.as_str())))
            .collect()
    }

    /// Drops entries that can no longer refuse anything.
    pub fn expire(&self) {
        let now = unix_now();
        if !self.set.load().has_expired(now) {
            return;
        }
        let _one_writer = self.write.lock().expect("revocation writer poisoned");
        let mut next = Set::clone(&self.set.load());
        next.retain_live(now);
        self.set.store(Arc::new(next));
    }

    /// Entries in force now.
    pub fn len(&self) -> usize {
        self.set.load().len()
    }

    /// Whether the set has been loaded (what `/readyz` waits for).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Whether the set is kept current now (false while Redis is unreachable).
    pub fn is_current(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Seconds since the set was last known current: 0 while it is, +Inf before the
    /// first load.
    pub fn sync_age(&self) -> f64 {
        if self.is_current() {
            return 0.0;
        }
        match *self.last_sync.lock().expect("sync clock poisoned") {
            Some(at) => at.elapsed().as_secs_f64(),
            None => f64::INFINITY,
        }
    }

    /// Records whether the set is current; the moment it stops being so starts the
    /// sync-age clock.
    fn set_current(&self, current: bool) {
        let mut last = self.last_sync.lock().expect("sync clock poisoned");
        if current {
            self.loaded.store(true, Ordering::Release);
        } else if self.connected.load(Ordering::Acquire) {
            *last = Some(std::time::Instant::now());
        }
        self.connected.store(current, Ordering::Release);
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
