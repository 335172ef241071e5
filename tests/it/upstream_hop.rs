//! The HTTP/1.1 hop to an upstream, against upstreams on bare sockets that misbehave byte
//! by byte: every client gets its own response and nothing else, a connection is reused
//! only when its last exchange ended cleanly, and a failure is a 502 or a cut-off body,
//! never another request's data.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::TestGateway;

/// An upstream on a bare socket: each accepted connection runs `script`; it counts the
/// connections and records every request target it reads.
struct RawUpstream {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    targets: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        // Dropping the accept loop drops its set of connection tasks, which aborts them.
        self.task.abort();
    }
}

impl RawUpstream {
    async fn start<F, Fut>(script: F) -> RawUpstream
    where
        F: Fn(Peer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepts.clone(), targets.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let index = count.fetch_add(1, Ordering::SeqCst);
                let peer = Peer {
                    stream,
                    buf: Vec::new(),
                    index,
                    targets: seen.clone(),
                };
                conns.spawn(script(peer));
            }
        });
        RawUpstream {
            addr,
            accepts,
            targets,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

/// One upstream connection, as the script sees it.
struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
    /// 0 for the first connection the upstream accepted, 1 for the next...
    index: usize,
    targets: Arc<Mutex<Vec<String>>>,
}

struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Peer {
    /// Reads until `buf` holds `n` bytes; false at end of stream.
    async fn fill(&mut self, n: usize) -> bool {
        while self.buf.len() < n {
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    }

    /// Reads a line ending in CRLF (without it); `None` at end of stream.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            let want = self.buf.len() + 1;
            if !self.fill(want).await {
                return None;
            }
        }
    }

    /// The next request's head, or `None` when the gateway closed the connection.
    async fn head(&mut self) -> Option<Head> {
        let request_line = self.line().await?;
        let mut parts = request_line.split(' ');
        let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':')?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        self.targets.lock().unwrap().push(target.clone());
        Some(Head {
            method,
            target,
            headers,
        })
    }

    /// The request body `head` announces, read to its end.
    async fn body(&mut self, head: &Head) -> Vec<u8> {
        if let Some(n) = head.header("content-length") {
            let n: usize = n.parse().unwrap();
            assert!(self.fill(n).await, "the request body broke off");
            return self.buf.drain(..n).collect();
        }
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let mut body = Vec::new();
        if !chunked {
            return body;
        }
        loop {
            let size = self.line().await.expect("a chunk size");
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                while !self.line().await.expect("trailers").is_empty() {}
                return body;
            }
            assert!(self.fill(size + 2).await, "the request body broke off");
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    async fn write(&mut self, bytes: impl AsRef<[u8]>) {
        let _ = self.stream.write_all(bytes.as_ref()).await;
    }

    /// Answers every request on this connection with `answer(head, body)`, keeping the
    /// connection alive.
    async fn serve(mut self, answer: impl Fn(&Head, &[u8]) -> Vec<u8>) {
        while let Some(head) = self.head().await {
            let body = self.body(&head).await;
            let out = answer(&head, &body);
            self.write(out).await;
        }
    }
}

/// A 200 with `body` and a `Content-Length`.
fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The body that names the request: its target.
fn echo_target(head: &Head, _: &[u8]) -> Vec<u8> {
    ok(&head.target)
}

/// A gateway with one public route, `/public`, to `upstream`.
async fn gateway(upstream: &str, server: &str) -> TestGateway {
    let routes = format!(
        "[[routes]]\nname = \"public\"\nprefix = \"/public\"\nupstream = \"{upstream}\"\nauth = \"public\"\n"
    );
    let gw = TestGateway::start_with_server(server, &routes).await;
    gw.wait_ready().await;
    gw
}

type GatewayClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> GatewayClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response as the client gets it; the body is an error when it broke off.
struct Got {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Result<Bytes, String>,
}

impl Got {
    fn text(&self) -> String {
        match &self.body {
            Ok(b) => String::from_utf8_lossy(b).into_owned(),
            Err(e) => panic!("the body broke off: {e}"),
        }
    }
}

async fn fetch(client: &GatewayClient, addr: SocketAddr, method: Method, path: &str) -> Got {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("the gateway answers");
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| e.to_string());
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(addr: SocketAddr, path: &str) -> Got {
    fetch(&client(), addr, Method::GET, path).await
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let upstream = RawUpstream::start(|peer| peer.serve(echo_target)).await;
    let gw = gateway(&upstream.url(), "").await;
    let c = client();
    for i in 0..5 {
        let path = format!("/public/seq-{i}");
        let got = fetch(&c, gw.addr, Method::GET, &path).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.text(), path);
    }
    assert_eq!(upstream.accepts(), 1, "keep-alive: one upstream connection");
}

/// Many clients at once over a few upstream connections, answers cut into pieces and
/// framed both ways (length and chunked): each client gets exactly the body of its own
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_each_get_their_own_response_over_few_connections() {
    let upstream = RawUpstream::start(|mut peer| async move {
        let mut n = 0usize;
        while let Some(head) = peer.head().await {
            let _ = peer.body(&head).await;
            // A body that names the request, of a size that varies with it.
            let tag = format!("{}|", head.target);
            let body = tag.repeat(1 + (head.target.len() * 37 + n * 11) % 300);
            n += 1;
            if n.is_multiple_of(2) {
                peer.write(format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                ))
                .await;
                let (a, b) = body.split_at(body.len() / 2);
                peer.write(a).await;
                tokio::task::yield_now().await;
                peer.write(b).await;
            } else {
                let mut out = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                for piece in body.as_bytes().chunks(700) {
                    out.push_str(&format!("{:x}\r\n", piece.len()));
                    out.push_str(std::str::from_utf8(piece).unwrap());
                    out.push_str("\r\n");
                }
                out.push_str("0\r\n\r\n");
                let (a, b) = out.split_at(out.len() / 3);
                peer.write(a).await;
                tokio::task::yield_now().await;
                peer.write(b).await;
            }
        }
    })
    .await;
    let gw = gateway(&upstream.url(), "max_upstream_requests = 3").await;

    let mut clients = tokio::task::JoinSet::new();
    for c in 0..24 {
        let addr = gw.addr;
        clients.spawn(async move {
            let http = client();
            for r in 0..10 {
                let path = format!("/public/client-{c}/request-{r}");
                let got = fetch(&http, addr, Method::GET, &path).await;
                assert_eq!(got.status, StatusCode::OK, "{path}");
                let body = got.text();
                let tag = format!("{path}|");
                assert!(
                    !body.is_empty() && body.split_inclusive('|').all(|t| t == tag),
                    "{path} got another request's body: {body:.200}"
                );
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    assert_eq!(upstream.targets().len(), 240);
    assert!(
        upstream.accepts() < 24,
        "connections were not reused: {} for 240 requests",
        upstream.accepts()
    );
}

/// The first connection sends a head announcing 100 bytes, 10 of them, and closes.
#[tokio::test]
async fn an_upstream_closing_mid_response_cuts_that_body_and_the_next_request_uses_a_new_connection()
 {
    let upstream = RawUpstream::start(|mut peer| async move {
        if peer.index == 0 {
            let head = peer.head().await.unwrap();
            let _ = peer.body(&head).await;
            peer.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                .await;
            return; // closes the connection
        }
        peer.serve(echo_target).await
    })
    .await;
    let gw = gateway(&upstream.url(), "").await;

    let first = get(gw.addr, "/public/one").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.body.is_err(), "a cut-off body must not look complete");

    let second = get(gw.addr, "/public/two").await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.text(), "/public/two");
    assert_eq!(upstream.accepts(), 2);
}

/// The first connection answers its first request and, in the same write, an extra
/// response nobody asked for; then it answers whatever else it reads with "smuggled".
#[tokio::test]
async fn an_extra_unsolicited_response_never_reaches_the_next_request() {
    let upstream = RawUpstream::start(|mut peer| async move {
        if peer.index == 0 {
            let head = peer.head().await.unwrap();
            let _ = peer.body(&head).await;
            let mut out = ok(&head.target);
            out.extend_from_slice(&ok("extra"));
            peer.write(out).await;
            return peer.serve(|_, _| ok("smuggled")).await;
        }
        peer.serve(echo_target).await
    })
    .await;
    let gw = gateway(&upstream.url(), "").await;

    let c = client();
    let first = fetch(&c, gw.addr, Method::GET, "/public/one").await;
    assert_eq!(first.text(), "/public/one");
    for path in ["/public/two", "/public/three"] {
        let got = fetch(&c, gw.addr, Method::GET, path).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.text(), path);
    }
    assert_eq!(
        upstream.accepts(),
        2,
        "the spoiled connection was not reused"
    );
}

/// The upstream answers 413 as soon as it has the head, without reading the body, and
/// keeps the connection. The body is the start of a request: were the connection used
/// again, the next request would complete it and get its answer.
#[tokio::test]
async fn an_early_answer_with_the_request_body_unread_is_never_reused() {
    let upstream = RawUpstream::start(|mut peer| async move {
        if peer.index == 0 {
            let _ = peer.head().await.unwrap();
            peer.write("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")
                .await;
            // Whatever it reads next is taken as a request.
        }
        peer.serve(echo_target).await
    })
    .await;
    let gw = gateway(&upstream.url(), "").await;

    // A client that sends half its body, waits for the answer, then sends the rest.
    let body = format!(
        "GET /public/smuggled HTTP/1.1\r\nHost: up\r\nX-Pad: {}",
        "y".repeat(64)
    );
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /public/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (a, b) = body.split_at(body.len() / 2);
    stream
        .write_all(format!("{head}{a}").as_bytes())
        .await
        .unwrap();
    // The early answer arrives while the body is unfinished.
    let mut answer = Vec::new();
    read_until(&mut stream, &mut answer, b"big!").await;
    assert!(answer.starts_with(b"HTTP/1.1 413"));
    stream.write_all(b.as_bytes()).await.unwrap();
    // The gateway has read the whole body when it is ready for this connection's next
    // request (or closes it).
    let mut rest = Vec::new();
    let _ = stream
        .write_all(b"GET /public/after HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || rest.ends_with("\r\n\r\n/public/after"),
        "the next request on the client's connection got: {rest}"
    );

    let c = client();
    for path in ["/public/two", "/public/three"] {
        let got = fetch(&c, gw.addr, Method::GET, path).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.text(), path, "another request's answer");
    }
    assert!(
        !upstream.targets().iter().any(|t| t.contains("smuggled")),
        "the request body was read as a request: {:?}",
        upstream.targets()
    );
}

/// An upstream that says `100 Continue` before it reads the body: the final answer is
/// the one the client gets, and the connection stays usable.
#[tokio::test]
async fn an_interim_100_continue_is_skipped_and_the_connection_reused() {
    let upstream = RawUpstream::start(|mut peer| async move {
        while let Some(head) = peer.head().await {
            peer.write("HTTP/1.1 100 Continue\r\n\r\n").await;
            let body = peer.body(&head).await;
            let out = ok(&format!(
                "{} {}",
                head.method,
                String::from_utf8_lossy(&body)
            ));
            peer.write(out).await;
        }
    })
    .await;
    let gw = gateway(&upstream.url(), "").await;

    // The client waits for the gateway's own 100 before it sends the body.
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(
            b"POST /public/c HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, b"\r\n\r\n").await;
    assert!(got.starts_with(b"HTTP/1.1 100 Continue"), "{got:?}");
    stream.write_all(b"hello").await.unwrap();
    got.clear();
    read_until(&mut stream, &mut got, b"POST hello").await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    let next = get(gw.addr, "/public/next").await;
    assert_eq!(next.text(), "GET ");
    assert_eq!(upstream.accepts(), 1);
}

/// `HEAD` answers, `204` and `304` carry no body whatever their headers say; the next
/// request on the connection gets its own answer.
#[tokio::test]
async fn bodiless_answers_leave_the_connection_in_step() {
    let upstream = RawUpstream::start(|peer| {
        peer.serve(|head, _| {
            let path = head.target.as_str();
            if head.method == "HEAD" {
                // The length of the body a GET would get; no body follows.
                return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
            }
            match path {
                "/public/204" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                "/public/304" => {
                    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"v1\"\r\n\r\n"
                        .to_vec()
                }
                _ => ok(path),
            }
        })
    })
    .await;
    let gw = gateway(&upstream.url(), "").await;
    let c = client();

    let head = fetch(&c, gw.addr, Method::HEAD, "/public/head").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-length"], "1000");
    assert_eq!(head.text(), "");
    assert_eq!(
        fetch(&c, gw.addr, Method::GET, "/public/a").await.text(),
        "/public/a"
    );

    let no_content = fetch(&c, gw.addr, Method::GET, "/public/204").await;
    assert_eq!(no_content.status, StatusCode::NO_CONTENT);
    assert_eq!(no_content.text(), "");
    assert_eq!(
        fetch(&c, gw.addr, Method::GET, "/public/b").await.text(),
        "/public/b"
    );

    let not_modified = fetch(&c, gw.addr, Method::GET, "/public/304").await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.headers["etag"], "\"v1\"");
    assert_eq!(not_modified.text(), "");
    assert_eq!(
        fetch(&c, gw.addr, Method::GET, "/public/c").await.text(),
        "/public/c"
    );

    assert_eq!(upstream.accepts(), 1);
}

/// A chunked answer with trailers reaches a client that accepts trailers, and the
/// connection is reused after it.
#[tokio::test]
async fn a_chunked_answer_with_trailers_arrives_whole_and_the_connection_is_reused() {
    let upstream = RawUpstream::start(|peer| {
        peer.serve(|head, _| {
            if head.target == "/public/trailers" {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
                  5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n"
                    .to_vec()
            } else {
                ok(&head.target)
            }
        })
    })
    .await;
    let gw = gateway(&upstream.url(), "").await;
    let c = client();

    let req = Request::get(format!("http://{}/public/trailers", gw.addr))
        .header("te", "trailers")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["x-checksum"], "42");
    assert_eq!(collected.to_bytes(), "hello world");

    assert_eq!(
        fetch(&c, gw.addr, Method::GET, "/public/a").await.text(),
        "/public/a"
    );
    assert_eq!(upstream.accepts(), 1);
}

/// `Connection: close` from the upstream ends that connection even if the upstream
/// leaves it open: the next request opens a new one.
#[tokio::test]
async fn connection_close_from_the_upstream_is_honoured() {
    let upstream = RawUpstream::start(|peer| {
        peer.serve(|head, _| {
            let body = &head.target;
            format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
    })
    .await;
    let gw = gateway(&upstream.url(), "").await;
    let c = client();
    for path in ["/public/one", "/public/two", "/public/three"] {
        assert_eq!(fetch(&c, gw.addr, Method::GET, path).await.text(), path);
    }
    assert_eq!(upstream.accepts(), 3);
}

/// After a `101`, the connection belongs to the tunnel: the next request never goes
/// down it.
#[tokio::test]
async fn an_upgraded_connection_is_never_reused() {
    let upstream = RawUpstream::start(|mut peer| async move {
        let Some(head) = peer.head().await else { return };
        if head.header("upgrade").is_some() {
            peer.write(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\ntunnel-open",
            )
            .await;
            // The tunnel: echo whatever comes, in upper case.
            let mut chunk = [0u8; 1024];
            loop {
                match peer.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => peer.write(chunk[..n].to_ascii_uppercase()).await,
                }
            }
        }
        peer.write(ok(&head.target)).await;
        peer.serve(echo_target).await
    })
    .await;
    let routes = format!(
        "[[routes]]\nname = \"public\"\nprefix = \"/public\"\nupstream = \"{}\"\nauth = \"public\"\nwebsocket = true\n",
        upstream.url()
    );
    let gw = TestGateway::start(&routes).await;
    gw.wait_ready().await;

    let mut tunnel = TcpStream::connect(gw.addr).await.unwrap();
    tunnel
        .write_all(
            b"GET /public/ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut tunnel, &mut got, b"tunnel-open").await;
    assert!(got.starts_with(b"HTTP/1.1 101"));

    assert_eq!(get(gw.addr, "/public/after").await.text(), "/public/after");
    assert_eq!(upstream.accepts(), 2);

    // The tunnel still works, on its own connection.
    tunnel.write_all(b"ping").await.unwrap();
    let mut chunk = [0u8; 16];
    let n = tunnel.read(&mut chunk).await.unwrap();
    assert_eq!(&chunk[..n], b"PING");
}

/// An HTTP/1.0 request may come without `Host`; the upstream still gets one: its own
/// host and port.
#[tokio::test]
async fn a_request_without_host_reaches_the_upstream_with_its_host() {
    let upstream =
        RawUpstream::start(|peer| peer.serve(|head, _| ok(head.header("host").unwrap_or("none"))))
            .await;
    let gw = gateway(&upstream.url(), "").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /public/old HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.0 200"), "{got}");
    assert!(
        got.ends_with(&format!("\r\n\r\n{}", upstream.addr)),
        "{got}"
    );
}

/// A client that goes away in the middle of a long body: that upstream connection still
/// holds the rest of the body, so it is closed, and the next request gets its own answer.
#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_upstream_connection() {
    let upstream = RawUpstream::start(|peer| {
        peer.serve(|head, _| {
            if head.target == "/public/big" {
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 8388608\r\n\r\n".to_vec();
                out.resize(out.len() + 8 * 1024 * 1024, b'a');
                out
            } else {
                ok(&head.target)
            }
        })
    })
    .await;
    let gw = gateway(&upstream.url(), "").await;

    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /public/big HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while got.len() < 64 * 1024 {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    drop(stream);

    for path in ["/public/two", "/public/three"] {
        assert_eq!(get(gw.addr, path).await.text(), path);
    }
    assert_eq!(upstream.accepts(), 2);
}

/// What an upstream connection received after its early answer, and whether it ended.
#[derive(Clone, Default)]
struct Heard {
    bytes: Vec<u8>,
    closed: bool,
}

impl Heard {
    fn holds(&self, needle: &[u8]) -> bool {
        self.bytes.windows(needle.len()).any(|w| w == needle)
    }
}

/// How the client frames the body it sends in two parts.
enum Framing {
    Chunked,
    Length,
}

/// The upstream answers `413` as soon as it has the request head, then reads on and
/// records every byte. The client sends part of its body, waits for the 413, then sends
/// a hidden request with a forged identity as more body, and never finishes: nothing it
/// sent after the answer may reach the upstream, and the upstream connection is closed
/// without waiting for the client. (A client that sends nothing more is covered beside
/// the upstream client, in `src/upstream/http1.rs`.)
async fn the_body_after_an_early_answer_never_reaches_the_upstream(framing: Framing) {
    let (heard_tx, mut heard) = tokio::sync::watch::channel(Heard::default());
    let heard_tx = Arc::new(heard_tx);
    let upstream = RawUpstream::start(move |mut peer| {
        let heard_tx = heard_tx.clone();
        async move {
            if peer.head().await.is_none() {
                return;
            }
            peer.write("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")
                .await;
            let early = std::mem::take(&mut peer.buf);
            heard_tx.send_modify(|h| h.bytes.extend_from_slice(&early));
            let mut chunk = [0u8; 4096];
            loop {
                match peer.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => heard_tx.send_modify(|h| h.bytes.extend_from_slice(&chunk[..n])),
                }
            }
            heard_tx.send_modify(|h| h.closed = true);
        }
    })
    .await;
    let gw = gateway(&upstream.url(), "").await;

    let part1 = "first part of a large upload;";
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: x\r\nX-User-Id: victim\r\n\r\n";
    let (head, part1, part2) = match framing {
        Framing::Chunked => (
            "POST /public/upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_owned(),
            format!("{:x}\r\n{part1}\r\n", part1.len()),
            // One more chunk, and no last chunk: the body stays unfinished.
            format!("{:x}\r\n{hidden}\r\n", hidden.len()),
        ),
        Framing::Length => (
            // Announces more than both parts: the body stays unfinished.
            format!(
                "POST /public/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n",
                part1.len() + hidden.len() + 100
            ),
            part1.to_owned(),
            hidden.to_owned(),
        ),
    };
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(format!("{head}{part1}").as_bytes())
        .await
        .unwrap();
    // The early answer arrives while the body is unfinished.
    let mut answer = Vec::new();
    read_until(&mut stream, &mut answer, b"big!").await;
    assert!(
        answer.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    eprintln!("ANSWER {:?}", String::from_utf8_lossy(&answer));
    // The client goes on with its body as if nothing happened (the gateway may already
    // have stopped reading it).
    let _ = stream.write_all(part2.as_bytes()).await;

    // Until the upstream connection ends, or the hidden request reaches it.
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        heard.wait_for(|h| h.closed || h.holds(b"smuggled")),
    )
    .await
    .map(|h| h.expect("the upstream records").clone());
    let now = heard.borrow().clone();
    assert!(
        !now.holds(b"smuggled") && !now.holds(b"victim"),
        "the body sent after the answer reached the upstream: {}",
        String::from_utf8_lossy(&now.bytes)
    );
    assert!(
        seen.is_ok_and(|h| h.closed),
        "the upstream connection stays open while the client's body is unfinished"
    );
    assert_eq!(upstream.accepts(), 1);
    drop(stream);
}

#[tokio::test]
async fn a_chunked_body_sent_after_an_early_answer_never_reaches_the_upstream() {
    the_body_after_an_early_answer_never_reaches_the_upstream(Framing::Chunked).await;
}

#[tokio::test]
async fn a_length_body_sent_after_an_early_answer_never_reaches_the_upstream() {
    the_body_after_an_early_answer_never_reaches_the_upstream(Framing::Length).await;
}

/// An upstream that answers while it reads: its response head and a first chunk at once,
/// then each request chunk echoed as it comes, and the end of its answer after the end
/// of the request. The client gets each echo before it sends the next chunk.
#[tokio::test]
async fn a_full_duplex_exchange_streams_both_ways_until_both_end() {
    let upstream = RawUpstream::start(|mut peer| async move {
        while let Some(head) = peer.head().await {
            if head.target != "/public/duplex" {
                let _ = peer.body(&head).await;
                peer.write(ok(&head.target)).await;
                continue;
            }
            peer.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nready\r\n")
                .await;
            loop {
                let Some(size) = peer.line().await else {
                    return;
                };
                let size = usize::from_str_radix(size.trim(), 16).unwrap();
                if size == 0 {
                    while !peer.line().await.unwrap_or_default().is_empty() {}
                    peer.write("0\r\n\r\n").await;
                    break;
                }
                if !peer.fill(size + 2).await {
                    return;
                }
                let mut out = format!("{size:x}\r\n").into_bytes();
                out.extend(peer.buf.drain(..size + 2));
                peer.write(out).await;
            }
        }
    })
    .await;
    let gw = gateway(&upstream.url(), "").await;

    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(
            b"POST /public/duplex HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, b"ready").await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    for i in 0..3 {
        let piece = format!("ping-{i}");
        stream
            .write_all(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        // The echo comes back while the request body is still open.
        read_until(&mut stream, &mut got, piece.as_bytes()).await;
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    read_until(&mut stream, &mut got, b"\r\n0\r\n\r\n").await;
    let got = String::from_utf8_lossy(&got);
    let (_, body) = got.split_once("\r\n\r\n").unwrap();
    assert_eq!(dechunk(body), "readyping-0ping-1ping-2");

    // The next request on the same client connection gets its own answer.
    stream
        .write_all(b"GET /public/after HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    read_until(&mut stream, &mut rest, b"\r\n\r\n/public/after").await;
}

/// Reads from `stream` into `got` until it holds `want`.
async fn read_until(stream: &mut TcpStream, got: &mut Vec<u8>, want: &[u8]) {
    let mut chunk = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {:?} in {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(got)
                )
            })
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(got));
        got.extend_from_slice(&chunk[..n]);
    }
}

/// The data of a chunked body that ends with its last chunk.
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            return data;
        }
        data.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}
