//! Serde mirror of the TOML file: every table denies unknown keys, so a misspelled
//! `audiences` is an error instead of a silently disabled check. Nothing here is used on
//! the request path; `validate` turns it into the typed [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::alg::Alg;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub identity: RawIdentity,
    pub cors: Option<RawCors>,
    pub cookies: Option<RawCookies>,
    pub redis: Option<RawRedis>,
    #[serde(default)]
    pub revocation: RawRevocation,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRevocation {
    pub max_token_lifetime: Option<Spanned<String>>,
}

/// `[cookies]`: the Better Auth session cookie, the cookies kept from backends, and the
/// origins a cookie-authenticated request that changes state may come from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCookies {
    pub session_cookie: Option<Spanned<String>>,
    pub strip: Option<Spanned<Vec<String>>>,
    pub trusted_origins: Option<Spanned<Vec<String>>>,
}

/// Where a route takes its token from; `token_sources` lists them in the order tried.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// `Authorization: Bearer <JWT>`.
    Authorization,
    /// Better Auth's signed session cookie (`[cookies] session_cookie`), checked as a
    /// session-cache JWT, never as a bearer token.
    SessionCookie,
    /// A cookie of this name holding a bearer JWT, checked like the header's.
    Cookie(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    pub url: Spanned<String>,
    pub password_env: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub ca: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub key: Spanned<String>,
    pub requests: Spanned<u32>,
    pub period: Spanned<String>,
    pub burst: Option<Spanned<u32>>,
    pub store: Option<Spanned<crate::config::LimitStore>>,
    pub on_store_error: Option<crate::config::OnStoreError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    pub allowed_origins: Spanned<Vec<String>>,
    pub allowed_methods: Option<Spanned<Vec<String>>>,
    pub allowed_headers: Option<Spanned<Vec<String>>>,
    pub expose_headers: Option<Spanned<Vec<String>>>,
    pub allow_credentials: Option<bool>,
    pub max_age: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub admin_listen: Option<Spanned<String>>,
    pub admin_token_env: Option<Spanned<String>>,
    pub upstream_timeout: Option<Spanned<String>>,
    pub shutdown_timeout: Option<Spanned<String>>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub token_cache_entries: Option<u64>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_connections: Option<usize>,
    pub max_upstream_requests: Option<usize>,
    pub max_header_bytes: Option<Spanned<usize>>,
    pub trusted_proxies: Option<Spanned<Vec<String>>>,
    pub rate_limit_keys: Option<u64>,
    pub access_log: Option<bool>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub name: Spanned<String>,
    pub issuer: Spanned<String>,
    pub jwks_url: Option<Spanned<String>>,
    pub discovery: Option<Spanned<bool>>,
    pub discovery_url: Option<Spanned<String>>,
    pub jwks_file: Option<Spanned<String>>,
    pub jwks: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
    pub roles_claim: Option<Spanned<String>>,
    pub scopes_claim: Option<Spanned<String>>,
    pub session_claim: Option<Spanned<String>>,
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Spanned<Vec<Alg>>>,
    pub leeway: Option<Spanned<String>>,
    pub refresh_interval: Option<Spanned<String>>,
    pub refresh_cooldown: Option<Spanned<String>>,
    pub fetch_timeout: Option<Spanned<String>>,
    pub max_stale: Option<Spanned<String>>,
    pub insecure_allow_http_jwks: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid token is needed; anything else is a 401.
    Required,
    /// Anonymous requests pass without identity; a bad token is still a 401.
    Optional,
    /// No token is looked at; identity headers are still stripped.
    Public,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Spanned<String>,
    pub prefix: Spanned<String>,
    pub upstream: Spanned<String>,
    pub auth: Option<AuthMode>,
    pub methods: Option<Spanned<Vec<String>>>,
    pub scopes: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub providers: Option<Spanned<Vec<String>>>,
    pub forward_authorization: Option<bool>,
    pub websocket: Option<bool>,
    pub max_body_bytes: Option<u64>,
    pub upstream_protocol: Option<crate::config::UpstreamProtocol>,
    pub upstream_tls: Option<RawUpstreamTls>,
    pub cors: Option<RawCors>,
    pub token_sources: Option<Spanned<Vec<TokenSource>>>,
    pub auth_server: Option<bool>,
    pub rate_limits: Option<Vec<RawRateLimit>>,
    pub rate_limit_headers: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub user_id_header: Option<Spanned<String>>,
    pub claim_headers: Option<Spanned<BTreeMap<String, String>>>,
    pub strip_headers: Option<Spanned<Vec<String>>>,
    pub insecure_keep_headers: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    pub ca: Option<Spanned<String>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
}
