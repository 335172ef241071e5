//! One error type for the request path, classified by who failed: the client (4xx), a
//! dependency (the issuer or the upstream: 502/503/504), or the gateway itself (500).
//! Rendering is pure: a status, RFC 6750 `WWW-Authenticate` where it applies, and a small
//! JSON body that never carries a token, a key or an internal detail.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{self, Body};
use crate::path::PathError;

/// The rate-limit headers of draft-ietf-httpapi-ratelimit-headers.
pub static RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// Why a token was refused. Each reason has a fixed, token-free description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token too large")]
    TooLarge,
    #[error("unsupported algorithm")]
    UnsupportedAlg,
    #[error("algorithm not allowed for this issuer")]
    AlgNotAllowed,
    #[error("unsupported critical header")]
    CriticalHeader,
    #[error("token type not accepted")]
    WrongType,
    #[error("claim `{0}` has the wrong type")]
    ClaimType(&'static str),
    #[error("token has no issuer")]
    MissingIssuer,
    #[error("unknown issuer")]
    UnknownIssuer,
    #[error("issuer not accepted on this route")]
    IssuerNotAllowed,
    #[error("token has no expiry")]
    MissingExpiry,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("audience not accepted")]
    WrongAudience,
    #[error("token has no valid subject")]
    InvalidSubject,
    #[error("token has no key id")]
    MissingKid,
    #[error("unknown signing key")]
    UnknownKid,
    #[error("key does not fit the algorithm")]
    KeyMismatch,
    #[error("bad signature")]
    BadSignature,
    /// Verified, but revoked (its user, session or `jti`); says no more than that.
    #[error("revoked")]
    Revoked,
}

impl TokenError {
    /// A short, bounded label for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed | TokenError::TooLarge | TokenError::ClaimType(_) => "malformed",
            TokenError::UnsupportedAlg | TokenError::AlgNotAllowed | TokenError::KeyMismatch => {
                "bad_algorithm"
            }
            TokenError::CriticalHeader | TokenError::WrongType => "bad_header",
            TokenError::MissingIssuer
            | TokenError::UnknownIssuer
            | TokenError::IssuerNotAllowed => "wrong_issuer",
            TokenError::MissingExpiry | TokenError::Expired => "expired",
            TokenError::NotYetValid | TokenError::IssuedInFuture => "not_yet_valid",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::InvalidSubject => "bad_subject",
            TokenError::MissingKid | TokenError::UnknownKid => "unknown_kid",
            TokenError::BadSignature => "bad_signature",
            TokenError::Revoked => "revoked",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The client's fault.
    #[error("bad request path: {0}")]
    BadPath(#[from] PathError),
    #[error("the path reads as different routes depending on `;` parameters or letter case")]
    AmbiguousPath,
    #[error("unsupported request target")]
    BadTarget,
    #[error("more than one Authorization header")]
    MultipleAuthorization,
    #[error("no route")]
    NoRoute,
    #[error("method not allowed on this route")]
    MethodNotAllowed { allow: HeaderValue },
    #[error("no bearer token")]
    MissingToken,
    #[error("no session cookie: renew it (get-session) and retry")]
    SessionMissing,
    #[error("session cookie expired: renew it (get-session) and retry")]
    SessionExpired,
    #[error(
        "cross-site request refused: a cookie-authenticated request that changes state must come from the app's own origin"
    )]
    CrossSiteRequest,
    // Not `#[from]`: that would also make the reason the error's source, and logs would
    // print it twice.
    #[error("invalid token: {0}")]
    InvalidToken(TokenError),
    #[error("insufficient scope or role")]
    InsufficientScope,
    #[error("CORS preflight not allowed for this origin, method or headers")]
    CorsRejected,
    #[error("request body larger than this route allows")]
    PayloadTooLarge,
    #[error("the request body broke off or was malformed")]
    BadBody(#[source] crate::upstream::Error),
    /// Over a rate limit: `Retry-After` (seconds), `RateLimit-Policy` and `RateLimit`.
    #[error("rate limit reached")]
    RateLimited {
        retry_after: u64,
        policy: HeaderValue,
        limit: HeaderValue,
    },

    // A dependency's fault.
    #[error("signing keys of provider `{provider}` are {}", if *.stale { "older than max_stale (every refresh failed)" } else { "not loaded" })]
    KeysUnavailable { provider: String, stale: bool },
    #[error("upstream unavailable")]
    UpstreamUnavailable(#[source] crate::upstream::Error),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("upstream switched to a protocol the client did not ask for")]
    UpstreamProtocol,
    /// The shared rate-limit store failed and the limit says `on_store_error = "deny"`.
    #[error("the rate limit store is unavailable")]
    LimitStoreUnavailable,

    // Ours.
    #[error("could not build the upstream request")]
    Internal(#[source] http::Error),
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Error {
        Error::InvalidToken(e)
    }
}

/// Who failed, which decides the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Dependency,
    Gateway,
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadPath(_)
            | Error::AmbiguousPath
            | Error::BadTarget
            | Error::MultipleAuthorization
            | Error::BadBody(_) => StatusCode::BAD_REQUEST,
            Error::NoRoute => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::MissingToken
            | Error::SessionMissing
            | Error::SessionExpired
            | Error::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Error::InsufficientScope | Error::CorsRejected | Error::CrossSiteRequest => {
                StatusCode::FORBIDDEN
            }
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::KeysUnavailable { .. } | Error::LimitStoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::UpstreamUnavailable(_) | Error::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            Error::BadPath(_)
            | Error::AmbiguousPath
            | Error::BadTarget
            | Error::MultipleAuthorization
            | Error::NoRoute
            | Error::MethodNotAllowed { .. }
            | Error::MissingToken
            | Error::SessionMissing
            | Error::SessionExpired
            | Error::CrossSiteRequest
            | Error::InvalidToken(_)
            | Error::InsufficientScope
            | Error::CorsRejected
            | Error::PayloadTooLarge
            | Error::BadBody(_)
            | Error::RateLimited { .. } => Blame::Client,
            Error::KeysUnavailable { .. }
            | Error::LimitStoreUnavailable
            | Error::UpstreamUnavailable(_)
            | Error::UpstreamTimeout
            | Error::UpstreamProtocol => Blame::Dependency,
            Error::Internal(_) => Blame::Gateway,
        }
    }

    /// How authentication ended, for `portcullis_auth_total{outcome}`: the token's refusal
    /// reason, or what kept the gateway from checking it.
    pub fn auth_outcome(&self) -> &'static str {
        match self {
            Error::InvalidToken(t) => t.reason(),
            Error::MissingToken | Error::SessionMissing => "missing",
            Error::SessionExpired => "expired",
            Error::CrossSiteRequest => "cross_site",
            Error::InsufficientScope => "insufficient_scope",
            Error::KeysUnavailable { stale: true, .. } => "keys_stale",
            Error::KeysUnavailable { stale: false, .. } => "keys_unavailable",
            _ => "error",
        }
    }

    /// What went wrong with the upstream, for `portcullis_upstream_errors_total{kind}`;
    /// `None` when the upstream is not to blame.
    pub fn upstream_failure(&self) -> Option<&'static str> {
        match self {
            Error::UpstreamTimeout => Some("timeout"),
            Error::UpstreamUnavailable(u) if u.is_connect() => Some("connect"),
            Error::UpstreamUnavailable(_) => Some("reset"),
            Error::UpstreamProtocol => Some("protocol"),
            _ => None,
        }
    }

    /// The machine-readable `error` code of the JSON body.
    fn code(&self) -> &'static str {
        match self {
            Error::BadPath(_)
            | Error::AmbiguousPath
            | Error::BadTarget
            | Error::MultipleAuthorization => "invalid_request",
            Error::NoRoute => "not_found",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::MissingToken => "unauthorized",
            // Stable: a page renews its session cookie and retries once on these two.
            Error::SessionMissing => "session_missing",
            Error::SessionExpired => "session_expired",
            Error::CrossSiteRequest => "cross_site_request",
            Error::InvalidToken(_) => "invalid_token",
            Error::InsufficientScope => "insufficient_scope",
            Error::CorsRejected => "cors_rejected",
            Error::PayloadTooLarge => "payload_too_large",
            Error::BadBody(_) => "invalid_request",
            Error::RateLimited { .. } => "rate_limited",
            Error::KeysUnavailable { .. } | Error::LimitStoreUnavailable => "unavailable",
            Error::UpstreamUnavailable(_) | Error::UpstreamProtocol => "bad_gateway",
            Error::UpstreamTimeout => "gateway_timeout",
            Error::Internal(_) => "internal_error",
        }
    }

    /// The human message of the JSON body: fixed strings, never internals.
    fn message(&self) -> String {
        match self {
            Error::KeysUnavailable { .. } => {
                "signing keys are not available yet; retry shortly".to_owned()
            }
            Error::UpstreamUnavailable(_) | Error::UpstreamProtocol => {
                "the upstream service is unavailable".to_owned()
            }
            Error::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let body = serde_json::json!({ "error": self.code(), "message": self.message() });
        let mut resp = Response::new(body::full(body.to_string()));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            Error::MissingToken | Error::SessionMissing | Error::SessionExpired => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="portcullis""#),
                );
            }
            Error::InvalidToken(e) => {
                let v = format!(
                    r#"Bearer realm="portcullis", error="invalid_token", error_description="{e}""#
                );
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Error::InsufficientScope => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer realm="portcullis", error="insufficient_scope""#,
                    ),
                );
            }
            Error::MethodNotAllowed { allow } => {
                h.insert(header::ALLOW, allow.clone());
            }
            Error::KeysUnavailable { .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Error::RateLimited {
                retry_after,
                policy,
                limit,
            } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
                h.insert(RATELIMIT_POLICY.clone(), policy.clone());
                h.insert(RATELIMIT.clone(), limit.clone());
            }
            Error::LimitStoreUnavailable => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

/// `a: b: c` from an error and its sources, for one log line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Whether `e`, or any error in its chain of sources, is a `T`.
pub fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}
