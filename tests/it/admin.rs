//! The admin listener's POSTs (`/reload`, `/revoke`) change what the gateway does: with
//! `server.admin_token_env` they need that token as a bearer token; without it, only a
//! peer on loopback may send them. The GETs (probes, metrics) stay open either way.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use http::{Method, StatusCode};

use crate::process::{Running, TempConfig};
use crate::support::*;

const TOKEN_ENV: &str = "PORTCULLIS_TEST_ADMIN_TOKEN";
const TOKEN: &str = "k7Qm2v9Xr4Lp8Zt1Wc6Ny3Bd";

fn config(label: &str, admin_listen: &str, token: bool, upstream: &str) -> TempConfig {
    let token = if token {
        format!("admin_token_env = \"{TOKEN_ENV}\"\n")
    } else {
        String::new()
    };
    TempConfig::new(
        label,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"{admin_listen}\"\n{token}\n\
             [[routes]]\nname = \"public\"\nprefix = \"/\"\nupstream = \"{upstream}\"\nauth = \"public\"\n"
        ),
    )
}

async fn revocations(admin: SocketAddr) -> String {
    let text = send(admin, Method::GET, "/metrics", &[], "").await.text();
    text.lines()
        .find(|l| l.starts_with("portcullis_revocations "))
        .unwrap_or_default()
        .to_owned()
}

async fn revoke(admin: SocketAddr, auth: Option<&str>) -> Resp {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    send(admin, Method::POST, "/revoke", &headers, r#"{"sub":"u1"}"#).await
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_posts_need_the_admin_token_and_the_gets_stay_open() {
    let upstream = Upstream::start().await;
    let config = config("admin-token", "127.0.0.1:0", true, &upstream.url());
    let gw = Running::start(&config, &["run"], &[(TOKEN_ENV, TOKEN)]).await;
    gw.wait_ready().await;
    let good = format!("Bearer {TOKEN}");
    let longer = format!("Bearer {TOKEN}x");
    let shorter = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let lower = format!("bearer {TOKEN}");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some(&*longer),
        Some(&*shorter),
        Some(&*lower),
    ] {
        let r = revoke(gw.admin, auth).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}: {}", r.text());
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer"))
        );
        let r = send(gw.admin, Method::POST, "/reload", &[], "").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Nothing was revoked by the refused calls.
    assert!(
        revocations(gw.admin).await.ends_with(" 0"),
        "{}",
        revocations(gw.admin).await
    );
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            send(gw.admin, Method::GET, path, &[], "").await.status,
            StatusCode::OK
        );
    }

    assert_eq!(
        revoke(gw.admin, Some(&good)).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(revocations(gw.admin).await.ends_with(" 1"));
    let r = send(
        gw.admin,
        Method::POST,
        "/reload",
        &[("authorization", &good)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let (_, stderr) = gw.stop().await;
    assert!(
        stderr.iter().all(|l| !l.contains(TOKEN)),
        "the admin token is logged"
    );
}

/// The address this host reaches the network from: not loopback.
fn outward_ip() -> IpAddr {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    // A documentation address: connecting a UDP socket only picks the route, sends nothing.
    socket.connect("192.0.2.1:9").expect("a non-loopback route");
    let ip = socket.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "{ip}");
    ip
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_admin_posts_are_taken_from_loopback_only() {
    let upstream = Upstream::start().await;
    let config = config("admin-loopback", "0.0.0.0:0", false, &upstream.url());
    let gw = Running::start(&config, &["run"], &[]).await;
    gw.wait_ready().await;
    let outside = SocketAddr::new(outward_ip(), gw.admin.port());

    let r = revoke(outside, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = send(outside, Method::POST, "/reload", &[], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        send(outside, Method::GET, "/readyz", &[], "").await.status,
        StatusCode::OK
    );
    assert!(revocations(outside).await.ends_with(" 0"));

    let local = SocketAddr::new("127.0.0.1".parse().unwrap(), gw.admin.port());
    assert_eq!(revoke(local, None).await.status, StatusCode::NO_CONTENT);
    assert!(revocations(local).await.ends_with(" 1"));
    gw.stop().await;
}

#[test]
fn check_refuses_a_missing_or_short_admin_token() {
    let config = config("admin-check", "127.0.0.1:0", true, "http://127.0.0.1:9");
    for (value, says) in [(None, "is not set"), (Some("short"), "shorter than")] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.arg("--config")
            .arg(&config.path)
            .arg("check")
            .env_remove(TOKEN_ENV);
        if let Some(v) = value {
            cmd.env(TOKEN_ENV, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("server.admin_token_env") && stderr.contains(says),
            "{stderr}"
        );
    }
}
