//! Real servers on 127.0.0.1:0 for the gateway to talk to: a JWKS issuer with a per-test
//! hit counter, and an echo upstream that reports what it received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serves each connection with `handler` until the returned task is aborted.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F) -> JoinHandle<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// How the JWKS server answers.
#[derive(Clone)]
pub enum JwksMode {
    Serve,
    Status(StatusCode),
    Body(String),
    /// A 302 back to itself, forever.
    RedirectLoop,
}

struct JwksState {
    doc: Mutex<Value>,
    mode: Mutex<JwksMode>,
    delay: Mutex<Duration>,
    hits: AtomicUsize,
}

/// A JWKS endpoint at `/jwks` whose document, failure mode and hit count tests control.
pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<JwksState>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(JwksState {
            doc: Mutex::new(json!({ "keys": keys })),
            mode: Mutex::new(JwksMode::Serve),
            delay: Mutex::new(Duration::ZERO),
            hits: AtomicUsize::new(0),
        });
        let task = Self::spawn(listener, state.clone()).await;
        JwksServer {
            addr,
            state,
            task: Mutex::new(Some(task)),
        }
    }

    async fn spawn(listener: TcpListener, state: Arc<JwksState>) -> JoinHandle<()> {
        serve(listener, move |_req| {
            let state = state.clone();
            async move {
                state.hits.fetch_add(1, Ordering::SeqCst);
                let delay = *state.delay.lock().unwrap();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mode = state.mode.lock().unwrap().clone();
                let (status, body) = match mode {
                    JwksMode::Serve => (StatusCode::OK, state.doc.lock().unwrap().to_string()),
                    JwksMode::Status(s) => (s, "oops".to_owned()),
                    JwksMode::Body(b) => (StatusCode::OK, b),
                    JwksMode::RedirectLoop => (StatusCode::FOUND, String::new()),
                };
                Response::builder()
                    .status(status)
                    .header("location", "/jwks")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap()
            }
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.doc.lock().unwrap() = json!({ "keys": keys });
    }

    pub fn set_mode(&self, mode: JwksMode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Stops listening: further fetches get connection refused.
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the echo upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target exactly as received (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// Trailer fields that arrived after a chunked body.
    pub trailers: Vec<(String, String)>,
    /// Whether the body arrived whole (false: the sender broke off mid-body).
    pub body_complete: bool,
}

impl Seen {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "header {name} appears {} times: {all:?}",
            all.len()
        );
        all.first().copied()
    }
}

/// An upstream that answers 200 with a JSON echo of what it received and records it.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    delay: Arc<Mutex<Duration>>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let (s, d) = (seen.clone(), delay.clone());
        let task = serve(listener, move |req: Request<Incoming>| {
            let (seen, delay) = (s.clone(), d.clone());
            async move {
                let method = req.method().to_string();
                let target = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                let headers: Vec<(String, String)> = req
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let collected = req.into_body().collect().await.ok();
                let trailers = collected
                    .as_ref()
                    .and_then(|c| c.trailers())
                    .map(|t| {
                        t.iter()
                            .map(|(n, v)| {
                                (
                                    n.as_str().to_owned(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let body_complete = collected.is_some();
                let body = collected.map(|c| c.to_bytes()).unwrap_or_default();
                let record = Seen {
                    method,
                    target,
                    headers,
                    body_len: body.len(),
                    trailers,
                    body_complete,
                };
                seen.lock().unwrap().push(record.clone());
                let wait = *delay.lock().unwrap();
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                let echo = json!({
                    "method": record.method,
                    "target": record.target,
                    "headers": record.headers,
                    "body_len": record.body_len,
                });
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(echo.to_string())))
                    .unwrap()
            }
        })
        .await;
        Upstream {
            addr,
            seen,
            delay,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap() = d;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
