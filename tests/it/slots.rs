//! `server.max_upstream_requests`: requests past the bound wait in the gateway for a slot
//! to their upstream instead of each opening a socket to it, and the wait ends with the
//! same 504 as a slow answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::servers::serve;
use crate::support::{TestGateway, eventually, send};

/// An upstream that holds every request until its gate opens, counting how many it holds
/// at once.
struct GatedUpstream {
    url: String,
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
    _task: tokio::task::JoinHandle<()>,
}

impl GatedUpstream {
    async fn start() -> GatedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (gate, open) = watch::channel(false);
        let (n, m) = (now.clone(), most.clone());
        let task = serve(listener, move |_req: Request<Incoming>| {
            let (now, most, mut open) = (n.clone(), m.clone(), open.clone());
            async move {
                let held = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(held, Ordering::SeqCst);
                let _ = open.wait_for(|open| *open).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Response::new(Full::new(Bytes::from_static(b"ok")))
            }
        })
        .await;
        GatedUpstream {
            url,
            now,
            most,
            gate,
            _task: task,
        }
    }
}

/// Two public routes to one upstream.
fn routes(upstream: &str) -> String {
    format!(
        r#"
[[routes]]
name = "a"
prefix = "/a"
upstream = "{upstream}"
auth = "public"

[[routes]]
name = "b"
prefix = "/b"
upstream = "{upstream}"
auth = "public"
"#
    )
}

async fn gateway(server: &str, upstream: &str) -> TestGateway {
    let gw = TestGateway::start_with_server(server, &routes(upstream)).await;
    gw.wait_ready().await;
    gw
}

#[tokio::test]
async fn requests_past_the_bound_wait_for_a_slot_and_all_get_through() {
    let upstream = GatedUpstream::start().await;
    let gw = gateway(
        "max_upstream_requests = 2\nupstream_timeout = \"30s\"",
        &upstream.url,
    )
    .await;

    let mut clients = tokio::task::JoinSet::new();
    for i in 0..6 {
        // Two routes to one upstream share its slots.
        let path = if i % 2 == 0 { "/a/x" } else { "/b/y" };
        let addr = gw.addr;
        clients.spawn(async move { send(addr, Method::GET, path, &[], "").await.status });
    }
    eventually(10, "two requests held upstream, four queued", async || {
        upstream.now.load(Ordering::SeqCst) == 2
            && gw.metric("portcullis_upstream_queued ").await == 4.0
    })
    .await;
    assert_eq!(
        upstream.most.load(Ordering::SeqCst),
        2,
        "more requests reached the upstream than the bound allows"
    );

    upstream.gate.send_replace(true);
    while let Some(status) = clients.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    assert_eq!(upstream.most.load(Ordering::SeqCst), 2);
    assert_eq!(gw.metric("portcullis_upstream_queued ").await, 0.0);
}

/// An HTTP/1.1 upstream on a bare socket that sends the head and half the body of its
/// first answer at once and the other half when `gate` opens; later answers go out whole.
/// Counts the requests it reads.
async fn half_body_upstream(gate: watch::Receiver<bool>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (counter, mut gate) = (counter.clone(), gate.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        head.drain(..end + 4);
                        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        if first {
                            let _ = gate.wait_for(|open| *open).await;
                        }
                        if stream.write_all(b"cd").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, requests)
}

#[tokio::test]
async fn a_streaming_answer_holds_its_slot_and_a_request_left_waiting_is_a_504_in_time() {
    let (gate, open) = watch::channel(false);
    let (url, requests) = half_body_upstream(open).await;
    let gw = gateway(
        "max_upstream_requests = 1\nupstream_timeout = \"400ms\"",
        &url,
    )
    .await;

    // The first answer's head is through; its body is still streaming.
    let client = reqwest::Client::new();
    let streaming = client
        .get(format!("http://{}/a/stream", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(streaming.status(), StatusCode::OK);

    let start = Instant::now();
    let waiter = gw.get("/b/wait", &[]).await;
    assert_eq!(
        waiter.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        waiter.text()
    );
    assert_eq!(waiter.json()["error"], "gateway_timeout");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "the waiting request was forwarded"
    );

    // The stream ends, its slot is free, and the next request goes through.
    gate.send_replace(true);
    assert_eq!(streaming.text().await.unwrap(), "abcd");
    let after = gw.get("/b/after", &[]).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.text(), "abcd");
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[test]
fn a_bound_of_zero_is_a_config_error() {
    let text = format!(
        "[server]\nmax_upstream_requests = 0\n{}",
        routes("http://127.0.0.1:1")
    );
    let Err(err) = portcullis::Config::from_toml(&text, "t.toml", std::path::Path::new(".")) else {
        panic!("a bound of zero was accepted");
    };
    assert!(
        err.to_string().contains("server.max_upstream_requests"),
        "{err}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_slots_in_use_unless_the_bound_changes() {
    let (gate, open) = watch::channel(false);
    let (url, requests) = half_body_upstream(open).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    let config = |bound: usize| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             max_upstream_requests = {bound}\nupstream_timeout = \"400ms\"\n{}",
            routes(&url)
        )
    };
    std::fs::write(&path, config(1)).unwrap();
    let gw = portcullis::Gateway::start_from(path.clone()).await.unwrap();
    let addr = gw.proxy_addr();
    let streaming = reqwest::get(format!("http://{addr}/a/stream"))
        .await
        .unwrap();
    assert_eq!(streaming.status(), StatusCode::OK);

    // The same bound after a reload: the slot the stream holds still counts.
    gw.reload().await.unwrap();
    let waiter = send(addr, Method::GET, "/b/wait", &[], "").await;
    assert_eq!(waiter.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(requests.load(Ordering::SeqCst), 1);

    // A new bound starts afresh.
    std::fs::write(&path, config(2)).unwrap();
    gw.reload().await.unwrap();
    let after = send(addr, Method::GET, "/b/after", &[], "").await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(requests.load(Ordering::SeqCst), 2);

    gate.send_replace(true);
    assert_eq!(streaming.text().await.unwrap(), "abcd");
    gw.shutdown().await;
}
