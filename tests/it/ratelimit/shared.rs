//! One budget for every replica: three gateway processes on one real `redis-server`,
//! with a password, and over TLS.

use std::net::SocketAddr;

use http::StatusCode;
use tokio::task::JoinSet;

use super::{Parts, get_as};
use crate::process::{Running, run_config};
use crate::support::redis::RedisServer;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn three_gateway_processes_share_one_budget_and_redis_keys_expire() {
    let redis = RedisServer::start(&[]);
    let parts = Parts::start().await;
    let body = format!(
        "{}[redis]\nurl = \"{}\"\ntimeout = \"2s\"\n{}{}",
        parts.provider(),
        redis.url(),
        // "deny": a request Redis did not count is a 503, never a silent extra 200.
        parts.route(
            "shared",
            "required",
            r#"{ key = "user", requests = 10, period = "1h", store = "redis", on_store_error = "deny" }"#
        ),
        parts.route(
            "short",
            "required",
            r#"{ key = "user", requests = 5, period = "1s", store = "redis", on_store_error = "deny" }"#
        ),
    );
    let config = run_config("ratelimit-shared", &body);
    let mut gateways = Vec::new();
    for _ in 0..3 {
        let gw = Running::start(&config, &[], &[]).await;
        gw.wait_ready().await;
        gateways.push(gw);
    }
    let addrs: Vec<SocketAddr> = gateways.iter().map(|g| g.proxy).collect();

    // 30 requests from alice at once, spread over the three replicas.
    let alice = parts.token("alice");
    let mut set = JoinSet::new();
    for i in 0..30 {
        let (addr, token) = (addrs[i % 3], alice.clone());
        set.spawn(async move { get_as(addr, "/shared", &token).await.status });
    }
    let statuses = set.join_all().await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    // The limit is 10 with a burst of 10: one budget for all three, not three.
    assert_eq!((ok, limited), (10, 20), "{statuses:?}");
    for addr in &addrs {
        let r = get_as(*addr, "/shared", &parts.token("bob")).await;
        assert_eq!(r.status, StatusCode::OK, "another user is unaffected");
    }
    for addr in &addrs {
        assert_eq!(get_as(*addr, "/short", &alice).await.status, StatusCode::OK);
    }

    // Every key expires once its budget is whole again: the hour-long ones within the
    // hour, the one-second ones within seconds.
    let keys = redis.keys();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in &keys {
        assert!(key.starts_with("portcullis:rl:"), "{key}");
        let ttl = redis.int(&["PTTL", key]);
        assert!(ttl > 0 && ttl <= 3_600_000, "{key} PTTL {ttl}");
    }
    eventually(10, "the one-second keys expire", async || {
        redis.int(&["DBSIZE"]) == 2
    })
    .await;

    for gw in gateways {
        let (status, _) = gw.stop().await;
        assert!(status.success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_password_comes_from_the_environment_and_is_never_logged() {
    const PASSWORD: &str = "rl-test-password-7f3a";
    let redis = RedisServer::start(&["--requirepass", PASSWORD]);
    let parts = Parts::start().await;
    let body = format!(
        "{}[redis]\nurl = \"{}\"\npassword_env = \"PORTCULLIS_TEST_REDIS_PASSWORD\"\ntimeout = \"2s\"\n{}",
        parts.provider(),
        redis.url(),
        parts.route(
            "shared",
            "required",
            r#"{ key = "user", requests = 1, period = "1h", store = "redis", on_store_error = "deny" }"#
        ),
    );
    let config = run_config("ratelimit-password", &body);
    let gw = Running::start(
        &config,
        &[],
        &[("PORTCULLIS_TEST_REDIS_PASSWORD", PASSWORD)],
    )
    .await;
    gw.wait_ready().await;
    let alice = parts.token("alice");
    // Counted in Redis (a refused AUTH would be a 503 under "deny").
    assert_eq!(
        get_as(gw.proxy, "/shared", &alice).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_as(gw.proxy, "/shared", &alice).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let (status, lines) = gw.stop().await;
    assert!(status.success());
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|l| !l.contains(PASSWORD)),
        "the password reached the log"
    );
    // Without the password Redis refuses every command.
    let open = ::redis::Client::open(redis.url()).unwrap();
    let refused: ::redis::RedisResult<i64> = open
        .get_connection()
        .and_then(|mut c| ::redis::cmd("DBSIZE").query(&mut c));
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn rediss_speaks_tls_to_redis_trusting_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("redis.pem"), dir.path().join("redis.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let (cert_file, key_file) = (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    );
    let redis = RedisServer::start(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert_file,
        "--tls-key-file",
        &key_file,
        "--tls-ca-cert-file",
        &cert_file,
        "--tls-auth-clients",
        "no",
    ]);
    let parts = Parts::start().await;
    let tail = format!(
        "[redis]\nurl = \"rediss://127.0.0.1:{tls_port}/0\"\nca = \"{cert_file}\"\ntimeout = \"2s\"\n{}",
        parts.route(
            "shared",
            "required",
            r#"{ key = "user", requests = 1, period = "1h", store = "redis", on_store_error = "deny" }"#
        ),
    );
    let gw = parts.gateway("", &tail).await;
    let alice = parts.token("alice");
    assert_eq!(gw.get_as("/shared", &alice).await.status, StatusCode::OK);
    assert_eq!(
        gw.get_as("/shared", &alice).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The count went over TLS into this Redis.
    assert_eq!(redis.int(&["DBSIZE"]), 1);
    gw.shutdown().await;
}
