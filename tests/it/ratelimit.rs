//! Rate limits: local ones in an in-process gateway, shared ones through a real
//! `redis-server` (started on a free port, stopped by PID). The shared budget is checked
//! with three gateway processes, the way replicas run; the faults (Redis killed, Redis
//! that never answers, Redis out of memory) with an in-process gateway, whose metrics
//! and answers show what a user of it would notice.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use portcullis::Config;
use tokio::task::JoinSet;

use crate::process::{Running, run_config};
use crate::support::redis::RedisServer;
use crate::support::*;

/// A JWKS server, an echo upstream and the provider config that trusts the JWKS.
struct Parts {
    jwks: JwksServer,
    upstream: Upstream,
    key: SigningKey,
}

impl Parts {
    async fn start() -> Parts {
        let key = SigningKey::ed25519("k1");
        let jwks = JwksServer::start(vec![key.jwk(None)]).await;
        Parts {
            jwks,
            upstream: Upstream::start().await,
            key,
        }
    }

    fn token(&self, sub: &str) -> String {
        self.key.mint(Alg::EdDSA, &claims(sub))
    }

    fn provider(&self) -> String {
        provider_toml(&self.jwks.url(), "")
    }

    /// A route `name` at `/name` with these `rate_limits` entries.
    fn route(&self, name: &str, auth: &str, limits: &str) -> String {
        format!(
            "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}\"\nupstream = \"{}\"\n\
             auth = \"{auth}\"\nrate_limits = [{limits}]\n",
            self.upstream.url()
        )
    }

    async fn gateway(&self, server: &str, tail: &str) -> TestGateway {
        let gw =
            TestGateway::start_with_server(server, &format!("{}{tail}", self.provider())).await;
        gw.wait_ready().await;
        gw
    }
}

async fn get_as(addr: SocketAddr, path: &str, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    send(addr, Method::GET, path, &[("authorization", &auth)], "").await
}

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
