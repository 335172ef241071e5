//! What an operator relies on: TLS, metrics, hot reload and limits.

use std::io::Write as _;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use portcullis::Gateway;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A self-signed certificate for localhost and 127.0.0.1, written into `dir`.
fn self_signed(dir: &std::path::Path) -> String {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    cert.cert.pem()
}

#[tokio::test]
async fn tls_is_terminated_for_h2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = self_signed(dir.path());
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let upstream = Upstream::start().await;
    let tls = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let gw = TestGateway::start_with_server(
        "",
        &format!(
            "{tls}{}{}",
            provider_toml(&jwks.url(), ""),
            routes_toml(&upstream.url())
        ),
    )
    .await;
    gw.wait_ready().await;
    let token = key.mint(Alg::EdDSA, &claims("alice"));
    let url = format!("https://localhost:{}/api/tasks", gw.addr.port());

    for (h1, want) in [
        (false, http::Version::HTTP_2),
        (true, http::Version::HTTP_11),
    ] {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
            .resolve("localhost", gw.addr);
        if h1 {
            builder = builder.http1_only();
        }
        let client = builder.build().unwrap();
        let resp = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), want);
        let seen = upstream.last();
        assert_eq!(seen.one("x-user-id"), Some("alice"));
        assert_eq!(seen.one("x-forwarded-proto"), Some("https"));
    }
    // Plain HTTP on the TLS port gets nowhere near the upstream.
    let hits = upstream.hits();
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert_eq!(upstream.hits(), hits);
}

/// The value of one sample in a Prometheus text exposition.
fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_every_auth_outcome() {
    let f = Fixture::start_with(
        "",
        &format!(
            "[[routes]]\nname = \"admin\"\nprefix = \"/admin\"\nupstream = \"{}\"\nroles = [\"admin\"]\n",
            "http://127.0.0.1:9"
        ),
    )
    .await;
    let now = now();
    let mint = |patch: serde_json::Value| {
        let mut c = claims("alice");
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        f.key.mint(Alg::EdDSA, &c)
    };
    let good = f.token("alice");
    let mut forged = good.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let stranger = SigningKey::ed25519_other("zz").mint(Alg::EdDSA, &claims("eve"));
    let cases: Vec<(String, &str)> = vec![
        (good.clone(), "/api/a"),
        (good.clone(), "/api/b"),
        (mint(json!({"exp": now - 120})), "/api/a"),
        (forged, "/api/a"),
        (stranger, "/api/a"),
        (mint(json!({"iss": "https://evil.example"})), "/api/a"),
        (mint(json!({"aud": "https://other.example"})), "/api/a"),
        (good.clone(), "/admin/x"),
    ];
    for (token, path) in &cases {
        f.gw.get_as(path, token).await;
    }
    f.gw.get("/api/a", &[]).await;

    let m = send(f.gw.admin, Method::GET, "/metrics", &[], "").await;
    assert_eq!(m.status, StatusCode::OK);
    let text = m.text();
    let auth = |p: &str, o: &str| {
        sample(
            &text,
            &format!("portcullis_auth_total{{provider=\"{p}\",outcome=\"{o}\"}}"),
        )
    };
    // Each request's outcome is counted once: the good token refused by the admin route
    // for its role is `insufficient_scope`, not also `ok`.
    assert_eq!(auth("better-auth", "ok"), 2.0, "{text}");
    assert_eq!(auth("better-auth", "expired"), 1.0);
    assert_eq!(auth("better-auth", "bad_signature"), 1.0);
    assert_eq!(auth("better-auth", "unknown_kid"), 1.0);
    assert_eq!(auth("-", "wrong_issuer"), 1.0);
    assert_eq!(auth("better-auth", "wrong_audience"), 1.0);
    assert_eq!(auth("better-auth", "insufficient_scope"), 1.0);
    assert_eq!(auth("-", "missing"), 1.0);
    let counted: f64 = text
        .lines()
        .filter(|l| l.starts_with("portcullis_auth_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, (cases.len() + 1) as f64, "one outcome per request");
    assert_eq!(
        sample(&text, "portcullis_token_cache_total{result=\"hit\"}"),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "portcullis_requests_total{route=\"api\",method=\"GET\",status=\"2xx\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "portcullis_requests_total{route=\"api\",method=\"GET\",status=\"4xx\"}"
        ),
        6.0
    );
    assert!(
        sample(
            &text,
            "portcullis_jwks_fetches_total{provider=\"better-auth\",result=\"ok\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &text,
            "portcullis_jwks_last_success_age_seconds{provider=\"better-auth\"}"
        ) < 60.0
    );
    assert!(
        text.contains("portcullis_request_duration_seconds_bucket{le=\"0.001\",route=\"api\"}"),
        "{text}"
    );
    // Label values are bounded: no raw path and no user id ever becomes one.
    assert!(!text.contains("/api/a") && !text.contains("alice"));
}

fn write(path: &std::path::Path, text: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[tokio::test]
async fn reload_swaps_routes_while_a_request_on_the_old_config_completes() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    let config = |up: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}{}",
            provider_toml(&jwks.url(), ""),
            routes_toml(up)
        )
    };
    write(&path, &config(&a.url()));
    let gw = Gateway::start_from(path.clone()).await.unwrap();
    let (addr, admin) = (gw.proxy_addr(), gw.admin_addr());
    let token = key.mint(Alg::EdDSA, &claims("alice"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(admin, Method::GET, "/readyz", &[], "").await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A slow request starts on the old config...
    a.set_delay(Duration::from_millis(800));
    let auth = format!("Bearer {token}");
    let slow = tokio::spawn(async move {
        send(
            addr,
            Method::GET,
            "/api/slow",
            &[("authorization", &auth)],
            "",
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.hits() == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached upstream A"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...the route moves to upstream B...
    write(&path, &config(&b.url()));
    let r = send(admin, Method::POST, "/reload", &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let auth = format!("Bearer {token}");
    let fresh = send(
        addr,
        Method::GET,
        "/api/new",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(b.last().target, "/api/new");
    // ...and the request in flight still completes against A.
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(slow.json()["target"], "/api/slow");
    // The provider's keys survived: no refetch was needed for the same jwks_url.
    assert_eq!(jwks.hits(), 1);

    // A broken file is refused, with the reason, and the old config keeps serving.
    write(&path, &config(&b.url()).replace("audiences", "audiencs"));
    let r = send(admin, Method::POST, "/reload", &[], "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("audiencs"), "{}", r.text());
    let auth = format!("Bearer {token}");
    let still = send(
        addr,
        Method::GET,
        "/api/after",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(still.status, StatusCode::OK);
    assert_eq!(b.last().target, "/api/after");
    let m = send(admin, Method::GET, "/metrics", &[], "").await.text();
    assert_eq!(
        sample(&m, "portcullis_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        sample(&m, "portcullis_config_reloads_total{result=\"error\"}"),
        1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let f = Fixture::start().await;
    let big = "x".repeat(100 * 1024);
    let mut s = tokio::net::TcpStream::connect(f.gw.addr).await.unwrap();
    s.write_all(format!("GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(f.upstream.hits(), 0);
}

#[tokio::test]
async fn bodies_over_the_route_limit_get_413() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let upstream = Upstream::start().await;
    let body = format!(
        "{}[[routes]]\nname = \"upload\"\nprefix = \"/upload\"\nupstream = \"{}\"\nauth = \"public\"\nmax_body_bytes = 1024\n",
        provider_toml(&jwks.url(), ""),
        upstream.url()
    );
    let gw = TestGateway::start(&body).await;
    gw.wait_ready().await;
    let small = send(gw.addr, Method::POST, "/upload", &[], &"a".repeat(1000)).await;
    assert_eq!(small.status, StatusCode::OK);
    let declared = send(gw.addr, Method::POST, "/upload", &[], &"a".repeat(5000)).await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked, so no length up front: cut off at the limit.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let chunk = "b".repeat(800);
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(upstream.seen().iter().all(|s| s.body_len <= 1024));
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let upstream = Upstream::start().await;
    let gw = TestGateway::start_with_server(
        "header_read_timeout = \"300ms\"\nidle_timeout = \"400ms\"",
        &format!(
            "{}{}",
            provider_toml(&jwks.url(), ""),
            routes_toml(&upstream.url())
        ),
    )
    .await;
    gw.wait_ready().await;
    // Slowloris: a request head that never completes is cut off.
    let start = Instant::now();
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the server kept a half-sent request head open"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(upstream.hits(), 0);

    // An idle keep-alive connection is closed after a completed request.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if s.read(&mut buf).await.map_or(true, |n| n == 0) {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was never closed");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_their_turn() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let upstream = Upstream::start().await;
    let gw = TestGateway::start_with_server(
        "max_connections = 2",
        &format!(
            "{}{}",
            provider_toml(&jwks.url(), ""),
            routes_toml(&upstream.url())
        ),
    )
    .await;
    gw.wait_ready().await;
    let request = b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = vec![0; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A third connection is accepted by the kernel but not served while two are open.
    let mut third = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut buf = vec![0; 4096];
    let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(waited.is_err(), "a connection over the limit was served");
    // Once one closes, it is served.
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served after a slot freed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn certificates_are_reread_on_reload_and_open_connections_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let upstream = Upstream::start().await;
    let old_ca = self_signed(dir.path());
    // Relative paths resolve against the config file's own folder.
    let path = dir.path().join("portcullis.toml");
    write(
        &path,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n{}{}",
            provider_toml(&jwks.url(), ""),
            routes_toml(&upstream.url())
        ),
    );
    let gw = Gateway::start_from(path).await.unwrap();
    let url = format!("https://localhost:{}/public/x", gw.proxy_addr().port());
    let client_for = |ca: &str| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
            .resolve("localhost", gw.proxy_addr())
            .build()
            .unwrap()
    };
    let old_client = client_for(&old_ca);
    assert_eq!(
        old_client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );

    let new_ca = self_signed(dir.path());
    let r = send(gw.admin_addr(), Method::POST, "/reload", &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The open (HTTP/2) connection keeps its certificate and keeps working...
    assert_eq!(
        old_client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    // ...new connections get the new certificate...
    assert_eq!(
        client_for(&new_ca).get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    // ...and a client that trusts only the old one can no longer connect.
    assert!(client_for(&old_ca).get(&url).send().await.is_err());
    gw.shutdown().await;
}
