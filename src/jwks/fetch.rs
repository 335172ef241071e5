//! One bounded HTTP GET of a JWKS document: a timeout, a body cap, a status check, and
//! the `Cache-Control: max-age` hint. Nothing here retries; the key store decides when.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CACHE_CONTROL;

/// A JWKS larger than this is refused without reading the rest.
pub const MAX_BODY: usize = 1024 * 1024;

pub struct Fetched {
    pub body: Bytes,
    /// The issuer's `max-age`, if it sent one (`no-store`/`no-cache` read as zero).
    pub max_age: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed")]
    Http(#[source] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(http::StatusCode),
    #[error("body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("timed out")]
    Timeout,
}

/// The one client for JWKS fetches: rustls, bounded redirects, connect timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            // Never follow more than three hops, nor a hop from https down to http.
            let downgrade = attempt
                .previous()
                .last()
                .is_some_and(|u| u.scheme() == "https")
                && attempt.url().scheme() != "https";
            if attempt.previous().len() > 3 || downgrade {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .expect("the JWKS client configuration is static and valid")
}

/// Why `url` may not be fetched keys from, if it may not: https always may; plain http
/// only to a loopback host, unless `insecure_allow_http` (anyone on the path could swap
/// the keys). The same rule holds for `jwks_url`, `discovery_url` and a discovered
/// `jwks_uri`.
pub fn transport_problem(url: &reqwest::Url, insecure_allow_http: bool) -> Option<String> {
    match url.scheme() {
        "https" => None,
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            (!loopback && !insecure_allow_http).then(|| {
                "plain http is only allowed to a loopback host; use https, or set insecure_allow_http_jwks = true".to_owned()
            })
        }
        other => Some(format!("scheme `{other}` is not supported; use https")),
    }
}

pub async fn fetch(
    client: &reqwest::Client,
    url: &reqwest::Url,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    tokio::time::timeout(timeout, fetch_inner(client, url))
        .await
        .map_err(|_| FetchError::Timeout)?
}

async fn fetch_inner(client: &reqwest::Client, url: &reqwest::Url) -> Result<Fetched, FetchError> {
    let mut resp = client
        .get(url.clone())
        .header(
            http::header::ACCEPT,
            "application/json, application/jwk-set+json",
        )
        .send()
        .await
        .map_err(FetchError::Http)?;
    if resp.status() != http::StatusCode::OK {
        return Err(FetchError::Status(resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(FetchError::TooLarge);
    }
    let max_age = resp
        .headers()
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_max_age);
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(FetchError::Http)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        body: body.freeze(),
        max_age,
    })
}

fn parse_max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|d| {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        lower
            .strip_prefix("max-age=")
            .and_then(|s| s.trim_matches('"').parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read() {
        assert_eq!(
            parse_max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
    }

    #[test]
    fn plain_http_is_for_loopback_hosts_only() {
        let ok = |u: &str, insecure| transport_problem(&u.parse().unwrap(), insecure).is_none();
        assert!(ok("https://issuer.example.com/jwks", false));
        assert!(ok("http://127.0.0.1:3000/jwks", false));
        assert!(ok("http://[::1]:3000/jwks", false));
        assert!(ok("http://LOCALHOST/jwks", false));
        assert!(!ok("http://issuer.example.com/jwks", false));
        assert!(ok("http://issuer.example.com/jwks", true));
        assert!(!ok("ftp://127.0.0.1/jwks", true));
    }
}
