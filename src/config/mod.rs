//! Configuration in two stages: [`raw`] mirrors the TOML file for serde, [`validate`]
//! checks it as a whole and produces the typed [`Config`] below. The request path only
//! ever sees the typed form: parsed addresses, URIs, header names and durations.

mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};

use crate::alg::Alg;
use crate::cors::CorsPolicy;
pub use crate::jwks::{JwksConfig, JwksLocation};
pub use raw::{AuthMode, TokenSource};

/// The validated configuration of one gateway instance.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub providers: Vec<ProviderConfig>,
    pub routes: Vec<RouteConfig>,
    pub identity: IdentityConfig,
    pub cookies: CookieConfig,
    /// `[redis]`: the store every replica shares (rate limits with `store = "redis"`).
    pub redis: Option<RedisConfig>,
    pub revocation: RevocationConfig,
    /// The folder relative paths in the file resolve against.
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The secret the admin listener's POST endpoints (`/reload`, `/revoke`) require as
    /// a bearer token. `None`: they answer only peers on loopback.
    pub admin_token: Option<SharedSecret>,
    /// Time allowed for the upstream to send its response head; past it, 504.
    pub upstream_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Time a client has to send a complete request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Bound of the verified-token cache; 0 disables it.
    pub token_cache_entries: u64,
    /// Connections are closed after this long without a byte either way.
    pub idle_timeout: Duration,
    /// Connections beyond this many wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Requests in flight to one upstream (scheme and host:port) at once; more wait for a
    /// slot within `upstream_timeout`.
    pub max_upstream_requests: usize,
    /// Largest request head (request line and headers) accepted; beyond it, 431.
    pub max_header_bytes: usize,
    /// Peers whose `X-Forwarded-For` is believed (a load balancer in front of the
    /// gateway); from any other peer the header is replaced. Empty: none.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Distinct keys each local rate limit remembers; the least used are forgotten
    /// first (and start again with a full budget), so memory stays bounded.
    pub rate_limit_keys: u64,
    /// One line per request on stderr (see `access_log.rs`); off behind a mesh that
    /// logs already.
    pub access_log: bool,
    /// TLS termination; `None` serves plain HTTP (and h2c).
    pub tls: Option<TlsSettings>,
}

/// TLS termination: the PEM files, and the rustls config read from them (re-read on
/// every reload).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub config: Arc<rustls::ServerConfig>,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Shared, because it labels metrics and logs on the request path.
    pub name: Arc<String>,
    /// `iss` must equal this exactly; it is also how a token finds its provider.
    pub issuer: String,
    pub keys: KeySource,
    /// When non-empty, `aud` must contain one of these.
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Where roles are read from; `None`: `role` and `roles`.
    pub roles_claim: Option<String>,
    /// Where scopes are read from; `None`: `scope`, `scp` and `scopes`.
    pub scopes_claim: Option<String>,
    /// The top-level claim that names the token's session, which `POST /revoke` with
    /// `sid` revokes; `None`: sessions cannot be revoked for this provider.
    pub session_claim: Option<String>,
}

/// `[revocation]`: how long a revocation must be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// The longest lifetime (`exp` - `iat`) of a token any provider issues.
    pub max_token_lifetime: Duration,
    /// How long an entry is kept: the lifetime plus twice the largest provider leeway
    /// (a token's `iat` and its `exp` may each be that far off).
    pub keep: Duration,
}

#[derive(Debug, Clone)]
pub enum KeySource {
    /// Keys fetched over HTTP and kept fresh (`jwks_url`, `discovery`, `discovery_url`).
    Jwks(JwksConfig),
    /// Keys written in the config (`jwks`) or in a file next to it (`jwks_file`): parsed
    /// when the config loads, so a reload (SIGHUP, `POST /reload`) reads them again.
    Static(StaticKeys),
    Secret(SharedSecret),
}

/// A key set from the config itself, already parsed and checked like a fetched one.
#[derive(Debug, Clone)]
pub struct StaticKeys {
    /// The `jwks_file` it was read from; `None` for an inline `jwks`.
    pub file: Option<PathBuf>,
    pub set: Arc<crate::jwks::KeySet>,
}

/// A secret read from the environment (an HS256 key, the admin token). Its bytes never
/// appear in `Debug`.
#[derive(Clone)]
pub struct SharedSecret {
    pub env: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSecret")
            .field("env", &self.env)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Shared, because it labels metrics and logs on the request path.
    pub name: Arc<String>,
    /// Normalized prefix: starts with `/`, no trailing `/` (except the root itself).
    pub prefix: String,
    pub upstream: Upstream,
    pub auth: AuthMode,
    /// `None`: every method is allowed.
    pub methods: Option<Vec<Method>>,
    /// All of these are needed.
    pub scopes: Vec<String>,
    /// Any one of these is enough.
    pub roles: Vec<String>,
    /// Names of the providers whose tokens this route accepts; `None`: all of them.
    pub providers: Option<Vec<String>>,
    /// Whether a verified `Authorization` header goes on to the upstream. One the gateway
    /// did not verify (another scheme on an optional route) never does.
    pub forward_authorization: bool,
    /// WebSocket upgrades are tunnelled (after authentication); any other `Upgrade`
    /// (`h2c` above all) is always removed.
    pub websocket: bool,
    /// Largest request body accepted; beyond it, 413. `None`: no limit (streamed).
    pub max_body_bytes: Option<u64>,
    /// The route's CORS policy (its own `cors` table, else the global one).
    pub cors: Option<Arc<CorsPolicy>>,
    /// Where the token is taken from, in this order: the first one present is the
    /// credential, and a bad one is a 401 (the next is never tried).
    pub token_sources: Vec<TokenSource>,
    /// The route is the auth server (Better Auth) itself: `[cookies] strip` does not apply.
    pub auth_server: bool,
    /// Every one of these applies; a request over any of them is a 429.
    pub rate_limits: Vec<RateLimitConfig>,
    /// Whether allowed requests carry `RateLimit-Policy` and `RateLimit` (a 429 always does).
    pub rate_limit_headers: bool,
}

/// `[cookies]`, validated.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// Better Auth's session-cache cookie, without `__Secure-` and without chunk suffix.
    pub session_cookie: String,
    /// Removed from requests to routes that are not `auth_server`, each also with the
    /// `__Secure-` prefix and as chunks (`NAME.0`, `NAME.1`, ...).
    pub strip: Vec<String>,
    /// ASCII-serialized origins a cookie-authenticated unsafe request may come from.
    pub trusted_origins: Vec<String>,
}

/// One `rate_limits` entry: at most `requests` per `period` per key, sustained, and up
/// to `burst` at once after a quiet spell (GCRA: one request every `period / requests`,
/// with a bucket of `burst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub key: LimitKey,
    pub requests: u32,
    pub period: Duration,
    pub burst: u32,
    pub store: LimitStore,
    pub on_store_error: OnStoreError,
    /// The name in `RateLimit-Policy` and `RateLimit` and the `policy` metric label:
    /// the key as written, unique within the route.
    pub name: Arc<String>,
}

impl RateLimitConfig {
    /// The time one request costs: `period / requests`.
    pub fn interval(&self) -> Duration {
        self.period / self.requests
    }
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The verified `sub`; an anonymous request (optional route) counts by its client
    /// address.
    User,
    /// The client address (`server.trusted_proxies` decides whether `X-Forwarded-For`
    /// is believed).
    ClientIp,
    /// A claim of the verified token (an organisation id); a token without it counts as
    /// its user, an anonymous request by its client address.
    Claim(String),
}

/// Where a rate limit keeps its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitStore {
    /// In this process: each replica has its own budget.
    Local,
    /// In `[redis]`: every replica shares one budget.
    Redis,
}

/// What a `store = "redis"` limit does while Redis fails or is slower than its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// The same limit, kept by each replica on its own.
    #[default]
    Local,
    /// Let the request through unlimited.
    Allow,
    /// Refuse it: 503.
    Deny,
}

/// `[redis]`: where the replicas share state. The password never appears in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS) URL, without a password.
    pub url: String,
    /// The environment variable the password was read from.
    pub password_env: Option<String>,
    pub password: Option<String>,
    /// Longest wait for one command; past it, the limit's `on_store_error` applies.
    pub timeout: Duration,
    /// For `rediss://`: the PEM roots to trust instead of the system's, and their file.
    pub ca: Option<(PathBuf, Vec<u8>)>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url)
            .field("password_env", &self.password_env)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("ca", &self.ca.as_ref().map(|(path, _)| path))
            .finish()
    }
}

/// Where a route forwards to: `http://host:port` plus an optional base path that is
/// prepended to the request's (normalized) path.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `https://` upstream: TLS from the gateway to the backend.
    pub https: bool,
    pub authority: http::uri::Authority,
    pub base_path: String,
    pub protocol: UpstreamProtocol,
    /// The route's own TLS settings for an `https://` upstream; `None`: system roots.
    pub tls: Option<UpstreamTls>,
}

/// How the gateway speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (WebSocket upgrades need it).
    Http1,
    /// HTTP/2: h2c with prior knowledge for `http://`, h2 over TLS for `https://`
    /// (gRPC backends).
    Http2,
}

/// TLS to an upstream: the roots to trust and, for mTLS, the gateway's own certificate.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub config: Arc<rustls::ClientConfig>,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub user_id_header: HeaderName,
    /// `(claim, header)` pairs, in a stable order.
    pub claim_headers: Vec<(String, HeaderName)>,
    /// Headers removed from every request in every spelling besides the identity headers:
    /// the built-in override headers (less `insecure_keep_headers`) and `strip_headers`.
    pub strip_headers: Vec<HeaderName>,
}

/// A configuration that could not be used. Names the file and, for each problem, the
/// key and the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Problems { file, problems })]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

/// One thing wrong with the file.
#[derive(Debug, Clone)]
pub struct Problem {
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

struct Problems<'a> {
    file: &'a str,
    problems: &'a [Problem],
}

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.problems {
            write!(f, "\n  {}", self.file)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            if p.key.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": {}: {}", p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file. Relative paths inside it resolve against the
    /// file's own folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        Self::from_toml(&text, &path.display().to_string(), &base_dir)
    }

    /// Validates TOML text. `file` is only used to name the source in errors.
    pub fn from_toml(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        validate::parse(text, base_dir).map_err(|mut problems| {
            // In file order, so an operator can fix them top to bottom.
            problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
            ConfigError::Invalid {
                file: file.to_owned(),
                problems,
            }
        })
    }

    /// A short human summary of providers and routes, for `portcullis check`.
    pub fn summary(&self) -> String {
        use fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "listen {} (admin {}), upstream timeout {}",
            self.server.listen,
            self.server.admin_listen,
            humantime::format_duration(self.server.upstream_timeout)
        );
        let _ = writeln!(s, "{} provider(s):", self.providers.len());
        for p in &self.providers {
            let keys = match &p.keys {
                KeySource::Jwks(j) => j.location.to_string(),
                KeySource::Static(k) => match &k.file {
                    Some(f) => format!("{} key(s) from {}", k.set.len(), f.display()),
                    None => format!("{} inline key(s)", k.set.len()),
                },
                KeySource::Secret(sec) => format!("shared secret from ${}", sec.env),
            };
            let algs: Vec<&str> = p.algorithms.iter().map(|a| a.as_str()).collect();
            let aud = if p.audiences.is_empty() {
                "any audience (not checked)".to_owned()
            } else {
                format!("audiences {}", p.audiences.join(", "))
            };
            let _ = write!(
                s,
                "  {}: issuer {}, {keys}, algorithms {}, {aud}",
                p.name,
                p.issuer,
                algs.join(",")
            );
            if let Some(c) = &p.roles_claim {
                let _ = write!(s, ", roles from {c}");
            }
            if let Some(c) = &p.scopes_claim {
                let _ = write!(s, ", scopes from {c}");
            }
            if let Some(c) = &p.session_claim {
                let _ = write!(s, ", session from {c}");
            }
            let _ = writeln!(s);
        }
        if let Some(r) = &self.redis {
            let _ = writeln!(
                s,
                "redis {} (timeout {})",
                r.url,
                humantime::format_duration(r.timeout)
            );
        }
        let _ = writeln!(s, "{} route(s):", self.routes.len());
        for r in &self.routes {
            let auth = match r.auth {
                AuthMode::Required => "required",
                AuthMode::Optional => "optional",
                AuthMode::Public => "public",
            };
            let _ = write!(
                s,
                "  {}: {} -> http://{}{} (auth {auth}",
                r.name, r.prefix, r.upstream.authority, r.upstream.base_path
            );
            if let Some(m) = &r.methods {
                let m: Vec<&str> = m.iter().map(Method::as_str).collect();
                let _ = write!(s, ", methods {}", m.join(","));
            }
            if !r.scopes.is_empty() {
                let _ = write!(s, ", scopes {}", r.scopes.join(" "));
            }
            if !r.roles.is_empty() {
                let _ = write!(s, ", roles {}", r.roles.join("|"));
            }
            if r.token_sources != [TokenSource::Authorization] && r.auth != AuthMode::Public {
                let sources: Vec<&str> = r
                    .token_sources
                    .iter()
                    .map(|t| match t {
                        TokenSource::Authorization => "authorization",
                        TokenSource::SessionCookie => "session cookie",
                        TokenSource::Cookie(name) => name,
                    })
                    .collect();
                let _ = write!(s, ", tokens from {}", sources.join(" then "));
            }
            if r.auth_server {
                let _ = write!(s, ", auth server: cookies pass");
            }
            for l in &r.rate_limits {
                let store = match l.store {
                    LimitStore::Local => "local",
                    LimitStore::Redis => "redis",
                };
                let _ = write!(
                    s,
                    ", limit {} {}/{} burst {} ({store})",
                    l.name,
                    l.requests,
                    humantime::format_duration(l.period),
                    l.burst
                );
            }
            let _ = writeln!(s, ")");
        }
        s
    }
}
