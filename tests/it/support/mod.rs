//! The integration-test kit: fixture keys and a minter, a JWKS server with a hit counter,
//! an echo upstream, and a builder that starts the gateway on 127.0.0.1:0.

pub mod keys;
pub mod redis;
pub mod servers;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::{Config, Gateway};
use serde_json::{Value, json};

pub use keys::{Alg, SigningKey, now};
pub use servers::{JwksMode, JwksServer, Upstream};

/// The issuer (and audience) the fixture provider trusts: Better Auth's shape.
pub const ISS: &str = "http://127.0.0.1:3000";

/// A Better Auth-shaped claim set for user `sub`, valid for 15 minutes.
pub fn claims(sub: &str) -> Value {
    let now = now();
    json!({
        "sub": sub, "iss": ISS, "aud": ISS, "iat": now, "exp": now + 900,
        "id": sub, "email": format!("{sub}@example.com"), "name": "Test User",
        "emailVerified": true,
    })
}

/// A running in-process gateway.
pub struct TestGateway {
    gateway: Option<Gateway>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl TestGateway {
    /// Starts a gateway on `body` (a config without `[server]`), listening on port 0.
    pub async fn start(body: &str) -> TestGateway {
        Self::start_with_server("", body).await
    }

    /// As [`start`], with extra `[server]` lines.
    pub async fn start_with_server(server: &str, body: &str) -> TestGateway {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{server}\n{body}"
        );
        let config = Config::from_toml(&text, "test.toml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"));
        let gateway = Gateway::start(config).await.expect("gateway starts");
        TestGateway {
            addr: gateway.proxy_addr(),
            admin: gateway.admin_addr(),
            gateway: Some(gateway),
        }
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if send(self.admin, Method::GET, "/readyz", &[], "")
                .await
                .status
                == StatusCode::OK
            {
                return;
            }
            assert!(Instant::now() < deadline, "gateway never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of the first `/metrics` sample line starting with `line_start` (0 when
    /// absent).
    pub async fn metric(&self, line_start: &str) -> f64 {
        let text = send(self.admin, Method::GET, "/metrics", &[], "")
            .await
            .text();
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        send(self.addr, Method::GET, path, headers, "").await
    }

    /// GET `path` with `Authorization: Bearer <token>`.
    pub async fn get_as(&self, path: &str, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        send(
            self.addr,
            Method::GET,
            path,
            &[("authorization", &auth)],
            "",
        )
        .await
    }

    pub async fn shutdown(mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
    }
}

/// The standard fixture: a JWKS server publishing one Ed25519 key (`kid` "k1"), an echo
/// upstream, and a gateway with a required `/api`, an optional `/opt` and a public
/// `/public` route.
pub struct Fixture {
    pub jwks: JwksServer,
    pub upstream: Upstream,
    pub gw: TestGateway,
    pub key: SigningKey,
}

pub fn provider_toml(jwks_url: &str, extra: &str) -> String {
    // Defaults the caller's `extra` lines may override.
    let defaults: String = [("leeway", "\"5s\""), ("refresh_cooldown", "\"1h\"")]
        .iter()
        .filter(|(k, _)| !extra.contains(k))
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    format!(
        r#"
[[providers]]
name = "better-auth"
issuer = "{ISS}"
jwks_url = "{jwks_url}"
audiences = ["{ISS}"]
{defaults}{extra}
"#
    )
}

pub fn routes_toml(upstream: &str) -> String {
    format!(
        r#"
[[routes]]
name = "api"
prefix = "/api"
upstream = "{upstream}"

[[routes]]
name = "optional"
prefix = "/opt"
upstream = "{upstream}"
auth = "optional"

[[routes]]
name = "public"
prefix = "/public"
upstream = "{upstream}"
auth = "public"

[identity]
claim_headers = {{ email = "X-User-Email", name = "X-User-Name" }}
"#
    )
}

impl Fixture {
    pub async fn start() -> Fixture {
        Self::start_with("", "").await
    }

    /// With extra lines in the provider table and extra TOML after the routes.
    pub async fn start_with(provider_extra: &str, tail: &str) -> Fixture {
        let key = SigningKey::ed25519("k1");
        let jwks = JwksServer::start(vec![key.jwk(None)]).await;
        let upstream = Upstream::start().await;
        let body = format!(
            "{}{}{tail}",
            provider_toml(&jwks.url(), provider_extra),
            routes_toml(&upstream.url())
        );
        let gw = TestGateway::start(&body).await;
        gw.wait_ready().await;
        Fixture {
            jwks,
            upstream,
            gw,
            key,
        }
    }

    /// A valid EdDSA token for `sub`.
    pub fn token(&self, sub: &str) -> String {
        self.key.mint(Alg::EdDSA, &claims(sub))
    }
}

/// Polls `probe` until it returns true, failing after `secs`.
pub async fn eventually(secs: u64, what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP/1.1 request with the exact target and headers given (duplicates kept).
pub async fn send(
    addr: SocketAddr,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri = format!("http://{addr}{target}");
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    for (n, v) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let resp = client.request(req).await.expect("the gateway answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("a full body")
        .to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// The status line and head of a response read off a raw connection.
pub struct RawResp {
    pub status: u16,
    pub head: String,
}

/// Sends `request` byte for byte on a fresh connection (so header case, duplicates and
/// targets that `http::Uri` refuses reach the gateway exactly as written) and reads the
/// response until the server closes the connection.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> RawResp {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write the request");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("the gateway closes the connection in time")
        .expect("read the response");
    let text = String::from_utf8_lossy(&buf);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    RawResp { status, head }
}

/// A `GET` with the exact target and header lines given, and `Connection: close`.
pub fn raw_get(target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: portcullis.test\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.into_bytes()
}
