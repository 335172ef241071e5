//! Raw config -> typed [`Config`]. Every semantic problem is collected with its key and
//! line, then reported at once, so an operator fixes a file in one pass.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use toml::Spanned;

use super::raw::{AuthMode, RawConfig, RawCors, RawIdentity, RawProvider, RawRoute, RawServer};
use super::{
    Config, IdentityConfig, JwksConfig, KeySource, Problem, ProviderConfig, RouteConfig,
    ServerConfig, SharedSecret, TlsSettings, Upstream, UpstreamProtocol, UpstreamTls,
};
use crate::alg::Alg;
use crate::cors::{AllowedOrigins, CorsPolicy};
use crate::headers;
use crate::path;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TOKEN_CACHE_ENTRIES: u64 = 100_000;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper cannot read a request head into a smaller buffer.
const MIN_MAX_HEADER_BYTES: usize = 8192;
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
const DEFAULT_REFRESH_COOLDOWN: Duration = Duration::from_secs(10);
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
const MIN_SECRET_BYTES: usize = 32;

struct Ctx<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn line_of(&self, span: Option<Range<usize>>) -> Option<usize> {
        let start = span?.start.min(self.text.len());
        Some(self.text[..start].bytes().filter(|&b| b == b'\n').count() + 1)
    }

    fn problem(
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

    fn duration(
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

    fn socket_addr(&mut self, v: Option<&Spanned<String>>, key: &str, default: &str) -> SocketAddr {
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
    let raw: RawConfig = match toml::de::Deserializer::parse(text)
        .map_err(|e| (String::new(), e))
        .and_then(|de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                (path, e.into_inner())
            })
        }) {
        Ok(raw) => raw,
        Err((path, e)) => {
            let key = if path == "." { String::new() } else { path };
            ctx.problem(e.span(), key, e.message().trim().to_owned());
            return Err(ctx.problems);
        }
    };

    let server = server(&mut ctx, &raw.server, base_dir);
    let providers = providers(&mut ctx, &raw.providers);
    let identity = identity(&mut ctx, &raw.identity);
    let global_cors = raw.cors.as_ref().map(|c| cors(&mut ctx, c, "cors"));
    let routes = routes(
        &mut ctx,
        base_dir,
        &raw.routes,
        &providers,
        global_cors.as_ref(),
    );

    if ctx.problems.is_empty() {
        Ok(Config {
            server,
            providers,
            routes,
            identity,
            base_dir: base_dir.to_owned(),
        })
    } else {
        Err(ctx.problems)
    }
}

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

fn providers(ctx: &mut Ctx<'_>, raws: &[RawProvider]) -> Vec<ProviderConfig> {
    let mut names = HashSet::new();
    let mut issuers = HashSet::new();
    let mut out = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let key = |k: &str| format!("providers[{i}].{k}");
        let name = raw.name.get_ref().trim().to_owned();
        if name.is_empty() {
            ctx.problem(Some(raw.name.span()), key("name"), "must not be empty");
        } else if !names.insert(name.clone()) {
            ctx.problem(
                Some(raw.name.span()),
                key("name"),
                format!("provider `{name}` is defined twice"),
            );
        }
        let issuer = raw.issuer.get_ref().clone();
        if issuer.is_empty() {
            ctx.problem(Some(raw.issuer.span()), key("issuer"), "must not be empty");
        } else if !issuers.insert(issuer.clone()) {
            ctx.problem(
                Some(raw.issuer.span()),
                key("issuer"),
                "two providers claim the same issuer; a token's `iss` must select exactly one",
            );
        }

        let audiences = raw.audiences.clone().unwrap_or_default();
        if audiences.iter().any(|a| a.is_empty()) {
            ctx.problem(
                Some(raw.name.span()),
                key("audiences"),
                "an audience must not be empty",
            );
        }
        let leeway = ctx.duration(raw.leeway.as_ref(), &key("leeway"), DEFAULT_LEEWAY, true);

        let keys = match (&raw.jwks_url, &raw.secret_env) {
            (Some(url), None) => jwks(ctx, raw, url, i).map(KeySource::Jwks),
            (None, Some(env)) => secret(ctx, env, i).map(KeySource::Secret),
            (Some(_), Some(env)) => {
                ctx.problem(
                    Some(env.span()),
                    key("secret_env"),
                    "set either jwks_url or secret_env, not both: shared secrets are never mixed with JWKS keys",
                );
                None
            }
            (None, None) => {
                ctx.problem(
                    Some(raw.name.span()),
                    key("jwks_url"),
                    "one of jwks_url or secret_env is required",
                );
                None
            }
        };
        let symmetric = matches!(keys, Some(KeySource::Secret(_)));
        let algorithms = match &raw.algorithms {
            None if symmetric => vec![Alg::HS256],
            None => Alg::ASYMMETRIC.to_vec(),
            Some(list) => {
                let algs = list.get_ref().clone();
                if algs.is_empty() {
                    ctx.problem(Some(list.span()), key("algorithms"), "must not be empty");
                }
                if symmetric && algs.iter().any(|a| !a.is_symmetric()) {
                    ctx.problem(
                        Some(list.span()),
                        key("algorithms"),
                        "a secret_env provider verifies HS256 only",
                    );
                }
                if !symmetric && algs.iter().any(|a| a.is_symmetric()) {
                    ctx.problem(
                        Some(list.span()),
                        key("algorithms"),
                        "HS256 needs secret_env; a JWKS provider never accepts HMAC (it would let a public key act as a secret)",
                    );
                }
                algs
            }
        };
        if let Some(keys) = keys {
            out.push(ProviderConfig {
                name: Arc::new(name),
                issuer,
                keys,
                audiences,
                algorithms,
                leeway,
            });
        }
    }
    out
}

fn jwks(
    ctx: &mut Ctx<'_>,
    raw: &RawProvider,
    url: &Spanned<String>,
    i: usize,
) -> Option<JwksConfig> {
    let key = |k: &str| format!("providers[{i}].{k}");
    let refresh_interval = ctx.duration(
        raw.refresh_interval.as_ref(),
        &key("refresh_interval"),
        DEFAULT_REFRESH_INTERVAL,
        false,
    );
    let refresh_cooldown = ctx.duration(
        raw.refresh_cooldown.as_ref(),
        &key("refresh_cooldown"),
        DEFAULT_REFRESH_COOLDOWN,
        false,
    );
    let fetch_timeout = ctx.duration(
        raw.fetch_timeout.as_ref(),
        &key("fetch_timeout"),
        DEFAULT_FETCH_TIMEOUT,
        false,
    );
    let max_stale = ctx.duration(
        raw.max_stale.as_ref(),
        &key("max_stale"),
        DEFAULT_MAX_STALE,
        false,
    );
    let parsed = match reqwest::Url::parse(url.get_ref()) {
        Ok(u) => u,
        Err(e) => {
            ctx.problem(Some(url.span()), key("jwks_url"), format!("not a URL: {e}"));
            return None;
        }
    };
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                None => false,
            };
            if !loopback && raw.insecure_allow_http_jwks != Some(true) {
                ctx.problem(
                    Some(url.span()),
                    key("jwks_url"),
                    "plain http is only allowed to a loopback host; use https, or set insecure_allow_http_jwks = true",
                );
            }
        }
        other => {
            ctx.problem(
                Some(url.span()),
                key("jwks_url"),
                format!("scheme `{other}` is not supported; use https"),
            );
        }
    }
    Some(JwksConfig {
        url: parsed,
        refresh_interval,
        refresh_cooldown,
        fetch_timeout,
        max_stale,
    })
}

fn secret(ctx: &mut Ctx<'_>, env: &Spanned<String>, i: usize) -> Option<SharedSecret> {
    let key = format!("providers[{i}].secret_env");
    let name = env.get_ref();
    match std::env::var(name) {
        Ok(v) if v.len() >= MIN_SECRET_BYTES => Some(SharedSecret {
            env: name.clone(),
            bytes: v.into_bytes(),
        }),
        Ok(v) if v.is_empty() => {
            ctx.problem(
                Some(env.span()),
                key,
                format!("environment variable {name} is empty"),
            );
            None
        }
        Ok(_) => {
            ctx.problem(
                Some(env.span()),
                key,
                format!(
                    "the secret in {name} is shorter than {MIN_SECRET_BYTES} bytes (RFC 7518 §3.2)"
                ),
            );
            None
        }
        Err(_) => {
            ctx.problem(
                Some(env.span()),
                key,
                format!("environment variable {name} is not set"),
            );
            None
        }
    }
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
    IdentityConfig {
        user_id_header,
        claim_headers,
    }
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

fn routes(
    ctx: &mut Ctx<'_>,
    base_dir: &Path,
    raws: &[RawRoute],
    providers: &[ProviderConfig],
    global_cors: Option<&Arc<CorsPolicy>>,
) -> Vec<RouteConfig> {
    let provider_names: HashSet<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    let mut names = HashSet::new();
    let mut prefixes = HashSet::new();
    let mut out = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let key = |k: &str| format!("routes[{i}].{k}");
        let name = raw.name.get_ref().trim().to_owned();
        if name.is_empty() {
            ctx.problem(Some(raw.name.span()), key("name"), "must not be empty");
        } else if !names.insert(name.clone()) {
            ctx.problem(
                Some(raw.name.span()),
                key("name"),
                format!("route `{name}` is defined twice"),
            );
        }

        let prefix = raw.prefix.get_ref();
        let canonical = match path::normalize(prefix) {
            Ok(p)
                if !p.has_params()
                    && p.as_str().trim_end_matches('/') == prefix.trim_end_matches('/') =>
            {
                let trimmed = p.as_str().trim_end_matches('/');
                Some(if trimmed.is_empty() {
                    "/".to_owned()
                } else {
                    trimmed.to_owned()
                })
            }
            _ => None,
        };
        let canonical = canonical.unwrap_or_else(|| {
            ctx.problem(
                Some(raw.prefix.span()),
                key("prefix"),
                format!("`{prefix}` is not a normalized path such as \"/api/tasks\" (no `..`, `//`, `;` or escapes)"),
            );
            prefix.clone()
        });
        if !prefixes.insert(canonical.clone()) {
            ctx.problem(
                Some(raw.prefix.span()),
                key("prefix"),
                format!("two routes have the prefix `{canonical}`"),
            );
        }

        let upstream = upstream(ctx, raw, &key("upstream"), base_dir);
        let auth = raw.auth.unwrap_or(AuthMode::Required);

        let methods = raw.methods.as_ref().map(|list| {
            let mut out = Vec::new();
            for m in list.get_ref() {
                match Method::from_bytes(m.as_bytes()) {
                    Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => out.push(method),
                    _ => ctx.problem(
                        Some(list.span()),
                        key("methods"),
                        format!("`{m}` is not an HTTP method (write it in capitals, like \"GET\")"),
                    ),
                }
            }
            out
        });

        let scopes = raw.scopes.clone().unwrap_or_default();
        let roles = raw.roles.clone().unwrap_or_default();
        if scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            ctx.problem(
                Some(raw.name.span()),
                key("scopes"),
                "a scope is one non-empty word",
            );
        }
        if roles.iter().any(|r| r.is_empty() || r.contains(',')) {
            ctx.problem(
                Some(raw.name.span()),
                key("roles"),
                "a role is non-empty and has no comma",
            );
        }
        let route_providers = raw.providers.as_ref().map(|list| {
            for p in list.get_ref() {
                if !provider_names.contains(p.as_str()) {
                    ctx.problem(
                        Some(list.span()),
                        key("providers"),
                        format!("no provider is named `{p}`"),
                    );
                }
            }
            list.get_ref().clone()
        });

        match auth {
            AuthMode::Public => {
                if !scopes.is_empty() || !roles.is_empty() || route_providers.is_some() {
                    ctx.problem(
                        Some(raw.name.span()),
                        key("auth"),
                        "a public route cannot require scopes, roles or providers",
                    );
                }
            }
            AuthMode::Optional => {
                if !scopes.is_empty() || !roles.is_empty() {
                    ctx.problem(
                        Some(raw.name.span()),
                        key("auth"),
                        "scopes and roles need auth = \"required\" (an anonymous request would pass them)",
                    );
                }
                if providers.is_empty() {
                    ctx.problem(
                        Some(raw.name.span()),
                        key("auth"),
                        "needs at least one [[providers]]",
                    );
                }
            }
            AuthMode::Required => {
                if providers.is_empty() {
                    ctx.problem(
                        Some(raw.name.span()),
                        key("auth"),
                        "needs at least one [[providers]]",
                    );
                }
            }
        }

        if let Some(upstream) = upstream {
            out.push(RouteConfig {
                name: Arc::new(name),
                prefix: canonical,
                upstream,
                auth,
                methods,
                scopes,
                roles,
                providers: route_providers,
                forward_authorization: raw.forward_authorization.unwrap_or(true),
                max_body_bytes: raw.max_body_bytes,
                cors: match &raw.cors {
                    Some(c) => Some(cors(ctx, c, &key("cors"))),
                    None => global_cors.cloned(),
                },
            });
        }
    }
    out
}

fn upstream(ctx: &mut Ctx<'_>, raw: &RawRoute, key: &str, base_dir: &Path) -> Option<Upstream> {
    let v = &raw.upstream;
    let text = v.get_ref();
    let uri = match http::Uri::from_str(text) {
        Ok(u) => u,
        Err(e) => {
            ctx.problem(Some(v.span()), key, format!("`{text}` is not a URL: {e}"));
            return None;
        }
    };
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            ctx.problem(
                Some(v.span()),
                key,
                "the upstream must be an http:// or https:// URL",
            );
            return None;
        }
    };
    let Some(authority) = uri.authority().cloned() else {
        ctx.problem(Some(v.span()), key, "the upstream URL needs a host");
        return None;
    };
    if authority.as_str().contains('@') {
        ctx.problem(
            Some(v.span()),
            key,
            "credentials in the upstream URL are not allowed",
        );
        return None;
    }
    if uri.query().is_some() {
        ctx.problem(Some(v.span()), key, "the upstream URL cannot have a query");
        return None;
    }
    let base = uri.path().trim_end_matches('/');
    let base_path = if base.is_empty() {
        String::new()
    } else {
        match path::normalize(base) {
            Ok(p) if p.as_str() == base => base.to_owned(),
            _ => {
                ctx.problem(
                    Some(v.span()),
                    key,
                    "the upstream URL's path must be normalized",
                );
                return None;
            }
        }
    };
    let tls = match &raw.upstream_tls {
        None => None,
        Some(_) if !https => {
            ctx.problem(
                Some(v.span()),
                key,
                "upstream_tls needs an https:// upstream",
            );
            return None;
        }
        Some(t) => {
            let ca = t.ca.as_ref().map(|p| resolve(base_dir, p.get_ref()));
            let identity = match (&t.client_cert, &t.client_key) {
                (Some(c), Some(k)) => Some((
                    resolve(base_dir, c.get_ref()),
                    resolve(base_dir, k.get_ref()),
                )),
                (None, None) => None,
                _ => {
                    ctx.problem(
                        Some(v.span()),
                        key,
                        "upstream_tls needs both client_cert and client_key, or neither",
                    );
                    return None;
                }
            };
            let config = crate::tls::client_config(
                ca.as_deref(),
                identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            );
            match config {
                Ok(config) => Some(UpstreamTls {
                    ca,
                    client_cert: identity.map(|(c, _)| c),
                    config,
                }),
                Err(e) => {
                    ctx.problem(Some(v.span()), format!("{key}_tls"), e.to_string());
                    return None;
                }
            }
        }
    };
    Some(Upstream {
        https,
        authority,
        base_path,
        protocol: raw.upstream_protocol.unwrap_or(UpstreamProtocol::Http1),
        tls,
    })
}

const DEFAULT_CORS_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
const DEFAULT_CORS_HEADERS: [&str; 2] = ["authorization", "content-type"];
const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);

fn cors(ctx: &mut Ctx<'_>, raw: &RawCors, prefix: &str) -> Arc<CorsPolicy> {
    let key = |k: &str| format!("{prefix}.{k}");
    let list = raw.allowed_origins.get_ref();
    let span = Some(raw.allowed_origins.span());
    let credentials = raw.allow_credentials.unwrap_or(false);
    let origins = if list.iter().any(|o| o == "*") {
        if list.len() > 1 {
            ctx.problem(
                span.clone(),
                key("allowed_origins"),
                "\"*\" cannot be mixed with listed origins",
            );
        }
        if credentials {
            ctx.problem(
                span.clone(),
                key("allowed_origins"),
                "\"*\" cannot be used with allow_credentials = true; list the origins",
            );
        }
        AllowedOrigins::Any
    } else {
        if list.is_empty() {
            ctx.problem(
                span.clone(),
                key("allowed_origins"),
                "list at least one origin",
            );
        }
        let mut out = Vec::new();
        for o in list {
            match origin(o) {
                Some(canonical) => out.push(canonical),
                None => ctx.problem(
                    span.clone(),
                    key("allowed_origins"),
                    format!("`{o}` is not an origin like \"https://app.example.com\" (scheme, host, optional port, no path)"),
                ),
            }
        }
        AllowedOrigins::List(out)
    };
    let methods = match &raw.allowed_methods {
        None => DEFAULT_CORS_METHODS
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).expect("static method"))
            .collect(),
        Some(list) => list
            .get_ref()
            .iter()
            .filter_map(|m| match Method::from_bytes(m.as_bytes()) {
                Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => Some(method),
                _ => {
                    ctx.problem(
                        Some(list.span()),
                        key("allowed_methods"),
                        format!("`{m}` is not an HTTP method in capitals"),
                    );
                    None
                }
            })
            .collect(),
    };
    let mut names =
        |v: &Option<Spanned<Vec<String>>>, k: &str, default: &[&str]| -> Vec<HeaderName> {
            let (items, span): (Vec<String>, _) = match v {
                None => (default.iter().map(|s| (*s).to_owned()).collect(), None),
                Some(list) => (list.get_ref().clone(), Some(list.span())),
            };
            items
                .iter()
                .filter_map(|h| match HeaderName::from_str(h) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        ctx.problem(span.clone(), key(k), format!("`{h}` is not a header name"));
                        None
                    }
                })
                .collect()
        };
    let headers = names(
        &raw.allowed_headers,
        "allowed_headers",
        &DEFAULT_CORS_HEADERS,
    );
    let expose = names(&raw.expose_headers, "expose_headers", &[]);
    let max_age = ctx.duration(
        raw.max_age.as_ref(),
        &key("max_age"),
        DEFAULT_CORS_MAX_AGE,
        true,
    );
    Arc::new(CorsPolicy::new(
        origins,
        methods,
        headers,
        expose,
        credentials,
        max_age,
    ))
}

/// The ASCII serialization of an origin (`scheme://host[:port]`), or `None`.
fn origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.query().is_some()
        || url.path() != "/"
        || s.ends_with('/')
    {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

/// A path from the config file, relative to the file's folder unless absolute.
fn resolve(base_dir: &Path, p: &str) -> std::path::PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        base_dir.join(p)
    }
}
