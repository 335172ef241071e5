//! `[[routes]]`: prefixes, upstreams (and how to reach them) and CORS policies.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use toml::Spanned;

use super::{Ctx, resolve};
use crate::config::raw::{AuthMode, RawCors, RawRateLimit, RawRoute, RawUpstreamTls};
use crate::config::{
    LimitKey, LimitStore, ProviderConfig, RateLimitConfig, RouteConfig, Upstream, UpstreamProtocol,
    UpstreamTls,
};
use crate::cors::{AllowedOrigins, CorsPolicy};
use crate::path;

pub(super) fn routes(
    ctx: &mut Ctx<'_>,
    base_dir: &Path,
    raws: &[RawRoute],
    providers: &[ProviderConfig],
    global_cors: Option<&Arc<CorsPolicy>>,
    has_redis: bool,
) -> Vec<RouteConfig> {
    let mut names = HashSet::new();
    let mut prefixes = HashSet::new();
    let mut out = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let key = |k: &str| format!("routes[{i}].{k}");
        let name = ctx.unique_name(&raw.name, key("name"), "route", &mut names);

        let canonical = prefix(ctx, raw, &key("prefix"));
        if !prefixes.insert(canonical.clone()) {
            ctx.problem(
                Some(raw.prefix.span()),
                key("prefix"),
                format!("two routes have the prefix `{canonical}`"),
            );
        }

        let upstream = upstream(ctx, raw, &key("upstream"), base_dir);
        let auth = raw.auth.unwrap_or(AuthMode::Required);

        let methods = raw
            .methods
            .as_ref()
            .map(|list| methods(ctx, list, &key("methods")));
        let (scopes, roles, route_providers) = access(ctx, raw, auth, providers, &key);

        let rate_limits = raw
            .rate_limits
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(j, l)| {
                rate_limit(ctx, l, &key(&format!("rate_limits[{j}]")), auth, has_redis)
            })
            .collect::<Vec<_>>();
        let rate_limits = name_policies(rate_limits);

        if let Some(upstream) = upstream {
            let websocket = websocket(ctx, raw, &key("websocket"), upstream.protocol);
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
                websocket,
                max_body_bytes: raw.max_body_bytes,
                cors: match &raw.cors {
                    Some(c) => Some(cors(ctx, c, &key("cors"))),
                    None => global_cors.cloned(),
                },
                token_sources: super::cookies::token_sources(ctx, raw, &key("token_sources")),
                auth_server: raw.auth_server.unwrap_or(false),
                rate_limits,
                rate_limit_headers: raw.rate_limit_headers.unwrap_or(true),
            });
        }
    }
    out
}

/// The route's prefix in its canonical form: starts with `/`, no trailing `/` (except
/// the root itself). A prefix that is not already normalized, or that reads like a
/// pattern or a folder, is a problem.
fn prefix(ctx: &mut Ctx<'_>, raw: &RawRoute, key: &str) -> String {
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
    if let Some(reason) = prefix_shape(prefix) {
        ctx.problem(Some(raw.prefix.span()), key, reason);
        return canonical.unwrap_or_else(|| prefix.clone());
    }
    canonical.unwrap_or_else(|| {
        ctx.problem(
            Some(raw.prefix.span()),
            key,
            format!("`{prefix}` is not a normalized path such as \"/api/tasks\" (no `..`, `//`, `;` or escapes)"),
        );
        prefix.clone()
    })
}

/// A list of HTTP methods, each in capitals (`"GET"`): a route's `methods` or a CORS
/// policy's `allowed_methods`.
fn methods(ctx: &mut Ctx<'_>, list: &Spanned<Vec<String>>, key: &str) -> Vec<Method> {
    let mut out = Vec::new();
    for m in list.get_ref() {
        match Method::from_bytes(m.as_bytes()) {
            Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => out.push(method),
            _ => ctx.problem(
                Some(list.span()),
                key,
                format!("`{m}` is not an HTTP method (write it in capitals, like \"GET\")"),
            ),
        }
    }
    out
}

/// Who may use the route: its scopes, roles and providers, checked against its `auth`
/// mode (a public route can require none of them, an optional one no scope or role).
fn access(
    ctx: &mut Ctx<'_>,
    raw: &RawRoute,
    auth: AuthMode,
    providers: &[ProviderConfig],
    key: &dyn Fn(&str) -> String,
) -> (Vec<String>, Vec<String>, Option<Vec<String>>) {
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
            if !providers.iter().any(|c| c.name.as_str() == p) {
                ctx.problem(
                    Some(list.span()),
                    key("providers"),
                    format!("no provider is named `{p}`"),
                );
            }
        }
        list.get_ref().clone()
    });
    let requires = !scopes.is_empty() || !roles.is_empty();
    if auth == AuthMode::Public && (requires || route_providers.is_some()) {
        ctx.problem(
            Some(raw.name.span()),
            key("auth"),
            "a public route cannot require scopes, roles or providers",
        );
    }
    if auth == AuthMode::Optional && requires {
        ctx.problem(
            Some(raw.name.span()),
            key("auth"),
            "scopes and roles need auth = \"required\" (an anonymous request would pass them)",
        );
    }
    if auth != AuthMode::Public && providers.is_empty() {
        ctx.problem(
            Some(raw.name.span()),
            key("auth"),
            "needs at least one [[providers]]",
        );
    }
    (scopes, roles, route_providers)
}

/// One `rate_limits` entry. The cost of one request, `period / requests`, must be at
/// least a microsecond (the unit the shared store counts in).
fn rate_limit(
    ctx: &mut Ctx<'_>,
    raw: &RawRateLimit,
    key: &str,
    auth: AuthMode,
    has_redis: bool,
) -> Option<RateLimitConfig> {
    let k = |s: &str| format!("{key}.{s}");
    let span = Some(raw.key.span());
    let text = raw.key.get_ref().trim();
    let limit_key = match text {
        "user" => LimitKey::User,
        "client_ip" => LimitKey::ClientIp,
        _ => match text.strip_prefix("claim:") {
            Some(name)
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') =>
            {
                LimitKey::Claim(name.to_owned())
            }
            _ => {
                ctx.problem(
                    span,
                    k("key"),
                    format!("`{text}` is not \"user\", \"client_ip\" or \"claim:NAME\""),
                );
                return None;
            }
        },
    };
    if auth == AuthMode::Public && limit_key != LimitKey::ClientIp {
        ctx.problem(
            span.clone(),
            k("key"),
            "a public route has no user or claims to count by; use \"client_ip\"",
        );
    }
    let requests = *raw.requests.get_ref();
    if requests == 0 {
        ctx.problem(
            Some(raw.requests.span()),
            k("requests"),
            "must be at least 1",
        );
        return None;
    }
    let period = ctx.duration(Some(&raw.period), &k("period"), Duration::ZERO, false);
    if period.is_zero() {
        return None;
    }
    if period / requests < Duration::from_micros(1) {
        ctx.problem(
            Some(raw.period.span()),
            k("period"),
            "more than one request per microsecond cannot be counted; use a longer period",
        );
        return None;
    }
    let burst = raw.burst.as_ref().map_or(requests, |b| *b.get_ref());
    if burst == 0 {
        let span = raw.burst.as_ref().map(Spanned::span);
        ctx.problem(span, k("burst"), "must be at least 1");
        return None;
    }
    let store = raw
        .store
        .as_ref()
        .map_or(LimitStore::Local, |s| *s.get_ref());
    if store == LimitStore::Redis && !has_redis {
        let span = raw.store.as_ref().map(Spanned::span);
        ctx.problem(span, k("store"), "store = \"redis\" needs a [redis] table");
    }
    if store == LimitStore::Local && raw.on_store_error.is_some() {
        ctx.problem(
            span,
            k("on_store_error"),
            "applies only to store = \"redis\"",
        );
    }
    Some(RateLimitConfig {
        key: limit_key,
        requests,
        period,
        burst,
        store,
        on_store_error: raw.on_store_error.unwrap_or_default(),
        name: Arc::new(text.to_owned()),
    })
}

/// Names each policy after its key, numbered when a route counts by the same key twice
/// (`user`, `user-2`), so `RateLimit` can say which one it speaks of.
fn name_policies(mut limits: Vec<RateLimitConfig>) -> Vec<RateLimitConfig> {
    let mut seen: Vec<Arc<String>> = Vec::new();
    for l in &mut limits {
        let n = seen.iter().filter(|s| **s == l.name).count();
        seen.push(l.name.clone());
        if n > 0 {
            l.name = Arc::new(format!("{}-{}", l.name, n + 1));
        }
    }
    limits
}

/// `websocket = true` needs an HTTP/1.1 upstream: an upgrade is an HTTP/1.1 mechanism.
fn websocket(ctx: &mut Ctx<'_>, raw: &RawRoute, key: &str, protocol: UpstreamProtocol) -> bool {
    let on = raw.websocket.unwrap_or(false);
    if on && protocol != UpstreamProtocol::Http1 {
        ctx.problem(
            Some(raw.name.span()),
            key,
            "WebSocket upgrades need upstream_protocol = \"http1\"",
        );
    }
    on
}

/// Why a prefix that reads like a pattern or a folder is refused: it would not mean what
/// its author expects. `None` for a plain prefix.
fn prefix_shape(prefix: &str) -> Option<String> {
    if let Some(glob) = prefix.chars().find(|c| matches!(c, '*' | '?' | '[')) {
        let literal = prefix
            .split(['*', '?', '['])
            .next()
            .unwrap_or("/")
            .trim_end_matches('/');
        return Some(format!(
            "`{prefix}` holds `{glob}`, but a prefix is literal, not a pattern: it would only \
             match a path spelled with `{glob}`. Whole segments already match everything \
             under them: write \"{}\"",
            if literal.is_empty() { "/" } else { literal }
        ));
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        let bare = prefix.trim_end_matches('/');
        return Some(format!(
            "`{prefix}` ends with `/`; a prefix matches whole path segments, so \"{bare}\" \
             matches {bare} and everything under it (and {bare}/ too): write \"{bare}\"",
            bare = if bare.is_empty() { "/" } else { bare }
        ));
    }
    None
}

fn upstream(ctx: &mut Ctx<'_>, raw: &RawRoute, key: &str, base_dir: &Path) -> Option<Upstream> {
    let (https, authority, base_path) = upstream_url(ctx, &raw.upstream, key)?;
    let tls = match &raw.upstream_tls {
        None => None,
        Some(_) if !https => {
            ctx.problem(
                Some(raw.upstream.span()),
                key,
                "upstream_tls needs an https:// upstream",
            );
            return None;
        }
        Some(t) => Some(upstream_tls(ctx, t, raw.upstream.span(), key, base_dir)?),
    };
    Some(Upstream {
        https,
        authority,
        base_path,
        protocol: raw.upstream_protocol.unwrap_or(UpstreamProtocol::Http1),
        tls,
    })
}

/// An upstream URL: `http(s)://host[:port][/normalized/base/path]`, no credentials, no
/// query. Gives whether it is https, its authority and its base path.
fn upstream_url(
    ctx: &mut Ctx<'_>,
    v: &Spanned<String>,
    key: &str,
) -> Option<(bool, http::uri::Authority, String)> {
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
    let problem = match uri.authority() {
        None => Some("the upstream URL needs a host"),
        Some(a) if a.as_str().contains('@') => {
            Some("credentials in the upstream URL are not allowed")
        }
        Some(_) if uri.query().is_some() => Some("the upstream URL cannot have a query"),
        Some(_) => None,
    };
    if let Some(problem) = problem {
        ctx.problem(Some(v.span()), key, problem);
        return None;
    }
    let base = uri.path().trim_end_matches('/');
    let normalized = base.is_empty() || path::normalize(base).is_ok_and(|p| p.as_str() == base);
    if !normalized {
        ctx.problem(
            Some(v.span()),
            key,
            "the upstream URL's path must be normalized",
        );
        return None;
    }
    let authority = uri.authority().cloned()?;
    Some((https, authority, base.to_owned()))
}

/// `upstream_tls`: the roots to trust and, for mTLS, the gateway's certificate and key
/// (both or neither), read into a rustls client config now so a bad file fails the load.
fn upstream_tls(
    ctx: &mut Ctx<'_>,
    t: &RawUpstreamTls,
    span: Range<usize>,
    key: &str,
    base_dir: &Path,
) -> Option<UpstreamTls> {
    let ca = t.ca.as_ref().map(|p| resolve(base_dir, p.get_ref()));
    let identity = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => Some((
            resolve(base_dir, c.get_ref()),
            resolve(base_dir, k.get_ref()),
        )),
        (None, None) => None,
        _ => {
            ctx.problem(
                Some(span),
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
            ctx.problem(Some(span), format!("{key}_tls"), e.to_string());
            None
        }
    }
}

const DEFAULT_CORS_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
const DEFAULT_CORS_HEADERS: [&str; 2] = ["authorization", "content-type"];
const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);

pub(super) fn cors(ctx: &mut Ctx<'_>, raw: &RawCors, prefix: &str) -> Arc<CorsPolicy> {
    let key = |k: &str| format!("{prefix}.{k}");
    let credentials = raw.allow_credentials.unwrap_or(false);
    let origins = allowed_origins(
        ctx,
        &raw.allowed_origins,
        credentials,
        &key("allowed_origins"),
    );
    let methods = match &raw.allowed_methods {
        None => DEFAULT_CORS_METHODS
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).expect("static method"))
            .collect(),
        Some(list) => methods(ctx, list, &key("allowed_methods")),
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

/// `allowed_origins`: `["*"]` alone (never with credentials), or a list of exact origins.
fn allowed_origins(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<Vec<String>>,
    credentials: bool,
    key: &str,
) -> AllowedOrigins {
    let (list, span) = (raw.get_ref(), Some(raw.span()));
    if list.iter().any(|o| o == "*") {
        if list.len() > 1 {
            ctx.problem(
                span.clone(),
                key,
                "\"*\" cannot be mixed with listed origins",
            );
        }
        if credentials {
            ctx.problem(
                span,
                key,
                "\"*\" cannot be used with allow_credentials = true; list the origins",
            );
        }
        return AllowedOrigins::Any;
    }
    if list.is_empty() {
        ctx.problem(span.clone(), key, "list at least one origin");
    }
    let mut out = Vec::new();
    for o in list {
        match origin(o) {
            Some(canonical) => out.push(canonical),
            None => ctx.problem(
                span.clone(),
                key,
                format!("`{o}` is not an origin like \"https://app.example.com\" (scheme, host, optional port, no path)"),
            ),
        }
    }
    AllowedOrigins::List(out)
}

/// The ASCII serialization of an origin (`scheme://host[:port]`), or `None`.
pub(super) fn origin(s: &str) -> Option<String> {
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
