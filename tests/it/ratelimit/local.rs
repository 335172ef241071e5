//! Limits kept in the gateway's memory: the answers, the keys, reloads and config errors.

use http::StatusCode;
use portcullis::Config;

use super::{Parts, get_as};
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_user_over_the_limit_gets_429_with_headers_and_another_user_is_unaffected() {
    let parts = Parts::start().await;
    let tail = parts.route(
        "lim",
        "required",
        r#"{ key = "user", requests = 3, period = "1h" }"#,
    );
    let gw = parts.gateway("", &tail).await;
    let alice = parts.token("alice");

    // A token the gateway refuses spends nobody's budget, even one naming alice.
    let forged = SigningKey::ed25519_other("k1").mint(Alg::EdDSA, &claims("alice"));
    for _ in 0..5 {
        assert_eq!(
            gw.get_as("/lim", &forged).await.status,
            StatusCode::UNAUTHORIZED
        );
    }

    for left in [2, 1, 0] {
        let r = gw.get_as("/lim/x", &alice).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("ratelimit-policy"), Some(r#""user";q=3;w=3600"#));
        let limit = r.header("ratelimit").unwrap();
        assert!(
            limit.starts_with(&format!(r#""user";r={left};t="#)),
            "{limit}"
        );
    }
    let hits = parts.upstream.hits();
    let r = gw.get_as("/lim/x", &alice).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["error"], "rate_limited");
    // One request every 20 minutes comes back.
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1200).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.header("ratelimit-policy"), Some(r#""user";q=3;w=3600"#));
    assert!(
        r.header("ratelimit")
            .unwrap()
            .starts_with(r#""user";r=0;t="#)
    );
    assert_eq!(
        parts.upstream.hits(),
        hits,
        "a refused request is never forwarded"
    );

    let bob = gw.get_as("/lim/x", &parts.token("bob")).await;
    assert_eq!(bob.status, StatusCode::OK);
    assert!(
        bob.header("ratelimit")
            .unwrap()
            .starts_with(r#""user";r=2;"#)
    );

    let limited = r#"portcullis_rate_limit_total{route="lim",policy="user",result="limited"}"#;
    assert_eq!(gw.metric(limited).await, 1.0);
    let allowed = r#"portcullis_rate_limit_total{route="lim",policy="user",result="allowed"}"#;
    assert_eq!(gw.metric(allowed).await, 4.0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_limit_of_a_route_applies_and_the_tightest_speaks_in_ratelimit() {
    let parts = Parts::start().await;
    let tail = format!(
        "{}{}rate_limit_headers = false\n",
        parts.route(
            "two",
            "required",
            r#"{ key = "user", requests = 100, period = "1m" }, { key = "user", requests = 2, period = "1h" }"#,
        ),
        parts.route(
            "quiet",
            "required",
            r#"{ key = "user", requests = 1, period = "1h" }"#
        ),
    );
    let gw = parts.gateway("", &tail).await;
    let alice = parts.token("alice");
    let r = gw.get_as("/two", &alice).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""user";q=100;w=60, "user-2";q=2;w=3600"#)
    );
    assert!(
        r.header("ratelimit")
            .unwrap()
            .starts_with(r#""user-2";r=1;"#)
    );
    assert_eq!(gw.get_as("/two", &alice).await.status, StatusCode::OK);
    let r = gw.get_as("/two", &alice).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.header("ratelimit")
            .unwrap()
            .starts_with(r#""user-2";r=0;"#)
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_address_limits_believe_x_forwarded_for_only_from_a_trusted_proxy() {
    let parts = Parts::start().await;
    let tail = format!(
        "{}{}",
        parts.route(
            "pub",
            "public",
            r#"{ key = "client_ip", requests = 2, period = "1h" }"#
        ),
        parts.route(
            "opt",
            "optional",
            r#"{ key = "user", requests = 1, period = "1h" }"#
        ),
    );

    // Nobody trusted: a client cannot pick its key by sending X-Forwarded-For.
    let gw = parts.gateway("", &tail).await;
    let statuses = [
        gw.get("/pub", &[("x-forwarded-for", "198.51.100.1")])
            .await
            .status,
        gw.get("/pub", &[("x-forwarded-for", "198.51.100.2")])
            .await
            .status,
        gw.get("/pub", &[("x-forwarded-for", "198.51.100.3")])
            .await
            .status,
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // On an optional route an anonymous caller counts by address, a user as themselves.
    assert_eq!(gw.get("/opt", &[]).await.status, StatusCode::OK);
    assert_eq!(
        gw.get("/opt", &[]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        gw.get_as("/opt", &parts.token("alice")).await.status,
        StatusCode::OK
    );
    gw.shutdown().await;

    // Behind a trusted proxy, the address it vouches for is the key.
    let gw = parts
        .gateway("trusted_proxies = [\"127.0.0.1\"]", &tail)
        .await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(
        gw.get("/pub", &from("198.51.100.1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        gw.get("/pub", &from("198.51.100.1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        gw.get("/pub", &from("198.51.100.1")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        gw.get("/pub", &from("198.51.100.2")).await.status,
        StatusCode::OK
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_limit_is_one_budget_for_everyone_who_shares_the_claim() {
    let parts = Parts::start().await;
    let tail = parts.route(
        "org",
        "required",
        r#"{ key = "claim:org", requests = 1, period = "1h" }"#,
    );
    let gw = parts.gateway("", &tail).await;
    let member = |sub: &str, org: Option<&str>| {
        let mut c = claims(sub);
        if let Some(org) = org {
            c["org"] = serde_json::json!(org);
        }
        parts.key.mint(Alg::EdDSA, &c)
    };
    let status = async |token: String| gw.get_as("/org", &token).await.status;
    assert_eq!(status(member("ann", Some("acme"))).await, StatusCode::OK);
    // Another member of acme: the organisation's budget is spent.
    assert_eq!(
        status(member("ben", Some("acme"))).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(member("cat", Some("globex"))).await, StatusCode::OK);
    // No `org` claim: the user counts as themselves.
    assert_eq!(status(member("dan", None)).await, StatusCode::OK);
    assert_eq!(
        status(member("dan", None)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_counts_of_limits_it_does_not_change() {
    let parts = Parts::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    let config = |requests: u32, extra: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}{}{extra}",
            parts.provider(),
            parts.route(
                "lim",
                "required",
                &format!(r#"{{ key = "user", requests = {requests}, period = "1h" }}"#)
            ),
        )
    };
    std::fs::write(&path, config(2, "")).unwrap();
    let gw = portcullis::Gateway::start_from(path.clone()).await.unwrap();
    let alice = parts.token("alice");
    eventually(10, "ready", async || gw.is_ready()).await;
    let status = async || get_as(gw.proxy_addr(), "/lim", &alice).await.status;
    assert_eq!(status().await, StatusCode::OK);
    assert_eq!(status().await, StatusCode::OK);
    assert_eq!(status().await, StatusCode::TOO_MANY_REQUESTS);

    // Another route added: alice's spent budget stays spent.
    std::fs::write(&path, config(2, &parts.route("other", "required", ""))).unwrap();
    gw.reload().await.unwrap();
    assert_eq!(status().await, StatusCode::TOO_MANY_REQUESTS);

    // The limit itself changed: it starts afresh.
    std::fs::write(&path, config(3, "")).unwrap();
    gw.reload().await.unwrap();
    assert_eq!(status().await, StatusCode::OK);
    gw.shutdown().await;
}

#[test]
fn a_redis_store_without_a_redis_table_is_a_config_error() {
    let text = r#"
[[routes]]
name = "api"
prefix = "/api"
upstream = "http://127.0.0.1:1"
auth = "public"
rate_limits = [{ key = "user", requests = 10, period = "1m", store = "redis" }]
"#;
    let err = Config::from_toml(text, "t.toml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("rate_limits[0].store"), "{err}");
    assert!(err.contains("[redis]"), "{err}");
    // And a public route has no user to count by.
    assert!(err.contains("rate_limits[0].key"), "{err}");
    // Every mistake at once, each with its key.
    let text = r#"
[[routes]]
name = "api"
prefix = "/api"
upstream = "http://127.0.0.1:1"
auth = "public"
rate_limits = [
  { key = "email", requests = 10, period = "1m" },
  { key = "client_ip", requests = 0, period = "1m" },
  { key = "client_ip", requests = 10, period = "soon" },
  { key = "client_ip", requests = 10, period = "1m", burst = 0 },
  { key = "client_ip", requests = 10, period = "1m", on_store_error = "deny" },
]
"#;
    let err = Config::from_toml(text, "t.toml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    for key in [
        "rate_limits[0].key",
        "rate_limits[1].requests",
        "rate_limits[2].period",
        "rate_limits[3].burst",
        "rate_limits[4].on_store_error",
    ] {
        assert!(err.contains(key), "{key} missing from {err}");
    }
    let with_password = "[redis]\nurl = \"redis://:hunter2@127.0.0.1:6379\"\n";
    let err = Config::from_toml(with_password, "t.toml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("password_env"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password is never echoed: {err}"
    );
}
