//! `[[providers]]`: who issues tokens, and where their keys come from.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::Ctx;
use crate::alg::Alg;
use crate::config::raw::RawProvider;
use crate::config::{JwksConfig, KeySource, ProviderConfig, SharedSecret};

const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
const DEFAULT_REFRESH_COOLDOWN: Duration = Duration::from_secs(10);
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
const MIN_SECRET_BYTES: usize = 32;

pub(super) fn providers(ctx: &mut Ctx<'_>, raws: &[RawProvider]) -> Vec<ProviderConfig> {
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
