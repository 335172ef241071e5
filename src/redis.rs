//! The one client to `[redis]`, the state every replica shares. A single multiplexed
//! connection that reconnects by itself; every command is bounded by `redis.timeout`, so
//! the request path never waits on Redis longer than that, whatever Redis does. The
//! password comes from `password_env` and is never logged.
//!
//! Use [`Redis::run`] for a command and [`Redis::invoke`] for a Lua script (EVALSHA, with
//! one SCRIPT LOAD when Redis does not know it yet). A subscriber needs a connection of
//! its own: open it with [`Redis::client`] (`get_async_pubsub`), which carries the same
//! address, TLS and password.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, IntoConnectionInfo, ScriptInvocation};

use crate::config::RedisConfig;

/// Why a command gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis failed")]
    Redis(#[source] redis::RedisError),
}

impl StoreError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout(_) => "timeout",
            StoreError::Redis(e) if e.is_io_error() || e.is_connection_dropped() => "connection",
            StoreError::Redis(_) => "error",
        }
    }
}

pub struct Redis {
    config: RedisConfig,
    #[allow(dead_code)] // For subscribers (pub/sub), which need their own connection.
    client: Client,
    conn: ConnectionManager,
}

impl Redis {
    /// A client for `config`. It connects on first use, in the background, so a gateway
    /// starts (and applies each limit's `on_store_error`) while Redis is down. Needs a
    /// Tokio runtime.
    pub fn new(config: &RedisConfig) -> Result<Redis, redis::RedisError> {
        let mut info = config.url.as_str().into_connection_info()?;
        if let Some(password) = &config.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = match &config.ca {
            None => Client::open(info)?,
            Some((_, pem)) => Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            )?,
        };
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(config.timeout))
            // A failed reconnection is retried on the next command: a short backoff, so
            // the shared budget is back soon after Redis is.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)?;
        // Connect now, in the background: the first requests should not pay for the
        // connection (and time out on it).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let mut warm = conn.clone();
            rt.spawn(async move {
                let _: redis::RedisResult<()> = redis::cmd("PING").query_async(&mut warm).await;
            });
        }
        Ok(Redis {
            config: config.clone(),
            client,
            conn,
        })
    }

    /// The settings this client was built from (a reload keeps the client when they match).
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The client behind the shared connection: the way to open another connection to
    /// the same Redis (a pub/sub subscriber).
    #[allow(dead_code)]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one command within the timeout.
    #[allow(dead_code)] // The general entry point; the rate limiter only runs scripts.
    pub async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs a script (EVALSHA) within the timeout.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        script: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.bounded(async move { script.invoke_async(&mut conn).await })
            .await
    }

    async fn bounded<T>(
        &self,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + self.config.timeout;
        match tokio::time::timeout_at(deadline.into(), f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout(self.config.timeout)),
        }
    }
}
