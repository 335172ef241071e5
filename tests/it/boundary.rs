//! Regression tests for ways around the trust boundary found by a black-box review: an
//! `Upgrade: h2c` tunnel to the backend, case-folded paths that reach another route,
//! small-order Ed25519 keys, an unverified `Authorization` passed on, HTTP/2 cookie
//! crumbs, override headers and requests without `Host`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::keys::mint_with_header;
use crate::support::*;

/// Each HTTP/2 stream a backend served: its path and its `x-user-id`.
type Streams = Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A backend that speaks h2c after an HTTP/1.1 `Upgrade: h2c`, as Hypercorn does. It
/// counts the upgrade requests it answered with 101 and every HTTP/2 stream it served.
/// With `always_switch`, it answers every request with a 101 to h2c, asked for or not.
struct H2cBackend {
    url: String,
    upgrades: Arc<AtomicUsize>,
    streams: Streams,
}

impl H2cBackend {
    async fn start(always_switch: bool) -> H2cBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upgrades = Arc::new(AtomicUsize::new(0));
        let streams = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (u, s) = (upgrades.clone(), streams.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Self::serve(stream, always_switch, u.clone(), s.clone()));
            }
        });
        H2cBackend {
            url,
            upgrades,
            streams,
        }
    }

    async fn serve(
        mut stream: TcpStream,
        always_switch: bool,
        upgrades: Arc<AtomicUsize>,
        streams: Streams,
    ) {
        // The request head, byte by byte, so nothing after it is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if stream.read_exact(&mut b).await.is_err() {
                return;
            }
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if !(always_switch || head.contains("\r\nupgrade: h2c")) {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
            return;
        }
        upgrades.fetch_add(1, Ordering::SeqCst);
        let switch =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
        if stream.write_all(switch).await.is_err() {
            return;
        }
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let streams = streams.clone();
            async move {
                let user = req
                    .headers()
                    .get("x-user-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                streams
                    .lock()
                    .unwrap()
                    .push((req.uri().path().to_owned(), user));
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                    "another user's secret",
                ))))
            }
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    }
}

/// The gateway in front of `upstream` with the standard routes (`/public` public, `/api`
/// required, `/opt` optional) and `extra` TOML after them.
async fn gateway(upstream: &str, extra: &str) -> (TestGateway, SigningKey, JwksServer) {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let gw = TestGateway::start(&format!(
        "{}{}{extra}",
        provider_toml(&jwks.url(), ""),
        routes_toml(upstream)
    ))
    .await;
    gw.wait_ready().await;
    (gw, key, jwks)
}

/// The reproduction: `Upgrade: h2c` on a public route, then an HTTP/2 stream to a
/// protected path with a forged identity. The backend must never see the upgrade, and
/// so never serve the stream.
#[tokio::test]
async fn an_h2c_upgrade_never_opens_a_tunnel_to_the_backend() {
    let backend = H2cBackend::start(false).await;
    let (gw, _key, _jwks) = gateway(&backend.url, "").await;

    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let req = Request::builder()
        .uri("/public/health")
        .header("host", "127.0.0.1")
        .header("upgrade", "h2c")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut resp = sender.send_request(req).await.unwrap();
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // What an attacker does next: HTTP/2 to the backend, any path, any identity.
        let upgraded = hyper::upgrade::on(&mut resp).await.unwrap();
        let (mut h2, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
            TokioExecutor::new(),
            upgraded,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let smuggled = Request::builder()
            .uri("http://127.0.0.1/api/tasks/secret")
            .header("x-user-id", "victim-user")
            .body(Empty::new())
            .unwrap();
        let _ = h2.send_request(smuggled).await;
    }
    assert_eq!(resp.status(), StatusCode::OK, "the upgrade was tunnelled");
    assert_eq!(backend.upgrades.load(Ordering::SeqCst), 0);
    assert!(backend.streams.lock().unwrap().is_empty());
}

/// A 101 is relayed only for a WebSocket the client asked for, on a route that allows
/// upgrades; a backend that switches to anything else, or unasked, gets a 502.
#[tokio::test]
async fn a_101_to_anything_but_the_websocket_asked_for_is_a_502() {
    let backend = H2cBackend::start(true).await;
    let (gw, key, jwks) = gateway(&backend.url, "").await;
    let ws_route = format!(
        "\n[[routes]]\nname = \"socket\"\nprefix = \"/socket\"\nupstream = \"{}\"\nwebsocket = true\n",
        backend.url
    );
    let gw2 = TestGateway::start(&format!(
        "{}{}{ws_route}",
        provider_toml(&jwks.url(), ""),
        routes_toml(&backend.url)
    ))
    .await;
    gw2.wait_ready().await;
    let token = key.mint(Alg::EdDSA, &claims("alice"));
    let auth = format!("Bearer {token}");

    // Unasked.
    let resp = gw.get("/public/x", &[]).await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    // A WebSocket asked for, h2c given.
    let ws = [
        ("authorization", auth.as_str()),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let resp = send_raw(gw2.addr, &raw_get("/socket", &ws)).await;
    assert_eq!(resp.status, 502, "{}", resp.head);
    // On a route without `websocket = true`, the upgrade is not even asked of the backend.
    let resp = send_raw(gw.addr, &raw_get("/api/socket", &ws)).await;
    assert_eq!(resp.status, 502, "{}", resp.head);
    assert_eq!(backend.upgrades.load(Ordering::SeqCst), 3);
    assert!(backend.streams.lock().unwrap().is_empty());
}

/// Express, ASP.NET and IIS route case-insensitively: `/API/admin` must not reach the
/// admin handler through the optional catch-all, nor `/API/tasks` the tasks handler
/// without a token.
#[tokio::test]
async fn a_path_that_case_folds_into_another_route_is_refused() {
    let upstream = Upstream::start().await;
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let gw = TestGateway::start(&format!(
        r#"{}
[[routes]]
name = "admin"
prefix = "/api/admin"
upstream = "{u}"
roles = ["admin"]

[[routes]]
name = "tasks"
prefix = "/api/tasks"
upstream = "{u}"

[[routes]]
name = "site"
prefix = "/"
upstream = "{u}"
auth = "optional"
"#,
        provider_toml(&jwks.url(), ""),
        u = upstream.url()
    ))
    .await;
    gw.wait_ready().await;
    let user = key.mint(Alg::EdDSA, &claims("bob"));

    let resp = gw.get_as("/API/admin/drop-db", &user).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.json()["error"], "invalid_request");
    assert_eq!(
        gw.get("/API/tasks/1", &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        gw.get("/api/Tasks/1", &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(upstream.hits(), 0);

    // The exact spelling gets the route's own answer; case elsewhere is untouched.
    assert_eq!(
        gw.get_as("/api/admin/drop-db", &user).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(gw.get("/Docs/README.md", &[]).await.status, StatusCode::OK);
    assert_eq!(upstream.last().one("x-user-id"), None);
    assert_eq!(
        gw.get_as("/api/tasks/AbC", &user).await.status,
        StatusCode::OK
    );
    assert_eq!(upstream.hits(), 2);
}

/// A JWKS that publishes the identity point as an Ed25519 key: `R` = identity, `S` = 0
/// would verify for any claims. The key is skipped, so the forgery is a 401.
#[tokio::test]
async fn a_small_order_ed25519_key_in_the_jwks_forges_nothing() {
    let upstream = Upstream::start().await;
    let good = SigningKey::ed25519("k1");
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = json!({"kty": "OKP", "crv": "Ed25519", "kid": "weak",
        "x": base64_url(&identity)});
    let jwks = JwksServer::start(vec![good.jwk(None), weak]).await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        provider_toml(&jwks.url(), ""),
        routes_toml(&upstream.url())
    ))
    .await;
    gw.wait_ready().await;

    let mut claims = claims("forged-admin");
    claims["role"] = json!("admin");
    let forged = mint_with_header(&json!({"alg": "EdDSA", "kid": "weak"}), &claims, |_| {
        [identity, [0u8; 32]].concat()
    });
    let resp = gw.get_as("/api/tasks", &forged).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.hits(), 0);
    // The good key still works.
    let ok = good.mint(Alg::EdDSA, &super::support::claims("alice"));
    assert_eq!(gw.get_as("/api/tasks", &ok).await.status, StatusCode::OK);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A backend that splits `Authorization` on any whitespace would read a token out of a
/// malformed Bearer; one the gateway did not verify never reaches it.
#[tokio::test]
async fn an_unverified_authorization_never_reaches_the_upstream() {
    let f = Fixture::start().await;
    let forged = f.token("mallory").replace('.', "x");
    for bad in [
        format!("Bearer\t{forged}"),
        format!("Bearer{forged}"),
        format!("Bearer Bearer {forged}"),
        format!("Bearer {forged} x"),
    ] {
        for path in ["/opt/x", "/api/x"] {
            let resp = f.gw.get(path, &[("authorization", &bad)]).await;
            assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{bad:?} on {path}");
        }
    }
    assert_eq!(f.upstream.hits(), 0);

    // Another scheme: refused where a token is required, stripped where it is optional,
    // passed on where the route is public (the backend's own business).
    let basic = [("authorization", "Basic dXNlcjpwYXNz")];
    assert_eq!(
        f.gw.get("/api/x", &basic).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.gw.get("/opt/x", &basic).await.status, StatusCode::OK);
    assert_eq!(f.upstream.last().all("authorization"), Vec::<&str>::new());
    assert_eq!(f.gw.get("/public/x", &basic).await.status, StatusCode::OK);
    assert_eq!(
        f.upstream.last().one("authorization"),
        Some("Basic dXNlcjpwYXNz")
    );
    // A verified token on the optional route goes on as before.
    let good = format!("Bearer {}", f.token("alice"));
    assert_eq!(
        f.gw.get("/opt/x", &[("authorization", &good)]).await.status,
        StatusCode::OK
    );
    assert_eq!(f.upstream.last().one("authorization"), Some(good.as_str()));
}

/// RFC 9113 §8.2.3: HTTP/2 cookie crumbs reach an HTTP/1.1 upstream as one field.
#[tokio::test]
async fn http2_cookie_crumbs_reach_the_upstream_as_one_cookie_header() {
    let f = Fixture::start().await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::builder()
        .uri(format!("http://{}/public/x", f.gw.addr))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = resp.into_body().collect().await;
    assert_eq!(f.upstream.last().all("cookie"), vec!["a=1; b=2; c=3"]);
}

/// Headers backends read as identity or as the real URL never pass, in any spelling;
/// the list can be extended, and one entry kept explicitly.
#[tokio::test]
async fn override_headers_are_stripped_in_every_spelling_on_every_route() {
    let f = Fixture::start().await;
    let sent = [
        ("X-Original-URL", "/admin"),
        ("x_rewrite_url", "/admin"),
        ("X-Forwarded-User", "admin"),
        ("x.forwarded.email", "admin@example.com"),
        ("X-Forwarded-Preferred-Username", "admin"),
        ("X-Auth-Request-User", "admin"),
        ("X-Auth-Request-Email", "admin@example.com"),
        ("Remote-User", "admin"),
        ("remote_user", "admin"),
        ("X-Remote-User", "admin"),
        ("X-Forwarded-Ssl", "on"),
        ("x_forwarded_port", "443"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Kept", "1"),
    ];
    let resp = send_raw(f.gw.addr, &raw_get("/public/x", &sent)).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let seen = f.upstream.last();
    assert_eq!(seen.one("x-kept"), Some("1"));
    for (name, _) in &sent[..sent.len() - 1] {
        let folded = name.to_ascii_lowercase().replace(['_', '.'], "-");
        assert_eq!(
            seen.all(&folded),
            Vec::<&str>::new(),
            "{name} was forwarded"
        );
        assert_eq!(
            seen.all(&name.to_ascii_lowercase()),
            Vec::<&str>::new(),
            "{name} was forwarded"
        );
    }

    let f = Fixture::start_with(
        "",
        "strip_headers = [\"X-Tenant-Id\"]\ninsecure_keep_headers = [\"Remote-User\"]\n",
    )
    .await;
    let sent = [
        ("x_tenant_id", "other"),
        ("Remote-User", "from-the-proxy"),
        ("X-Forwarded-User", "admin"),
    ];
    assert_eq!(
        send_raw(f.gw.addr, &raw_get("/public/x", &sent))
            .await
            .status,
        200
    );
    let seen = f.upstream.last();
    assert_eq!(seen.all("x_tenant_id"), Vec::<&str>::new());
    assert_eq!(seen.one("remote-user"), Some("from-the-proxy"));
    assert_eq!(seen.all("x-forwarded-user"), Vec::<&str>::new());
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host` is a 400 (HTTP/1.0 may omit it).
#[tokio::test]
async fn an_http11_request_without_host_is_refused() {
    let f = Fixture::start().await;
    let resp = send_raw(
        f.gw.addr,
        b"GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 400);
    assert_eq!(f.upstream.hits(), 0);
    let resp = send_raw(f.gw.addr, b"GET /public/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(resp.status, 200);
    assert_eq!(f.upstream.hits(), 1);
}
