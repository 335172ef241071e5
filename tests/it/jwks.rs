//! The key set as an operator sees it: readiness, rotation, unknown-`kid` floods, issuer
//! outages and odd JWKS documents.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn not_ready_and_503_until_the_issuer_answers_then_serves() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    jwks.set_mode(JwksMode::Status(StatusCode::INTERNAL_SERVER_ERROR));
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        provider_toml(&jwks.url(), ""),
        routes_toml(&upstream.url())
    ))
    .await;

    // The listener accepts at once; readiness and authenticated routes wait for keys.
    eventually(10, "a start-up fetch", async || jwks.hits() >= 1).await;
    let ready = send(gw.admin, http::Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["providers"], json!(["better-auth"]));
    assert_eq!(
        send(gw.admin, http::Method::GET, "/healthz", &[], "")
            .await
            .status,
        StatusCode::OK
    );
    let token = key.mint(Alg::EdDSA, &claims("alice"));
    let resp = gw.get_as("/api/tasks", &token).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.header("retry-after").is_some());
    // Public routes do not need keys.
    assert_eq!(gw.get("/public/x", &[]).await.status, StatusCode::OK);

    // The issuer recovers: retried with backoff, the gateway becomes ready and verifies.
    jwks.set_mode(JwksMode::Serve);
    gw.wait_ready().await;
    assert_eq!(gw.get_as("/api/tasks", &token).await.status, StatusCode::OK);
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_accepted_on_first_sight() {
    let f = Fixture::start().await;
    let before = f.jwks.hits();
    let old_token = f.token("alice");
    assert_eq!(
        f.gw.get_as("/api/x", &old_token).await.status,
        StatusCode::OK
    );

    // The issuer publishes a new key and signs with it at once (Better Auth mints the
    // rotated key lazily): the first request with the new kid refetches and passes.
    let new_key = SigningKey::ed25519_other("k2");
    f.jwks.set_keys(vec![f.key.jwk(None), new_key.jwk(None)]);
    let new_token = new_key.mint(Alg::EdDSA, &claims("bob"));
    let resp = f.gw.get_as("/api/x", &new_token).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(f.upstream.last().one("x-user-id"), Some("bob"));
    assert_eq!(f.jwks.hits(), before + 1);
    // Tokens signed by the old key keep working while it is still published.
    assert_eq!(
        f.gw.get_as("/api/x", &old_token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_flood_of_random_kids_costs_the_issuer_one_fetch_per_cooldown() {
    let f = Fixture::start().await;
    let before = f.jwks.hits();
    let stranger = SigningKey::ed25519_other("x");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let kid = format!("random-{i}-{}", now());
        let token =
            keys::mint_with_header(&json!({"alg": "EdDSA", "kid": kid}), &claims("u"), |m| {
                stranger.sign(Alg::EdDSA, m)
            });
        let addr = f.gw.addr;
        tasks.push(tokio::spawn(async move {
            let auth = format!("Bearer {token}");
            send(
                addr,
                http::Method::GET,
                "/api/x",
                &[("authorization", &auth)],
                "",
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    assert!(
        f.jwks.hits() - before <= 1,
        "{} JWKS fetches for one cooldown",
        f.jwks.hits() - before
    );
    assert_eq!(f.upstream.hits(), 0);
    // Known keys are unaffected by the flood.
    assert_eq!(
        f.gw.get_as("/api/x", &f.token("alice")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn concurrent_misses_for_a_new_kid_share_one_fetch() {
    let f = Fixture::start().await;
    f.jwks.set_delay(Duration::from_millis(300));
    let new_key = SigningKey::ed25519_other("k2");
    f.jwks.set_keys(vec![f.key.jwk(None), new_key.jwk(None)]);
    let before = f.jwks.hits();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let token = new_key.mint(Alg::EdDSA, &claims(&format!("user-{i}")));
        let addr = f.gw.addr;
        tasks.push(tokio::spawn(async move {
            let auth = format!("Bearer {token}");
            send(
                addr,
                http::Method::GET,
                "/api/x",
                &[("authorization", &auth)],
                "",
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(f.jwks.hits(), before + 1);
}

#[tokio::test]
async fn the_issuer_going_down_does_not_log_anyone_out() {
    let f = Fixture::start_with("refresh_interval = \"200ms\"", "").await;
    let token = f.token("alice");
    assert_eq!(f.gw.get_as("/api/x", &token).await.status, StatusCode::OK);
    f.jwks.stop();
    // An unknown kid makes the gateway refetch from the dead issuer (and the periodic
    // refresh keeps failing too): 401 for that token, not 503, and no hang.
    let stranger = SigningKey::ed25519_other("k9").mint(Alg::EdDSA, &claims("eve"));
    assert_eq!(
        f.gw.get_as("/api/x", &stranger).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A token never seen before, signed by the cached key: still verified.
    let fresh = f.token("bob");
    assert_eq!(f.gw.get_as("/api/x", &fresh).await.status, StatusCode::OK);
    assert_eq!(f.upstream.last().one("x-user-id"), Some("bob"));
    assert_eq!(f.gw.get_as("/api/x", &token).await.status, StatusCode::OK);
    let ready = send(f.gw.admin, http::Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::OK);
}

#[tokio::test]
async fn a_key_removed_from_the_set_stops_verifying_even_for_cached_tokens() {
    let f = Fixture::start_with("refresh_interval = \"100ms\"", "").await;
    let second = SigningKey::ed25519_other("k2");
    f.jwks.set_keys(vec![f.key.jwk(None), second.jwk(None)]);
    let token = second.mint(Alg::EdDSA, &claims("bob"));
    assert_eq!(f.gw.get_as("/api/x", &token).await.status, StatusCode::OK);
    assert_eq!(f.gw.get_as("/api/x", &token).await.status, StatusCode::OK);

    f.jwks.set_keys(vec![f.key.jwk(None)]);
    eventually(10, "the removed key to stop verifying", async || {
        f.gw.get_as("/api/x", &token).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(
        f.gw.get_as("/api/x", &f.token("alice")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn odd_entries_are_skipped_one_by_one() {
    let key = SigningKey::ed25519("good");
    let jwks = JwksServer::start(vec![
        json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
        json!({"kty": "weird", "kid": "w"}),
        json!({"kty": "OKP", "crv": "Ed448", "kid": "ed448", "x": "AAAA"}),
        json!({"kty": "EC", "crv": "P-256", "kid": "broken", "x": "!!", "y": "??"}),
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": keys::b64(&key.public_raw)}),
        json!("not an object"),
        key.jwk(None),
    ])
    .await;
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        provider_toml(&jwks.url(), ""),
        routes_toml(&upstream.url())
    ))
    .await;
    gw.wait_ready().await;
    assert_eq!(
        gw.get_as("/api/x", &key.mint(Alg::EdDSA, &claims("u")))
            .await
            .status,
        StatusCode::OK
    );
    // An `oct` key in a remote JWKS is never used as an HMAC secret.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("hmac".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims("u"),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    assert_eq!(
        gw.get_as("/api/x", &hs).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A key marked `use: enc` does not verify signatures.
    let enc = SigningKey::ed25519("enc").mint(Alg::EdDSA, &claims("u"));
    assert_eq!(
        gw.get_as("/api/x", &enc).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn a_bad_refresh_keeps_the_last_good_keys() {
    let f = Fixture::start_with("refresh_interval = \"100ms\"", "").await;
    let token = f.token("alice");
    for bad in [
        JwksMode::Status(StatusCode::INTERNAL_SERVER_ERROR),
        JwksMode::Body("<html>maintenance</html>".into()),
        JwksMode::Body(r#"{"keys": [{"kty":"OKP""#.into()),
        JwksMode::Body(r#"{"keys": []}"#.into()),
    ] {
        f.jwks.set_mode(bad);
        let hits = f.jwks.hits();
        eventually(10, "a refresh against the broken issuer", async || {
            f.jwks.hits() > hits + 1
        })
        .await;
        let fresh = f.key.mint(Alg::EdDSA, &claims(&format!("u{hits}")));
        assert_eq!(f.gw.get_as("/api/x", &fresh).await.status, StatusCode::OK);
        assert_eq!(f.gw.get_as("/api/x", &token).await.status, StatusCode::OK);
    }
}
