//! The request pipeline, as named stages: check the target, route (on the normalized
//! path), answer a CORS preflight, authenticate (and authorize), check revocation, admit
//! (method and body size), limit (the route's rate limits), then forward: rewrite the
//! headers at the trust boundary, send, relay. Each stage is a short function over its
//! own module; a new stage is one line in `handle_inner`.
//! `handle_inner` returns `Result`; `handle` alone counts, logs and renders. No error path
//! forwards anything: the request reaches the upstream only at the end of `forward`,
//! after every stage has passed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Frame;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::access_log;
use crate::body::{Body, RequestBody};
use crate::client_ip;
use crate::config::{AuthMode, RouteConfig, UpstreamProtocol};
use crate::conn::ClientBody;
use crate::cors;
use crate::csrf;
use crate::error::{self, Blame, Error, TokenError};
use crate::headers;
use crate::limit::{Caller, Checked};
use crate::metrics::NONE;
use crate::path::{self, NormalizedPath};
use crate::route::{self, Match, Route};
use crate::session::{self, Source};
use crate::state::{Shared, Snapshot};
use crate::upstream::{SlotBody, UpstreamBody};
use crate::verify::Identity;

/// Facts about the client connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// What the pipeline learned about a request, filled in stage by stage, for the one
/// access-log line and the one count of each outcome that `handle` makes.
#[derive(Default)]
struct Trace {
    path: Option<NormalizedPath>,
    route: Option<Arc<Route>>,
    identity: Option<Arc<Identity>>,
    /// How authentication ended (`ok`, or why not) and for which provider; `None` when
    /// no credential was looked at.
    auth: Option<(Option<usize>, &'static str)>,
    /// Where the credential was taken from (header or cookie).
    source: Option<Source>,
    /// A CORS preflight answered by the gateway (its headers are already complete).
    preflight: bool,
    /// What the route's rate limits said, when it has any.
    limit: Checked,
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
    if let Some((policy, limit)) = trace.limit.headers.take() {
        resp.headers_mut().insert(&error::RATELIMIT_POLICY, policy);
        resp.headers_mut().insert(&error::RATELIMIT, limit);
    }
    let elapsed = start.elapsed();
    let route_label = trace.route.as_ref().map_or(&*NONE, |r| &r.name);
    shared
        .metrics
        .request(route_label, &method, resp.status(), elapsed);
    if let Some((provider, outcome)) = trace.auth {
        let name = provider.map_or(&*NONE, |i| &snap.auth.providers()[i].config.name);
        shared.metrics.auth(name, outcome);
    }
    record_limits(&shared, &trace);
    if snap.config.server.access_log {
        access_log::record(&access_log::Entry {
            method: &method,
            path: trace.path.as_ref().map_or("-", |p| p.as_str()),
            route: trace.route.as_ref().map_or("-", |r| r.name.as_str()),
            status: resp.status(),
            latency: elapsed,
            user: trace.identity.as_ref().map_or("-", |i| i.user_id()),
        });
    }
    resp
}

/// Counts each rate limit's result and store call; logs a switch of the shared store
/// (down: `on_store_error` applies; up: shared again) once, when a request finds it.
fn record_limits(shared: &Shared, trace: &Trace) {
    let route = trace.route.as_ref().map_or(&*NONE, |r| &r.name);
    for record in &trace.limit.records {
        shared
            .metrics
            .rate_limit(route, &record.policy, record.result);
        let Some(call) = &record.store else { continue };
        shared
            .metrics
            .limit_store(call.elapsed, call.error, call.switched);
        match call.switched {
            Some(false) => tracing::warn!(
                error = call.error.unwrap_or("-"),
                "rate limit store (Redis) unavailable: each limit's on_store_error applies until it answers again"
            ),
            Some(true) => {
                tracing::info!("rate limit store (Redis) answers again: limits are shared")
            }
            None => {}
        }
    }
}

/// Logs an error at the level its blame deserves and counts upstream failures.
fn record_error(shared: &Shared, trace: &Trace, conn: Conn, e: &Error) {
    if let Some(kind) = e.upstream_failure() {
        let route = trace.route.as_ref().map_or(&*NONE, |r| &r.name);
        shared.metrics.upstream_error(route, kind);
    }
    let chain = error::chain(e);
    if let Error::LimitStoreUnavailable = e {
        // The store going away is logged once, when a request finds it (record_limits).
        tracing::debug!(peer = %conn.peer, "refused: {chain}");
        return;
    }
    match e.blame() {
        Blame::Client => {
            let reason = trace.auth.map_or("-", |(_, outcome)| outcome);
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
    check_target(&req)?;
    let (path, route) = find_route(snap, &req, trace)?;
    if let Some(cors) = &route.cors
        && cors::is_preflight(req.method(), req.headers())
    {
        // Answered here, without a token: a preflight is never forwarded.
        trace.preflight = true;
        return cors.preflight(req.headers());
    }
    let identity = authenticate(snap, &route, &req, trace).await?;
    check_revocation(snap, identity.as_deref(), trace)?;
    admit(&route, &req)?;
    // Last before forwarding: only a request every other stage let through spends budget.
    limit(snap, conn, &route, &req, identity.as_deref(), trace).await?;
    forward(
        snap,
        conn,
        &route,
        &path,
        identity.as_deref(),
        trace.source,
        req,
    )
    .await
}

/// Refuses what no route can serve: `CONNECT`, and a request whose `Host` is missing
/// (HTTP/1.1, RFC 9112 §3.2) or given twice (two readers could pick two sites).
fn check_target(req: &Request<ClientBody>) -> Result<(), Error> {
    if req.method() == Method::CONNECT {
        return Err(Error::BadTarget);
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => Err(Error::BadTarget),
        (None, None) if req.version() == Version::HTTP_11 => Err(Error::BadTarget),
        _ => Ok(()),
    }
}

/// Normalizes the path once and finds its route; the same path is forwarded.
fn find_route(
    snap: &Snapshot,
    req: &Request<ClientBody>,
    trace: &mut Trace,
) -> Result<(NormalizedPath, Arc<Route>), Error> {
    let path = path::normalize(req.uri().path())?;
    let route = match snap.routes.route(&path) {
        Match::Route(r) => r.clone(),
        Match::NoRoute => return Err(Error::NoRoute),
        Match::Ambiguous => return Err(Error::AmbiguousPath),
    };
    trace.path = Some(path.clone());
    trace.route = Some(route.clone());
    Ok((path, route))
}

/// Who the request is from, and whether the route lets them in. The credential is the
/// first of the route's token sources present; one from a cookie must pass the CSRF
/// check before it is verified. On an optional route a request without any passes
/// anonymously, but a bad one is still a 401: never downgraded to anonymous. The outcome
/// is recorded once, in the trace.
async fn authenticate(
    snap: &Snapshot,
    route: &Route,
    req: &Request<ClientBody>,
    trace: &mut Trace,
) -> Result<Option<Arc<Identity>>, Error> {
    if route.auth == AuthMode::Public {
        return Ok(None);
    }
    let cookies = &snap.config.cookies;
    let credential = match session::credential(route, cookies, req.headers()) {
        Ok(Some(c)) => Ok(c),
        Ok(None) if route.auth == AuthMode::Optional => return Ok(None),
        Ok(None) => Err(session::missing(route)),
        Err(e) => Err(e),
    };
    let credential = credential.inspect_err(|e| trace.auth = Some((None, e.auth_outcome())))?;
    let source = credential.source;
    trace.source = Some(source);
    csrf::check(
        source,
        &cookies.trusted_origins,
        req.method(),
        req.headers(),
    )
    .inspect_err(|e| trace.auth = Some((None, e.auth_outcome())))?;
    let id = snap
        .auth
        .authenticate(&credential.token, source.profile())
        .await
        .map_err(|refusal| {
            trace.auth = Some((refusal.provider, refusal.error.auth_outcome()));
            source.refusal(refusal.error)
        })?;
    trace.identity = Some(id.clone());
    let authorized = authorize(snap, route, &id);
    trace.auth = Some((
        Some(id.provider),
        authorized
            .as_ref()
            .map_or_else(Error::auth_outcome, |_| "ok"),
    ));
    authorized.map(|()| Some(id))
}

/// Refuses a verified token that has been revoked since: a lookup in this replica's
/// in-memory set, on every request, whether the token came from the verified-token cache
/// or not. It runs right after `authenticate`, long before the rate limit, so a revoked
/// token never spends anyone's budget.
fn check_revocation(
    snap: &Snapshot,
    identity: Option<&Identity>,
    trace: &mut Trace,
) -> Result<(), Error> {
    let Some(id) = identity else { return Ok(()) };
    snap.revocations.check(id).map_err(|e| {
        trace.auth = Some((Some(id.provider), e.reason()));
        e.into()
    })
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

/// The route's rate limits. After authentication and authorization, so a forged, expired
/// or unauthorized token never spends anyone's budget: naming a victim's `sub` in a token
/// the gateway refuses cannot lock the victim out, and the budget counts only requests
/// from callers the gateway would let through.
async fn limit(
    snap: &Snapshot,
    conn: Conn,
    route: &Route,
    req: &Request<ClientBody>,
    identity: Option<&Identity>,
    trace: &mut Trace,
) -> Result<(), Error> {
    if route.rate_limits.is_empty() {
        return Ok(());
    }
    let Some(limits) = snap.limits.for_route(&route.name) else {
        return Ok(());
    };
    let client = client_ip::client_addr(
        &snap.config.server.trusted_proxies,
        conn.peer.ip(),
        req.headers(),
    );
    let caller = Caller {
        identity,
        client: client.ip,
    };
    limits.check(&caller, &mut trace.limit).await
}

/// The route's method list and body limit. After authentication, so an anonymous caller
/// cannot probe which methods exist.
fn admit(route: &Route, req: &Request<ClientBody>) -> Result<(), Error> {
    if !route::allows(route, req.method(), req.headers()) {
        return Err(method_not_allowed(route));
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
    Ok(())
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

async fn forward(
    snap: &Arc<Snapshot>,
    conn: Conn,
    route: &Route,
    path: &NormalizedPath,
    identity: Option<&Identity>,
    source: Option<Source>,
    mut req: Request<ClientBody>,
) -> Result<Response<Body>, Error> {
    // A WebSocket upgrade on a route that allows one: the token was checked on this very
    // request; once the upstream agrees with a 101, bytes are relayed both ways untouched.
    // Every other `Upgrade` (h2c above all) is removed with the hop-by-hop headers.
    let upgrade = websocket_upgrade(route, &req);
    let client_side = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let uri = upstream_uri(route, path, parts.uri.query())?;

    let client = client_ip::client_addr(
        &snap.config.server.trusted_proxies,
        conn.peer.ip(),
        &parts.headers,
    );
    let outbound = headers::Outbound {
        peer: conn.peer.ip(),
        client: client.ip,
        peer_trusted: client.peer_trusted,
        tls: conn.tls,
        authority: parts.uri.authority(),
        upstream_h2: route.upstream.protocol == UpstreamProtocol::Http2,
        // An `Authorization` the gateway did not verify (another scheme, or a header left
        // unread because a cookie was the credential) never reaches a backend that may
        // trust it because the gateway "checked it".
        keep_authorization: route.forward_authorization
            && (route.auth == AuthMode::Public || source == Some(Source::Header)),
        user: identity.map(|id| (&snap.config.identity.user_id_header, &id.user_id)),
        claims: identity.map_or(&[], |id| &id.claim_headers),
        upgrade: upgrade.as_ref(),
        drop_cookies: if route.auth_server {
            &[]
        } else {
            &snap.config.cookies.strip
        },
    };
    headers::rewrite_request(&mut parts.headers, &snap.identity_headers, &outbound);
    parts.uri = uri;
    parts.version = match route.upstream.protocol {
        UpstreamProtocol::Http1 => Version::HTTP_11,
        UpstreamProtocol::Http2 => Version::HTTP_2,
    };

    let client_body_failed = Arc::new(AtomicBool::new(false));
    let body = upstream_body(snap, route, body, client_body_failed.clone());
    let upstream_req = Request::from_parts(parts, body);
    // The wait for a slot to the upstream counts against the same deadline as the
    // upstream's answer: a request never waits longer than `upstream_timeout` in all.
    // The upstream exchange is boxed: its state is large, and kept inline it would make
    // every request's future larger, which is copied whole each time it moves (one
    // allocation costs far less than those copies).
    let send = async {
        let slot = route.slots.acquire().await;
        (slot, Box::pin(route.client.request(upstream_req)).await)
    };
    let (slot, resp) = match tokio::time::timeout(snap.config.server.upstream_timeout, send).await {
        Err(_) => return Err(Error::UpstreamTimeout),
        Ok((_, Err(e))) if error::caused_by::<LengthLimitError>(&e) => {
            return Err(Error::PayloadTooLarge);
        }
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

/// The upstream's URI: its scheme and authority, its base path, the normalized path and
/// the query as the client sent it.
fn upstream_uri(route: &Route, path: &NormalizedPath, query: Option<&str>) -> Result<Uri, Error> {
    let mut target =
        String::with_capacity(route.upstream.base_path.len() + path.as_str().len() + 64);
    target.push_str(&route.upstream.base_path);
    target.push_str(path.as_str());
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    Uri::builder()
        .scheme(if route.upstream.https {
            "https"
        } else {
            "http"
        })
        .authority(route.upstream.authority.clone())
        .path_and_query(target)
        .build()
        .map_err(Error::Internal)
}

/// The client's body as it goes upstream: trailers filtered like headers, cut off at the
/// route's limit, and any failure of the client's stream flagged in `client_failed` (so a
/// failed upstream request can tell the client's fault from the upstream's).
fn upstream_body(
    snap: &Arc<Snapshot>,
    route: &Route,
    body: ClientBody,
    client_failed: Arc<AtomicBool>,
) -> RequestBody {
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
    let body = body.map_err(move |e| {
        client_failed.store(true, Ordering::Relaxed);
        e
    });
    // A chunked body has no length to check up front: it is cut off at the limit, and
    // the failed upstream request becomes a 413.
    match route.max_body_bytes {
        Some(limit) => Limited::new(body, limit as usize).boxed(),
        None => body.map_err(Into::into).boxed(),
    }
}

/// The WebSocket upgrade a request asks for, if its route allows one: HTTP/1.1,
/// `Connection: upgrade` and a single `Upgrade: websocket`. Anything else (`h2c`,
/// `TLS/1.2`, a list of protocols) is not an upgrade the gateway tunnels.
fn websocket_upgrade(route: &Route, req: &Request<ClientBody>) -> Option<HeaderValue> {
    if !route.websocket
        || route.upstream.protocol != UpstreamProtocol::Http1
        || req.version() != Version::HTTP_11
    {
        return None;
    }
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    let mut protocols = req.headers().get_all(header::UPGRADE).iter();
    match (asks, protocols.next(), protocols.next()) {
        (true, Some(p), None) if is_websocket(p) => Some(p.clone()),
        _ => None,
    }
}

fn is_websocket(v: &HeaderValue) -> bool {
    v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket")
}

/// Hands the client a 101 and relays the two upgraded connections to each other, only
/// when the client asked for a WebSocket and the upstream switched to exactly that. Any
/// other 101 is the upstream's fault: 502, and its connection is dropped with the
/// response.
fn relay_upgrade(
    mut resp: Response<UpstreamBody>,
    client_side: Option<OnUpgrade>,
) -> Result<Response<Body>, Error> {
    let switched_to_websocket = {
        let mut protocols = resp.headers().get_all(header::UPGRADE).iter();
        matches!((protocols.next(), protocols.next()), (Some(p), None) if is_websocket(p))
    };
    let Some(client_side) = client_side.filter(|_| switched_to_websocket) else {
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
    headers::strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    Ok(Response::from_parts(parts, crate::body::full("")))
}
