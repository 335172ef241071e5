//! The request pipeline: normalize -> route -> authenticate -> rewrite -> forward -> log.
//! `handle_inner` returns `Result`; `handle` alone logs, and renders errors. No error
//! path forwards anything: the request reaches the upstream only at the end of
//! `forward`, after every check has passed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Frame, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::Body;
use crate::config::{AuthMode, RouteConfig, UpstreamProtocol};
use crate::conn::ClientBody;
use crate::cors;
use crate::error::{Blame, Error, TokenError};
use crate::headers;
use crate::metrics::NONE;
use crate::path::{self, NormalizedPath};
use crate::route::{self, Match, Route};
use crate::state::{RequestBody, Shared, Snapshot};
use crate::token;
use crate::upstream::SlotBody;
use crate::verify::Identity;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Facts about the client connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// What the access log line says about a request, filled in as the pipeline goes.
#[derive(Default)]
struct Trace {
    path: Option<NormalizedPath>,
    route: Option<Arc<Route>>,
    identity: Option<Arc<Identity>>,
    /// A CORS preflight answered by the gateway (its headers are already complete).
    preflight: bool,
}

pub async fn handle(shared: Arc<Shared>, conn: Conn, req: Request<ClientBody>) -> Response<Body> {
    let start = Instant::now();
    let _in_flight = shared.metrics.in_flight();
    let snap = shared.current();
    let method = req.method().clone();
    let origin = req.headers().get(header::ORIGIN).cloned();
    // An HTTP/1 request whose body the gateway may answer without reading.
    let h1_body = req.version() <= Version::HTTP_11
        && (req.headers().contains_key(header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0"));
    let mut trace = Trace::default();
    let mut resp = match handle_inner(&snap, conn, req, &mut trace).await {
        Ok(resp) => resp,
        Err(e) => {
            record_error(&shared, &trace, conn, &e);
            let mut resp = e.into_response();
            if h1_body {
                // The unread body still sits on the connection, so it cannot carry another
                // request: say so instead of letting the client find a closed socket.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    };
    if let (Some(origin), Some(cors), false) = (
        &origin,
        trace.route.as_ref().and_then(|r| r.cors.as_ref()),
        trace.preflight,
    ) {
        cors.decorate(origin, resp.headers_mut());
    }
    let elapsed = start.elapsed();
    let route_label = trace.route.as_ref().map_or(&*NONE, |r| &r.name);
    shared
        .metrics
        .request(route_label, &method, resp.status(), elapsed);
    tracing::info!(
        target: "portcullis::access",
        method = %method,
        path = trace.path.as_ref().map_or("-", |p| p.as_str()),
        route = trace.route.as_ref().map_or("-", |r| r.name.as_str()),
        status = resp.status().as_u16(),
        latency_us = elapsed.as_micros() as u64,
        user = trace.identity.as_ref().map_or("-", |i| i.user_id()),
        "request"
    );
    resp
}

/// Logs an error at the level its blame deserves and counts upstream failures.
fn record_error(shared: &Shared, trace: &Trace, conn: Conn, e: &Error) {
    let kind = match e {
        Error::UpstreamTimeout => Some("timeout"),
        Error::UpstreamUnavailable(u) if u.is_connect() => Some("connect"),
        Error::UpstreamUnavailable(_) => Some("reset"),
        Error::UpstreamProtocol => Some("protocol"),
        _ => None,
    };
    if let Some(kind) = kind {
        let route = trace.route.as_ref().map_or(&*NONE, |r| &r.name);
        shared.metrics.upstream_error(route, kind);
    }
    let chain = crate::jwks::error_chain(e);
    match e.blame() {
        Blame::Client => {
            let reason = match e {
                Error::InvalidToken(t) => t.reason(),
                _ => "-",
            };
            tracing::debug!(peer = %conn.peer, reason, "refused: {chain}")
        }
        Blame::Dependency => tracing::warn!(peer = %conn.peer, "failed: {chain}"),
        Blame::Gateway => tracing::error!(peer = %conn.peer, "internal error: {chain}"),
    }
}

async fn handle_inner(
    snap: &Arc<Snapshot>,
    conn: Conn,
    req: Request<ClientBody>,
    trace: &mut Trace,
) -> Result<Response<Body>, Error> {
    if req.method() == Method::CONNECT {
        return Err(Error::BadTarget);
    }
    // Two Host headers could name two different sites to two different readers.
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return Err(Error::BadTarget);
    }
    let path = path::normalize(req.uri().path())?;
    let route = match snap.routes.route(&path) {
        Match::Route(r) => r.clone(),
        Match::NoRoute => return Err(Error::NoRoute),
        Match::Ambiguous => return Err(Error::AmbiguousPath),
    };
    trace.path = Some(path.clone());
    trace.route = Some(route.clone());
    if let Some(cors) = &route.cors
        && cors::is_preflight(req.method(), req.headers())
    {
        // Answered here, without a token: a preflight is never forwarded.
        trace.preflight = true;
        return cors.preflight(req.headers());
    }
    let identity = match route.auth {
        AuthMode::Public => None,
        AuthMode::Required | AuthMode::Optional => match token::bearer(req.headers()) {
            Err(e) => return Err(snap.auth.refused(None, e)),
            Ok(None) if route.auth == AuthMode::Required => {
                return Err(snap.auth.refused(None, Error::MissingToken));
            }
            Ok(None) => None,
            // On an optional route a bad token is still a 401: never downgraded to anonymous.
            Ok(Some(t)) => {
                let id = snap.auth.authenticate(t).await?;
                trace.identity = Some(id.clone());
                authorize(snap, &route, &id)
                    .map_err(|e| snap.auth.refused(Some(id.provider), e))?;
                Some(id)
            }
        },
    };

    // After authentication, so an anonymous caller cannot probe which methods exist.
    if !route::allows(&route, req.method(), req.headers()) {
        return Err(method_not_allowed(&route));
    }
    if let Some(limit) = route.max_body_bytes {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Error::PayloadTooLarge);
        }
    }
    forward(snap, conn, &route, &path, identity.as_deref(), req).await
}

fn method_not_allowed(route: &RouteConfig) -> Error {
    let allow = route
        .methods
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    Error::MethodNotAllowed {
        allow: HeaderValue::from_str(&allow).unwrap_or(HeaderValue::from_static("")),
    }
}

/// Route-level checks on a verified identity: the issuer, then scopes (all) and roles (any).
fn authorize(snap: &Snapshot, route: &RouteConfig, id: &Identity) -> Result<(), Error> {
    if let Some(allowed) = &route.providers {
        let name = &snap.auth.providers()[id.provider].config.name;
        if !allowed.contains(name) {
            return Err(TokenError::IssuerNotAllowed.into());
        }
    }
    if !route.scopes.iter().all(|s| id.scopes.contains(s)) {
        return Err(Error::InsufficientScope);
    }
    if !route.roles.is_empty() && !route.roles.iter().any(|r| id.roles.contains(r)) {
        return Err(Error::InsufficientScope);
    }
    Ok(())
}

async fn forward(
    snap: &Arc<Snapshot>,
    conn: Conn,
    route: &Route,
    path: &NormalizedPath,
    identity: Option<&Identity>,
    mut req: Request<ClientBody>,
) -> Result<Response<Body>, Error> {
    // An HTTP/1.1 upgrade (WebSocket): the token was checked on this very request; once
    // the upstream agrees with a 101, bytes are relayed both ways untouched.
    let upgrade =
        upgrade_protocol(&req).filter(|_| route.upstream.protocol == UpstreamProtocol::Http1);
    let client_side = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    let mut target =
        String::with_capacity(route.upstream.base_path.len() + path.as_str().len() + 64);
    target.push_str(&route.upstream.base_path);
    target.push_str(path.as_str());
    if let Some(q) = parts.uri.query() {
        target.push('?');
        target.push_str(q);
    }
    let uri = Uri::builder()
        .scheme(if route.upstream.https {
            "https"
        } else {
            "http"
        })
        .authority(route.upstream.authority.clone())
        .path_and_query(target)
        .build()
        .map_err(Error::Internal)?;

    // The host the client asked for: `Host` (HTTP/1) or the `:authority` (HTTP/2).
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });

    let h = &mut parts.headers;
    // Order matters: client identity out, hop-by-hop out, then our identity in, so no
    // header a client sends (`Connection: X-User-Id` included) can remove or replace it.
    snap.identity_headers.strip(h);
    headers::strip_hop_by_hop(h);
    if !route.forward_authorization {
        h.remove(header::AUTHORIZATION);
    }
    let peer_ip = conn.peer.ip().to_string();
    let xff = forwarded_for(h, &peer_ip);
    h.insert(X_FORWARDED_FOR.clone(), xff);
    // The gateway speaks `X-Forwarded-*` and `X-Real-IP`; a client-sent `Forwarded` would
    // let a backend that prefers it read forged client details.
    h.remove(header::FORWARDED);
    if let Ok(ip) = HeaderValue::from_str(&peer_ip) {
        h.insert(X_REAL_IP.clone(), ip);
    }
    h.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
    );
    match host {
        Some(host) => {
            h.insert(X_FORWARDED_HOST.clone(), host.clone());
            h.insert(header::HOST, host);
        }
        None => {
            h.remove(&X_FORWARDED_HOST);
        }
    }
    if let Some(id) = identity {
        h.insert(
            snap.config.identity.user_id_header.clone(),
            id.user_id.clone(),
        );
        for (name, value) in &id.claim_headers {
            h.insert(name.clone(), value.clone());
        }
    }
    if let Some(protocol) = &upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, protocol.clone());
    }
    parts.uri = uri;
    parts.version = match route.upstream.protocol {
        UpstreamProtocol::Http1 => Version::HTTP_11,
        UpstreamProtocol::Http2 => {
            // HTTP/2 names the host in `:authority` (the upstream's); the client's host
            // travels in X-Forwarded-Host.
            parts.headers.remove(header::HOST);
            Version::HTTP_2
        }
    };

    // Trailers are headers too: a chunked upload must not smuggle an identity header in
    // after the body, where a backend might merge it into the request headers.
    let trailer_snap = snap.clone();
    let body = body.map_frame(move |frame| match frame.into_trailers() {
        Ok(mut trailers) => {
            trailer_snap.identity_headers.strip(&mut trailers);
            headers::strip_hop_by_hop(&mut trailers);
            Frame::trailers(trailers)
        }
        Err(frame) => frame,
    });
    // A client body that breaks off mid-stream (a bad chunk, a reset) fails the upstream
    // request; the flag tells that apart from the upstream failing.
    let client_body_failed = Arc::new(AtomicBool::new(false));
    let flag = client_body_failed.clone();
    let body = body.map_err(move |e| {
        flag.store(true, Ordering::Relaxed);
        e
    });
    // A chunked body has no length to check up front: it is cut off at the limit, and
    // the failed upstream request becomes a 413.
    let body: RequestBody = match route.max_body_bytes {
        Some(limit) => Limited::new(body, limit as usize).boxed(),
        None => body.map_err(Into::into).boxed(),
    };
    let upstream_req = Request::from_parts(parts, body);
    // The wait for a slot to the upstream counts against the same deadline as the
    // upstream's answer: a request never waits longer than `upstream_timeout` in all.
    let send = async {
        let slot = route.slots.acquire().await;
        (slot, route.client.request(upstream_req).await)
    };
    let (slot, resp) = match tokio::time::timeout(snap.config.server.upstream_timeout, send).await {
        Err(_) => return Err(Error::UpstreamTimeout),
        Ok((_, Err(e))) if body_limit_hit(&e) => return Err(Error::PayloadTooLarge),
        Ok((_, Err(e))) if client_body_failed.load(Ordering::Relaxed) => {
            return Err(Error::BadBody(e));
        }
        Ok((_, Err(e))) => return Err(Error::UpstreamUnavailable(e)),
        Ok((slot, Ok(resp))) => (slot, resp),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // An upgraded connection can last for hours: it gives its slot back now.
        drop(slot);
        return relay_upgrade(resp, client_side);
    }
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        SlotBody::new(body, slot).boxed(),
    ))
}

/// The protocol a request asks to upgrade to: `Upgrade` with `Connection: upgrade` on
/// HTTP/1.1.
fn upgrade_protocol(req: &Request<ClientBody>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten()
}

/// Hands the client a 101 and relays the two upgraded connections to each other.
fn relay_upgrade(
    mut resp: Response<Incoming>,
    client_side: Option<OnUpgrade>,
) -> Result<Response<Body>, Error> {
    let Some(client_side) = client_side else {
        // The upstream switched protocols nobody asked for.
        return Err(Error::UpstreamProtocol);
    };
    let upstream_side = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        match (client_side.await, upstream_side.await) {
            (Ok(client), Ok(upstream)) => {
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!("upgraded connection ended: {e}");
                }
            }
            (Err(e), _) | (_, Err(e)) => tracing::debug!("upgrade failed: {e}"),
        }
    });
    let (mut parts, _) = resp.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    headers::strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = protocol {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
    }
    Ok(Response::from_parts(parts, crate::body::full("")))
}

/// Whether an upstream request failed because the client's body passed the route limit.
fn body_limit_hit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The client's `X-Forwarded-For` chain with the peer's address appended.
fn forwarded_for(h: &http::HeaderMap, ip: &str) -> HeaderValue {
    let mut chain: Vec<&str> = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        // An empty value would become an empty hop (`, 127.0.0.1`) a backend may read
        // as the client's address.
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    chain.push(ip);
    HeaderValue::from_str(&chain.join(", "))
        .unwrap_or_else(|_| HeaderValue::from_str(ip).expect("an IP is a valid header value"))
}
