//! What the upstream receives, and what the client gets back: identity headers only the
//! gateway sets, hop-by-hop headers dropped, normalized paths, forwarding headers,
//! upstream failures, streamed bodies and h2c.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

use crate::support::servers::Seen;
use crate::support::*;

/// A header name as a backend that folds `_` and `.` into `-` would read it.
fn folded(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' | b'.' => '-',
            b => b.to_ascii_lowercase() as char,
        })
        .collect()
}

/// Every `(name, value)` the upstream saw whose name folds to `header`.
fn spellings_of<'a>(seen: &'a Seen, header: &str) -> Vec<(&'a str, &'a str)> {
    seen.headers
        .iter()
        .filter(|(n, _)| folded(n) == header)
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

const IDENTITY: [&str; 3] = ["x-user-id", "x-user-email", "x-user-name"];

/// Every spelling of every identity header a client might try, twice over for the
/// canonical names.
fn spoofed_identity() -> Vec<(&'static str, &'static str)> {
    let mut h = Vec::new();
    for (names, value) in [
        (
            [
                "X-User-Id",
                "x-user-id",
                "X_User_Id",
                "x_user_id",
                "X.User.Id",
                "x.user.id",
                "X-USER-ID",
                "X-User-Id",
            ],
            "admin",
        ),
        (
            [
                "X-User-Email",
                "x-user-email",
                "X_User_Email",
                "x_user_email",
                "X.User.Email",
                "x.user.email",
                "X-USER-EMAIL",
                "X-User-Email",
            ],
            "admin@example.com",
        ),
        (
            [
                "X-User-Name",
                "x-user-name",
                "X_User_Name",
                "x_user_name",
                "X.User.Name",
                "x.user.name",
                "X-USER-NAME",
                "X-User-Name",
            ],
            "Admin",
        ),
    ] {
        h.extend(names.into_iter().map(|n| (n, value)));
    }
    h
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let f = Fixture::start().await;
    let bob = format!("Bearer {}", f.token("bob"));
    let spoofs = spoofed_identity();

    for path in ["/api/tasks", "/opt/feed"] {
        let mut headers = spoofs.clone();
        headers.push(("Authorization", &bob));
        let resp = send_raw(f.gw.addr, &raw_get(path, &headers)).await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.head);
        let seen = f.upstream.last();
        assert_eq!(
            spellings_of(&seen, "x-user-id"),
            [("x-user-id", "bob")],
            "{path}"
        );
        assert_eq!(
            spellings_of(&seen, "x-user-email"),
            [("x-user-email", "bob@example.com")],
            "{path}"
        );
        assert_eq!(
            spellings_of(&seen, "x-user-name"),
            [("x-user-name", "Test User")],
            "{path}"
        );
    }

    // No identity at all where there is no verified token: a public route (even with a
    // valid token) and an optional route without one.
    for (path, token) in [("/public/info", Some(bob.as_str())), ("/opt/feed", None)] {
        let mut headers = spoofs.clone();
        headers.extend(token.map(|t| ("Authorization", t)));
        let resp = send_raw(f.gw.addr, &raw_get(path, &headers)).await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.head);
        let seen = f.upstream.last();
        for h in IDENTITY {
            assert_eq!(spellings_of(&seen, h), [], "{path} with {token:?}");
        }
    }
    assert_eq!(f.upstream.hits(), 4);
}

#[tokio::test]
async fn hop_by_hop_headers_and_everything_connection_names_are_dropped() {
    let f = Fixture::start().await;
    let auth = format!("Bearer {}", f.token("alice"));
    let req = raw_get(
        "/api/tasks",
        &[
            ("Authorization", &auth),
            // Naming the identity header must not remove the one the gateway sets.
            ("Connection", "X-User-Id, x-foo"),
            ("Connection", "X-Bar"),
            ("X-Foo", "1"),
            ("X-Bar", "1"),
            ("X-Kept", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic dTpw"),
            ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "websocket"),
            ("TE", "gzip"),
        ],
    );
    let resp = send_raw(f.gw.addr, &req).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let seen = f.upstream.last();
    assert_eq!(seen.one("x-user-id"), Some("alice"));
    assert_eq!(seen.one("x-kept"), Some("1"));
    for gone in [
        "x-foo",
        "x-bar",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
        "te",
    ] {
        assert_eq!(seen.all(gone), Vec::<&str>::new(), "{gone} was forwarded");
    }

    // `TE: trailers` is the one TE a proxy passes on.
    let req = raw_get(
        "/api/tasks",
        &[("Authorization", &auth), ("TE", "trailers")],
    );
    assert_eq!(send_raw(f.gw.addr, &req).await.status, 200);
    assert_eq!(f.upstream.last().one("te"), Some("trailers"));
}

#[tokio::test]
async fn path_tricks_cannot_reach_a_protected_route_without_a_token() {
    let f = Fixture::start().await;
    let cases = [
        ("/public/../api/tasks", 401),
        ("/public/%2e%2e/api/tasks", 401),
        ("/public/%2E%2E/api/tasks", 401),
        ("/public/.%2e/api/tasks", 401),
        ("/public/..;x/api/tasks", 401),
        ("/public/./../api/tasks", 401),
        ("//api/tasks", 401),
        ("/api/%74asks", 401),
        ("/api/tasks?next=/public", 401),
        ("/api%2ftasks", 400),
        ("/public%2f..%2fapi", 400),
        ("/public/..%5capi", 400),
        ("/public/%252e%252e/api/tasks", 400),
        // Routes that differ by whether the backend drops `;` parameters.
        ("/api;x/tasks", 400),
        ("/public;x/info", 400),
        ("/public\\..\\api", 400),
        ("/public/..\\api", 400),
    ];
    for (target, want) in cases {
        let resp = send_raw(f.gw.addr, &raw_get(target, &[])).await;
        assert_eq!(resp.status, want, "{target}: {}", resp.head);
    }
    assert_eq!(f.upstream.hits(), 0, "a path trick reached the upstream");
}

#[tokio::test]
async fn the_upstream_receives_the_normalized_path_and_the_query_verbatim() {
    let f = Fixture::start().await;
    let token = f.token("alice");
    let cases = [
        ("/public/../api/tasks?q=1", "/api/tasks?q=1"),
        ("/public/%2e%2e/api/tasks", "/api/tasks"),
        ("/public/..;x/api/tasks", "/api/tasks"),
        ("//api//tasks/", "/api/tasks/"),
        ("/api/%74asks", "/api/tasks"),
        ("/api/caf%c3%a9", "/api/caf%C3%A9"),
        (
            "/api/./tasks?q=%2e%2e/../x&a=b;c%2f",
            "/api/tasks?q=%2e%2e/../x&a=b;c%2f",
        ),
    ];
    for (target, want) in cases {
        let resp = f.gw.get_as(target, &token).await;
        assert_eq!(resp.status, StatusCode::OK, "{target}: {}", resp.text());
        let seen = f.upstream.last();
        assert_eq!(seen.target, want, "{target}");
        assert_eq!(seen.one("x-user-id"), Some("alice"), "{target}");
    }

    // The query string never takes part in routing.
    let resp = f.gw.get("/public?x=/api", &[]).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(f.upstream.last().target, "/public?x=/api");
}

#[tokio::test]
async fn no_route_is_a_json_404() {
    let f = Fixture::start().await;
    // `/apix` and `/publicity` share a prefix with a route, but not a whole segment.
    for target in ["/nowhere", "/apix/tasks", "/publicity", "/"] {
        let resp = f.gw.get_as(target, &f.token("alice")).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{target}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.json()["error"], "not_found", "{target}");
    }
    assert_eq!(f.upstream.hits(), 0);
}

/// A fixture plus routes to `extra`: `/ro` (GET only), `/noauth` (Authorization not
/// forwarded) and `/dead` (an upstream port nothing listens on).
async fn fixture_with_extra_routes(extra: &Upstream) -> Fixture {
    // Bind, take the port, drop the listener: nothing listens there afterwards (unless
    // another process grabs the port in between, which would turn the 502 into a 200).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let up = extra.url();
    Fixture::start_with(
        "",
        &format!(
            r#"
[[routes]]
name = "read-only"
prefix = "/ro"
upstream = "{up}"
methods = ["GET"]

[[routes]]
name = "no-authorization"
prefix = "/noauth"
upstream = "{up}"
forward_authorization = false

[[routes]]
name = "dead"
prefix = "/dead"
upstream = "http://{dead}"
"#
        ),
    )
    .await
}

#[tokio::test]
async fn a_method_the_route_does_not_list_gets_405_with_allow() {
    let extra = Upstream::start().await;
    let f = fixture_with_extra_routes(&extra).await;
    let auth = format!("Bearer {}", f.token("alice"));
    for method in [Method::POST, Method::DELETE] {
        let resp = send(
            f.gw.addr,
            method.clone(),
            "/ro/tasks",
            &[("authorization", &auth)],
            "{}",
        )
        .await;
        assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(resp.header("allow"), Some("GET"), "{method}");
        assert_eq!(resp.json()["error"], "method_not_allowed");
    }
    assert_eq!(extra.hits(), 0, "a refused method reached the upstream");

    let resp = f.gw.get_as("/ro/tasks", &f.token("alice")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(extra.last().method, "GET");

    // A method-override header cannot smuggle a write past a read-only route.
    for name in [
        "x-http-method-override",
        "X-HTTP-Method",
        "x-method-override",
    ] {
        let resp = send(
            f.gw.addr,
            Method::GET,
            "/ro/tasks",
            &[("authorization", &auth), (name, "DELETE")],
            "",
        )
        .await;
        assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED, "{name}");
    }
    assert_eq!(extra.hits(), 1);
}

#[tokio::test]
async fn an_anonymous_caller_gets_401_before_any_method_check() {
    let extra = Upstream::start().await;
    let f = fixture_with_extra_routes(&extra).await;
    let resp = send(f.gw.addr, Method::DELETE, "/ro/tasks", &[], "").await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.header("allow"), None);
}

#[tokio::test]
async fn client_forwarded_and_real_ip_headers_are_replaced() {
    let f = Fixture::start().await;
    let auth = format!("Bearer {}", f.token("alice"));
    let resp = send(
        f.gw.addr,
        Method::GET,
        "/api/tasks",
        &[
            ("authorization", &auth),
            ("forwarded", "for=203.0.113.7;proto=https;host=evil.example"),
            ("x-real-ip", "203.0.113.7"),
        ],
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = f.upstream.last();
    assert_eq!(seen.one("forwarded"), None);
    assert_eq!(seen.one("x-real-ip"), Some("127.0.0.1"));
}

#[tokio::test]
async fn two_host_headers_are_refused() {
    let f = Fixture::start().await;
    let resp = send(
        f.gw.addr,
        Method::GET,
        "/public/x",
        &[("host", "a.example"), ("host", "b.example")],
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.upstream.hits(), 0);
}

/// The fixture's routes behind a gateway that trusts `X-Forwarded-For` from loopback (a
/// load balancer on this host).
async fn behind_a_trusted_proxy(f: &Fixture) -> TestGateway {
    let body = format!(
        "{}{}",
        provider_toml(&f.jwks.url(), ""),
        routes_toml(&f.upstream.url())
    );
    let gw = TestGateway::start_with_server("trusted_proxies = [\"127.0.0.0/8\"]", &body).await;
    gw.wait_ready().await;
    gw
}

#[tokio::test]
async fn forwarding_headers_describe_the_client_and_keep_the_host() {
    let f = Fixture::start().await;
    let auth = format!("Bearer {}", f.token("alice"));
    let headers = [
        ("authorization", auth.as_str()),
        ("host", "app.example:8443"),
        ("x-forwarded-for", "203.0.113.7, 198.51.100.1"),
        ("x-forwarded-for", "192.0.2.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-real-ip", "203.0.113.7"),
    ];
    let resp = send(f.gw.addr, Method::GET, "/api/tasks", &headers, "").await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = f.upstream.last();
    // A peer that is not a trusted proxy cannot choose the address it is known by: the
    // gateway owns the chain at the edge.
    assert_eq!(seen.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.one("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.one("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.one("x-forwarded-host"), Some("app.example:8443"));
    assert_eq!(seen.one("host"), Some("app.example:8443"));
    assert_eq!(seen.one("authorization"), Some(auth.as_str()));

    f.gw.get("/public/x", &[]).await;
    let seen = f.upstream.last();
    assert_eq!(seen.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        seen.one("x-forwarded-host"),
        Some(f.gw.addr.to_string().as_str())
    );

    // Behind a trusted proxy the chain goes on, the peer appended, and the client is the
    // nearest hop that is not a trusted proxy.
    let gw = behind_a_trusted_proxy(&f).await;
    let resp = send(gw.addr, Method::GET, "/api/tasks", &headers, "").await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = f.upstream.last();
    assert_eq!(
        seen.one("x-forwarded-for"),
        Some("203.0.113.7, 198.51.100.1, 192.0.2.9, 127.0.0.1")
    );
    assert_eq!(seen.one("x-real-ip"), Some("192.0.2.9"));
    // A trusted proxy that terminated TLS says so, and is believed.
    assert_eq!(seen.one("x-forwarded-proto"), Some("https"));
}

#[tokio::test]
async fn an_empty_x_forwarded_for_leaves_no_empty_hop() {
    let f = Fixture::start().await;
    let gw = behind_a_trusted_proxy(&f).await;
    for (client, want) in [
        (vec![""], "127.0.0.1"),
        (vec![" "], "127.0.0.1"),
        (vec!["", "203.0.113.7"], "203.0.113.7, 127.0.0.1"),
    ] {
        let headers: Vec<(&str, &str)> = client.iter().map(|v| ("x-forwarded-for", *v)).collect();
        let resp = send(gw.addr, Method::GET, "/public/x", &headers, "").await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(
            f.upstream.last().one("x-forwarded-for"),
            Some(want),
            "{client:?}"
        );
    }
}

#[tokio::test]
async fn authorization_is_withheld_when_the_route_says_so() {
    let extra = Upstream::start().await;
    let f = fixture_with_extra_routes(&extra).await;
    let resp = f.gw.get_as("/noauth/x", &f.token("alice")).await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = extra.last();
    assert_eq!(seen.one("authorization"), None);
    assert_eq!(seen.one("x-user-id"), Some("alice"));
}

#[tokio::test]
async fn a_refused_upstream_is_a_json_502() {
    let extra = Upstream::start().await;
    let f = fixture_with_extra_routes(&extra).await;
    let resp = f.gw.get_as("/dead/x", &f.token("alice")).await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json()["error"], "bad_gateway");
}

#[tokio::test]
async fn a_slow_upstream_is_a_json_504_in_time() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let upstream = Upstream::start().await;
    let gw = TestGateway::start_with_server(
        "upstream_timeout = \"300ms\"",
        &format!(
            "{}{}",
            provider_toml(&jwks.url(), ""),
            routes_toml(&upstream.url())
        ),
    )
    .await;
    gw.wait_ready().await;
    upstream.set_delay(Duration::from_secs(3));

    let start = Instant::now();
    let resp = gw
        .get_as("/api/slow", &key.mint(Alg::EdDSA, &claims("alice")))
        .await;
    assert_eq!(resp.status, StatusCode::GATEWAY_TIMEOUT, "{}", resp.text());
    assert_eq!(resp.json()["error"], "gateway_timeout");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the gateway waited {:?} for the upstream",
        start.elapsed()
    );
    assert_eq!(upstream.hits(), 1);

    // The abandoned upstream request leaves nothing behind: the next one is served.
    upstream.set_delay(Duration::ZERO);
    let resp = gw
        .get_as("/api/fast", &key.mint(Alg::EdDSA, &claims("alice")))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(upstream.last().target, "/api/fast");
}

/// An upstream that answers every request with `body`.
async fn fixed_body_upstream(body: Bytes) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn large_bodies_pass_through_both_ways() {
    const SIZE: usize = 8 * 1024 * 1024;
    let big: Bytes = (0..SIZE)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let (big_addr, big_task) = fixed_body_upstream(big.clone()).await;
    let f = Fixture::start_with(
        "",
        &format!(
            "[[routes]]\nname = \"big\"\nprefix = \"/big\"\nupstream = \"http://{big_addr}\"\n"
        ),
    )
    .await;
    let auth = format!("Bearer {}", f.token("alice"));

    // Upload: 8 MiB reaches the upstream whole.
    let upload = "x".repeat(SIZE);
    let resp = send(
        f.gw.addr,
        Method::POST,
        "/api/upload",
        &[("authorization", &auth)],
        &upload,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(f.upstream.last().body_len, SIZE);
    assert_eq!(resp.json()["body_len"], json!(SIZE));

    // Download: 8 MiB comes back byte for byte.
    let resp = send(
        f.gw.addr,
        Method::GET,
        "/big/file",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body.len(), SIZE);
    assert!(resp.body == big, "the downloaded body was altered");
    big_task.abort();
}

#[tokio::test]
async fn a_chunked_upload_reaches_the_upstream() {
    let f = Fixture::start().await;
    let mut req = format!(
        "POST /api/upload HTTP/1.1\r\nHost: portcullis.test\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        f.token("alice")
    )
    .into_bytes();
    let mut total = 0;
    for len in [1, 4096, 65536, 7] {
        req.extend_from_slice(format!("{len:x}\r\n").as_bytes());
        req.extend(std::iter::repeat_n(b'z', len));
        req.extend_from_slice(b"\r\n");
        total += len;
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = send_raw(f.gw.addr, &req).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let seen = f.upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body_len, total);
    assert_eq!(seen.one("x-user-id"), Some("alice"));
}

#[tokio::test]
async fn h2c_prior_knowledge_is_forwarded_with_the_identity() {
    let f = Fixture::start().await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = Request::builder()
        .uri(format!("http://{}/api/tasks?h2=1", f.gw.addr))
        .header("authorization", format!("Bearer {}", f.token("alice")))
        .header("x-user-id", "admin")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("an h2c answer");
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["target"], "/api/tasks?h2=1");
    let seen = f.upstream.last();
    assert_eq!(seen.one("x-user-id"), Some("alice"));
    assert_eq!(
        seen.one("x-forwarded-host"),
        Some(f.gw.addr.to_string().as_str())
    );

    // Without a token, h2c is refused like HTTP/1.1.
    let req = Request::builder()
        .uri(format!("http://{}/api/tasks", f.gw.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("an h2c answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(f.upstream.hits(), 1);
}

#[tokio::test]
async fn error_responses_never_echo_the_token() {
    let extra = Upstream::start().await;
    let f = fixture_with_extra_routes(&extra).await;
    let good = f.token("alice");
    let mut expired = claims("alice");
    expired["exp"] = json!(now() - 3600);
    let expired = f.key.mint(Alg::EdDSA, &expired);
    let mut tampered = good.clone();
    tampered.insert_str(good.rfind('.').unwrap() + 1, "AAAA");

    let cases: Vec<(&str, Method, String, &str)> = vec![
        ("expired", Method::GET, "/api/tasks".into(), &expired),
        ("tampered", Method::GET, "/api/tasks".into(), &tampered),
        (
            "token in the path",
            Method::GET,
            format!("/api/{tampered}"),
            &tampered,
        ),
        (
            "no route",
            Method::GET,
            format!("/nowhere?access_token={good}"),
            &good,
        ),
        ("bad path", Method::GET, "/api%2ftasks".into(), &good),
        ("method", Method::POST, "/ro/x".into(), &good),
        ("dead upstream", Method::GET, "/dead/x".into(), &good),
    ];
    for (what, method, target, token) in &cases {
        let auth = format!("Bearer {token}");
        let resp = send(
            f.gw.addr,
            method.clone(),
            target,
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert!(resp.status.as_u16() >= 400, "{what}: {}", resp.status);
        let sig = token.rsplit('.').next().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let mut shown = resp.text();
        for (n, v) in &resp.headers {
            shown.push_str(&format!("\n{n}: {}", String::from_utf8_lossy(v.as_bytes())));
        }
        for secret in [sig, payload] {
            assert!(
                !shown.contains(secret),
                "{what}: the token is echoed: {shown}"
            );
        }
    }
    assert_eq!(f.upstream.hits() + extra.hits(), 0);
}
