//! `[cookies]` and each route's `token_sources` and `auth_server`.

use std::collections::HashSet;

use toml::Spanned;

use super::Ctx;
use super::routes::origin;
use crate::config::CookieConfig;
use crate::config::raw::{AuthMode, RawCookies, RawRoute, TokenSource};

/// Better Auth's default cookie names (`advanced.cookiePrefix` = "better-auth").
const DEFAULT_SESSION_COOKIE: &str = "better-auth.session_data";
const DEFAULT_STRIP: [&str; 3] = [
    "better-auth.session_token",
    "better-auth.session_data",
    "better-auth.dont_remember",
];

pub(super) fn cookies(ctx: &mut Ctx<'_>, raw: Option<&RawCookies>) -> CookieConfig {
    let session_cookie = match raw.and_then(|r| r.session_cookie.as_ref()) {
        Some(name) => cookie_name(ctx, name, "cookies.session_cookie", true),
        None => DEFAULT_SESSION_COOKIE.to_owned(),
    };
    let strip = match raw.and_then(|r| r.strip.as_ref()) {
        Some(list) => list
            .get_ref()
            .iter()
            .map(|n| {
                cookie_name(
                    ctx,
                    &Spanned::new(list.span(), n.clone()),
                    "cookies.strip",
                    true,
                )
            })
            .collect(),
        None => DEFAULT_STRIP.map(str::to_owned).to_vec(),
    };
    let mut trusted_origins = Vec::new();
    if let Some(list) = raw.and_then(|r| r.trusted_origins.as_ref()) {
        for o in list.get_ref() {
            match origin(o) {
                Some(canonical) => trusted_origins.push(canonical),
                None => ctx.problem(
                    Some(list.span()),
                    "cookies.trusted_origins",
                    format!("`{o}` is not an origin like \"https://app.example.com\" (scheme, host, optional port, no path)"),
                ),
            }
        }
    }
    CookieConfig {
        session_cookie,
        strip,
        trusted_origins,
    }
}

/// A cookie name as RFC 6265 §4.1.1 allows it (an HTTP token); with `unprefixed`,
/// without the `__Secure-` prefix, which the gateway adds itself.
fn cookie_name(ctx: &mut Ctx<'_>, name: &Spanned<String>, key: &str, unprefixed: bool) -> String {
    let n = name.get_ref();
    let token = !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        ctx.problem(
            Some(name.span()),
            key,
            format!("`{n}` is not a cookie name"),
        );
    } else if unprefixed && (n.starts_with("__Secure-") || n.starts_with("__Host-")) {
        ctx.problem(
            Some(name.span()),
            key,
            format!("write `{n}` without its prefix: both forms are read"),
        );
    }
    n.clone()
}

/// A route's `token_sources` (default: the `Authorization` header alone).
pub(super) fn token_sources(ctx: &mut Ctx<'_>, raw: &RawRoute, key: &str) -> Vec<TokenSource> {
    let Some(list) = &raw.token_sources else {
        return vec![TokenSource::Authorization];
    };
    let sources = list.get_ref().clone();
    let span = Some(list.span());
    if sources.is_empty() {
        ctx.problem(span.clone(), key, "list at least one token source");
    }
    let mut seen = HashSet::new();
    for s in &sources {
        if !seen.insert(s) {
            let spelled = match s {
                TokenSource::Authorization => "\"authorization\"".to_owned(),
                TokenSource::SessionCookie => "\"session_cookie\"".to_owned(),
                TokenSource::Cookie(n) => format!("{{ cookie = \"{n}\" }}"),
            };
            ctx.problem(span.clone(), key, format!("{spelled} is listed twice"));
        }
        if let TokenSource::Cookie(name) = s {
            // Read by exactly this name: a prefix is part of it.
            cookie_name(ctx, &Spanned::new(list.span(), name.clone()), key, false);
        }
    }
    if raw.auth == Some(AuthMode::Public) {
        ctx.problem(span, key, "a public route takes no token");
    }
    sources
}
