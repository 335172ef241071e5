//! Our own HTTP/1.1 client to the upstreams, on hyper's connection API: one task per
//! connection (none per request) and the idle connections of each upstream in a plain
//! LIFO list, taken and given back under a lock held only for the push or pop.
//!
//! hyper-util's pooled client spent more per request than the rest of the hop: a pool
//! checkout and put with their bookkeeping, and a task spawned for every response to
//! wait until its connection could be pooled again. Here a connection goes back to its
//! list the moment its response body has been read to the end, and only if it is then
//! fit for another request:
//! - the upstream did not say `Connection: close`, did not answer in HTTP/1.0 and did not
//!   switch protocols (an upgraded connection belongs to its tunnel);
//! - the request body had been sent in full before the answer came: an upstream that
//!   answers early (a 413 on a large upload) has bytes of that body still to read, which
//!   it could take for the start of the next request;
//! - hyper says the connection is ready for another request (so nothing arrived after
//!   the response: an extra response nobody asked for fails the connection). Its
//!   connection task usually gets there before the body's reader sees the end; when it
//!   has not yet, the connection is closed rather than waited for (no task to wait in).
//!
//! An error, or a body dropped before its end, closes the connection. A connection idle
//! for 60 s is closed: lazily when it is found on a checkout, and by a sweep every 10 s.
//!
//! Each upstream's idle list is found once, when a route is built ([`Client::bound_to`]),
//! not hashed per request: a request checks that its URI names the very upstream the list
//! belongs to (scheme and authority), and only a request to another one looks its list up
//! by name. A connection is never taken from, nor given back to, another upstream's list.
//!
//! The request body streams up while the response streams down (a full-duplex exchange
//! works), until the response ends: read to its end, or dropped. If the request body is
//! not all sent by then, nothing more of it goes, and the connection is aborted at once,
//! without waiting for the client to send the rest. An upstream that answered without
//! reading the body would otherwise take what follows for its next request, and that
//! body is the client's to write: a whole request with its own identity header, run on
//! the backend while its answer is thrown away. Envoy's router resets the upstream
//! stream the same way when the response completes before the request. The body refuses
//! every frame from then on (so a connection task not yet stopped takes none), and the
//! task is aborted rather than woken: one blocked writing to an upstream that stopped
//! reading would not poll the body again, and would keep the connection open. What the
//! client's connection does next is the server's concern.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::task::AbortHandle;
use tower_service::Service;

use super::{Error, UpstreamBody};
use crate::body::{BoxError, RequestBody};

/// How long a connection may sit idle before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often idle connections past their timeout are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A client for HTTP/1.1 upstreams, plain or over TLS; clones share the connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// The upstream this client's requests usually go to, resolved when the route was built.
    bound: Option<Arc<Host>>,
}

/// One upstream and its idle connections, most recently used last.
struct Host {
    key: Key,
    idle: Mutex<Vec<Idle>>,
}

struct Inner {
    connector: HttpsConnector<HttpConnector>,
    handshake: Builder,
    /// Every upstream's idle list, by name; a route holds its own upstream's.
    hosts: Mutex<HashMap<Key, Arc<Host>>>,
    sweeping: AtomicBool,
    idle_timeout: Duration,
    sweep_every: Duration,
}

/// Which upstream a connection reaches.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    https: bool,
    authority: Authority,
}

impl Key {
    /// The `Host` for a request that came without one (HTTP/1.0): the upstream's host,
    /// and its port unless it is the scheme's default.
    fn host(&self) -> Result<HeaderValue, Error> {
        let default_port = if self.https { 443 } else { 80 };
        let host = match self.authority.port_u16() {
            Some(port) if port != default_port => {
                HeaderValue::try_from(format!("{}:{port}", self.authority.host()))
            }
            _ => HeaderValue::from_str(self.authority.host()),
        };
        host.map_err(|_| Error::NoAuthority)
    }
}

/// One connection to an upstream: what sends requests on it, and its task, ended to
/// abort it.
struct Conn {
    sender: SendRequest<Outbound>,
    task: AbortHandle,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A connection in use until its response ends, which decides what becomes of it.
pub(super) struct Lease {
    conn: Conn,
    /// Where it goes back to, if the exchange left it fit for another request.
    home: Option<(Arc<Host>, Arc<Inner>)>,
    /// The request body, if it was still on its way when the answer came.
    body: Option<Arc<Progress>>,
}

impl Lease {
    /// The response has ended: read to its end (`complete`), or dropped or failed. A
    /// request body still on its way is cut off and the connection aborted; otherwise it
    /// goes back to the idle list if it was fit and hyper says it can take another
    /// request, and is closed if not.
    pub(super) fn end(self, complete: bool) {
        if let Some(body) = &self.body
            && !body.sent.load(Ordering::Acquire)
        {
            body.cut.store(true, Ordering::Release);
            self.conn.task.abort();
            return;
        }
        if let Some((host, client)) = self.home
            && complete
            && self.conn.sender.is_ready()
        {
            client.put(&host, self.conn);
        }
    }
}

impl Client {
    pub fn new(connector: HttpsConnector<HttpConnector>) -> Client {
        Client::with_timeouts(connector, IDLE_TIMEOUT, SWEEP_EVERY)
    }

    fn with_timeouts(
        connector: HttpsConnector<HttpConnector>,
        idle_timeout: Duration,
        sweep_every: Duration,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                connector,
                handshake: Builder::new(),
                hosts: Mutex::new(HashMap::new()),
                sweeping: AtomicBool::new(false),
                idle_timeout,
                sweep_every,
            }),
            bound: None,
        }
    }

    /// This client (sharing its connections) with the idle list of the upstream reached at
    /// `https` and `authority` at hand, so requests to it find their list without a lookup.
    pub fn bound_to(&self, https: bool, authority: &Authority) -> Client {
        let key = Key {
            https,
            authority: authority.clone(),
        };
        Client {
            inner: self.inner.clone(),
            bound: Some(self.inner.host(&key)),
        }
    }

    /// Sends `req` (whose URI names the upstream) on an idle connection to its upstream,
    /// or a new one.
    pub async fn request(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, Error> {
        let (mut parts, body) = req.into_parts();
        // The request line carries the path; the connection is made to scheme and
        // authority, which the URI gives up without a copy.
        let uri = std::mem::take(&mut parts.uri).into_parts();
        let key = Key {
            https: uri.scheme.as_ref() == Some(&Scheme::HTTPS),
            authority: uri.authority.ok_or(Error::NoAuthority)?,
        };
        parts.uri = uri
            .path_and_query
            .map_or_else(|| Uri::from_static("/"), Uri::from);
        if !parts.headers.contains_key(header::HOST) {
            parts.headers.insert(header::HOST, key.host()?);
        }
        // Most requests have no body: only one that does needs to report how far it got.
        let progress = (!body.is_end_stream()).then(|| Arc::new(Progress::default()));
        let mut req = Request::from_parts(
            parts,
            Outbound {
                inner: body,
                progress: progress.clone(),
            },
        );

        let host = match &self.bound {
            Some(host) if host.key == key => host.clone(),
            _ => self.inner.host(&key),
        };
        loop {
            let (mut conn, reused) = match self.inner.checkout(&host) {
                Some(conn) => (conn, true),
                // Boxed: a connect's state is large and rarely needed, and kept inline it
                // would be copied with every request's future.
                None => (Box::pin(self.connect(&key)).await?, false),
            };
            match conn.sender.try_send_request(req).await {
                Ok(resp) => {
                    // An upgraded connection belongs to its tunnel, whatever it carries.
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        return Ok(resp.map(|body| UpstreamBody::new(body, None)));
                    }
                    let body = progress.filter(|p| !p.sent.load(Ordering::Acquire));
                    let reusable = resp.version() == Version::HTTP_11
                        && !says_close(resp.headers())
                        && body.is_none();
                    let lease = Lease {
                        conn,
                        home: reusable.then(|| (host, self.inner.clone())),
                        body,
                    };
                    return Ok(resp.map(|body| UpstreamBody::new(body, Some(lease))));
                }
                Err(mut e) => match e.take_message() {
                    // An idle connection the upstream had just closed: the request never
                    // left, so it goes again on another connection.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(Error::Exchange(e.into_error())),
                },
            }
        }
    }

    /// A new connection to the upstream `key` names, its connection task spawned.
    async fn connect(&self, key: &Key) -> Result<Conn, Error> {
        let uri = Uri::builder()
            .scheme(if key.https {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            })
            .authority(key.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| Error::NoAuthority)?;
        let mut connector = self.inner.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(Error::Connect)?;
        let io = connector.call(uri).await.map_err(Error::Connect)?;
        let (sender, conn) = self
            .inner
            .handshake
            .handshake(io)
            .await
            .map_err(Error::Exchange)?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(Conn {
            sender,
            task: task.abort_handle(),
        })
    }
}

impl Inner {
    /// The idle list of the upstream `key` names, made on first use.
    fn host(&self, key: &Key) -> Arc<Host> {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Host {
                    key: key.clone(),
                    idle: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    /// The most recently used idle connection to `host` that is ready, if any. A closed one
    /// is dropped and the next tried; past the idle timeout, it and all older are closed.
    fn checkout(&self, host: &Host) -> Option<Conn> {
        let mut list = host.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while let Some(conn) = list.pop() {
            if now.duration_since(conn.since) >= self.idle_timeout {
                list.clear();
                return None;
            }
            if conn.conn.sender.is_ready() {
                return Some(conn.conn);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, host: &Host, conn: Conn) {
        if !self.sweeping.load(Ordering::Relaxed) {
            self.start_sweeping();
        }
        let conn = Idle {
            conn,
            since: Instant::now(),
        };
        host.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }

    /// One task per client that closes idle connections past their timeout, and ends
    /// when the client is gone.
    fn start_sweeping(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let client: Weak<Inner> = Arc::downgrade(self);
        let every = self.sweep_every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(client) = client.upgrade() else {
                    return;
                };
                client.sweep();
            }
        });
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts.retain(|_, host| {
            let mut list = host.idle.lock().unwrap_or_else(PoisonError::into_inner);
            list.retain(|c| {
                now.duration_since(c.since) < self.idle_timeout && !c.conn.sender.is_closed()
            });
            // An upstream no route holds any more, with nothing idle, is forgotten.
            !list.is_empty() || Arc::strong_count(host) > 1
        });
    }

    /// How many connections sit idle, to every upstream.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        let hosts = self.hosts.lock().unwrap();
        hosts.values().map(|h| h.idle.lock().unwrap().len()).sum()
    }
}

/// Whether the upstream's `Connection` header lists `close`.
fn says_close(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// How far a request body has gone upstream; shared by the body and its response.
#[derive(Default)]
struct Progress {
    /// Its last frame has been taken.
    sent: AtomicBool,
    /// The response ended first: not one more frame may go.
    cut: AtomicBool,
}

/// Why a request body stopped before its end.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's response ended before the request body was sent")]
struct AnsweredFirst;

/// The request body on its way upstream, noting when its last frame has been taken and
/// stopping when its response has ended first.
pub struct Outbound {
    inner: RequestBody,
    progress: Option<Arc<Progress>>,
}

impl Outbound {
    fn ended(&self) {
        if let Some(progress) = &self.progress {
            progress.sent.store(true, Ordering::Release);
        }
    }

    fn is_cut(&self) -> bool {
        self.progress
            .as_ref()
            .is_some_and(|p| p.cut.load(Ordering::Acquire))
    }
}

impl Body for Outbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Checked before the client's body is polled, so nothing it sends after the cut
        // is ever taken, even by a connection task not yet stopped.
        if self.is_cut() {
            return Poll::Ready(Some(Err(AnsweredFirst.into())));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.ended(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.ended();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// An upstream that answers every request with a 2-byte body and reports each
    /// connection's end (the gateway closing it) on `closed`.
    async fn upstream() -> (String, Arc<AtomicUsize>, tokio::sync::mpsc::Receiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let accepts = Arc::new(AtomicUsize::new(0));
        let (closed_tx, closed) = tokio::sync::mpsc::channel(16);
        let count = accepts.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {
                                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                                if stream.write_all(answer).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = closed_tx.send(()).await;
                });
            }
        });
        (url, accepts, closed)
    }

    fn client(idle_timeout: Duration, sweep_every: Duration) -> Client {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let tls = crate::tls::client_config(None, None).unwrap();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client::with_timeouts(connector, idle_timeout, sweep_every)
    }

    async fn get(client: &Client, url: &str) -> Bytes {
        let req = Request::get(url)
            .body(crate::body::full("").map_err(Into::into).boxed())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn an_idle_connection_is_reused_then_closed_by_the_sweep_after_its_timeout() {
        let (url, accepts, mut closed) = upstream().await;
        let client = client(Duration::from_millis(200), Duration::from_millis(50));
        assert_eq!(get(&client, &url).await, "ok");
        assert_eq!(get(&client, &url).await, "ok");
        assert_eq!(accepts.load(Ordering::SeqCst), 1);
        // No request comes: the sweep closes the connection, and the upstream sees it.
        tokio::time::timeout(Duration::from_secs(10), closed.recv())
            .await
            .expect("the idle connection is closed");
        assert_eq!(client.inner.idle_count(), 0);
        assert_eq!(get(&client, &url).await, "ok");
        assert_eq!(accepts.load(Ordering::SeqCst), 2);
    }

    /// A client that sends the start of its body, then nothing more, ever.
    struct Stalled(Option<Bytes>);

    impl Body for Stalled {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match self.0.take() {
                Some(start) => Poll::Ready(Some(Ok(Frame::data(start)))),
                None => Poll::Pending,
            }
        }
    }

    /// The upstream answers as soon as it has the head, and reads on: once that answer
    /// has been read to its end, its connection is closed though the request body is
    /// unfinished and nothing wakes its task (the client stays silent).
    #[tokio::test]
    async fn an_answer_that_ends_before_the_request_body_closes_its_connection_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/upload", listener.local_addr().unwrap());
        let (closed_tx, closed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let answer = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!";
            stream.write_all(answer).await.unwrap();
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                got.extend_from_slice(&buf[..n]);
            }
            let _ = closed_tx.send(got);
        });
        let client = client(IDLE_TIMEOUT, SWEEP_EVERY);
        let body = Stalled(Some(Bytes::from_static(b"start"))).boxed();
        let resp = client
            .request(Request::post(&url).body(body).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let answer = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(answer, "big!");
        let got = tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .expect("the connection is closed while the request body waits")
            .unwrap();
        assert!(got.starts_with(b"POST /upload HTTP/1.1\r\n"));
        assert_eq!(client.inner.idle_count(), 0);
    }

    /// A route's client holds its own upstream's idle list; a request that names another
    /// upstream (the default client is shared by every route) still reaches that one, and
    /// each keeps its connection for its own requests.
    #[tokio::test]
    async fn a_client_bound_to_one_upstream_never_sends_to_it_what_names_another() {
        let (a_url, a_accepts, _a_closed) = upstream().await;
        let (b_url, b_accepts, _b_closed) = upstream().await;
        let shared = client(IDLE_TIMEOUT, SWEEP_EVERY);
        let a_uri: Uri = a_url.parse().unwrap();
        let bound = shared.bound_to(false, a_uri.authority().unwrap());
        for _ in 0..3 {
            assert_eq!(get(&bound, &a_url).await, "ok");
            assert_eq!(get(&bound, &b_url).await, "ok");
            assert_eq!(get(&shared, &a_url).await, "ok");
        }
        assert_eq!(a_accepts.load(Ordering::SeqCst), 1);
        assert_eq!(b_accepts.load(Ordering::SeqCst), 1);
        assert_eq!(shared.inner.idle_count(), 2);
    }

    #[tokio::test]
    async fn a_connection_past_its_idle_timeout_is_never_taken() {
        let (url, accepts, mut closed) = upstream().await;
        // A sweep that never comes in time: only the checkout can find it expired.
        let client = client(Duration::from_millis(100), Duration::from_secs(3600));
        assert_eq!(get(&client, &url).await, "ok");
        // Waiting out the timeout itself (nothing to poll for).
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(get(&client, &url).await, "ok");
        assert_eq!(accepts.load(Ordering::SeqCst), 2);
        tokio::time::timeout(Duration::from_secs(10), closed.recv())
            .await
            .expect("the expired connection is closed");
    }
}
