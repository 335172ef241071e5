//! Faults and hostile input: the gateway keeps answering correctly while its
//! dependencies fail, and nothing a client sends gets past it ambiguously.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::keys::{b64, mint_with_header};
use crate::support::*;

/// Sends raw bytes and returns everything the gateway answers before closing (bounded).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// ---- the issuer failing -------------------------------------------------------------

#[tokio::test]
async fn keys_older_than_max_stale_fail_closed_until_the_issuer_returns() {
    let f = Fixture::start_with("refresh_interval = \"100ms\"\nmax_stale = \"1s\"", "").await;
    let token = f.token("alice");
    assert_eq!(f.gw.get_as("/api/x", &token).await.status, StatusCode::OK);

    f.jwks
        .set_mode(JwksMode::Status(StatusCode::SERVICE_UNAVAILABLE));
    eventually(10, "stale keys to fail closed", async || {
        f.gw.get_as("/api/x", &token).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let resp = f.gw.get_as("/api/x", &f.token("bob")).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.header("retry-after").is_some());
    let ready = send(f.gw.admin, Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        f.gw.metric("portcullis_auth_total{provider=\"better-auth\",outcome=\"keys_stale\"}")
            .await
            >= 2.0
    );
    let hits = f.upstream.hits();

    f.jwks.set_mode(JwksMode::Serve);
    eventually(10, "the issuer's return to restore service", async || {
        f.gw.get_as("/api/x", &token).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(
        f.upstream.hits(),
        hits + 1,
        "a stale request reached the upstream"
    );
}

#[tokio::test]
async fn a_slow_issuer_never_delays_requests_with_known_keys() {
    let f = Fixture::start_with("refresh_interval = \"100ms\"\nfetch_timeout = \"5s\"", "").await;
    f.jwks.set_delay(Duration::from_secs(3));
    let hits = f.jwks.hits();
    eventually(10, "a refresh to be in flight", async || {
        f.jwks.hits() > hits
    })
    .await;
    for i in 0..20 {
        let start = Instant::now();
        let resp = f.gw.get_as("/api/x", &f.token(&format!("u{i}"))).await;
        assert_eq!(resp.status, StatusCode::OK);
        // A request that waited on the 3-second fetch would take seconds, not this.
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "request {i} waited on the refresh"
        );
    }
}

#[tokio::test]
async fn hostile_jwks_answers_keep_the_old_keys_with_bounded_work() {
    let f = Fixture::start_with("refresh_interval = \"100ms\"", "").await;
    let dup = {
        let k = f.key.jwk(None);
        json!({ "keys": [k, SigningKey::ed25519_other("k1").jwk(None)] }).to_string()
    };
    let huge = format!(
        r#"{{"keys": [], "pad": "{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for (what, mode) in [
        ("10 MB body", JwksMode::Body(huge)),
        ("redirect loop", JwksMode::RedirectLoop),
        ("duplicate kids", JwksMode::Body(dup)),
        ("deeply nested JSON", JwksMode::Body(deep)),
    ] {
        f.jwks.set_mode(mode);
        let hits = f.jwks.hits();
        eventually(15, what, async || f.jwks.hits() > hits + 4).await;
        let resp = f.gw.get_as("/api/x", &f.token("alice")).await;
        assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.text());
    }
    // The forged key published under a duplicate kid never verified anything.
    let forged = SigningKey::ed25519_other("k1").mint(Alg::EdDSA, &claims("mallory"));
    assert_eq!(
        f.gw.get_as("/api/x", &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        f.gw.metric("portcullis_jwks_fetches_total{provider=\"better-auth\",result=\"error\"}")
            .await
            >= 4.0
    );
}

// ---- the upstream failing -----------------------------------------------------------

/// An upstream that answers each connection with `answer` and then closes it.
async fn scripted_upstream(answer: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 65536];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
                // Dropping the socket closes it, mid-body for a truncated answer.
            });
        }
    });
    addr
}

fn public_route(upstream: std::net::SocketAddr) -> String {
    format!(
        "{}[[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"http://{upstream}\"\nauth = \"public\"\n",
        provider_toml("http://127.0.0.1:9/jwks", "")
    )
}

#[tokio::test]
async fn an_upstream_reset_mid_response_is_seen_by_the_client_without_a_hang() {
    let up = scripted_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial").await;
    let gw = TestGateway::start(&public_route(up)).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /up/x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .expect("the client is not left hanging");
    // The head was relayed, then the connection was cut: the body is visibly short.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        body.len() < 1000,
        "a truncated body was passed off as complete"
    );
}

#[tokio::test]
async fn an_upstream_closing_idle_keep_alive_connections_causes_no_spurious_502() {
    // Answers with keep-alive, then closes the connection anyway (as servers with a
    // short keep-alive timeout do).
    let up = scripted_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let gw = TestGateway::start(&public_route(up)).await;
    for i in 0..20 {
        let resp = gw.get("/up/x", &[]).await;
        assert_eq!(resp.status, StatusCode::OK, "request {i}: {}", resp.text());
    }
}

// ---- clients misbehaving ------------------------------------------------------------

#[tokio::test]
async fn abrupt_client_disconnects_leak_no_connection_or_request() {
    let f = Fixture::start().await;
    f.upstream.set_delay(Duration::from_millis(300));
    let token = f.token("alice");
    // Mid-upload: a declared body that never finishes.
    for _ in 0..5 {
        let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
        let head = format!(
            "POST /api/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 1000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&[b'a'; 10000]).await.unwrap();
        drop(s);
    }
    // Mid-download: the client leaves while the upstream is still answering.
    for _ in 0..5 {
        let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
        let req =
            format!("GET /api/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        drop(s);
    }
    eventually(
        15,
        "every connection and request to be released",
        async || {
            f.gw.metric("portcullis_connections_open ").await == 0.0
                && f.gw.metric("portcullis_requests_in_flight ").await == 0.0
        },
    )
    .await;
    assert_eq!(f.gw.get_as("/api/x", &token).await.status, StatusCode::OK);
}

// ---- request smuggling --------------------------------------------------------------

#[tokio::test]
async fn smuggling_shapes_are_refused_and_never_forwarded() {
    let f = Fixture::start().await;
    let cases: [(&str, &str); 6] = [
        (
            "two Content-Lengths",
            "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 6\r\n\r\nabcdef",
        ),
        (
            "Content-Length list",
            "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 6\r\n\r\nabcdef",
        ),
        (
            "obs-fold",
            "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "TE in HTTP/1.0",
            "POST /public/x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "TE not ending in chunked",
            "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "space before colon",
            "GET /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
    ];
    for (what, request) in cases {
        let before = f.upstream.hits();
        let answer = raw(f.gw.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{what}: {answer:?}");
        assert_eq!(f.upstream.hits(), before, "{what} was forwarded");
    }

    // A bad chunk size arrives after the head has gone upstream (bodies stream): the client
    // gets a 400 and the upstream never sees the body complete.
    let answer = raw(
        f.gw.addr,
        b"POST /public/chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "bad chunk size: {answer:?}"
    );
    assert!(
        f.upstream
            .seen()
            .iter()
            .filter(|s| s.target == "/public/chunk")
            .all(|s| !s.body_complete)
    );

    // Content-Length together with Transfer-Encoding, in either order: hyper discards the
    // Content-Length before the gateway sees the request (RFC 9112 §6.3) and closes the
    // connection after answering. What is forwarded has one framing only, and nothing
    // rides behind it on the same connection.
    for (what, head) in [
        (
            "CL then TE",
            "Content-Length: 4\r\nTransfer-Encoding: chunked",
        ),
        (
            "TE then CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 4",
        ),
    ] {
        let request = format!(
            "POST /public/x HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let answer = raw(f.gw.addr, request.as_bytes()).await;
        let seen = f.upstream.last();
        assert_eq!(seen.target, "/public/x", "{what}");
        assert_eq!(
            seen.one("content-length"),
            None,
            "{what}: two framings were forwarded"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{what}: {answer}"
        );
        assert_eq!(
            answer.matches("HTTP/1.1").count(),
            1,
            "{what}: the smuggled request was answered"
        );
    }
    assert!(
        f.upstream
            .seen()
            .iter()
            .all(|s| s.target != "/api/smuggled")
    );
}

// ---- hostile tokens and headers -----------------------------------------------------

#[tokio::test]
async fn hostile_kids_are_only_map_keys() {
    let f = Fixture::start().await;
    let fetches = f.jwks.hits();
    let stranger = SigningKey::ed25519_other("x");
    for kid in [
        "../../../../etc/passwd".to_owned(),
        "' OR '1'='1".to_owned(),
        "\u{0}".to_owned(),
        "k1\u{0}".to_owned(),
        "ｋ１".to_owned(),
        "".to_owned(),
        "k".repeat(8000),
    ] {
        let t = mint_with_header(&json!({"alg": "EdDSA", "kid": kid}), &claims("u"), |m| {
            stranger.sign(Alg::EdDSA, m)
        });
        assert_eq!(
            f.gw.get_as("/api/x", &t).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    for kid in [json!(null), json!(1), json!(["k1"]), json!({"k": "k1"})] {
        let t = mint_with_header(&json!({"alg": "EdDSA", "kid": kid}), &claims("u"), |m| {
            f.key.sign(Alg::EdDSA, m)
        });
        assert_eq!(
            f.gw.get_as("/api/x", &t).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert!(
        f.jwks.hits() <= fetches + 1,
        "hostile kids hammered the issuer"
    );
    assert_eq!(f.upstream.hits(), 0);
}

#[tokio::test]
async fn huge_and_deeply_nested_tokens_are_refused_fast() {
    let f = Fixture::start().await;
    let mut c = claims("u");
    c["pad"] = json!("x".repeat(64 * 1024));
    let big = f.key.mint(Alg::EdDSA, &c);
    let resp = f.gw.get_as("/api/x", &big).await;
    assert!(
        resp.status == StatusCode::UNAUTHORIZED
            || resp.status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "{}",
        resp.status
    );
    let deep_claims = format!(
        r#"{{"sub":"u","exp":9999999999,"x":{}{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let deep = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"EdDSA","kid":"k1"}"#),
        b64(&deep_claims),
        b64([0u8; 64])
    );
    assert_eq!(
        f.gw.get_as("/api/x", &deep).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.upstream.hits(), 0);
}

#[tokio::test]
async fn many_headers_get_431() {
    let f = Fixture::start().await;
    let mut request = String::from("GET /public/x HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        request.push_str(&format!("X-H{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let answer = raw(f.gw.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert_eq!(f.upstream.hits(), 0);
}

// ---- HTTP/2 abuse -------------------------------------------------------------------

/// An HTTP/2 frame: 9-byte header then payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// A literal-without-indexing HPACK block for `GET /public/x` over http.
fn hpack_get() -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
    b.push(0x04); // :path, literal without indexing (indexed name 4)
    b.push(9);
    b.extend_from_slice(b"/public/x");
    b.push(0x01); // :authority
    b.push(1);
    b.push(b'x');
    b
}

/// Writes `bytes` until the gateway closes the connection; returns whether it did.
async fn write_until_closed(s: &mut TcpStream, chunks: impl Iterator<Item = Vec<u8>>) -> bool {
    for chunk in chunks {
        if s.write_all(&chunk).await.is_err() {
            return true;
        }
    }
    let mut buf = vec![0; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

#[tokio::test]
async fn http2_rapid_reset_and_continuation_floods_are_bounded() {
    let f = Fixture::start().await;

    // Rapid reset: open and cancel streams as fast as possible.
    let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    let resets = (0..20_000u32).map(|i| {
        let id = 2 * i + 1;
        let mut bytes = frame(HEADERS, END_HEADERS | END_STREAM, id, &hpack_get());
        bytes.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        bytes
    });
    assert!(
        write_until_closed(&mut s, resets).await,
        "a rapid-reset flood was not cut off"
    );

    // CONTINUATION flood: one header block that never ends.
    let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    s.write_all(&frame(HEADERS, END_STREAM, 1, &hpack_get()))
        .await
        .unwrap();
    let mut junk = Vec::new();
    for i in 0..1000 {
        junk.push(0x40); // literal with incremental indexing, new name
        junk.push(8);
        junk.extend_from_slice(format!("x-{i:06}").as_bytes());
        junk.push(8);
        junk.extend_from_slice(b"12345678");
    }
    let flood = (0..2_000).map(|_| frame(CONTINUATION, 0, 1, &junk));
    assert!(
        write_until_closed(&mut s, flood).await,
        "a CONTINUATION flood was not cut off"
    );

    // The gateway still serves everyone else.
    assert_eq!(
        f.gw.get_as("/api/x", &f.token("alice")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_early_refusal_of_a_request_with_an_unread_body_says_connection_close() {
    let f = Fixture::start().await;
    let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
    // The head only: the body has not been sent when the gateway answers 401.
    s.write_all(b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    // Without a body the connection stays usable: no close is announced.
    let resp = f.gw.get_as("/api/tasks", "nope").await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.header("connection"), None);
}

#[tokio::test]
async fn unknown_kid_misses_queued_behind_a_hanging_issuer_share_its_outcome() {
    // A short cooldown and a longer fetch timeout: misses that waited behind a failed
    // fetch used to start one of their own each, answering after 1, 2, 3... timeouts.
    let f = Fixture::start_with(
        "refresh_cooldown = \"200ms\"\nfetch_timeout = \"1s\"\nrefresh_interval = \"1h\"",
        "",
    )
    .await;
    f.jwks.set_delay(Duration::from_secs(30));
    let fetches = f.jwks.hits();
    let stranger = SigningKey::ed25519_other("new-kid");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let token = stranger.mint(Alg::EdDSA, &claims(&format!("u{i}")));
        let addr = f.gw.addr;
        tasks.push(tokio::spawn(async move {
            let auth = format!("Bearer {token}");
            send(addr, Method::GET, "/api/x", &[("authorization", &auth)], "")
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    // One fetch timed out for all of them: about one timeout, not five in a row.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "misses waited {:?}",
        start.elapsed()
    );
    assert_eq!(f.jwks.hits(), fetches + 1, "each queued miss fetched again");
}
