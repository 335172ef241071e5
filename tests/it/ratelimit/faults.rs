//! Redis killed, silent or full: each limit's `on_store_error` takes over, nothing
//! hangs, and the shared budget is back when Redis is.

use std::time::Duration;

use http::{Method, StatusCode};

use super::Parts;
use crate::support::redis::RedisServer;
use crate::support::*;

/// Three routes on one Redis, one per `on_store_error` policy, two requests a period.
fn policy_routes(parts: &Parts, redis_url: &str, timeout: &str) -> String {
    let limit = |policy: &str| {
        format!(
            r#"{{ key = "user", requests = 2, period = "1h", store = "redis", on_store_error = "{policy}" }}"#
        )
    };
    format!(
        "[redis]\nurl = \"{redis_url}\"\ntimeout = \"{timeout}\"\n{}{}{}",
        parts.route("local", "required", &limit("local")),
        parts.route("allow", "required", &limit("allow")),
        parts.route("deny", "required", &limit("deny")),
    )
}

/// What each policy does while the store fails, for a user new to the gateway: `local`
/// keeps the same limit locally, `allow` lets everything through, `deny` is a 503.
async fn assert_policies_apply(gw: &TestGateway, token: &str) {
    let mut seen = Vec::new();
    for path in ["/local", "/allow", "/deny"] {
        for _ in 0..3 {
            // A bound on the whole request: the timeout must hand over to the policy.
            let r = tokio::time::timeout(Duration::from_secs(10), gw.get_as(path, token))
                .await
                .unwrap_or_else(|_| panic!("{path} hung"));
            seen.push(r.status.as_u16());
        }
    }
    assert_eq!(seen, [200, 200, 429, 200, 200, 200, 503, 503, 503]);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_redis_hands_over_to_the_policy_and_its_return_shares_again() {
    let mut redis = RedisServer::start(&[]);
    let parts = Parts::start().await;
    let gw = parts
        .gateway("", &policy_routes(&parts, &redis.url(), "250ms"))
        .await;
    assert_eq!(
        gw.get_as("/deny", &parts.token("zoe")).await.status,
        StatusCode::OK
    );

    redis.kill();
    assert_policies_apply(&gw, &parts.token("carol")).await;
    assert_eq!(gw.metric("portcullis_rate_limit_store_up").await, 0.0);
    // Nine requests failed over; the switch is counted (and logged) once.
    let down = r#"portcullis_rate_limit_store_switches_total{result="down"}"#;
    assert_eq!(gw.metric(down).await, 1.0);

    redis.restart();
    let dave = parts.token("dave");
    eventually(15, "the shared store is used again", async || {
        gw.get_as("/deny", &dave).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(gw.metric("portcullis_rate_limit_store_up").await, 1.0);
    let up = r#"portcullis_rate_limit_store_switches_total{result="up"}"#;
    assert_eq!(gw.metric(up).await, 1.0);
    // Shared again: the count lives in Redis.
    assert_eq!(redis.int(&["DBSIZE"]), 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_never_answers_is_the_same_as_one_that_is_down() {
    // Accepts connections and never reads a byte.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/0", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let parts = Parts::start().await;
    let body = format!(
        "{}{}",
        parts.provider(),
        policy_routes(&parts, &url, "100ms")
    );
    let gw = TestGateway::start(&body).await;
    // Never ready: the revocation set cannot be loaded from a Redis that never answers.
    // It serves all the same once the keys are in.
    eventually(15, "keys loaded", async || {
        let r = send(gw.admin, Method::GET, "/readyz", &[], "").await;
        r.text() == r#"{"status":"waiting for the revocation set"}"#
    })
    .await;
    assert_policies_apply(&gw, &parts.token("erin")).await;
    let timeouts = r#"portcullis_rate_limit_store_errors_total{kind="timeout"}"#;
    assert!(gw.metric(timeouts).await >= 1.0);
    gw.shutdown().await;
    held.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_redis_applies_the_policy_and_never_answers_500() {
    let redis = RedisServer::start(&["--maxmemory-policy", "noeviction"]);
    let parts = Parts::start().await;
    let gw = parts
        .gateway("", &policy_routes(&parts, &redis.url(), "2s"))
        .await;
    // Fill it: a limit just above what it uses now, then data until writes are refused.
    let used: i64 = {
        let info = match redis.try_cmd(&["INFO", "memory"]).unwrap() {
            ::redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
            ::redis::Value::VerbatimString { text, .. } => text,
            other => panic!("INFO answered {other:?}"),
        };
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let max = (used + (1 << 20)).to_string();
    redis
        .try_cmd(&["CONFIG", "SET", "maxmemory", &max])
        .unwrap();
    // One connection fills it and stays open (its buffers count too), until even a
    // small write on a new connection is refused.
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut filler = client.get_connection().unwrap();
    let value = "x".repeat(8 * 1024);
    let mut i = 0;
    while redis.try_cmd(&["SET", "probe", "1"]).is_ok() {
        for _ in 0..16 {
            let _: ::redis::RedisResult<()> = ::redis::cmd("SET")
                .arg(format!("filler:{i}"))
                .arg(&value)
                .query(&mut filler);
            i += 1;
        }
        assert!(i < 10_000, "Redis never refused a write");
    }
    assert_policies_apply(&gw, &parts.token("frank")).await;
    let errors = r#"portcullis_rate_limit_store_errors_total{kind="error"}"#;
    assert!(gw.metric(errors).await >= 1.0);
    gw.shutdown().await;
    drop(filler);
}
