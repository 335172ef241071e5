//! Edge mode: Better Auth's signed session cookie as the credential. Cookies minted as
//! Better Auth 1.7 mints them (`jwt({ sessionCookieCache: true })`, strategy "jwt"):
//! accepted whole, chunked and `__Secure-`; refused as anything else; never confused
//! with a bearer token; `sid` never forwarded or logged; Better Auth's cookies kept from
//! the task service; and cross-site requests that change state refused.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::process::{Running, run_config};
use crate::support::keys::mint_with_header;
use crate::support::*;

const SESSION_TYP: &str = "better-auth.session-cache+jwt";
const SESSION_AUD: &str = "better-auth:session-cache";
const COOKIE: &str = "better-auth.session_data";
/// The gateway's own origin, as the edge config lists it.
const APP: &str = "http://app.test";

/// The session token a user's cookie carries as `sid` (Better Auth: 32 random chars).
fn sid(user: &str) -> String {
    format!("SeSsIoNtOkEn{user}0123456789abcdef")
}

/// The payload Better Auth signs into `session_data`: session, user, updatedAt, version,
/// then `sid`, `iat`, `exp`, `iss`, `aud` and `sub`.
fn session_claims(user: &str) -> Value {
    let now = now();
    json!({
        "session": {
            "id": format!("sess-{user}"), "token": sid(user), "userId": user,
            "expiresAt": "2099-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:00.000Z", "ipAddress": "127.0.0.1",
            "userAgent": "test",
        },
        "user": {
            "id": user, "email": format!("{user}@example.com"), "name": "Test User",
            "emailVerified": true, "image": null,
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
        },
        "updatedAt": now * 1000, "version": "1",
        "sid": sid(user), "iat": now, "exp": now + 300, "iss": ISS, "aud": SESSION_AUD,
        "sub": user,
    })
}

fn mint_session(key: &SigningKey, typ: &str, claims: &Value) -> String {
    mint_with_header(
        &json!({"alg": "EdDSA", "kid": key.kid, "typ": typ}),
        claims,
        |m| key.sign(Alg::EdDSA, m),
    )
}

/// `NAME=value`, or `NAME.0=..; NAME.1=..; ...` in pieces of `size`, listed in reverse
/// (the order a header holds them in must not matter).
fn cookie_header(name: &str, token: &str, size: Option<usize>) -> String {
    match size {
        None => format!("{name}={token}"),
        Some(size) => {
            let parts: Vec<String> = token
                .as_bytes()
                .chunks(size)
                .enumerate()
                .map(|(i, c)| format!("{name}.{i}={}", std::str::from_utf8(c).unwrap()))
                .rev()
                .collect();
            parts.join("; ")
        }
    }
}

/// The edge shape: the task service behind `/api/tasks` (header or session cookie), and
/// Better Auth's app behind `/api/auth` and `/` (public, its own cookies pass).
fn edge_toml(jwks: &str, tasks: &str, app: &str, sources: &str) -> String {
    format!(
        r#"{provider}
[cookies]
trusted_origins = ["{APP}"]

[[routes]]
name = "tasks"
prefix = "/api/tasks"
upstream = "{tasks}"
token_sources = {sources}

[[routes]]
name = "bearer-cookie"
prefix = "/api/machine"
upstream = "{tasks}"
token_sources = [{{ cookie = "access_token" }}]

[[routes]]
name = "auth"
prefix = "/api/auth"
upstream = "{app}"
auth = "public"
auth_server = true

[[routes]]
name = "app"
prefix = "/"
upstream = "{app}"
auth = "public"
auth_server = true

[identity]
# Even named here, `sid` and the session object are never copied into a header.
claim_headers = {{ email = "X-User-Email", sid = "X-Session-Id", session = "X-Session" }}
"#,
        provider = provider_toml(jwks, ""),
    )
}

struct Edge {
    _jwks: JwksServer,
    tasks: Upstream,
    app: Upstream,
    gw: TestGateway,
    key: SigningKey,
}

impl Edge {
    async fn start() -> Edge {
        Self::with_sources(r#"["authorization", "session_cookie"]"#).await
    }

    async fn with_sources(sources: &str) -> Edge {
        let key = SigningKey::ed25519("k1");
        let jwks = JwksServer::start(vec![key.jwk(None)]).await;
        let (tasks, app) = (Upstream::start().await, Upstream::start().await);
        let gw =
            TestGateway::start(&edge_toml(&jwks.url(), &tasks.url(), &app.url(), sources)).await;
        gw.wait_ready().await;
        Edge {
            _jwks: jwks,
            tasks,
            app,
            gw,
            key,
        }
    }

    fn session(&self, user: &str) -> String {
        mint_session(&self.key, SESSION_TYP, &session_claims(user))
    }

    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Resp {
        send(self.gw.addr, method, path, headers, "").await
    }
}

/// Nothing of the session reached the upstream: no header value holds `sid`, no header
/// is named after the session, and no Better Auth cookie is left.
fn assert_no_session_in(seen: &crate::support::servers::Seen, user: &str) {
    for (name, value) in &seen.headers {
        assert!(
            !value.contains(&sid(user)),
            "sid in upstream header {name}: {value}"
        );
        assert!(
            !name.eq_ignore_ascii_case("x-session-id") && !name.eq_ignore_ascii_case("x-session")
        );
    }
    for cookie in seen.all("cookie") {
        assert!(
            !cookie.contains("better-auth."),
            "Better Auth cookie forwarded: {cookie}"
        );
    }
}

#[tokio::test]
async fn better_auth_session_cookies_are_accepted_whole_chunked_and_secure() {
    let e = Edge::start().await;
    let token = e.session("alice");
    for (name, size) in [
        (COOKIE.to_owned(), None),
        (COOKIE.to_owned(), Some(100)),
        (format!("__Secure-{COOKIE}"), None),
        (format!("__Secure-{COOKIE}"), Some(64)),
    ] {
        let cookies = format!(
            "theme=dark; {}; better-auth.session_token={}.sig",
            cookie_header(&name, &token, size),
            sid("alice")
        );
        let resp = e
            .send(Method::GET, "/api/tasks", &[("cookie", &cookies)])
            .await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "{name} {size:?}: {}",
            resp.text()
        );
        let seen = e.tasks.last();
        assert_eq!(seen.one("x-user-id"), Some("alice"), "{name} {size:?}");
        assert_eq!(seen.one("x-user-email"), Some("alice@example.com"));
        // The other cookies reach the task service untouched.
        assert_eq!(seen.all("cookie"), ["theme=dark"], "{name} {size:?}");
        assert_no_session_in(&seen, "alice");
    }
}

#[tokio::test]
async fn anything_but_a_genuine_session_cookie_is_a_401_that_never_reaches_the_upstream() {
    let e = Edge::start().await;
    let good = e.session("alice");
    let mut claims = session_claims("alice");
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = session_claims("alice");
        edit(&mut c);
        c
    };
    let other_key = SigningKey::ed25519_other("k1");
    claims["aud"] = json!(ISS);
    let bearer_jwt = e.key.mint(Alg::EdDSA, &crate::support::claims("alice"));
    let tampered = {
        // One chunk of another user's cookie spliced in.
        let mallory = e.session("mallory");
        let (a, b) = (&good[..good.len() / 2], &mallory[mallory.len() / 2..]);
        format!("{COOKIE}.0={a}; {COOKIE}.1={b}")
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "typ JWT",
            cookie_header(
                COOKIE,
                &mint_session(&e.key, "JWT", &session_claims("alice")),
                None,
            ),
        ),
        (
            "no typ",
            cookie_header(
                COOKIE,
                &e.key.mint(Alg::EdDSA, &session_claims("alice")),
                None,
            ),
        ),
        (
            "bearer aud",
            cookie_header(COOKIE, &mint_session(&e.key, SESSION_TYP, &claims), None),
        ),
        (
            "wrong iss",
            cookie_header(
                COOKIE,
                &mint_session(
                    &e.key,
                    SESSION_TYP,
                    &with(&|c| c["iss"] = json!("http://evil.test")),
                ),
                None,
            ),
        ),
        (
            "sub is not the user",
            cookie_header(
                COOKIE,
                &mint_session(&e.key, SESSION_TYP, &with(&|c| c["sub"] = json!("admin"))),
                None,
            ),
        ),
        (
            "sid is not the session's",
            cookie_header(
                COOKIE,
                &mint_session(&e.key, SESSION_TYP, &with(&|c| c["sid"] = json!("other"))),
                None,
            ),
        ),
        (
            "no session id (it could not be revoked)",
            cookie_header(
                COOKIE,
                &mint_session(
                    &e.key,
                    SESSION_TYP,
                    &with(&|c| {
                        c["session"].as_object_mut().unwrap().remove("id");
                    }),
                ),
                None,
            ),
        ),
        (
            "signed by another key",
            cookie_header(
                COOKIE,
                &mint_session(&other_key, SESSION_TYP, &session_claims("alice")),
                None,
            ),
        ),
        (
            "a bearer JWT in the cookie",
            cookie_header(COOKIE, &bearer_jwt, None),
        ),
        ("tampered chunk", tampered),
        ("missing chunk", {
            let all = cookie_header(COOKIE, &good, Some(100));
            all.split("; ")
                .filter(|c| !c.starts_with(&format!("{COOKIE}.1=")))
                .collect::<Vec<_>>()
                .join("; ")
        }),
        ("sent twice", format!("{COOKIE}={good}; {COOKIE}={good}")),
    ];
    for (what, cookie) in cases {
        let resp = e
            .send(Method::GET, "/api/tasks", &[("cookie", &cookie)])
            .await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            resp.text()
        );
        assert_eq!(resp.json()["error"], "invalid_token", "{what}");
    }
    assert_eq!(e.tasks.hits(), 0);
}

/// The verified-token cache keeps the two kinds apart: a token accepted as one kind is
/// not found there as the other.
#[tokio::test]
async fn a_session_cookie_is_never_a_bearer_token_nor_the_reverse_even_once_cached() {
    let e = Edge::start().await;
    let session = e.session("alice");
    let cookie = cookie_header(COOKIE, &session, None);
    let resp = e
        .send(Method::GET, "/api/tasks", &[("cookie", &cookie)])
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let resp = e.gw.get_as("/api/tasks", &session).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());

    let bearer = e.key.mint(Alg::EdDSA, &crate::support::claims("bob"));
    assert_eq!(
        e.gw.get_as("/api/tasks", &bearer).await.status,
        StatusCode::OK
    );
    let cookie = cookie_header(COOKIE, &bearer, None);
    let resp = e
        .send(Method::GET, "/api/tasks", &[("cookie", &cookie)])
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
    assert_eq!(e.tasks.hits(), 2);

    // A named cookie that carries a bearer token takes bearer tokens only.
    let resp = e
        .send(
            Method::GET,
            "/api/machine",
            &[("cookie", &format!("access_token={bearer}"))],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(e.tasks.last().one("x-user-id"), Some("bob"));
    let resp = e
        .send(
            Method::GET,
            "/api/machine",
            &[("cookie", &format!("access_token={session}"))],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_first_source_present_wins_and_a_bad_one_is_never_passed_over() {
    let e = Edge::start().await;
    let cookie = cookie_header(COOKIE, &e.session("alice"), None);
    let bearer = format!(
        "Bearer {}",
        e.key.mint(Alg::EdDSA, &crate::support::claims("bob"))
    );

    // Authorization comes first in this route's list: its token speaks, the cookie is
    // not read (and still never forwarded).
    let resp = e
        .send(
            Method::GET,
            "/api/tasks",
            &[("cookie", &cookie), ("authorization", &bearer)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(e.tasks.last().one("x-user-id"), Some("bob"));
    assert_eq!(e.tasks.last().one("authorization"), Some(bearer.as_str()));
    assert_no_session_in(&e.tasks.last(), "alice");

    // A bad bearer beside a good cookie is a 401, not a fall back to the cookie.
    for bad in ["Bearer not.a.jwt", "Bearer", "Bearer a b"] {
        let resp = e
            .send(
                Method::GET,
                "/api/tasks",
                &[("cookie", &cookie), ("authorization", bad)],
            )
            .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    assert_eq!(e.tasks.hits(), 1);

    // Another scheme is no bearer token: the cookie authenticates, and the unverified
    // Authorization never reaches the backend.
    let resp = e
        .send(
            Method::GET,
            "/api/tasks",
            &[("cookie", &cookie), ("authorization", "Basic dTpw")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(e.tasks.last().one("x-user-id"), Some("alice"));
    assert_eq!(e.tasks.last().one("authorization"), None);
}

#[tokio::test]
async fn with_the_cookie_listed_first_it_wins_and_the_header_is_not_forwarded() {
    let e = Edge::with_sources(r#"["session_cookie", "authorization"]"#).await;
    let cookie = cookie_header(COOKIE, &e.session("alice"), None);
    let bearer = format!(
        "Bearer {}",
        e.key.mint(Alg::EdDSA, &crate::support::claims("bob"))
    );
    let resp = e
        .send(
            Method::GET,
            "/api/tasks",
            &[("cookie", &cookie), ("authorization", &bearer)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(e.tasks.last().one("x-user-id"), Some("alice"));
    assert_eq!(e.tasks.last().one("authorization"), None);
    // A bad cookie is a 401 even beside a good bearer token.
    let bad = format!("{COOKIE}=not.a.jwt");
    let resp = e
        .send(
            Method::GET,
            "/api/tasks",
            &[("cookie", &bad), ("authorization", &bearer)],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_missing_or_expired_session_cookie_is_a_401_a_page_can_act_on() {
    let e = Edge::start().await;
    let resp = e
        .send(Method::GET, "/api/tasks", &[("cookie", "theme=dark")])
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json()["error"], "session_missing");
    assert_eq!(resp.header("cache-control"), Some("no-store"));

    let mut claims = session_claims("alice");
    claims["iat"] = json!(now() - 400);
    claims["exp"] = json!(now() - 100);
    let expired = cookie_header(COOKIE, &mint_session(&e.key, SESSION_TYP, &claims), None);
    let resp = e
        .send(Method::GET, "/api/tasks", &[("cookie", &expired)])
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json()["error"], "session_expired");
    assert!(!resp.text().contains(&sid("alice")));
    assert_eq!(e.tasks.hits(), 0);
}

#[tokio::test]
async fn better_auth_cookies_pass_unchanged_to_the_auth_server_only() {
    let e = Edge::start().await;
    let cookies = format!(
        "better-auth.session_token={}.sig; {}; better-auth.dont_remember=true.sig; theme=dark",
        sid("alice"),
        cookie_header(COOKIE, &e.session("alice"), Some(200))
    );
    for path in ["/api/auth/get-session", "/tasks"] {
        let resp = e.send(Method::GET, path, &[("cookie", &cookies)]).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(e.app.last().all("cookie"), [cookies.as_str()], "{path}");
        assert_eq!(e.app.last().one("x-user-id"), None);
    }
    let resp = e
        .send(Method::GET, "/api/tasks", &[("cookie", &cookies)])
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(e.tasks.last().all("cookie"), ["theme=dark"]);
}

#[tokio::test]
async fn cross_site_writes_with_the_cookie_are_refused_and_never_reach_the_task_service() {
    let e = Edge::start().await;
    let cookie = cookie_header(COOKIE, &e.session("alice"), None);
    let c = ("cookie", cookie.as_str());

    for (what, headers) in [
        (
            "cross-site",
            vec![
                c,
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://evil.test"),
            ],
        ),
        (
            "same-site",
            vec![
                c,
                ("sec-fetch-site", "same-site"),
                ("origin", "http://x.app.test"),
            ],
        ),
        ("unlisted origin", vec![c, ("origin", "http://evil.test")]),
        (
            "unlisted referer",
            vec![c, ("referer", "http://evil.test/form")],
        ),
        ("no sign at all", vec![c]),
    ] {
        let resp = e.send(Method::POST, "/api/tasks", &headers).await;
        assert_eq!(
            resp.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            resp.text()
        );
        assert_eq!(resp.json()["error"], "cross_site_request", "{what}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }
    assert_eq!(
        e.tasks.hits(),
        0,
        "a refused write reached the task service"
    );

    for (what, method, headers) in [
        (
            "same-origin POST",
            Method::POST,
            vec![c, ("sec-fetch-site", "same-origin")],
        ),
        (
            "listed origin DELETE",
            Method::DELETE,
            vec![c, ("origin", APP)],
        ),
        (
            "listed referer PATCH",
            Method::PATCH,
            vec![c, ("referer", "http://app.test/tasks")],
        ),
        ("GET without Origin", Method::GET, vec![c]),
        (
            "cross-site GET",
            Method::GET,
            vec![c, ("sec-fetch-site", "cross-site")],
        ),
    ] {
        let resp = e.send(method.clone(), "/api/tasks/1", &headers).await;
        assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.text());
        assert_eq!(e.tasks.last().method, method.as_str(), "{what}");
        assert_eq!(e.tasks.last().one("x-user-id"), Some("alice"), "{what}");
    }

    // A bearer token is never sent by the browser on its own: no CSRF check.
    let bearer = format!(
        "Bearer {}",
        e.key.mint(Alg::EdDSA, &crate::support::claims("bob"))
    );
    let resp = e
        .send(
            Method::POST,
            "/api/tasks",
            &[
                ("authorization", &bearer),
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://evil.test"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(e.tasks.last().one("x-user-id"), Some("bob"));
}

/// The binary at debug level, fed accepted, refused and cross-site cookie requests:
/// neither the session token (`sid`) nor the cookie's signature is in any log line.
#[tokio::test(flavor = "multi_thread")]
async fn the_session_token_is_never_in_the_gateways_logs() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let (tasks, app) = (Upstream::start().await, Upstream::start().await);
    let sources = r#"["authorization", "session_cookie"]"#;
    let config = run_config(
        "session-logs",
        &edge_toml(&jwks.url(), &tasks.url(), &app.url(), sources),
    );
    let gw = Running::start(&config, &["run"], &[]).await;
    gw.wait_ready().await;

    let good = mint_session(&key, SESSION_TYP, &session_claims("alice"));
    let mut expired = session_claims("alice");
    expired["exp"] = json!(now() - 100);
    let expired = mint_session(&key, SESSION_TYP, &expired);
    let wrong_typ = mint_session(&key, "JWT", &session_claims("alice"));
    for (method, cookie, extra, want) in [
        (
            Method::GET,
            cookie_header(COOKIE, &good, Some(90)),
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            cookie_header(COOKIE, &expired, None),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            cookie_header(COOKIE, &wrong_typ, None),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::POST,
            cookie_header(COOKIE, &good, None),
            Some(("sec-fetch-site", "cross-site")),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let session_token = format!("better-auth.session_token={}.sig", sid("alice"));
        let cookie = format!("{cookie}; {session_token}");
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend(extra);
        let resp = send(gw.proxy, method, "/api/tasks", &headers, "").await;
        assert_eq!(resp.status, want, "{}", resp.text());
    }
    let resp = send(
        gw.proxy,
        Method::GET,
        "/api/tasks",
        &[("authorization", &format!("Bearer {good}"))],
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);

    let (status, stderr) = gw.stop().await;
    assert_eq!(status.code(), Some(0), "{stderr:#?}");
    assert!(
        stderr.iter().any(|l| l.contains("refused")),
        "no debug lines: {stderr:#?}"
    );
    let signature = good.rsplit('.').next().unwrap();
    for line in &stderr {
        assert!(!line.contains(&sid("alice")), "sid is logged: {line}");
        assert!(!line.contains(signature), "the cookie is logged: {line}");
    }
    assert_no_session_in(&tasks.last(), "alice");
}

#[test]
fn cookie_settings_that_cannot_work_are_named_at_load() {
    let text = format!(
        r#"{provider}
[cookies]
session_cookie = "__Secure-better-auth.session_data"
strip = ["bad name"]
trusted_origins = ["http://app.test/path"]

[[routes]]
name = "app"
prefix = "/"
upstream = "http://127.0.0.1:1"
auth = "public"
token_sources = ["session_cookie", "session_cookie"]
"#,
        provider = provider_toml("http://127.0.0.1:1/jwks", "")
    );
    let err = portcullis::Config::from_toml(&text, "edge.toml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    for want in [
        "cookies.session_cookie: write `__Secure-better-auth.session_data` without its prefix",
        "cookies.strip: `bad name` is not a cookie name",
        "cookies.trusted_origins: `http://app.test/path` is not an origin",
        "routes[0].token_sources: \"session_cookie\" is listed twice",
        "routes[0].token_sources: a public route takes no token",
    ] {
        assert!(err.contains(want), "no `{want}` in\n{err}");
    }
}

#[test]
fn a_named_bearer_cookie_is_read_by_its_exact_name_prefix_included() {
    let text = format!(
        r#"{provider}
[[routes]]
name = "api"
prefix = "/api"
upstream = "http://127.0.0.1:1"
token_sources = [{{ cookie = "__Host-access_token" }}, "authorization"]
"#,
        provider = provider_toml("http://127.0.0.1:1/jwks", "")
    );
    let config = portcullis::Config::from_toml(&text, "edge.toml", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.routes[0].token_sources,
        [
            portcullis::config::TokenSource::Cookie("__Host-access_token".into()),
            portcullis::config::TokenSource::Authorization,
        ]
    );
}

/// A revocation by session reaches the cookie of that session (by `session.id`, the id
/// the app's JWTs carry as their session claim), even once cached, and no other session;
/// the cookie's `sid` (the session's token) names nothing. A revoked user's cookie too.
#[tokio::test]
async fn a_revoked_session_or_user_is_refused_by_cookie_too() {
    let e = Edge::start().await;
    let cookie = |user: &str| format!("{COOKIE}={}", e.session(user));
    let (alice, bob) = (cookie("alice"), cookie("bob"));
    // Issued before the revocation below (which names whole seconds).
    let mut earlier = session_claims("carol");
    earlier["iat"] = json!(now() - 2);
    let carol = format!("{COOKIE}={}", mint_session(&e.key, SESSION_TYP, &earlier));
    for c in [&alice, &bob, &carol] {
        let r = e.send(Method::GET, "/api/tasks", &[("cookie", c)]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }

    let by_token = crate::revoke::revoke(e.gw.admin, &json!({ "sid": sid("alice") })).await;
    assert_eq!(by_token.status, StatusCode::NO_CONTENT);
    let r = e
        .send(Method::GET, "/api/tasks", &[("cookie", &alice)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "the session token is not its id");

    let by_id = crate::revoke::revoke(e.gw.admin, &json!({ "sid": "sess-alice" })).await;
    assert_eq!(by_id.status, StatusCode::NO_CONTENT);
    let by_user = crate::revoke::revoke(e.gw.admin, &json!({ "sub": "carol" })).await;
    assert_eq!(by_user.status, StatusCode::NO_CONTENT);
    for (c, want) in [
        (&alice, StatusCode::UNAUTHORIZED),
        (&bob, StatusCode::OK),
        (&carol, StatusCode::UNAUTHORIZED),
    ] {
        let r = e.send(Method::GET, "/api/tasks", &[("cookie", c)]).await;
        assert_eq!(r.status, want, "{}", r.text());
        if want == StatusCode::UNAUTHORIZED {
            let challenge = r.header("www-authenticate").unwrap_or_default();
            assert!(challenge.contains("revoked"), "{challenge}");
        }
    }
}
