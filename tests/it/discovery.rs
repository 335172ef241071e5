//! Providers configured by their issuer alone: OIDC discovery against a real metadata
//! server on 127.0.0.1:0, its `issuer` check (the mix-up defence), a `jwks_uri` that
//! moves, and a metadata endpoint that is down at start or later.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::process::{Running, run_config};
use crate::support::servers::serve;
use crate::support::*;

/// An issuer's `/.well-known/openid-configuration` (any path, in fact), with a document,
/// an answer status and a hit counter each test controls.
struct Discovery {
    addr: std::net::SocketAddr,
    state: Arc<DiscoveryState>,
    task: JoinHandle<()>,
}

struct DiscoveryState {
    doc: Mutex<Value>,
    status: Mutex<StatusCode>,
    hits: AtomicUsize,
    paths: Mutex<Vec<String>>,
}

impl Discovery {
    /// A metadata server whose document names itself as the issuer and `jwks_uri`.
    async fn start(jwks_uri: &str) -> Discovery {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(DiscoveryState {
            doc: Mutex::new(json!({
                "issuer": format!("http://{addr}"),
                "jwks_uri": jwks_uri,
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["EdDSA"],
            })),
            status: Mutex::new(StatusCode::OK),
            hits: AtomicUsize::new(0),
            paths: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let task = serve(listener, move |req| {
            let state = s.clone();
            async move {
                state.hits.fetch_add(1, Ordering::SeqCst);
                state
                    .paths
                    .lock()
                    .unwrap()
                    .push(req.uri().path().to_owned());
                let status = *state.status.lock().unwrap();
                let body = state.doc.lock().unwrap().to_string();
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap()
            }
        })
        .await;
        Discovery { addr, state, task }
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn paths(&self) -> Vec<String> {
        self.state.paths.lock().unwrap().clone()
    }

    fn set(&self, field: &str, value: &str) {
        self.state.doc.lock().unwrap()[field] = json!(value);
    }

    fn set_status(&self, status: StatusCode) {
        *self.state.status.lock().unwrap() = status;
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A provider that knows only its issuer (`discovery = true`).
fn provider(issuer: &str, extra: &str) -> String {
    format!(
        r#"
[[providers]]
name = "idp"
issuer = "{issuer}"
discovery = true
audiences = ["api"]
leeway = "5s"
{extra}
"#
    )
}

fn claims_from(issuer: &str, sub: &str) -> Value {
    let mut c = claims(sub);
    c["iss"] = json!(issuer);
    c["aud"] = json!("api");
    c
}

/// A JWKS server, a discovery document naming it (answering, or 503 until told
/// otherwise), an echo upstream and a gateway whose provider has only `discovery = true`
/// and the `extra` lines.
struct Rig {
    key: SigningKey,
    jwks: JwksServer,
    idp: Discovery,
    upstream: Upstream,
    gw: TestGateway,
}

impl Rig {
    async fn start(extra: &str, idp_up: bool) -> Rig {
        let key = SigningKey::ed25519("k1");
        let jwks = JwksServer::start(vec![key.jwk(None)]).await;
        let idp = Discovery::start(&jwks.url()).await;
        if !idp_up {
            idp.set_status(StatusCode::SERVICE_UNAVAILABLE);
        }
        let upstream = Upstream::start().await;
        let gw = TestGateway::start(&format!(
            "{}{}",
            provider(&idp.issuer(), extra),
            routes_toml(&upstream.url())
        ))
        .await;
        Rig {
            key,
            jwks,
            idp,
            upstream,
            gw,
        }
    }
}

async fn readyz(gw: &TestGateway) -> Resp {
    send(gw.admin, Method::GET, "/readyz", &[], "").await
}

#[tokio::test]
async fn the_issuer_alone_is_enough_discovery_then_keys_then_the_backend() {
    let Rig {
        key,
        jwks,
        idp,
        upstream,
        gw,
    } = Rig::start("refresh_cooldown = \"1h\"", true).await;
    gw.wait_ready().await;

    let token = key.mint(Alg::EdDSA, &claims_from(&idp.issuer(), "alice"));
    let resp = gw.get_as("/api/tasks", &token).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(upstream.last().one("x-user-id"), Some("alice"));
    assert_eq!(idp.paths()[0], "/.well-known/openid-configuration");
    assert!(jwks.hits() >= 1);
    // A token for another audience of the same issuer is still refused.
    let mut other = claims_from(&idp.issuer(), "alice");
    other["aud"] = json!("another-api");
    assert_eq!(
        gw.get_as("/api/tasks", &key.mint(Alg::EdDSA, &other))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn discovery_url_reads_the_metadata_where_it_says() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let idp = Discovery::start(&jwks.url()).await;
    let upstream = Upstream::start().await;
    let body = provider(&idp.issuer(), "").replace(
        "discovery = true",
        &format!(
            "discovery_url = \"{}/tenant/v2/.well-known/openid-configuration\"",
            idp.issuer()
        ),
    );
    let gw = TestGateway::start(&format!("{body}{}", routes_toml(&upstream.url()))).await;
    gw.wait_ready().await;
    let token = key.mint(Alg::EdDSA, &claims_from(&idp.issuer(), "bob"));
    assert_eq!(gw.get_as("/api/x", &token).await.status, StatusCode::OK);
    assert_eq!(
        idp.paths()[0],
        "/tenant/v2/.well-known/openid-configuration"
    );
    gw.shutdown().await;
}

/// The mix-up defence, as an operator sees it with the real binary: not ready, tokens
/// refused, one clear error naming both issuers however often the gateway retries, and
/// recovery once the issuer publishes a document that is its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_document_for_another_issuer_is_refused_until_it_is_fixed() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let idp = Discovery::start(&jwks.url()).await;
    idp.set("issuer", "https://evil.example.com");
    let upstream = Upstream::start().await;
    let config = run_config(
        "discovery-mismatch",
        &format!(
            "{}{}",
            provider(&idp.issuer(), "refresh_interval = \"1s\""),
            routes_toml(&upstream.url())
        ),
    );
    let gw = Running::start(&config, &["run"], &[]).await;
    let token = key.mint(Alg::EdDSA, &claims_from(&idp.issuer(), "alice"));
    let auth = format!("Bearer {token}");

    // Several rounds of retries, every one refused.
    eventually(20, "three discovery attempts", async || idp.hits() >= 3).await;
    let ready = send(gw.admin, Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["providers"], json!(["idp"]));
    let resp = send(
        gw.proxy,
        Method::GET,
        "/api/x",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        jwks.hits(),
        0,
        "keys named by a foreign document are never fetched"
    );
    assert_eq!(upstream.hits(), 0);

    // The issuer fixes its document: the provider becomes ready and the token passes.
    idp.set("issuer", &idp.issuer());
    gw.wait_ready().await;
    let resp = send(
        gw.proxy,
        Method::GET,
        "/api/x",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);

    let (status, stderr) = gw.stop().await;
    assert_eq!(status.code(), Some(0));
    let refused: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains("discovery document refused"))
        .collect();
    assert_eq!(refused.len(), 1, "one error per change: {stderr:#?}");
    assert!(
        refused[0].contains("ERROR")
            && refused[0].contains("https://evil.example.com")
            && refused[0].contains(&idp.issuer()),
        "{}",
        refused[0]
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("discovery document accepted again")),
        "{stderr:#?}"
    );
    assert!(!stderr.iter().any(|l| l.contains(&token)));
}

#[tokio::test]
async fn a_document_that_turns_to_another_issuer_drops_the_keys() {
    let Rig {
        key,
        jwks: _jwks,
        idp,
        upstream: _upstream,
        gw,
    } = Rig::start("refresh_interval = \"100ms\"", true).await;
    gw.wait_ready().await;
    let token = key.mint(Alg::EdDSA, &claims_from(&idp.issuer(), "alice"));
    assert_eq!(gw.get_as("/api/x", &token).await.status, StatusCode::OK);

    idp.set("issuer", "https://evil.example.com");
    eventually(10, "the provider to fail closed", async || {
        readyz(&gw).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // The verified-token cache does not outlive the keys either.
    assert_eq!(
        gw.get_as("/api/x", &token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_moved_jwks_uri_is_followed_on_refresh() {
    let (old_key, new_key) = (SigningKey::ed25519("k1"), SigningKey::ed25519_other("k2"));
    let old_jwks = JwksServer::start(vec![old_key.jwk(None)]).await;
    let new_jwks = JwksServer::start(vec![new_key.jwk(None)]).await;
    let idp = Discovery::start(&old_jwks.url()).await;
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        provider(
            &idp.issuer(),
            "refresh_interval = \"100ms\"\nrefresh_cooldown = \"1h\""
        ),
        routes_toml(&upstream.url())
    ))
    .await;
    gw.wait_ready().await;
    let old_token = old_key.mint(Alg::EdDSA, &claims_from(&idp.issuer(), "alice"));
    let new_token = new_key.mint(Alg::EdDSA, &claims_from(&idp.issuer(), "bob"));
    assert_eq!(gw.get_as("/api/x", &old_token).await.status, StatusCode::OK);
    assert_eq!(new_jwks.hits(), 0);

    // The issuer moves its keys: the next refresh reads the new jwks_uri, whose set
    // holds only the new key.
    idp.set("jwks_uri", &new_jwks.url());
    eventually(10, "the old key to leave with the old JWKS", async || {
        gw.get_as("/api/x", &old_token).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(gw.get_as("/api/x", &new_token).await.status, StatusCode::OK);
    assert_eq!(upstream.last().one("x-user-id"), Some("bob"));
    assert!(new_jwks.hits() >= 1);
    let old_hits = old_jwks.hits();
    let new_hits = new_jwks.hits();
    eventually(10, "more refreshes", async || {
        new_jwks.hits() >= new_hits + 2
    })
    .await;
    assert_eq!(
        old_jwks.hits(),
        old_hits,
        "the old jwks_uri is no longer read"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn metadata_down_at_start_then_up_then_down_again() {
    let Rig {
        key,
        jwks,
        idp,
        upstream,
        gw,
    } = Rig::start("refresh_interval = \"100ms\"", false).await;
    let token = key.mint(Alg::EdDSA, &claims_from(&idp.issuer(), "alice"));

    // Down at start: not ready, tokens wait for keys, nothing fetched from the JWKS.
    eventually(10, "a discovery attempt", async || idp.hits() >= 2).await;
    assert_eq!(readyz(&gw).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        gw.get_as("/api/x", &token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(jwks.hits(), 0);

    // Up: retried with backoff, ready, the token passes.
    idp.set_status(StatusCode::OK);
    gw.wait_ready().await;
    assert_eq!(gw.get_as("/api/x", &token).await.status, StatusCode::OK);

    // Down again: keys keep refreshing from the last jwks_uri the issuer named, and
    // nobody is logged out.
    idp.set_status(StatusCode::INTERNAL_SERVER_ERROR);
    let (disc, keys) = (idp.hits(), jwks.hits());
    eventually(10, "refreshes during the outage", async || {
        idp.hits() >= disc + 2 && jwks.hits() >= keys + 2
    })
    .await;
    assert_eq!(readyz(&gw).await.status, StatusCode::OK);
    let fresh = key.mint(Alg::EdDSA, &claims_from(&idp.issuer(), "carol"));
    assert_eq!(gw.get_as("/api/x", &fresh).await.status, StatusCode::OK);
    assert_eq!(upstream.last().one("x-user-id"), Some("carol"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_unknown_kids_reads_the_metadata_at_most_once_per_cooldown() {
    let Rig {
        key,
        jwks,
        idp,
        upstream,
        gw,
    } = Rig::start("refresh_cooldown = \"1h\"", true).await;
    gw.wait_ready().await;
    let (disc, keys) = (idp.hits(), jwks.hits());
    let stranger = SigningKey::ed25519_other("x");
    let mut tasks = Vec::new();
    for i in 0..100 {
        let token = keys::mint_with_header(
            &json!({"alg": "EdDSA", "kid": format!("bogus-{i}")}),
            &claims_from(&idp.issuer(), "eve"),
            |m| stranger.sign(Alg::EdDSA, m),
        );
        let addr = gw.addr;
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
    assert!(
        idp.hits() - disc <= 1,
        "{} metadata reads",
        idp.hits() - disc
    );
    assert!(jwks.hits() - keys <= 1, "{} JWKS reads", jwks.hits() - keys);
    assert_eq!(upstream.hits(), 0);
    let token = key.mint(Alg::EdDSA, &claims_from(&idp.issuer(), "alice"));
    assert_eq!(gw.get_as("/api/x", &token).await.status, StatusCode::OK);
    gw.shutdown().await;
}
