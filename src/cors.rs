//! CORS for browsers on the web app's origin calling the gateway on another origin. A
//! preflight is answered here, without a token, and never forwarded; actual responses
//! (the gateway's own errors included, so a page can read a 401) get the allow headers
//! when the origin is allowed. Without a policy on the route, an `OPTIONS` request is an
//! ordinary request and needs a token like any other.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::{Body, full};
use crate::error::Error;

#[derive(Debug, Clone)]
pub enum AllowedOrigins {
    /// `*`: any origin (never together with credentials).
    Any,
    /// Exact serialized origins, like `https://app.example.com`.
    List(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct CorsPolicy {
    pub origins: AllowedOrigins,
    pub methods: Vec<Method>,
    /// Lowercase header names a request may carry.
    pub headers: Vec<HeaderName>,
    pub expose: Vec<HeaderName>,
    pub credentials: bool,
    pub max_age: Duration,
    methods_value: HeaderValue,
    headers_value: HeaderValue,
    expose_value: Option<HeaderValue>,
    max_age_value: HeaderValue,
}

fn join<T: AsRef<str>>(items: &[T]) -> HeaderValue {
    let s: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    HeaderValue::from_str(&s.join(", ")).expect("tokens joined by commas are a valid header value")
}

impl CorsPolicy {
    pub fn new(
        origins: AllowedOrigins,
        methods: Vec<Method>,
        headers: Vec<HeaderName>,
        expose: Vec<HeaderName>,
        credentials: bool,
        max_age: Duration,
    ) -> CorsPolicy {
        let methods_value = join(&methods);
        let headers_value = join(&headers);
        let expose_value = (!expose.is_empty()).then(|| join(&expose));
        let max_age_value = HeaderValue::from(max_age.as_secs());
        CorsPolicy {
            origins,
            methods,
            headers,
            expose,
            credentials,
            max_age,
            methods_value,
            headers_value,
            expose_value,
            max_age_value,
        }
    }

    fn allows_origin(&self, origin: &HeaderValue) -> bool {
        match &self.origins {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| o.as_bytes() == origin.as_bytes()),
        }
    }

    /// The value of `Access-Control-Allow-Origin` for an allowed `origin`.
    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        match self.origins {
            AllowedOrigins::Any if !self.credentials => HeaderValue::from_static("*"),
            _ => origin.clone(),
        }
    }

    /// Answers a preflight: 204 with the allow headers, or 403 when the origin, the
    /// method or a requested header is not allowed.
    pub fn preflight(&self, req: &HeaderMap) -> Result<Response<Body>, Error> {
        let origin = req.get(header::ORIGIN).ok_or(Error::CorsRejected)?;
        if !self.allows_origin(origin) {
            return Err(Error::CorsRejected);
        }
        let method = req
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or(Error::CorsRejected)?;
        if !self.methods.contains(&method) {
            return Err(Error::CorsRejected);
        }
        for value in req.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            let value = value.to_str().map_err(|_| Error::CorsRejected)?;
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !self
                    .headers
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(name))
                {
                    return Err(Error::CorsRejected);
                }
            }
        }
        let mut resp = Response::new(full(""));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.methods_value.clone(),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.headers_value.clone(),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age_value.clone());
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        Ok(resp)
    }

    /// Adds the allow headers to an actual response when `origin` is allowed. Whatever
    /// CORS headers the upstream set are replaced: the gateway's policy is the one in force.
    pub fn decorate(&self, origin: &HeaderValue, resp: &mut HeaderMap) {
        for name in [
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
        ] {
            resp.remove(name);
        }
        resp.append(header::VARY, HeaderValue::from_static("Origin"));
        if !self.allows_origin(origin) {
            return;
        }
        resp.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        );
        if self.credentials {
            resp.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose_value {
            resp.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}
