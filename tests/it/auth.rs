//! Token verification as a client sees it: which tokens pass, which are refused, and
//! that a refused request never reaches the upstream.

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::keys::{b64, mint_with_header};
use crate::support::*;

#[tokio::test]
async fn every_better_auth_algorithm_is_accepted() {
    for alg in Alg::ALL {
        let key = SigningKey::for_alg(alg, "k1");
        let jwks = JwksServer::start(vec![key.jwk(None)]).await;
        let upstream = Upstream::start().await;
        let gw = TestGateway::start(&format!(
            "{}{}",
            provider_toml(&jwks.url(), ""),
            routes_toml(&upstream.url())
        ))
        .await;
        gw.wait_ready().await;

        let token = key.mint(alg, &claims("user-1"));
        let resp = gw.get_as("/api/tasks", &token).await;
        assert_eq!(resp.status, StatusCode::OK, "{alg:?}: {}", resp.text());
        let seen = upstream.last();
        assert_eq!(seen.one("x-user-id"), Some("user-1"), "{alg:?}");
        assert_eq!(
            seen.one("x-user-email"),
            Some("user-1@example.com"),
            "{alg:?}"
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn a_jwk_that_declares_its_alg_only_verifies_that_alg() {
    let key = SigningKey::rsa("k1");
    let jwks = JwksServer::start(vec![key.jwk(Some("RS256"))]).await;
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        provider_toml(&jwks.url(), ""),
        routes_toml(&upstream.url())
    ))
    .await;
    gw.wait_ready().await;

    let ok = gw
        .get_as("/api/x", &key.mint(Alg::RS256, &claims("u")))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let pss = gw
        .get_as("/api/x", &key.mint(Alg::PS256, &claims("u")))
        .await;
    assert_eq!(pss.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.hits(), 1);
}

/// Asserts a 401 `invalid_token` whose body and headers never echo the token.
fn assert_invalid(resp: &Resp, token: &str, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        resp.text()
    );
    let www = resp.header("www-authenticate").unwrap_or_default();
    assert!(
        www.starts_with("Bearer realm=\"portcullis\""),
        "{what}: {www}"
    );
    assert!(www.contains("error=\"invalid_token\""), "{what}: {www}");
    assert_eq!(resp.json()["error"], "invalid_token", "{what}");
    let sig = token.rsplit('.').next().unwrap();
    assert!(
        sig.len() < 4 || (!resp.text().contains(sig) && !www.contains(sig)),
        "{what}: the token is echoed"
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_and_never_reach_the_upstream() {
    let f = Fixture::start().await;
    let now = now();
    let sign = |c: serde_json::Value| f.key.mint(Alg::EdDSA, &c);
    let mut cases: Vec<(&str, String)> = Vec::new();

    // Tampered: a valid token whose payload is swapped for another user's.
    let good = f.token("alice");
    let mut parts: Vec<&str> = good.split('.').collect();
    let evil_payload = b64(claims("mallory").to_string());
    parts[1] = &evil_payload;
    cases.push(("tampered payload", parts.join(".")));
    let mut sig_flipped = good.clone();
    let last = sig_flipped.pop().unwrap();
    sig_flipped.push(if last == 'A' { 'B' } else { 'A' });
    cases.push(("tampered signature", sig_flipped));

    let mut c = claims("u");
    c["exp"] = json!(now - 60);
    cases.push(("expired", sign(c)));
    let mut c = claims("u");
    c["nbf"] = json!(now + 120);
    cases.push(("not yet valid", sign(c)));
    let mut c = claims("u");
    c["iat"] = json!(now + 120);
    cases.push(("issued in the future", sign(c)));
    let mut c = claims("u");
    c["iss"] = json!("http://evil.example");
    cases.push(("wrong issuer", sign(c)));
    let mut c = claims("u");
    c.as_object_mut().unwrap().remove("iss");
    cases.push(("no issuer", sign(c)));
    let mut c = claims("u");
    c["aud"] = json!("http://other-app.example");
    cases.push(("wrong audience", sign(c)));
    let mut c = claims("u");
    c.as_object_mut().unwrap().remove("aud");
    cases.push(("no audience", sign(c)));
    let mut c = claims("u");
    c.as_object_mut().unwrap().remove("sub");
    cases.push(("no sub", sign(c)));
    let mut c = claims("u");
    c["sub"] = json!("");
    cases.push(("empty sub", sign(c)));
    let mut c = claims("u");
    c["sub"] = json!(42);
    cases.push(("numeric sub", sign(c)));
    let mut c = claims("u");
    c["sub"] = json!("alice\r\nX-User-Id: bob");
    cases.push(("sub with CRLF", sign(c)));
    let mut c = claims("u");
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", sign(c)));
    let mut c = claims("u");
    c["exp"] = json!((now + 900).to_string());
    cases.push(("string exp", sign(c)));
    let mut c = claims("u");
    c["nbf"] = json!("0");
    cases.push(("string nbf", sign(c)));

    // alg none: no signature at all.
    let none = format!(
        "{}.{}.",
        b64(json!({"alg":"none","kid":"k1"}).to_string()),
        b64(claims("u").to_string())
    );
    cases.push(("alg none", none));
    let none_sig = mint_with_header(&json!({"alg":"none","kid":"k1"}), &claims("u"), |_| {
        b"x".to_vec()
    });
    cases.push(("alg none with junk signature", none_sig));
    // Algorithm confusion: HS256 keyed with the published public key, in every form a
    // confused verifier might use.
    for (what, secret) in [
        ("HS256 with the raw public key", f.key.public_raw.clone()),
        ("HS256 with the JWK x", b64(&f.key.public_raw).into_bytes()),
        (
            "HS256 with the JWK JSON",
            f.key.jwk(None).to_string().into_bytes(),
        ),
    ] {
        let t = jsonwebtoken::encode(
            &jsonwebtoken::Header {
                kid: Some("k1".into()),
                ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
            },
            &claims("u"),
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        cases.push((what, t));
    }
    // Key type confusion: an ES256 header pointing at the Ed25519 key.
    let p256 = SigningKey::p256("k1");
    cases.push((
        "ES256 against an Ed25519 kid",
        p256.mint(Alg::ES256, &claims("u")),
    ));
    // Unknown critical extension, and a token type that is not an access token.
    cases.push((
        "crit",
        mint_with_header(
            &json!({"alg":"EdDSA","kid":"k1","crit":["x"],"x":1}),
            &claims("u"),
            |m| f.key.sign(Alg::EdDSA, m),
        ),
    ));
    cases.push((
        "typ dpop+jwt",
        mint_with_header(
            &json!({"alg":"EdDSA","kid":"k1","typ":"dpop+jwt"}),
            &claims("u"),
            |m| f.key.sign(Alg::EdDSA, m),
        ),
    ));
    // An embedded `jwk` header naming the attacker's own key is ignored, never trusted.
    let other = SigningKey::ed25519_other("k1");
    cases.push((
        "embedded jwk",
        mint_with_header(
            &json!({"alg":"EdDSA","kid":"k1","jwk": other.jwk(None)}),
            &claims("u"),
            |m| other.sign(Alg::EdDSA, m),
        ),
    ));
    cases.push(("garbage", "not.a.jwt".into()));
    cases.push(("five parts (JWE shape)", "a.b.c.d.e".into()));

    for (what, token) in &cases {
        let resp = f.gw.get_as("/api/tasks", token).await;
        assert_invalid(&resp, token, what);
    }
    assert_eq!(
        f.upstream.hits(),
        0,
        "a refused request reached the upstream"
    );

    // The same valid token still works: the fixture is sound.
    assert_eq!(
        f.gw.get_as("/api/tasks", &good).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn missing_token_gets_a_bare_bearer_challenge() {
    let f = Fixture::start().await;
    for headers in [vec![], vec![("authorization", "Basic dTpw")]] {
        let resp = f.gw.get("/api/tasks", &headers).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Bearer realm=\"portcullis\"")
        );
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.json()["error"], "unauthorized");
    }
    assert_eq!(f.upstream.hits(), 0);
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let f = Fixture::start().await;
    let a = format!("Bearer {}", f.token("alice"));
    let b = format!("Bearer {}", f.token("bob"));
    let resp = send(
        f.gw.addr,
        Method::GET,
        "/api/tasks",
        &[("authorization", &a), ("authorization", &b)],
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.upstream.hits(), 0);
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let f = Fixture::start().await;
    let h = format!("bEARER {}", f.token("alice"));
    let resp = f.gw.get("/api/tasks", &[("authorization", &h)]).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(f.upstream.last().one("x-user-id"), Some("alice"));
}

#[tokio::test]
async fn optional_route_passes_anonymous_but_never_downgrades_a_bad_token() {
    let f = Fixture::start().await;
    let anon = f.gw.get("/opt/feed", &[("x-user-id", "admin")]).await;
    assert_eq!(anon.status, StatusCode::OK);
    assert_eq!(f.upstream.last().one("x-user-id"), None);

    let mut c = claims("alice");
    c["exp"] = json!(now() - 3600);
    let expired = f.key.mint(Alg::EdDSA, &c);
    let resp = f.gw.get_as("/opt/feed", &expired).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.upstream.hits(), 1);

    let ok = f.gw.get_as("/opt/feed", &f.token("alice")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(f.upstream.last().one("x-user-id"), Some("alice"));
}

#[tokio::test]
async fn public_route_ignores_tokens_and_still_strips_identity() {
    let f = Fixture::start().await;
    let resp =
        f.gw.get(
            "/public/info",
            &[("authorization", "Bearer garbage"), ("x-user-id", "admin")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(f.upstream.last().one("x-user-id"), None);
}

#[tokio::test]
async fn scopes_need_all_and_roles_need_any() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let upstream = Upstream::start().await;
    let tail = format!(
        r#"
[[routes]]
name = "admin"
prefix = "/admin"
upstream = "{up}"
roles = ["admin", "owner"]

[[routes]]
name = "write"
prefix = "/write"
upstream = "{up}"
scopes = ["tasks:write", "tasks:read"]
"#,
        up = upstream.url()
    );
    let gw = TestGateway::start(&format!(
        "{}{}{tail}",
        provider_toml(&jwks.url(), ""),
        routes_toml(&upstream.url())
    ))
    .await;
    gw.wait_ready().await;

    let with = |extra: serde_json::Value| {
        let mut c = claims("u");
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        key.mint(Alg::EdDSA, &c)
    };
    let cases = [
        ("/admin", json!({}), StatusCode::FORBIDDEN),
        ("/admin", json!({"role": "user"}), StatusCode::FORBIDDEN),
        ("/admin", json!({"role": "user,owner"}), StatusCode::OK),
        ("/admin", json!({"roles": ["admin"]}), StatusCode::OK),
        (
            "/write",
            json!({"scope": "tasks:write"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "/write",
            json!({"scope": "tasks:read tasks:write"}),
            StatusCode::OK,
        ),
        (
            "/write",
            json!({"scp": ["tasks:read", "tasks:write"]}),
            StatusCode::OK,
        ),
    ];
    for (path, extra, want) in cases {
        let resp = gw.get_as(path, &with(extra.clone())).await;
        assert_eq!(resp.status, want, "{path} {extra}");
        if want == StatusCode::FORBIDDEN {
            assert_eq!(
                resp.header("www-authenticate"),
                Some("Bearer realm=\"portcullis\", error=\"insufficient_scope\"")
            );
        }
    }
    assert_eq!(upstream.hits(), 4);
}

#[tokio::test]
async fn each_provider_verifies_only_its_own_tokens() {
    let ba = SigningKey::ed25519("k1");
    let other = SigningKey::ed25519_other("k2");
    let jwks_a = JwksServer::start(vec![ba.jwk(None)]).await;
    let jwks_b = JwksServer::start(vec![other.jwk(None)]).await;
    let upstream = Upstream::start().await;
    let body = format!(
        r#"{}
[[providers]]
name = "partner"
issuer = "https://partner.example"
jwks_url = "{}"

[[routes]]
name = "partner-only"
prefix = "/partner"
upstream = "{}"
providers = ["partner"]
{}"#,
        provider_toml(&jwks_a.url(), ""),
        jwks_b.url(),
        upstream.url(),
        routes_toml(&upstream.url())
    );
    let gw = TestGateway::start(&body).await;
    gw.wait_ready().await;

    let mut partner_claims = claims("p-user");
    partner_claims["iss"] = json!("https://partner.example");
    partner_claims.as_object_mut().unwrap().remove("aud");
    // The partner's token, signed by the partner's key: accepted where partners are.
    let partner_token = other.mint(Alg::EdDSA, &partner_claims);
    assert_eq!(
        gw.get_as("/partner/x", &partner_token).await.status,
        StatusCode::OK
    );
    assert_eq!(
        gw.get_as("/api/x", &partner_token).await.status,
        StatusCode::OK
    );
    // A Better Auth token on the partner-only route: refused.
    let ba_token = ba.mint(Alg::EdDSA, &claims("u"));
    assert_eq!(
        gw.get_as("/partner/x", &ba_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A token claiming the Better Auth issuer but signed with the partner's key: refused,
    // even though the partner's JWKS has that key.
    let forged = SigningKey::ed25519_other("k1").mint(Alg::EdDSA, &claims("admin"));
    assert_eq!(
        gw.get_as("/api/x", &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test]
async fn a_token_seen_again_is_still_checked_for_expiry() {
    let f = Fixture::start_with("leeway = \"0s\"", "").await;
    let mut c = claims("alice");
    c["exp"] = json!(now() + 2);
    let token = f.key.mint(Alg::EdDSA, &c);
    assert_eq!(f.gw.get_as("/api/x", &token).await.status, StatusCode::OK);
    // Poll until the cached verification lapses with the token's own exp.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = f.gw.get_as("/api/x", &token).await.status;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            std::time::Instant::now() < deadline,
            "an expired token kept passing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
