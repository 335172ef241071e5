//! The access log of the real binary: its lines in both formats, written within the
//! flush interval with no more traffic, all of them on SIGTERM, and none when
//! `server.access_log = false`.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::Value;

use crate::process::{Running, run_config};
use crate::support::*;

const ACCESS: &str = "portcullis::access";

/// The binary between a JWKS server and an echo upstream (both kept for the test's
/// length), ready.
async fn start(
    label: &str,
    server_lines: &str,
    args: &[&str],
) -> (Running, SigningKey, Upstream, JwksServer) {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let upstream = Upstream::start().await;
    let config = run_config(
        label,
        &format!(
            "{server_lines}{}{}",
            provider_toml(&jwks.url(), ""),
            routes_toml(&upstream.url())
        ),
    );
    let gw = Running::start(&config, args, &[]).await;
    gw.wait_ready().await;
    (gw, key, upstream, jwks)
}

async fn get(gw: &Running, target: &str, auth: Option<&str>) -> StatusCode {
    let header = auth.map(|t| ("authorization", t));
    send(gw.proxy, Method::GET, target, header.as_slice(), "")
        .await
        .status
}

#[tokio::test(flavor = "multi_thread")]
async fn access_lines_are_written_within_a_second_without_more_traffic() {
    let (gw, key, _upstream, _jwks) = start("access-text", "", &["run"]).await;
    let token = key.mint(Alg::EdDSA, &claims("user-1"));
    let auth = format!("Bearer {token}");
    assert_eq!(get(&gw, "/api/tasks", Some(&auth)).await, StatusCode::OK);
    assert_eq!(get(&gw, "/public/page", None).await, StatusCode::OK);
    assert_eq!(
        get(&gw, "/api/tasks", Some("Bearer not.a.token")).await,
        StatusCode::UNAUTHORIZED
    );

    // Three lines are far from a full buffer: the timer writes them while the gateway
    // runs on, idle.
    let deadline = Instant::now() + Duration::from_secs(20);
    let access = loop {
        let access: Vec<String> = gw
            .lines()
            .into_iter()
            .filter(|l| l.contains(ACCESS))
            .collect();
        if access.len() >= 3 {
            break access;
        }
        assert!(
            Instant::now() < deadline,
            "access lines not written while running: {access:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let has = |parts: &[&str]| access.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has(&[
            " INFO portcullis::access: request method=GET",
            "path=\"/api/tasks\"",
            "route=\"api\"",
            "status=200",
            "user=\"user-1\""
        ]),
        "{access:#?}"
    );
    assert!(
        has(&[
            "path=\"/public/page\"",
            "route=\"public\"",
            "status=200",
            "user=\"-\""
        ]),
        "{access:#?}"
    );
    assert!(has(&["status=401", "user=\"-\""]), "{access:#?}");

    let metrics = send(gw.admin, Method::GET, "/metrics", &[], "")
        .await
        .text();
    assert!(
        metrics.contains("portcullis_access_log_dropped_total 0"),
        "{metrics}"
    );

    let (status, stderr) = gw.stop().await;
    assert!(status.success(), "{stderr:#?}");
    let sig = token.rsplit('.').next().unwrap();
    for line in &stderr {
        assert!(!line.contains(sig), "the token is logged: {line}");
        assert!(!line.contains("not.a.token"), "the token is logged: {line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_access_line_is_written_on_sigterm() {
    let (gw, key, _upstream, _jwks) =
        start("access-sigterm", "", &["--log-format", "json", "run"]).await;
    let auth = format!("Bearer {}", key.mint(Alg::EdDSA, &claims("user-7")));
    const N: usize = 150;
    for i in 0..N {
        assert_eq!(
            get(&gw, &format!("/api/item/{i}"), Some(&auth)).await,
            StatusCode::OK
        );
    }
    // Straight after the last answer: the last lines are still in memory.
    let (status, stderr) = gw.stop().await;
    assert!(status.success(), "{stderr:#?}");

    let mut seen = vec![0; N];
    for line in &stderr {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["target"] != ACCESS {
            continue;
        }
        assert_eq!(
            (&v["method"], &v["route"], &v["status"], &v["user"]),
            (&"GET".into(), &"api".into(), &200.into(), &"user-7".into()),
            "{line}"
        );
        let path = v["path"].as_str().unwrap();
        let i: usize = path.strip_prefix("/api/item/").unwrap().parse().unwrap();
        seen[i] += 1;
    }
    let wrong: Vec<_> = (0..N).filter(|&i| seen[i] != 1).collect();
    assert!(
        wrong.is_empty(),
        "requests without exactly one line: {wrong:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_false_writes_no_access_line() {
    let (gw, key, upstream, _jwks) = start("access-off", "access_log = false\n", &["run"]).await;
    let auth = format!("Bearer {}", key.mint(Alg::EdDSA, &claims("user-1")));
    assert_eq!(get(&gw, "/api/tasks", Some(&auth)).await, StatusCode::OK);
    assert_eq!(get(&gw, "/public/page", None).await, StatusCode::OK);
    assert_eq!(get(&gw, "/api/tasks", None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.hits(), 2);

    let (status, stderr) = gw.stop().await;
    assert!(status.success(), "{stderr:#?}");
    assert!(
        stderr.iter().any(|l| l.contains("portcullis listening")),
        "{stderr:#?}"
    );
    let access: Vec<_> = stderr.iter().filter(|l| l.contains(ACCESS)).collect();
    assert!(access.is_empty(), "{access:#?}");
}
