//! How the set travels. Without `[redis]` it lives in this process only: `POST /revoke`
//! adds to it and nothing else sees it. With `[redis]`, a revocation is one key per entry
//! (`portcullis:revoked:<kind>:<id>`, expiring with the entry, so Redis never grows) and
//! one message on the `portcullis:revocations` channel, written by one script. Each
//! replica subscribes, then loads every key, then applies what arrived meanwhile: only
//! then is it ready. When the subscription breaks it keeps the set it has, retries, and
//! loads the whole set again once Redis is back (merging it with the one it holds, and
//! writing back what Redis lost).
//!
//! Revocation commands are never on the request path: they wait up to `redis.timeout`
//! or [`MIN_TIMEOUT`], whichever is longer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::Script;
use tokio_util::sync::CancellationToken;

use super::{Entry, Kind, Revocations};
use crate::config::{Config, RedisConfig};
use crate::redis::{Redis, StoreError};

/// How often expired entries are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// Shortest wait for a revocation command (a full load reads every entry).
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between two attempts to reach Redis again.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// Keys read per SCAN / MGET round trip while loading.
const LOAD_BATCH: usize = 1000;

pub const CHANNEL: &str = "portcullis:revocations";
pub const KEY_PREFIX: &str = "portcullis:revoked:";

/// Stores an entry unless a longer-lived one is there already, and announces it.
/// KEYS[1]: the entry's key. ARGV: the entry (JSON), its expiry (Unix seconds), the
/// channel.
const STORE: &str = r"
local old = redis.call('GET', KEYS[1])
if old then
  local ok, e = pcall(cjson.decode, old)
  if ok and type(e) == 'table' and tonumber(e.expires) and tonumber(e.expires) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
";

/// Why a revocation could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("Redis is unreachable")]
    Store(#[from] StoreError),
    #[error("[redis] cannot be used")]
    Client(#[source] redis::RedisError),
}

/// The revocation set's place in Redis.
pub struct Store {
    redis: Redis,
    script: Script,
}

impl Store {
    /// A client for `config`, with revocation's longer command timeout. Needs a Tokio
    /// runtime; connects on first use.
    pub fn new(config: &RedisConfig) -> Result<Store, redis::RedisError> {
        let config = RedisConfig {
            timeout: config.timeout.max(MIN_TIMEOUT),
            ..config.clone()
        };
        Ok(Store {
            redis: Redis::new(&config)?,
            script: Script::new(STORE),
        })
    }

    /// Stores `entry` with its expiry and sends it to every replica.
    pub async fn put(&self, entry: &Entry) -> Result<(), StoreError> {
        let json = serde_json::to_string(entry).expect("an entry serializes");
        let mut call = self.script.key(key(entry.kind, &entry.id));
        call.arg(json).arg(entry.expires).arg(CHANNEL);
        self.redis.invoke::<i64>(&call).await.map(drop)
    }

    /// Every entry in Redis now.
    async fn load(&self) -> Result<Vec<Entry>, StoreError> {
        let mut entries = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .redis
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{KEY_PREFIX}*"))
                        .arg("COUNT")
                        .arg(LOAD_BATCH),
                )
                .await?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> =
                    self.redis.run(redis::cmd("MGET").arg(&keys)).await?;
                // A key gone between SCAN and MGET has expired; one that does not parse
                // was not written by a gateway.
                entries.extend(
                    values
                        .iter()
                        .flatten()
                        .filter_map(|v| serde_json::from_str::<Entry>(v).ok()),
                );
            }
            if next == 0 {
                return Ok(entries);
            }
            cursor = next;
        }
    }
}

fn key(kind: Kind, id: &str) -> String {
    format!("{KEY_PREFIX}{}:{id}", kind.as_str())
}

impl Revocations {
    /// Stores `entry` (in Redis first, with `[redis]`) and puts it in force on this
    /// replica at once.
    pub async fn revoke(&self, entry: Entry) -> Result<(), RevokeError> {
        if let Some(store) = &self.store {
            store.put(&entry).await?;
        }
        self.add([entry]);
        Ok(())
    }
}

/// Stores one revocation through `config`'s `[redis]`, as `portcullis revoke` does.
pub async fn revoke_in(config: &Config, entry: Entry) -> anyhow::Result<()> {
    let Some(rc) = &config.redis else {
        anyhow::bail!(
            "the config has no [redis] table: revocations then live in each gateway's memory; \
             send POST /revoke to the admin listener of every gateway instead"
        );
    };
    let store = Store::new(rc).map_err(RevokeError::Client)?;
    store.put(&entry).await.map_err(RevokeError::Store)?;
    Ok(())
}

/// Keeps the set current until `cancel`: drops expired entries and, with `[redis]`,
/// follows the shared set.
pub async fn run(revocations: Arc<Revocations>, cancel: CancellationToken) {
    tokio::join!(sweep(&revocations, &cancel), follow(&revocations, &cancel));
}

async fn sweep(revocations: &Revocations, cancel: &CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => revocations.expire(),
            () = cancel.cancelled() => return,
        }
    }
}

/// Subscribes and loads, again after every break, until `cancel`.
async fn follow(revocations: &Revocations, cancel: &CancellationToken) {
    let Some(store) = &revocations.store else {
        return;
    };
    loop {
        let why = tokio::select! {
            why = subscribe(revocations, store) => why,
            () = cancel.cancelled() => return,
        };
        if revocations.is_current() {
            tracing::warn!(
                entries = revocations.len(),
                "revocations: lost Redis ({}); enforcing the set held, new revocations are refused until it is back",
                crate::error::chain(&*why)
            );
        } else {
            tracing::debug!(
                "revocations: Redis not reachable: {}",
                crate::error::chain(&*why)
            );
        }
        revocations.set_current(false);
        tokio::select! {
            () = tokio::time::sleep(RETRY_EVERY) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// One subscription: subscribe, load everything, then apply each message until the
/// connection breaks (the returned reason).
async fn subscribe(
    revocations: &Revocations,
    store: &Store,
) -> Box<dyn std::error::Error + Send + Sync> {
    let timeout = store.redis.config().timeout;
    let connect = async {
        let mut pubsub = store.redis.client().get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let mut pubsub = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Box::new(e),
        Err(_) => return Box::new(StoreError::Timeout(timeout)),
    };
    // Subscribed first, so nothing sent while the set loads is missed.
    let entries = match store.load().await {
        Ok(e) => e,
        Err(e) => return Box::new(e),
    };
    // Merged, never replaced: a revocation is only ever dropped when it expires. What
    // Redis lost (restarted without persistence) is written back, for replicas to come.
    let lost = revocations.missing_from(&entries);
    revocations.add(entries);
    for e in &lost {
        if let Err(e) = store.put(e).await {
            return Box::new(e);
        }
    }
    if !lost.is_empty() {
        tracing::warn!(
            entries = lost.len(),
            "revocations: Redis had lost entries this replica holds; stored them again"
        );
    }
    revocations.set_current(true);
    tracing::info!(
        entries = revocations.len(),
        "revocations: loaded from Redis, following changes"
    );
    let mut messages = pubsub.on_message();
    while let Some(first) = messages.next().await {
        // Every message already received goes in with the first: one new snapshot per
        // burst (a mass sign-out), not one per revocation.
        let mut batch = vec![first];
        while let Some(Some(more)) = messages.next().now_or_never() {
            batch.push(more);
        }
        let entries: Vec<Entry> = batch
            .iter()
            .filter_map(|m| {
                let entry = m
                    .get_payload::<String>()
                    .ok()
                    .and_then(|p| serde_json::from_str::<Entry>(&p).ok());
                if entry.is_none() {
                    tracing::warn!("revocations: ignored a message that is not a revocation");
                }
                entry
            })
            .collect();
        revocations.add(entries);
    }
    Box::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the subscription ended",
    ))
}
