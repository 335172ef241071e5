//! Portcullis: a JWT-verifying reverse proxy. It fetches and caches an issuer's JWKS,
//! verifies the bearer token of every request, and forwards it to the backend with a
//! trusted user id header the backend filters its data by.
//!
//! `main.rs` is a thin CLI: it loads the config file, starts a [`Gateway`] with
//! [`Gateway::start_from`], reloads it on SIGHUP and shuts it down on SIGTERM or SIGINT.
//! Tests start a [`Gateway`] in-process on `127.0.0.1:0`.

#![forbid(unsafe_code)]

pub mod access_log;
mod admin;
mod alg;
mod body;
mod client_ip;
pub mod config;
mod conn;
mod cors;
mod csrf;
mod error;
mod headers;
mod jwks;
mod limit;
mod listener;
mod metrics;
pub mod path;
mod proxy;
mod redis;
mod revoke;
mod route;
mod server;
mod session;
mod state;
mod tls;
mod token;
mod upstream;
mod verify;

pub use alg::Alg;
pub use config::Config;
pub use server::Gateway;

/// Internals exposed for the benchmarks (`benches/`) and fuzz targets (`fuzz/`) only:
/// not a stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::error::{Error, TokenError};
    pub use crate::headers::{
        IdentityHeaders, OVERRIDE_HEADERS, Outbound, rewrite_request, strip_hop_by_hop,
    };
    pub use crate::jwks::{Key, KeySet};
    pub use crate::route::{Match, RouteTable};
    pub use crate::token::{Profile, bearer, parse as parse_token};
    pub use crate::verify::Authenticator;

    /// The authenticator of `config` outside a running gateway (its verified-token
    /// cache included), for the benchmarks.
    pub fn authenticator(config: &crate::Config) -> Authenticator {
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        Authenticator::new(config, &crate::jwks::client(), &metrics, None)
    }
}

/// What to revoke, as `portcullis revoke` takes it: exactly one of `sub` (with an
/// optional `before`, Unix seconds; default now), `jti` or `sid`.
#[derive(Debug, Default, Clone)]
pub struct Revocation {
    pub sub: Option<String>,
    pub before: Option<i64>,
    pub jti: Option<String>,
    pub sid: Option<String>,
}

/// Stores a revocation in `config`'s `[redis]`, from where every gateway sharing it
/// enforces it within a moment. Fails when the config has no `[redis]` or Redis cannot
/// store it.
pub async fn revoke(config: &Config, what: Revocation) -> anyhow::Result<()> {
    let entry = revoke::admin::entry(
        what.sub,
        what.before,
        what.jti,
        what.sid,
        config.revocation.keep,
    )?;
    revoke::sync::revoke_in(config, entry).await
}
