//! Providers beyond one JWKS URL: keys written inline or in a file (read again on
//! SIGHUP), several audiences, role and scope claims under other names, the rule of
//! exactly one key source, and the shipped recipes for other issuers.

use std::path::Path;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use portcullis::Config;
use portcullis::config::{JwksLocation, KeySource};
use serde_json::{Value, json};

use crate::process::{Running, TempConfig};
use crate::support::*;

fn jwks_of(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk(None)).collect::<Vec<_>>() }).to_string()
}

fn claims_for(iss: &str, aud: &str, sub: &str) -> Value {
    let mut c = claims(sub);
    c["iss"] = json!(iss);
    c["aud"] = json!(aud);
    c
}

#[tokio::test]
async fn inline_keys_verify_at_once_without_any_fetch() {
    let key = SigningKey::ed25519("k1");
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"
[[providers]]
name = "inline"
issuer = "{ISS}"
audiences = ["{ISS}"]
jwks = '''{}'''
{}"#,
        jwks_of(&[&key]),
        routes_toml(&upstream.url())
    ))
    .await;
    // Ready on the first probe: there is nothing to wait for.
    let ready = send(gw.admin, Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::OK);
    let resp = gw
        .get_as("/api/x", &key.mint(Alg::EdDSA, &claims("alice")))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(upstream.last().one("x-user-id"), Some("alice"));
    // Another key under the same kid, or an unknown kid: refused.
    let other = SigningKey::ed25519_other("k1").mint(Alg::EdDSA, &claims("eve"));
    assert_eq!(
        gw.get_as("/api/x", &other).await.status,
        StatusCode::UNAUTHORIZED
    );
    let unknown = SigningKey::ed25519_other("k9").mint(Alg::EdDSA, &claims("eve"));
    assert_eq!(
        gw.get_as("/api/x", &unknown).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(upstream.hits(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn any_of_several_audiences_is_accepted_and_no_other() {
    let key = SigningKey::ed25519("k1");
    let upstream = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"
[[providers]]
name = "multi"
issuer = "{ISS}"
audiences = ["https://api.example.com", "mobile-app"]
jwks = '''{}'''
{}"#,
        jwks_of(&[&key]),
        routes_toml(&upstream.url())
    ))
    .await;
    for (aud, want) in [
        (json!("https://api.example.com"), StatusCode::OK),
        (json!("mobile-app"), StatusCode::OK),
        (json!(["other", "mobile-app"]), StatusCode::OK),
        (json!("https://api.example.com/"), StatusCode::UNAUTHORIZED),
        (json!(["other"]), StatusCode::UNAUTHORIZED),
        (json!([]), StatusCode::UNAUTHORIZED),
    ] {
        let mut c = claims("alice");
        c["aud"] = aud.clone();
        let status = gw.get_as("/api/x", &key.mint(Alg::EdDSA, &c)).await.status;
        assert_eq!(status, want, "aud {aud}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn roles_and_scopes_come_from_the_claims_each_provider_names() {
    let key = SigningKey::ed25519("k1");
    let upstream = Upstream::start().await;
    let (auth0, keycloak) = (
        "https://tenant.eu.auth0.com/",
        "https://sso.example.com/realms/acme",
    );
    let jwks = jwks_of(&[&key]);
    let up = upstream.url();
    let gw = TestGateway::start(&format!(
        r#"
[[providers]]
name = "auth0"
issuer = "{auth0}"
audiences = ["api"]
jwks = '''{jwks}'''
roles_claim = "https://example.com/roles"
scopes_claim = "permissions"

[[providers]]
name = "keycloak"
issuer = "{keycloak}"
audiences = ["api"]
jwks = '''{jwks}'''
roles_claim = "realm_access.roles"

[[routes]]
name = "admin"
prefix = "/admin"
upstream = "{up}"
roles = ["admin"]

[[routes]]
name = "tasks"
prefix = "/tasks"
upstream = "{up}"
scopes = ["read:tasks"]
"#
    ))
    .await;
    let get = async |path: &str, iss: &str, extra: Value| {
        let mut c = claims_for(iss, "api", "alice");
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        gw.get_as(path, &key.mint(Alg::EdDSA, &c)).await.status
    };
    // A namespaced claim (Auth0 Actions): its dots and slashes are part of the name.
    let namespaced = json!({"https://example.com/roles": ["editor", "admin"]});
    assert_eq!(get("/admin", auth0, namespaced).await, StatusCode::OK);
    // Once a provider names its roles claim, the default `role`/`roles` are not read.
    let default_only = json!({"roles": ["admin"], "role": "admin"});
    assert_eq!(
        get("/admin", auth0, default_only.clone()).await,
        StatusCode::FORBIDDEN
    );
    // A nested claim (Keycloak realm roles).
    let nested = json!({"realm_access": {"roles": ["offline_access", "admin"]}});
    assert_eq!(get("/admin", keycloak, nested).await, StatusCode::OK);
    let nested_other = json!({"realm_access": {"roles": ["user"]}, "roles": ["admin"]});
    assert_eq!(
        get("/admin", keycloak, nested_other).await,
        StatusCode::FORBIDDEN
    );
    // Scopes: Auth0's RBAC `permissions` array for one provider, the default `scope`
    // string for the other.
    let perms = json!({"permissions": ["read:tasks"], "scope": "openid"});
    assert_eq!(get("/tasks", auth0, perms).await, StatusCode::OK);
    let scope_only = json!({"scope": "read:tasks"});
    assert_eq!(
        get("/tasks", auth0, scope_only.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(get("/tasks", keycloak, scope_only).await, StatusCode::OK);
    assert_eq!(upstream.hits(), 4);
    gw.shutdown().await;
}

fn problems(provider: &str) -> String {
    let text = format!(
        "[[providers]]\nname = \"idp\"\nissuer = \"https://idp.example.com\"\n{provider}\n"
    );
    match Config::from_toml(&text, "bad.toml", Path::new(".")) {
        Ok(_) => panic!("accepted:\n{provider}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_provider_has_exactly_one_valid_key_source() {
    let key = SigningKey::ed25519("k1");
    let cases = [
        (
            "jwks_url = \"https://idp.example.com/jwks\"\ndiscovery = true".to_owned(),
            "providers[0].discovery: provider `idp` sets both jwks_url and discovery",
        ),
        (
            format!(
                "discovery_url = \"https://idp.example.com/d\"\njwks = '''{}'''",
                jwks_of(&[&key])
            ),
            "providers[0].jwks: provider `idp` sets both discovery_url and jwks",
        ),
        (
            "jwks_file = \"k.json\"\nsecret_env = \"X\"".to_owned(),
            "providers[0].secret_env: provider `idp` sets both jwks_file and secret_env",
        ),
        (
            "discovery = false".to_owned(),
            "providers[0].jwks_url: provider `idp` has no keys: set one of jwks_url, discovery = true, discovery_url, jwks_file, jwks or secret_env",
        ),
        (
            "jwks_file = \"/nonexistent/portcullis-keys.json\"".to_owned(),
            "providers[0].jwks_file: cannot read /nonexistent/portcullis-keys.json",
        ),
        (
            "jwks = '''<html>'''".to_owned(),
            "providers[0].jwks: the JWKS is not a JSON object with a `keys` array",
        ),
        (
            r#"jwks = '''{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'''"#.to_owned(),
            "providers[0].jwks: the JWKS has no usable key",
        ),
        (
            format!(
                "jwks = '''{}'''\nalgorithms = [\"RS256\"]",
                jwks_of(&[&key])
            ),
            "providers[0].jwks: the JWKS has no usable key",
        ),
        (
            "discovery_url = \"http://idp.example.com/.well-known/openid-configuration\""
                .to_owned(),
            "providers[0].discovery_url: plain http is only allowed to a loopback host",
        ),
        (
            "discovery = true\nroles_claim = \"\"".to_owned(),
            "providers[0].roles_claim: must be a claim name",
        ),
    ];
    for (provider, want) in cases {
        let got = problems(&provider);
        assert!(got.contains(want), "{provider}\nwant {want}\ngot {got}");
        assert!(!got.contains("\"kty\""), "no key material in errors: {got}");
    }
    // Discovery needs an issuer it can build a URL from.
    let text = "[[providers]]\nname = \"idp\"\nissuer = \"acme\"\ndiscovery = true\n";
    let err = Config::from_toml(text, "bad.toml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("providers[0].discovery: the issuer `acme` is not an http(s) URL"),
        "{err}"
    );
}

/// A relative `jwks_file` resolves against the config file's folder; the keys are read
/// again on SIGHUP, and a file that no longer holds usable keys is refused as a whole
/// reload (the previous keys keep verifying).
#[tokio::test(flavor = "multi_thread")]
async fn file_keys_are_read_again_on_sighup() {
    let (a, b) = (SigningKey::ed25519("a"), SigningKey::ed25519_other("b"));
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys_path = dir.path().join("keys.json");
    std::fs::write(&keys_path, jwks_of(&[&a])).unwrap();
    let config = TempConfig {
        path: dir.path().join("portcullis.toml"),
    };
    std::fs::write(
        &config.path,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[providers]]
name = "file"
issuer = "{ISS}"
audiences = ["{ISS}"]
jwks_file = "keys.json"
{}"#,
            routes_toml(&upstream.url())
        ),
    )
    .unwrap();
    let gw = Running::start(&config, &["run"], &[]).await;
    gw.wait_ready().await;
    let status = async |key: &SigningKey| {
        let auth = format!("Bearer {}", key.mint(Alg::EdDSA, &claims("alice")));
        send(
            gw.proxy,
            Method::GET,
            "/api/x",
            &[("authorization", &auth)],
            "",
        )
        .await
        .status
    };
    assert_eq!(status(&a).await, StatusCode::OK);
    assert_eq!(status(&b).await, StatusCode::UNAUTHORIZED);

    // The operator rotates: the file now holds only key b, then SIGHUP.
    std::fs::write(&keys_path, jwks_of(&[&b])).unwrap();
    let hup = || {
        let pid = gw.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&b).await != StatusCode::OK {
        assert!(Instant::now() < deadline, "SIGHUP did not load the new key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&a).await, StatusCode::UNAUTHORIZED);

    // A file without usable keys: the reload is refused and key b keeps verifying.
    std::fs::write(&keys_path, r#"{"keys": []}"#).unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = send(gw.admin, Method::GET, "/metrics", &[], "")
            .await
            .text();
        if m.contains("portcullis_config_reloads_total{result=\"error\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refused reload was never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&b).await, StatusCode::OK);
    let (exit, stderr) = gw.stop().await;
    assert_eq!(exit.code(), Some(0));
    assert!(
        stderr.iter().any(|l| l.contains("config reload refused")
            && l.contains("providers[0].jwks_file")
            && l.contains("no usable key")),
        "{stderr:#?}"
    );
}

fn recipe(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config/providers/{name}.toml"));
    Config::load(&path).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The documented recipes for other issuers load, and say what their docs say.
#[test]
fn the_provider_recipes_load() {
    let auth0 = recipe("auth0");
    let p = &auth0.providers[0];
    assert_eq!(p.issuer, "https://example.eu.auth0.com/");
    let KeySource::Jwks(j) = &p.keys else {
        panic!("{p:?}")
    };
    assert_eq!(
        j.location,
        JwksLocation::Discovery {
            document: "https://example.eu.auth0.com/.well-known/openid-configuration"
                .parse()
                .unwrap(),
            issuer: p.issuer.clone(),
        }
    );
    assert_eq!(p.roles_claim.as_deref(), Some("https://example.com/roles"));
    assert_eq!(p.scopes_claim.as_deref(), Some("permissions"));
    assert_eq!(p.audiences, ["https://api.example.com"]);

    let keycloak = recipe("keycloak");
    let p = &keycloak.providers[0];
    let KeySource::Jwks(j) = &p.keys else {
        panic!("{p:?}")
    };
    assert!(
        matches!(&j.location, JwksLocation::Discovery { document, .. }
        if document.as_str() == "https://sso.example.com/realms/acme/.well-known/openid-configuration")
    );
    assert_eq!(p.roles_claim.as_deref(), Some("realm_access.roles"));

    let clerk = recipe("clerk");
    let p = &clerk.providers[0];
    assert!(matches!(&p.keys, KeySource::Jwks(j)
        if j.location == JwksLocation::Url("https://clerk.example.com/.well-known/jwks.json".parse().unwrap())));
    assert_eq!(p.roles_claim.as_deref(), Some("o.rol"));

    let supabase = recipe("supabase");
    let p = &supabase.providers[0];
    assert_eq!(p.issuer, "https://abcdefghijklmnop.supabase.co/auth/v1");
    assert_eq!(p.audiences, ["authenticated"]);
    assert_eq!(p.roles_claim.as_deref(), Some("user_role"));

    for c in [&auth0, &keycloak, &clerk, &supabase] {
        assert!(!c.routes.is_empty());
    }
}
