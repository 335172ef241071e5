//! `POST /revoke` on the admin listener: `{"sub": "...", "before": <unix time>}`
//! (`before` defaults to the next second: every token issued up to now),
//! `{"jti": "..."}` or `{"sid": "..."}`. 204 once the revocation is stored (and, with
//! `[redis]`, sent to every replica); 400/413/415 for a request that is not one of
//! those; 503 when it cannot be stored, so a revocation is never silently lost.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;

use super::{Entry, Kind, MAX_ID_LEN, Revocations, unix_now};
use crate::body::{Body, full};
use crate::conn::ClientBody;

/// Largest request body read.
const MAX_BODY_BYTES: usize = 8 * 1024;
/// How far in the future `before` may be: clock skew between the caller and the gateway.
const MAX_BEFORE_SKEW: i64 = 60;

/// The JSON body: exactly one of `sub`, `jti`, `sid`; `before` only with `sub`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    sub: Option<String>,
    before: Option<i64>,
    jti: Option<String>,
    sid: Option<String>,
}

/// Why a revocation request was refused before anything was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error(
        "the body must be a JSON object: {{\"sub\": ..., \"before\": <Unix time>}}, {{\"jti\": ...}} or {{\"sid\": ...}}"
    )]
    NotJson,
    #[error("give exactly one of sub, jti or sid")]
    NotOne,
    #[error("before applies to sub only")]
    BeforeWithoutSub,
    #[error("{0} must be a non-empty string of at most 1024 bytes")]
    BadId(&'static str),
    #[error("before must be a Unix time in seconds, not in the future")]
    BadBefore,
}

/// The entry a request names, kept for `keep` (see [`crate::config::RevocationConfig`]).
pub fn entry(
    sub: Option<String>,
    before: Option<i64>,
    jti: Option<String>,
    sid: Option<String>,
    keep: Duration,
) -> Result<Entry, Malformed> {
    let (kind, id) = match (sub, jti, sid) {
        (Some(id), None, None) => (Kind::Sub, id),
        (None, Some(id), None) => (Kind::Jti, id),
        (None, None, Some(id)) => (Kind::Sid, id),
        _ => return Err(Malformed::NotOne),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(Malformed::BadId(kind.as_str()));
    }
    if before.is_some() && kind != Kind::Sub {
        return Err(Malformed::BeforeWithoutSub);
    }
    if before.is_some_and(|b| b < 0 || b > unix_now() + MAX_BEFORE_SKEW) {
        return Err(Malformed::BadBefore);
    }
    Ok(Entry::new(kind, id, before, keep))
}

/// Handles `POST /revoke`.
pub async fn post(
    revocations: &Revocations,
    keep: Duration,
    req: Request<ClientBody>,
) -> Response<Body> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "send the revocation as application/json",
        );
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the body is larger than 8 KiB",
            );
        }
    };
    let entry = match serde_json::from_slice::<RevokeBody>(&bytes) {
        Err(_) => Err(Malformed::NotJson.to_string()),
        Ok(b) => entry(b.sub, b.before, b.jti, b.sid, keep).map_err(|e| e.to_string()),
    };
    let entry = match entry {
        Ok(e) => e,
        Err(message) => {
            return answer(StatusCode::BAD_REQUEST, "invalid_request", &message);
        }
    };
    let kind = entry.kind;
    match revocations.revoke(entry).await {
        Ok(()) => {
            tracing::info!(kind = kind.as_str(), "revocation stored");
            let mut resp = Response::new(full(""));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
        Err(e) => {
            tracing::error!(
                kind = kind.as_str(),
                "revocation refused: {}",
                crate::error::chain(&e)
            );
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                &format!("the revocation was not stored ({e}); it is not in force: retry"),
            )
        }
    }
}

fn answer(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "message": message });
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Duration = Duration::from_secs(900);

    #[test]
    fn a_request_names_exactly_one_thing() {
        let s = || Some("u1".to_owned());
        assert_eq!(
            entry(s(), None, s(), None, KEEP).unwrap_err(),
            Malformed::NotOne
        );
        assert_eq!(
            entry(None, None, None, None, KEEP).unwrap_err(),
            Malformed::NotOne
        );
        assert_eq!(
            entry(None, Some(1), s(), None, KEEP).unwrap_err(),
            Malformed::BeforeWithoutSub
        );
        assert_eq!(
            entry(Some(String::new()), None, None, None, KEEP).unwrap_err(),
            Malformed::BadId("sub")
        );
        let far = unix_now() + 3600;
        assert_eq!(
            entry(s(), Some(far), None, None, KEEP).unwrap_err(),
            Malformed::BadBefore
        );
    }

    #[test]
    fn a_user_entry_lasts_a_token_lifetime_past_before() {
        let e = entry(Some("u1".into()), Some(1000), None, None, KEEP).unwrap();
        assert_eq!((e.kind, e.before, e.expires), (Kind::Sub, Some(1000), 1901));
        let now = unix_now();
        let e = entry(None, None, None, Some("s1".into()), KEEP).unwrap();
        assert_eq!(e.before, None);
        assert!((now + 901..=now + 902).contains(&e.expires));
    }
}
