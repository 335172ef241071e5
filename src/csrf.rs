//! Cross-site request forgery: a browser attaches cookies to requests another site
//! makes it send, so a cookie-authenticated request that changes state must show it
//! comes from the app itself. A bearer token is never attached by the browser on its
//! own, so bearer-authenticated requests are not checked.

use http::header::{ORIGIN, REFERER, UPGRADE};
use http::{HeaderMap, HeaderName, Method};

use crate::error::Error;
use crate::session::Source;

static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Lets a request through unless it is cookie-authenticated, its method is unsafe
/// (anything but GET, HEAD and OPTIONS, or an upgrade) and it cannot show where it comes from: with
/// `Sec-Fetch-Site`, it must be `same-origin` or carry an `Origin` among `trusted`;
/// without it (older browsers), its `Origin` or, failing that, its `Referer` must be
/// one of `trusted`.
pub fn check(
    source: Source,
    trusted: &[String],
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), Error> {
    // A WebSocket handshake is a GET, but what follows it can change anything: it is
    // checked like a write (cross-site WebSocket hijacking).
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && !headers.contains_key(UPGRADE);
    if !source.is_cookie() || safe {
        return Ok(());
    }
    let listed = |name: HeaderName| {
        single(headers, &name)
            .and_then(|v| url::Url::parse(v).ok())
            .is_some_and(|u| trusted.contains(&u.origin().ascii_serialization()))
    };
    let allowed = match single(headers, &SEC_FETCH_SITE) {
        Some("same-origin") => true,
        Some(_) => listed(ORIGIN),
        None if headers.contains_key(ORIGIN) => listed(ORIGIN),
        None => listed(REFERER),
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::CrossSiteRequest)
    }
}

/// The header's one value; `None` when absent, repeated or not text.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn allowed(source: Source, method: Method, pairs: &[(&'static str, &'static str)]) -> bool {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        let trusted = ["https://app.example".to_owned()];
        check(source, &trusted, &method, &h).is_ok()
    }

    #[test]
    fn unsafe_cookie_requests_need_a_same_origin_sign() {
        let c = Source::SessionCookie;
        assert!(allowed(
            c,
            Method::POST,
            &[("sec-fetch-site", "same-origin")]
        ));
        assert!(!allowed(
            c,
            Method::POST,
            &[("sec-fetch-site", "cross-site")]
        ));
        assert!(!allowed(
            c,
            Method::DELETE,
            &[("sec-fetch-site", "same-site")]
        ));
        assert!(allowed(
            c,
            Method::PUT,
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://app.example")
            ]
        ));
        assert!(allowed(
            c,
            Method::POST,
            &[("origin", "https://APP.example:443")]
        ));
        assert!(!allowed(
            c,
            Method::POST,
            &[("origin", "https://evil.example")]
        ));
        assert!(!allowed(c, Method::POST, &[("origin", "null")]));
        // Origin decides when present, even beside a trusted Referer.
        assert!(!allowed(
            c,
            Method::POST,
            &[
                ("origin", "https://evil.example"),
                ("referer", "https://app.example/x")
            ]
        ));
        assert!(allowed(
            c,
            Method::PATCH,
            &[("referer", "https://app.example/tasks?x=1")]
        ));
        assert!(!allowed(c, Method::POST, &[]));
        assert!(!allowed(
            c,
            Method::POST,
            &[
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-site", "cross-site")
            ]
        ));
    }

    #[test]
    fn safe_methods_and_bearer_requests_are_not_checked() {
        assert!(allowed(
            Source::SessionCookie,
            Method::GET,
            &[("sec-fetch-site", "cross-site")]
        ));
        assert!(allowed(Source::Cookie, Method::OPTIONS, &[]));
        assert!(!allowed(
            Source::SessionCookie,
            Method::GET,
            &[("upgrade", "websocket"), ("origin", "https://evil.example")]
        ));
        assert!(allowed(
            Source::SessionCookie,
            Method::GET,
            &[("upgrade", "websocket"), ("sec-fetch-site", "same-origin")]
        ));
        assert!(allowed(
            Source::Header,
            Method::POST,
            &[("sec-fetch-site", "cross-site")]
        ));
        assert!(!allowed(
            Source::Cookie,
            Method::POST,
            &[("sec-fetch-site", "cross-site")]
        ));
    }
}
