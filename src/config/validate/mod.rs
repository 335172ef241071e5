//! Raw config -> typed [`Config`]. Every semantic problem is collected with its key and
//! line, then reported at once, so an operator fixes a file in one pass.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use toml::Spanned;

use super::raw::{RawIdentity, RawRedis, RawRevocation, RawServer};
use super::{
    Config, IdentityConfig, Problem, ProviderConfig, RedisConfig, RevocationConfig, ServerConfig,
    SharedSecret, TlsSettings,
};
use crate::headers;

mod cookies;
mod document;
mod providers;
mod routes;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TOKEN_CACHE_ENTRIES: u64 = 100_000;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Envoy's default for a cluster's requests in flight.
const DEFAULT_MAX_UPSTREAM_REQUESTS: usize = 1024;
/// Better Auth's JWT plugin issues tokens for 15 minutes unless told otherwise.
const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
const DEFAULT_RATE_LIMIT_KEYS: u64 = 100_000;
/// A Redis round trip on a local network takes well under a millisecond.
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(5);
/// hyper cannot read a request head into a smaller buffer.
const MIN_MAX_HEADER_BYTES: usize = 8192;

pub(super) struct Ctx<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    pub(super) fn line_of(&self, span: Option<Range<usize>>) -> Option<usize> {
        let start = span?.start.min(self.text.len());
        Some(self.text[..start].bytes().filter(|&b| b == b'\n').count() + 1)
    }

    pub(super) fn problem(
        &mut self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) {
        let line = self.line_of(span);
        self.problems.push(Problem {
            line,
            key: key.into(),
            message: msg.into(),
        });
    }

    pub(super) fn duration(
        &mut self,
        v: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
        allow_zero: bool,
    ) -> Duration {
        let Some(v) = v else { return default };
        match humantime::parse_duration(v.get_ref().trim()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.problem(Some(v.span()), key, "must be greater than zero");
                default
            }
            Ok(d) => d,
            Err(_) => {
                self.problem(
                    Some(v.span()),
                    key,
                    format!(
                        "`{}` is not a duration; write it like \"500ms\", \"30s\", \"5m\" or \"24h\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A trimmed, non-empty name not seen before among its kind.
    pub(super) fn unique_name(
        &mut self,
        name: &Spanned<String>,
        key: String,
        kind: &str,
        seen: &mut HashSet<String>,
    ) -> String {
        let trimmed = name.get_ref().trim().to_owned();
        if trimmed.is_empty() {
            self.problem(Some(name.span()), key, "must not be empty");
        } else if !seen.insert(trimmed.clone()) {
            self.problem(
                Some(name.span()),
                key,
                format!("{kind} `{trimmed}` is defined twice"),
            );
        }
        trimmed
    }

    pub(super) fn socket_addr(
        &mut self,
        v: Option<&Spanned<String>>,
        key: &str,
        default: &str,
    ) -> SocketAddr {
        let Some(v) = v else {
            return default.parse().expect("default address parses");
        };
        match v.get_ref().parse() {
            Ok(a) => a,
            Err(_) => {
                self.problem(
                    Some(v.span()),
                    key,
                    format!("`{}` is not an IP:port address", v.get_ref()),
                );
                default.parse().expect("default address parses")
            }
        }
    }
}

/// Parses and validates; on failure returns every problem found.
pub(super) fn parse(text: &str, base_dir: &Path) -> Result<Config, Vec<Problem>> {
    let mut ctx = Ctx {
        text,
        problems: Vec::new(),
    };
    let mut removed = document::Removed::default();
    let Some(raw) = document::deserialize(&mut ctx, &mut removed) else {
        return Err(ctx.problems);
    };
    let structural = ctx.problems.len();

    let server = server(&mut ctx, &raw.server, base_dir);
    let providers = providers::providers(&mut ctx, &raw.providers, base_dir);
    let identity = identity(&mut ctx, &raw.identity);
    let revocation = revocation(&mut ctx, &raw.revocation, &providers);
    let cookies = cookies::cookies(&mut ctx, raw.cookies.as_ref());
    let global_cors = raw.cors.as_ref().map(|c| routes::cors(&mut ctx, c, "cors"));
    let redis = raw
        .redis
        .as_ref()
        .and_then(|r| redis(&mut ctx, r, base_dir));
    let routes = routes::routes(
        &mut ctx,
        base_dir,
        &raw.routes,
        &providers,
        global_cors.as_ref(),
        raw.redis.is_some(),
    );

    // Keys of the semantic checks count the file's elements, set-aside ones included.
    for p in &mut ctx.problems[structural..] {
        p.key = removed.renumber(&p.key);
    }
    if ctx.problems.is_empty() {
        Ok(Config {
            server,
            providers,
            routes,
            identity,
            cookies,
            redis,
            revocation,
            base_dir: base_dir.to_owned(),
        })
    } else {
        Err(ctx.problems)
    }
}

fn revocation(
    ctx: &mut Ctx<'_>,
    raw: &RawRevocation,
    providers: &[ProviderConfig],
) -> RevocationConfig {
    let max_token_lifetime = ctx.duration(
        raw.max_token_lifetime.as_ref(),
        "revocation.max_token_lifetime",
        DEFAULT_MAX_TOKEN_LIFETIME,
        false,
    );
    let leeway = providers.iter().map(|p| p.leeway).max().unwrap_or_default();
    RevocationConfig {
        max_token_lifetime,
        keep: max_token_lifetime + 2 * leeway,
    }
}

/// The admin token named by `server.admin_token_env`: set, and long enough that it
/// cannot be guessed by trying.
fn admin_token(ctx: &mut Ctx<'_>, env: &Spanned<String>) -> Option<SharedSecret> {
    let name = env.get_ref();
    let problem = match std::env::var(name) {
        Ok(v) if v.len() >= MIN_ADMIN_TOKEN_BYTES => {
            return Some(SharedSecret {
                env: name.clone(),
                bytes: v.into_bytes(),
            });
        }
        Ok(v) if v.is_empty() => format!("environment variable {name} is empty"),
        Ok(_) => format!("the token in {name} is shorter than {MIN_ADMIN_TOKEN_BYTES} bytes"),
        Err(_) => format!("environment variable {name} is not set"),
    };
    ctx.problem(Some(env.span()), "server.admin_token_env", problem);
    None
}

/// Shortest admin token accepted: 128 bits of a hex or base64 secret.
const MIN_ADMIN_TOKEN_BYTES: usize = 24;

fn server(ctx: &mut Ctx<'_>, raw: &RawServer, base_dir: &Path) -> ServerConfig {
    let listen = ctx.socket_addr(raw.listen.as_ref(), "server.listen", DEFAULT_LISTEN);
    let admin_listen = ctx.socket_addr(
        raw.admin_listen.as_ref(),
        "server.admin_listen",
        DEFAULT_ADMIN_LISTEN,
    );
    if listen == admin_listen && listen.port() != 0 {
        let span = raw.admin_listen.as_ref().map(Spanned::span);
        ctx.problem(
            span,
            "server.admin_listen",
            "must differ from server.listen",
        );
    }
    ServerConfig {
        listen,
        admin_listen,
        admin_token: raw
            .admin_token_env
            .as_ref()
            .and_then(|env| admin_token(ctx, env)),
        upstream_timeout: ctx.duration(
            raw.upstream_timeout.as_ref(),
            "server.upstream_timeout",
            DEFAULT_UPSTREAM_TIMEOUT,
            false,
        ),
        shutdown_timeout: ctx.duration(
            raw.shutdown_timeout.as_ref(),
            "server.shutdown_timeout",
            DEFAULT_SHUTDOWN_TIMEOUT,
            true,
        ),
        header_read_timeout: ctx.duration(
            raw.header_read_timeout.as_ref(),
            "server.header_read_timeout",
            DEFAULT_HEADER_READ_TIMEOUT,
            false,
        ),
        token_cache_entries: raw
            .token_cache_entries
            .unwrap_or(DEFAULT_TOKEN_CACHE_ENTRIES),
        idle_timeout: ctx.duration(
            raw.idle_timeout.as_ref(),
            "server.idle_timeout",
            DEFAULT_IDLE_TIMEOUT,
            false,
        ),
        max_connections: match raw.max_connections {
            Some(0) => {
                ctx.problem(None, "server.max_connections", "must be at least 1");
                DEFAULT_MAX_CONNECTIONS
            }
            Some(n) => n,
            None => DEFAULT_MAX_CONNECTIONS,
        },
        max_upstream_requests: match raw.max_upstream_requests {
            Some(0) => {
                ctx.problem(None, "server.max_upstream_requests", "must be at least 1");
                DEFAULT_MAX_UPSTREAM_REQUESTS
            }
            Some(n) => n.min(tokio::sync::Semaphore::MAX_PERMITS),
            None => DEFAULT_MAX_UPSTREAM_REQUESTS,
        },
        max_header_bytes: match &raw.max_header_bytes {
            Some(n) if *n.get_ref() < MIN_MAX_HEADER_BYTES => {
                ctx.problem(
                    Some(n.span()),
                    "server.max_header_bytes",
                    format!("must be at least {MIN_MAX_HEADER_BYTES}"),
                );
                DEFAULT_MAX_HEADER_BYTES
            }
            Some(n) => *n.get_ref(),
            None => DEFAULT_MAX_HEADER_BYTES,
        },
        trusted_proxies: trusted_proxies(ctx, raw.trusted_proxies.as_ref()),
        rate_limit_keys: match raw.rate_limit_keys {
            Some(0) => {
                ctx.problem(None, "server.rate_limit_keys", "must be at least 1");
                DEFAULT_RATE_LIMIT_KEYS
            }
            Some(n) => n,
            None => DEFAULT_RATE_LIMIT_KEYS,
        },
        access_log: raw.access_log.unwrap_or(true),
        tls: raw.tls.as_ref().and_then(|t| {
            let cert = resolve(base_dir, t.cert.get_ref());
            let key = resolve(base_dir, t.key.get_ref());
            match crate::tls::server_config(&cert, &key) {
                Ok(config) => Some(TlsSettings { cert, key, config }),
                Err(e) => {
                    ctx.problem(Some(t.cert.span()), "server.tls", e.to_string());
                    None
                }
            }
        }),
    }
}

/// `server.trusted_proxies`: networks (`10.0.0.0/8`) or single addresses.
fn trusted_proxies(ctx: &mut Ctx<'_>, raw: Option<&Spanned<Vec<String>>>) -> Vec<IpNet> {
    let Some(list) = raw else { return Vec::new() };
    let mut out = Vec::new();
    for entry in list.get_ref() {
        let entry = entry.trim();
        match IpNet::from_str(entry).or_else(|_| IpAddr::from_str(entry).map(IpNet::from)) {
            Ok(net) => out.push(net.trunc()),
            Err(_) => ctx.problem(
                Some(list.span()),
                "server.trusted_proxies",
                format!("`{entry}` is not an IP address or a network such as \"10.0.0.0/8\""),
            ),
        }
    }
    out
}

/// `[redis]`: a `redis://` or `rediss://` URL without a password (that comes from
/// `password_env`, so it never sits in the file), and a per-command timeout.
fn redis(ctx: &mut Ctx<'_>, raw: &RawRedis, base_dir: &Path) -> Option<RedisConfig> {
    let url = raw.url.get_ref().trim();
    let span = Some(raw.url.span());
    let timeout = ctx.duration(
        raw.timeout.as_ref(),
        "redis.timeout",
        DEFAULT_REDIS_TIMEOUT,
        false,
    );
    let password = raw
        .password_env
        .as_ref()
        .and_then(|env| match std::env::var(env.get_ref()) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                ctx.problem(
                    Some(env.span()),
                    "redis.password_env",
                    format!("environment variable `{}` is not set", env.get_ref()),
                );
                None
            }
        });
    let parsed = match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.has_host() => u,
        _ => {
            ctx.problem(
                span,
                "redis.url",
                format!(
                    "`{url}` is not a URL like \"redis://host:6379/0\" or \"rediss://host:6380/0\""
                ),
            );
            return None;
        }
    };
    if parsed.password().is_some() {
        // Never echo the URL here: it holds the password.
        ctx.problem(
            span,
            "redis.url",
            "the URL holds a password; put it in an environment variable and name it in password_env",
        );
        return None;
    }
    if let Err(e) = ::redis::Client::open(url) {
        ctx.problem(span, "redis.url", format!("`{url}`: {e}"));
        return None;
    }
    let ca = match &raw.ca {
        None => None,
        Some(ca) if parsed.scheme() != "rediss" => {
            ctx.problem(Some(ca.span()), "redis.ca", "needs a rediss:// url");
            None
        }
        Some(ca) => {
            let path = resolve(base_dir, ca.get_ref());
            match std::fs::read(&path) {
                Ok(pem) => Some((path, pem)),
                Err(e) => {
                    let shown = path.display();
                    ctx.problem(
                        Some(ca.span()),
                        "redis.ca",
                        format!("cannot read {shown}: {e}"),
                    );
                    None
                }
            }
        }
    };
    Some(RedisConfig {
        url: url.to_owned(),
        password_env: raw.password_env.as_ref().map(|e| e.get_ref().clone()),
        password,
        timeout,
        ca,
    })
}

fn identity(ctx: &mut Ctx<'_>, raw: &RawIdentity) -> IdentityConfig {
    let user_id_header = match &raw.user_id_header {
        None => HeaderName::from_static("x-user-id"),
        Some(v) => identity_header(ctx, v.get_ref(), Some(v.span()), "identity.user_id_header")
            .unwrap_or_else(|| HeaderName::from_static("x-user-id")),
    };
    let mut seen: HashSet<String> = HashSet::from([headers::spelling_key(user_id_header.as_str())]);
    let mut claim_headers = Vec::new();
    if let Some(map) = &raw.claim_headers {
        let span = map.span();
        let map: &BTreeMap<String, String> = map.get_ref();
        for (claim, header) in map {
            let key = format!("identity.claim_headers.{claim}");
            if claim.is_empty() {
                ctx.problem(Some(span.clone()), key, "claim name must not be empty");
                continue;
            }
            let Some(name) = identity_header(ctx, header, Some(span.clone()), &key) else {
                continue;
            };
            if !seen.insert(headers::spelling_key(name.as_str())) {
                ctx.problem(
                    Some(span.clone()),
                    key,
                    format!("header `{header}` is already used by another identity header"),
                );
                continue;
            }
            claim_headers.push((claim.clone(), name));
        }
    }
    let strip_headers = strip_headers(ctx, raw, &seen);
    IdentityConfig {
        user_id_header,
        claim_headers,
        strip_headers,
    }
}

/// The built-in override headers, less `insecure_keep_headers`, plus `strip_headers`.
fn strip_headers(
    ctx: &mut Ctx<'_>,
    raw: &RawIdentity,
    identity: &HashSet<String>,
) -> Vec<HeaderName> {
    let mut keep = HashSet::new();
    if let Some(list) = &raw.insecure_keep_headers {
        for name in list.get_ref() {
            let k = headers::spelling_key(name);
            if identity.contains(&k) {
                ctx.problem(
                    Some(list.span()),
                    "identity.insecure_keep_headers",
                    format!(
                        "`{name}` is an identity header: a client copy of it is always removed"
                    ),
                );
            } else if !headers::OVERRIDE_HEADERS.contains(&k.as_str()) {
                ctx.problem(
                    Some(list.span()),
                    "identity.insecure_keep_headers",
                    format!("`{name}` is not one of the headers removed by default"),
                );
            }
            keep.insert(k);
        }
    }
    let mut out: Vec<HeaderName> = headers::OVERRIDE_HEADERS
        .iter()
        .filter(|h| !keep.contains(**h))
        .map(|h| HeaderName::from_static(h))
        .collect();
    if let Some(list) = &raw.strip_headers {
        for name in list.get_ref() {
            match HeaderName::from_str(name) {
                Ok(h) if !headers::is_reserved(&h) => out.push(h),
                _ => ctx.problem(
                    Some(list.span()),
                    "identity.strip_headers",
                    format!("`{name}` is not a header name the gateway can remove (not one it manages itself)"),
                ),
            }
        }
    }
    out
}

fn identity_header(
    ctx: &mut Ctx<'_>,
    value: &str,
    span: Option<Range<usize>>,
    key: &str,
) -> Option<HeaderName> {
    let Ok(name) = HeaderName::from_str(value) else {
        ctx.problem(span, key, format!("`{value}` is not a valid header name"));
        return None;
    };
    if headers::is_reserved(&name) {
        ctx.problem(
            span,
            key,
            format!("`{value}` is a header the gateway manages itself and cannot carry identity"),
        );
        return None;
    }
    Some(name)
}

/// A path from the config file, relative to the file's folder unless absolute.
pub(super) fn resolve(base_dir: &Path, p: &str) -> std::path::PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        base_dir.join(p)
    }
}
