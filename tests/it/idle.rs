//! Idle keep-alive connections are parked between requests (hyper's buffers released):
//! a parked connection serves its next request as if nothing happened, and no byte a
//! client sends is lost or read as the start of a request because of it.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Longer than the gateway waits before it parks a quiet connection.
const QUIET: Duration = Duration::from_millis(400);

/// Reads one HTTP/1.1 response with a `Content-Length` body: (status, head, body).
async fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap() == 0 {
                panic!(
                    "connection closed mid-head: {}",
                    String::from_utf8_lossy(&buf)
                );
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf.clone()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .expect("a content-length");
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head, String::from_utf8(body).unwrap())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response in time")
}

fn get(path: &str, token: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
}

async fn parked(gw: &TestGateway) -> f64 {
    gw.metric("portcullis_connections_parked ").await
}

#[tokio::test]
async fn a_parked_connection_serves_its_next_request_with_the_new_identity() {
    let f = Fixture::start().await;
    let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
    s.write_all(get("/api/one", &f.token("alice")).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    eventually(10, "the quiet connection to be parked", async || {
        parked(&f.gw).await == 1.0
    })
    .await;
    assert_eq!(f.gw.metric("portcullis_connections_open ").await, 1.0);

    s.write_all(get("/api/two", &f.token("bob")).as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!(status, 200, "{body}");
    let seen = f.upstream.last();
    assert_eq!(seen.target, "/api/two");
    assert_eq!(seen.one("x-user-id"), Some("bob"));
    assert_eq!(f.upstream.hits(), 2);

    // Parked again, and gone from the gauges once the client leaves.
    eventually(10, "the connection to be parked again", async || {
        parked(&f.gw).await == 1.0
    })
    .await;
    drop(s);
    eventually(
        10,
        "the closed connection to leave the gauges",
        async || {
            parked(&f.gw).await == 0.0 && f.gw.metric("portcullis_connections_open ").await == 0.0
        },
    )
    .await;
}

#[tokio::test]
async fn a_request_head_split_by_a_pause_is_served_whole() {
    let f = Fixture::start().await;
    let request = get("/api/split", &f.token("alice"));
    let (first, rest) = request.split_at(40);
    let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
    // A finished request and the start of the next one in one write (pipelining), then
    // a pause long enough to park, then the rest.
    s.write_all(format!("{}{first}", get("/api/before", &f.token("bob"))).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    tokio::time::sleep(QUIET).await;
    s.write_all(rest.as_bytes()).await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!(status, 200, "{body}");
    let seen = f.upstream.last();
    assert_eq!(seen.target, "/api/split");
    assert_eq!(seen.one("x-user-id"), Some("alice"));
    assert_eq!(f.upstream.hits(), 2);
}

#[tokio::test]
async fn a_slow_request_body_is_never_cut_into_a_request() {
    let f = Fixture::start().await;
    let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
    // The second half of the body is a request a client might want smuggled past the
    // gateway: sent after a pause, it must still be read as body.
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: x\r\nX-User-Id: mallory\r\n\r\n";
    let head = format!(
        "POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        10 + smuggled.len()
    );
    s.write_all(format!("{head}0123456789").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(QUIET).await;
    s.write_all(smuggled.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    let seen = f.upstream.last();
    assert_eq!(seen.target, "/public/upload");
    assert_eq!(seen.body_len, 10 + smuggled.len());
    assert!(seen.body_complete);

    // The connection goes on with the next request, and nothing else was forwarded.
    s.write_all(get("/api/after", &f.token("alice")).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    let targets: Vec<String> = f.upstream.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/public/upload", "/api/after"]);
}

#[tokio::test]
async fn a_body_the_gateway_left_unread_is_never_read_as_a_request() {
    let f = Fixture::start().await;
    let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    // No token: refused before the body is read.
    let head = format!(
        "POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        10 + smuggled.len()
    );
    s.write_all(format!("{head}0123456789").as_bytes())
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut s).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED.as_u16());
    assert!(head.to_ascii_lowercase().contains("connection: close"));
    tokio::time::sleep(QUIET).await;
    // Whatever the socket does with the rest, it never becomes a request.
    let _ = s.write_all(smuggled.as_bytes()).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1"),
        "a second answer came: {}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(f.upstream.hits(), 0);
}

#[tokio::test]
async fn many_idle_connections_are_all_parked_and_all_still_served() {
    let f = Fixture::start().await;
    let token = f.token("alice");
    let mut conns = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(f.gw.addr).await.unwrap();
        s.write_all(get(&format!("/api/first/{i}"), &token).as_bytes())
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.0, 200);
        conns.push(s);
    }
    eventually(10, "every idle connection to be parked", async || {
        parked(&f.gw).await == 200.0
    })
    .await;
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(get(&format!("/api/second/{i}"), &token).as_bytes())
            .await
            .unwrap();
        assert_eq!(read_response(s).await.0, 200);
    }
    assert_eq!(f.upstream.hits(), 400);
}

/// An HTTP/2 upstream that answers every request at once with 413 and holds its body
/// unread for a while; it records the paths it was asked for.
async fn early_h2_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = paths.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        seen.lock().unwrap().push(req.uri().path().to_owned());
                        // The body stays open, unread, after the answer.
                        let body = req.into_body();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(10)).await;
                            drop(body);
                        });
                        let resp = http::Response::builder()
                            .status(413)
                            .header("content-length", "0")
                            .body(http_body_util::Empty::<bytes::Bytes>::new())
                            .unwrap();
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, paths)
}

/// The response to a request can be written in full while its body still streams in
/// (an upstream that answered early and keeps the stream open): the connection is not
/// at a request boundary then, so a pause never turns the rest of the body into a
/// request.
#[tokio::test]
async fn the_body_of_a_request_already_answered_is_never_read_as_a_request() {
    let (upstream, paths) = early_h2_upstream().await;
    let gw = TestGateway::start(&format!(
        "[[routes]]\nname = \"up\"\nprefix = \"/up\"\nupstream = \"{upstream}\"\n\
         upstream_protocol = \"http2\"\nauth = \"public\"\n"
    ))
    .await;
    gw.wait_ready().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /up/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    assert_eq!(read_response(&mut s).await.0, 413);
    tokio::time::sleep(QUIET).await;
    let _ = s
        .write_all(b"GET /up/smuggled HTTP/1.1\r\nHost: x\r\nX-User-Id: victim\r\n\r\n")
        .await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1"),
        "a second answer came: {}",
        String::from_utf8_lossy(&rest)
    );
    let paths = paths.lock().unwrap().clone();
    assert_eq!(paths, ["/up/upload"], "the upstream was asked for more");
}
