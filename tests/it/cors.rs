//! CORS as a browser on the web app's origin sees it.

use http::{Method, StatusCode};

use crate::support::*;

const APP: &str = "http://localhost:3000";

async fn fixture() -> Fixture {
    Fixture::start_with(
        "",
        r#"
[cors]
allowed_origins = ["http://localhost:3000"]
expose_headers = ["x-request-id"]
"#,
    )
    .await
}

fn preflight<'a>(method: &'a str, headers: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("origin", APP),
        ("access-control-request-method", method),
        ("access-control-request-headers", headers),
    ]
}

#[tokio::test]
async fn a_preflight_is_answered_without_a_token_and_never_forwarded() {
    let f = fixture().await;
    let resp = send(
        f.gw.addr,
        Method::OPTIONS,
        "/api/tasks",
        &preflight("POST", "authorization, content-type"),
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    assert_eq!(resp.header("access-control-allow-origin"), Some(APP));
    let methods = resp.header("access-control-allow-methods").unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let headers = resp.header("access-control-allow-headers").unwrap();
    assert!(headers.contains("authorization"), "{headers}");
    assert_eq!(resp.header("access-control-max-age"), Some("600"));
    assert_eq!(resp.header("vary"), Some("Origin"));
    assert_eq!(f.upstream.hits(), 0);
}

#[tokio::test]
async fn a_preflight_from_another_origin_or_for_other_headers_is_refused() {
    let f = fixture().await;
    let mut evil = preflight("GET", "authorization");
    evil[0].1 = "http://evil.example";
    let resp = send(f.gw.addr, Method::OPTIONS, "/api/tasks", &evil, "").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.header("access-control-allow-origin"), None);
    let resp = send(
        f.gw.addr,
        Method::OPTIONS,
        "/api/tasks",
        &preflight("GET", "x-user-id"),
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let resp = send(
        f.gw.addr,
        Method::OPTIONS,
        "/api/tasks",
        &preflight("TRACE", ""),
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(f.upstream.hits(), 0);
}

#[tokio::test]
async fn actual_responses_and_gateway_errors_carry_the_allow_headers() {
    let f = fixture().await;
    let auth = format!("Bearer {}", f.token("alice"));
    let ok =
        f.gw.get("/api/tasks", &[("origin", APP), ("authorization", &auth)])
            .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        ok.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    // A 401 must be readable by the page, so it carries the headers too.
    let denied = f.gw.get("/api/tasks", &[("origin", APP)]).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(denied.header("access-control-allow-origin"), Some(APP));
    // Another origin gets nothing it could use.
    let other =
        f.gw.get(
            "/api/tasks",
            &[("origin", "http://evil.example"), ("authorization", &auth)],
        )
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn without_a_policy_options_is_an_ordinary_authenticated_request() {
    let f = Fixture::start().await;
    let resp = send(
        f.gw.addr,
        Method::OPTIONS,
        "/api/tasks",
        &preflight("GET", "authorization"),
        "",
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.upstream.hits(), 0);
}
