//! `[[providers]]`: who issues tokens, where their keys come from (exactly one of a JWKS
//! URL, OIDC discovery, a JWKS file, an inline JWKS or a shared secret), and which claims
//! carry roles and scopes.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::{Ctx, resolve};
use crate::alg::Alg;
use crate::config::raw::RawProvider;
use crate::config::{
    JwksConfig, JwksLocation, KeySource, ProviderConfig, SharedSecret, StaticKeys,
};
use crate::jwks::{KeySet, document_url, transport_problem};

const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
const DEFAULT_REFRESH_COOLDOWN: Duration = Duration::from_secs(10);
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
const MIN_SECRET_BYTES: usize = 32;

pub(super) fn providers(
    ctx: &mut Ctx<'_>,
    raws: &[RawProvider],
    base_dir: &Path,
) -> Vec<ProviderConfig> {
    let mut names = HashSet::new();
    let mut issuers = HashSet::new();
    let mut out = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let key = |k: &str| format!("providers[{i}].{k}");
        let name = ctx.unique_name(&raw.name, key("name"), "provider", &mut names);
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

        let symmetric = raw.secret_env.is_some();
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
        let keys = key_source(ctx, raw, i, &name, base_dir, &algorithms);
        let roles_claim = claim_name(ctx, raw.roles_claim.as_ref(), &key("roles_claim"));
        let scopes_claim = claim_name(ctx, raw.scopes_claim.as_ref(), &key("scopes_claim"));
        let session_claim = session_claim(ctx, raw.session_claim.as_ref(), &key("session_claim"));
        if let Some(keys) = keys {
            out.push(ProviderConfig {
                name: Arc::new(name),
                issuer,
                keys,
                audiences,
                algorithms,
                leeway,
                roles_claim,
                scopes_claim,
                session_claim,
            });
        }
    }
    out
}

/// The one place a provider's keys come from: exactly one of the keys below.
const SOURCES: &str = "jwks_url, discovery = true, discovery_url, jwks_file, jwks or secret_env";

fn key_source(
    ctx: &mut Ctx<'_>,
    raw: &RawProvider,
    i: usize,
    name: &str,
    base_dir: &Path,
    algorithms: &[Alg],
) -> Option<KeySource> {
    let key = |k: &str| format!("providers[{i}].{k}");
    let discovery = raw.discovery.as_ref().filter(|d| *d.get_ref());
    let set: Vec<(&str, Range<usize>)> = [
        ("jwks_url", raw.jwks_url.as_ref().map(Spanned::span)),
        ("discovery", discovery.map(Spanned::span)),
        (
            "discovery_url",
            raw.discovery_url.as_ref().map(Spanned::span),
        ),
        ("jwks_file", raw.jwks_file.as_ref().map(Spanned::span)),
        ("jwks", raw.jwks.as_ref().map(Spanned::span)),
        ("secret_env", raw.secret_env.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(k, span)| Some((k, span?)))
    .collect();
    match set.as_slice() {
        [] => {
            ctx.problem(
                Some(raw.name.span()),
                key("jwks_url"),
                format!("provider `{name}` has no keys: set one of {SOURCES}"),
            );
            return None;
        }
        [_] => {}
        [(first, _), (second, span), ..] => {
            ctx.problem(
                Some(span.clone()),
                key(second),
                format!(
                    "provider `{name}` sets both {first} and {second}: set exactly one of {SOURCES} (shared secrets are never mixed with JWKS keys)"
                ),
            );
            return None;
        }
    }
    let allow_http = raw.insecure_allow_http_jwks == Some(true);
    if let Some(url) = &raw.jwks_url {
        let url = fetchable_url(ctx, url, &key("jwks_url"), allow_http)?;
        return Some(KeySource::Jwks(jwks(ctx, raw, i, JwksLocation::Url(url))));
    }
    if let Some(url) = &raw.discovery_url {
        let document = fetchable_url(ctx, url, &key("discovery_url"), allow_http)?;
        let issuer = raw.issuer.get_ref().clone();
        let location = JwksLocation::Discovery { document, issuer };
        return Some(KeySource::Jwks(jwks(ctx, raw, i, location)));
    }
    if let Some(flag) = discovery {
        let location = issuer_discovery(ctx, raw, flag, &key, allow_http)?;
        return Some(KeySource::Jwks(jwks(ctx, raw, i, location)));
    }
    if let Some(file) = &raw.jwks_file {
        return file_keys(ctx, file, &key("jwks_file"), base_dir, algorithms);
    }
    if let Some(inline) = &raw.jwks {
        let set = static_keys(
            ctx,
            inline.get_ref().as_bytes(),
            inline.span(),
            &key("jwks"),
            algorithms,
        )?;
        return Some(KeySource::Static(StaticKeys { file: None, set }));
    }
    let env = raw
        .secret_env
        .as_ref()
        .expect("exactly one key source is set");
    secret(ctx, env, i).map(KeySource::Secret)
}

/// `discovery = true`: the issuer's own discovery document, which must be reachable
/// the way a JWKS must (https, or http to loopback).
fn issuer_discovery(
    ctx: &mut Ctx<'_>,
    raw: &RawProvider,
    flag: &Spanned<bool>,
    key: &dyn Fn(&str) -> String,
    allow_http: bool,
) -> Option<JwksLocation> {
    let issuer = raw.issuer.get_ref();
    let Some(document) = discovery_document(issuer) else {
        ctx.problem(
            Some(flag.span()),
            key("discovery"),
            format!("the issuer `{issuer}` is not an http(s) URL to discover from; set discovery_url, or jwks_url"),
        );
        return None;
    };
    if let Some(why) = transport_problem(&document, allow_http) {
        ctx.problem(
            Some(raw.issuer.span()),
            key("issuer"),
            format!("discovery from {document}: {why}"),
        );
        return None;
    }
    Some(JwksLocation::Discovery {
        document,
        issuer: issuer.clone(),
    })
}

/// `jwks_file`: read now (and on every reload), checked like a fetched JWKS.
fn file_keys(
    ctx: &mut Ctx<'_>,
    file: &Spanned<String>,
    key: &str,
    base_dir: &Path,
    algorithms: &[Alg],
) -> Option<KeySource> {
    let path = resolve(base_dir, file.get_ref());
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) => {
            ctx.problem(
                Some(file.span()),
                key,
                format!("cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    let set = static_keys(ctx, &text, file.span(), key, algorithms)?;
    Some(KeySource::Static(StaticKeys {
        file: Some(path),
        set,
    }))
}

/// `{issuer}/.well-known/openid-configuration`, for an issuer that is an http(s) URL.
fn discovery_document(issuer: &str) -> Option<reqwest::Url> {
    document_url(issuer).filter(|u| matches!(u.scheme(), "https" | "http"))
}

/// A URL keys or metadata may be fetched from (see [`transport_problem`]).
fn fetchable_url(
    ctx: &mut Ctx<'_>,
    url: &Spanned<String>,
    key: &str,
    allow_http: bool,
) -> Option<reqwest::Url> {
    let parsed = match reqwest::Url::parse(url.get_ref()) {
        Ok(u) => u,
        Err(e) => {
            ctx.problem(Some(url.span()), key, format!("not a URL: {e}"));
            return None;
        }
    };
    if let Some(why) = transport_problem(&parsed, allow_http) {
        ctx.problem(Some(url.span()), key, why);
    }
    Some(parsed)
}

/// A JWKS written in the config or a file, checked exactly as a fetched one: entries
/// that cannot be used are skipped (and named), a document with no usable key is an
/// error. The keys themselves never appear in a message.
fn static_keys(
    ctx: &mut Ctx<'_>,
    text: &[u8],
    span: Range<usize>,
    key: &str,
    algorithms: &[Alg],
) -> Option<Arc<KeySet>> {
    match KeySet::parse(text, algorithms, None) {
        Ok(parsed) => {
            for (kid, why) in &parsed.skipped {
                tracing::warn!(
                    key,
                    kid = kid.as_deref().unwrap_or("-"),
                    "skipped a JWKS entry: {why}"
                );
            }
            Some(Arc::new(parsed.set))
        }
        Err(e) => {
            ctx.problem(Some(span), key, e.to_string());
            None
        }
    }
}

/// A `roles_claim` / `scopes_claim`: a claim name, or a dotted path into nested objects.
fn claim_name(ctx: &mut Ctx<'_>, v: Option<&Spanned<String>>, key: &str) -> Option<String> {
    let v = v?;
    let name = v.get_ref();
    if name.is_empty() {
        ctx.problem(
            Some(v.span()),
            key,
            "must be a claim name, or a dotted path such as \"realm_access.roles\"",
        );
        return None;
    }
    Some(name.clone())
}

/// A `session_claim`: a top-level claim name (read as a string).
fn session_claim(ctx: &mut Ctx<'_>, v: Option<&Spanned<String>>, key: &str) -> Option<String> {
    let v = v?;
    if v.get_ref().trim().is_empty() {
        ctx.problem(Some(v.span()), key, "must be a claim name, such as \"sid\"");
        return None;
    }
    Some(v.get_ref().clone())
}

fn jwks(ctx: &mut Ctx<'_>, raw: &RawProvider, i: usize, location: JwksLocation) -> JwksConfig {
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
    JwksConfig {
        location,
        insecure_allow_http: raw.insecure_allow_http_jwks == Some(true),
        refresh_interval,
        refresh_cooldown,
        fetch_timeout,
        max_stale,
    }
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
