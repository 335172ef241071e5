//! The admin API: `/healthz` (the process answers), `/readyz` (every provider has keys
//! and the revocation set is loaded), `/metrics` (OpenMetrics), `POST /reload` (re-read
//! the config file) and `POST /revoke` (see [`crate::revoke::admin`]). It is served
//! on a listener of its own, so its paths never shadow an upstream's.
//!
//! The GETs only read, and probes and scrapers must reach them, so they are open to
//! whoever reaches the listener. The POSTs change what the gateway does (a revocation
//! can lock any user out), and recipes bind the listener beyond loopback for the
//! kubelet's probes: so a POST needs `Authorization: Bearer` with the secret
//! `server.admin_token_env` names, or, when none is configured, a peer on loopback.

use std::net::SocketAddr;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::body::{Body, full};
use crate::conn::ClientBody;
use crate::error;
use crate::state::Shared;

const JSON: &str = "application/json";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Answers one admin request. `reload` re-reads the config file; it runs only for
/// `POST /reload`.
pub async fn handle<R, F, E>(
    shared: &Shared,
    peer: SocketAddr,
    reload: R,
    req: Request<ClientBody>,
) -> Response<Body>
where
    R: FnOnce() -> F,
    F: Future<Output = Result<(), E>>,
    E: std::error::Error,
{
    if req.method() == Method::POST
        && let Some(refused) = unauthorized(shared, peer, &req)
    {
        return refused;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET, "/readyz") => readiness(shared),
        (&Method::GET, "/metrics") => metrics(shared),
        (&Method::POST, "/reload") => reloaded(reload().await),
        (&Method::POST, "/revoke") => {
            let keep = shared.current().config.revocation.keep;
            crate::revoke::admin::post(shared.revocations(), keep, req).await
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/reload" | "/revoke") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"method_not_allowed"}"#,
        ),
        _ => json(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#),
    }
}

/// The refusal of a POST without the right to change the gateway: the configured admin
/// token as a bearer token (compared in constant time), or without one, a loopback peer.
fn unauthorized(
    shared: &Shared,
    peer: SocketAddr,
    req: &Request<ClientBody>,
) -> Option<Response<Body>> {
    let snapshot = shared.current();
    let Some(secret) = &snapshot.config.server.admin_token else {
        if peer.ip().to_canonical().is_loopback() {
            return None;
        }
        return Some(json(
            StatusCode::FORBIDDEN,
            r#"{"error":"forbidden","error_description":"POST from another host needs server.admin_token_env"}"#,
        ));
    };
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let given = match (values.next(), values.next()) {
        (Some(v), None) => v.as_bytes().strip_prefix(b"Bearer "),
        _ => None,
    };
    match given {
        Some(token) if verify_slices_are_equal(token, &secret.bytes).is_ok() => None,
        _ => {
            let mut resp = json(StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#);
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="portcullis-admin""#),
            );
            Some(resp)
        }
    }
}

/// 200 once every provider has keys and the revocation set is loaded; else 503, naming
/// what is still awaited. Once loaded, a replica that lost Redis stays ready (it enforces
/// the set it holds) and says its set is stale.
fn readiness(shared: &Shared) -> Response<Body> {
    let snapshot = shared.current();
    let waiting: Vec<&str> = snapshot
        .auth
        .providers()
        .iter()
        .filter(|p| !p.is_ready())
        .map(|p| p.config.name.as_str())
        .collect();
    let revocations = shared.revocations();
    if waiting.is_empty() && !revocations.is_loaded() {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"waiting for the revocation set"}"#,
        )
    } else if waiting.is_empty() && !revocations.is_current() {
        json(
            StatusCode::OK,
            r#"{"status":"ready","revocations":"stale: reconnecting to Redis"}"#,
        )
    } else if waiting.is_empty() {
        json(StatusCode::OK, r#"{"status":"ready"}"#)
    } else {
        let body = serde_json::json!({ "status": "waiting for keys", "providers": waiting });
        json(StatusCode::SERVICE_UNAVAILABLE, body.to_string())
    }
}

/// The metrics, with each key set's age brought up to now.
fn metrics(shared: &Shared) -> Response<Body> {
    for store in shared.current().auth.key_stores() {
        shared
            .metrics
            .jwks_age(store.provider(), store.last_success_age());
    }
    let revocations = shared.revocations();
    shared
        .metrics
        .revocations(revocations.len(), revocations.sync_age());
    respond(StatusCode::OK, OPENMETRICS, shared.metrics.encode())
}

/// 200 when the new config serves; 400 with the reason when it was refused.
fn reloaded<E: std::error::Error>(result: Result<(), E>) -> Response<Body> {
    match result {
        Ok(()) => json(StatusCode::OK, r#"{"status":"reloaded"}"#),
        Err(e) => {
            let body = serde_json::json!({ "status": "refused", "reason": error::chain(&e) });
            json(StatusCode::BAD_REQUEST, body.to_string())
        }
    }
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, JSON, body)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
