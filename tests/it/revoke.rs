//! Revocation on one gateway (no `[redis]`): `POST /revoke` by user, token and session,
//! enforced on the next request, cached token or not; entries that expire on their own.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// `POST /revoke` on the gateway's admin listener.
pub async fn revoke(admin: std::net::SocketAddr, body: &Value) -> Resp {
    send(
        admin,
        Method::POST,
        "/revoke",
        &[("content-type", "application/json")],
        &body.to_string(),
    )
    .await
}

fn claims_at(sub: &str, iat: i64, extra: Value) -> Value {
    let mut c = claims(sub);
    c["iat"] = json!(iat);
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

pub fn assert_revoked(resp: &Resp) {
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
    assert_eq!(
        resp.header("www-authenticate"),
        Some(r#"Bearer realm="portcullis", error="invalid_token", error_description="revoked""#)
    );
    assert_eq!(
        resp.json(),
        json!({"error": "invalid_token", "message": "invalid token: revoked"})
    );
}

#[tokio::test]
async fn a_revoked_user_is_refused_at_once_even_with_a_cached_token_and_a_new_sign_in_works() {
    let f = Fixture::start().await;
    let now = now();
    let old = f
        .key
        .mint(Alg::EdDSA, &claims_at("u1", now - 20, json!({})));
    let other = f
        .key
        .mint(Alg::EdDSA, &claims_at("u2", now - 20, json!({})));
    // Twice: the second answer comes from the verified-token cache.
    for _ in 0..2 {
        assert_eq!(f.gw.get_as("/api/x", &old).await.status, StatusCode::OK);
    }
    let hits = f.upstream.hits();

    let r = revoke(f.gw.admin, &json!({"sub": "u1", "before": now - 10})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());

    assert_revoked(&f.gw.get_as("/api/x", &old).await);
    assert_eq!(
        f.upstream.hits(),
        hits,
        "a revoked token never reaches the backend"
    );
    // The same user's token from a sign-in after the revocation, and another user's.
    let fresh = f
        .key
        .mint(Alg::EdDSA, &claims_at("u1", now - 10, json!({})));
    assert_eq!(f.gw.get_as("/api/x", &fresh).await.status, StatusCode::OK);
    assert_eq!(f.gw.get_as("/api/x", &other).await.status, StatusCode::OK);
    // An optional route never downgrades a revoked token to anonymous.
    assert_revoked(&f.gw.get_as("/opt/x", &old).await);

    assert_eq!(
        f.gw.metric(r#"portcullis_auth_total{provider="better-auth",outcome="revoked"}"#)
            .await,
        2.0
    );
    assert_eq!(f.gw.metric("portcullis_revocations ").await, 1.0);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn before_defaults_to_now() {
    let f = Fixture::start().await;
    let old = f
        .key
        .mint(Alg::EdDSA, &claims_at("u1", now() - 2, json!({})));
    assert_eq!(f.gw.get_as("/api/x", &old).await.status, StatusCode::OK);
    let r = revoke(f.gw.admin, &json!({"sub": "u1"})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_revoked(&f.gw.get_as("/api/x", &old).await);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn a_token_is_revoked_by_jti_and_a_session_by_the_providers_session_claim() {
    let f = Fixture::start_with("session_claim = \"sid\"", "").await;
    let now = now();
    let mint = |extra| f.key.mint(Alg::EdDSA, &claims_at("u1", now, extra));
    let (t1, t2) = (mint(json!({"jti": "t1"})), mint(json!({"jti": "t2"})));
    let (s1, s2) = (mint(json!({"sid": "s1"})), mint(json!({"sid": "s2"})));
    for t in [&t1, &t2, &s1, &s2] {
        assert_eq!(f.gw.get_as("/api/x", t).await.status, StatusCode::OK);
    }
    for body in [json!({"jti": "t1"}), json!({"sid": "s1"})] {
        assert_eq!(
            revoke(f.gw.admin, &body).await.status,
            StatusCode::NO_CONTENT
        );
    }
    assert_revoked(&f.gw.get_as("/api/x", &t1).await);
    assert_revoked(&f.gw.get_as("/api/x", &s1).await);
    assert_eq!(f.gw.get_as("/api/x", &t2).await.status, StatusCode::OK);
    assert_eq!(f.gw.get_as("/api/x", &s2).await.status, StatusCode::OK);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn a_malformed_revocation_is_refused_and_stores_nothing() {
    let f = Fixture::start().await;
    let json_type = [("content-type", "application/json")];
    for (body, want) in [
        ("{}", "give exactly one of sub, jti or sid"),
        (
            r#"{"sub":"u1","jti":"t1"}"#,
            "give exactly one of sub, jti or sid",
        ),
        (r#"{"user":"u1"}"#, "must be a JSON object"),
        (r#"{"sub":""}"#, "sub must be a non-empty string"),
        (r#"{"jti":"t1","before":1}"#, "before applies to sub only"),
        (
            r#"{"sub":"u1","before":"yesterday"}"#,
            "must be a JSON object",
        ),
        (r#"{"sub":"u1","before":99999999999}"#, "not in the future"),
        ("not json", "must be a JSON object"),
    ] {
        let r = send(f.gw.admin, Method::POST, "/revoke", &json_type, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(want), "{body}: {message}");
    }
    let r = send(f.gw.admin, Method::POST, "/revoke", &[], r#"{"sub":"u1"}"#).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = send(f.gw.admin, Method::GET, "/revoke", &[], "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(f.gw.metric("portcullis_revocations ").await, 0.0);
    let token = f.token("u1");
    assert_eq!(f.gw.get_as("/api/x", &token).await.status, StatusCode::OK);
    f.gw.shutdown().await;
}

#[tokio::test]
async fn an_entry_leaves_memory_once_no_token_it_could_refuse_is_valid() {
    let f = Fixture::start_with(
        "leeway = \"0s\"",
        "[revocation]\nmax_token_lifetime = \"1s\"\n",
    )
    .await;
    let r = revoke(f.gw.admin, &json!({"jti": "t1"})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(f.gw.metric("portcullis_revocations ").await, 1.0);
    eventually(10, "the entry expires", async || {
        f.gw.metric("portcullis_revocations ").await == 0.0
    })
    .await;
    f.gw.shutdown().await;
}
