//! The issuer: a JWKS endpoint the driver controls. It publishes and retires keys,
//! and goes down on command in one of several ways. It also records, per `kid`, when a
//! document that holds the key was first served and when a document without it (after
//! its removal) was first served: the gateway cannot know a key before the first, and
//! must drop it once it has had the second. That timeline is what every answer to a
//! token is judged against.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::util::now;

/// How the issuer answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 200 with the current key set.
    Serve,
    /// 503 to every fetch.
    Unavailable,
    /// The port is closed (connection refused) and idle connections are closed.
    Refuse,
    /// Fetches hang past the gateway's `fetch_timeout`, then get a 503.
    Hang,
    /// 200 with a body that is not a JWKS (an HTML error page).
    Garbage,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Serve => "serve",
            Mode::Unavailable => "503",
            Mode::Refuse => "refused",
            Mode::Hang => "hang",
            Mode::Garbage => "garbage",
        }
    }
}

/// What the gateway may know of one key, on the driver's clock (`util::now`).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub published: f64,
    /// First time a document holding the key was served.
    pub served_with: Option<f64>,
    pub removed: Option<f64>,
    /// First time, after the removal, a document without the key was served.
    pub served_without: Option<f64>,
}

/// What the answer to a token of some key must be, given the key's timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Refuse,
    /// The gateway may or may not have seen the change yet: either answer is right.
    Either,
}

/// An outage: start, end (None while it lasts), mode.
pub type Outage = (f64, Option<f64>, Mode);

struct Inner {
    mode: Mode,
    published: Vec<(String, Value)>,
    timeline: HashMap<String, Timeline>,
    outages: Vec<Outage>,
    docs_served: u64,
}

struct State {
    inner: Mutex<Inner>,
    hits: AtomicU64,
    /// Bumped to close the listener and idle connections (the `Refuse` mode).
    generation: watch::Sender<u64>,
    hang: Duration,
}

pub struct Jwks {
    pub addr: SocketAddr,
    state: Arc<State>,
    /// A fetch counts as received by the gateway this long after it was served.
    slack: f64,
}

impl Jwks {
    /// Starts on 127.0.0.1:0, publishing `keys`, answering as `mode`. `hang` must exceed
    /// the gateway's `fetch_timeout`.
    pub async fn start(keys: Vec<(String, Value)>, mode: Mode, hang: Duration) -> Jwks {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind JWKS");
        let addr = listener.local_addr().unwrap();
        let t = now();
        let timeline = keys
            .iter()
            .map(|(kid, _)| {
                (
                    kid.clone(),
                    Timeline {
                        published: t,
                        ..Timeline::default()
                    },
                )
            })
            .collect();
        let outages = if mode == Mode::Serve {
            Vec::new()
        } else {
            vec![(t, None, mode)]
        };
        let (generation, _) = watch::channel(0);
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                mode,
                published: keys,
                timeline,
                outages,
                docs_served: 0,
            }),
            hits: AtomicU64::new(0),
            generation,
            hang,
        });
        tokio::spawn(accept_loop(listener, state.clone()));
        Jwks {
            addr,
            state,
            slack: 1.0,
        }
    }

    /// Fetches that reached the server (refused connections never do).
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::Relaxed)
    }

    pub fn docs_served(&self) -> u64 {
        self.state.inner.lock().unwrap().docs_served
    }

    /// Adds a key to the published set.
    pub fn publish(&self, kid: &str, jwk: Value) {
        let mut inner = self.state.inner.lock().unwrap();
        inner.published.push((kid.to_owned(), jwk));
        inner.timeline.insert(
            kid.to_owned(),
            Timeline {
                published: now(),
                ..Timeline::default()
            },
        );
    }

    /// Takes a key out of the published set.
    pub fn remove(&self, kid: &str) {
        let mut inner = self.state.inner.lock().unwrap();
        inner.published.retain(|(k, _)| k != kid);
        if let Some(t) = inner.timeline.get_mut(kid) {
            t.removed = Some(now());
        }
    }

    pub fn mode(&self) -> Mode {
        self.state.inner.lock().unwrap().mode
    }

    pub async fn set_mode(&self, mode: Mode) {
        let old = {
            let mut inner = self.state.inner.lock().unwrap();
            let old = inner.mode;
            if old == mode {
                return;
            }
            inner.mode = mode;
            let t = now();
            if old != Mode::Serve
                && let Some(last) = inner.outages.last_mut()
            {
                last.1 = Some(t);
            }
            if mode != Mode::Serve {
                inner.outages.push((t, None, mode));
            }
            old
        };
        if mode == Mode::Refuse {
            self.state.generation.send_modify(|g| *g += 1);
        } else if old == Mode::Refuse {
            // Listen again on the same port.
            let mut tries = 0;
            let listener = loop {
                match rebind(self.addr) {
                    Ok(l) => break l,
                    Err(e) => {
                        tries += 1;
                        assert!(tries < 100, "cannot listen on {} again: {e}", self.addr);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            };
            tokio::spawn(accept_loop(listener, self.state.clone()));
        }
    }

    pub fn outages(&self) -> Vec<Outage> {
        self.state.inner.lock().unwrap().outages.clone()
    }

    pub fn timeline(&self, kid: &str) -> Option<Timeline> {
        self.state.inner.lock().unwrap().timeline.get(kid).cloned()
    }

    pub fn timelines(&self) -> Vec<(String, Timeline)> {
        let inner = self.state.inner.lock().unwrap();
        let mut v: Vec<_> = inner
            .timeline
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        v.sort_by(|a, b| a.1.published.total_cmp(&b.1.published));
        v
    }

    /// What the answer to a token of `kid`, sent at `t0` and answered at `t1`, must be.
    pub fn verdict(&self, kid: &str, t0: f64, t1: f64) -> Verdict {
        let inner = self.state.inner.lock().unwrap();
        let Some(tl) = inner.timeline.get(kid) else {
            return Verdict::Refuse;
        };
        let known_by_reply = tl.served_with.is_some_and(|s| s <= t1);
        let known_before = tl.served_with.is_some_and(|s| s <= t0 - self.slack);
        let dropped_by_reply = tl.served_without.is_some_and(|s| s <= t1);
        let dropped_before = tl.served_without.is_some_and(|s| s <= t0 - self.slack);
        if !known_by_reply || dropped_before {
            Verdict::Refuse
        } else if known_before && !dropped_by_reply {
            Verdict::Accept
        } else {
            Verdict::Either
        }
    }

    /// How long the issuer was serving between `from` and `to`: the time the gateway
    /// had to fetch a change made at `from` and fetched at `to`.
    pub fn serving_time(&self, from: f64, to: f64) -> f64 {
        let inner = self.state.inner.lock().unwrap();
        let down: f64 = inner
            .outages
            .iter()
            .map(|(s, e, _)| {
                let (s, e) = (s.max(from), e.unwrap_or(f64::INFINITY).min(to));
                (e - s).max(0.0)
            })
            .sum();
        (to - from - down).max(0.0)
    }
}

fn rebind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut stop = state.generation.subscribe();
    let born = *stop.borrow_and_update();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                let mut stop = state.generation.subscribe();
                tokio::spawn(async move {
                    if *stop.borrow_and_update() != born {
                        return;
                    }
                    let svc = {
                        let state = state.clone();
                        service_fn(move |_req| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(answer(&state).await) }
                        })
                    };
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    let mut closing = false;
                    loop {
                        tokio::select! {
                            _ = conn.as_mut() => return,
                            changed = stop.changed(), if !closing => {
                                let _ = changed;
                                // In-flight answers finish; idle connections close.
                                closing = true;
                                conn.as_mut().graceful_shutdown();
                            }
                        }
                    }
                });
            }
            _ = stop.changed() => return,
        }
    }
}

async fn answer(state: &State) -> Response<Full<Bytes>> {
    state.hits.fetch_add(1, Ordering::Relaxed);
    let (status, body) = {
        let mut inner = state.inner.lock().unwrap();
        match inner.mode {
            Mode::Serve => {
                let t = now();
                let keys: Vec<&Value> = inner.published.iter().map(|(_, j)| j).collect();
                let body = json!({ "keys": keys }).to_string();
                let published: Vec<String> =
                    inner.published.iter().map(|(k, _)| k.clone()).collect();
                for (kid, tl) in inner.timeline.iter_mut() {
                    if published.contains(kid) {
                        tl.served_with.get_or_insert(t);
                    } else if tl.removed.is_some() {
                        tl.served_without.get_or_insert(t);
                    }
                }
                inner.docs_served += 1;
                (StatusCode::OK, body)
            }
            Mode::Garbage => (
                StatusCode::OK,
                "<!doctype html><title>502 Bad Gateway</title>".to_owned(),
            ),
            Mode::Hang => (StatusCode::SERVICE_UNAVAILABLE, "hang".to_owned()),
            Mode::Unavailable | Mode::Refuse => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable".to_owned())
            }
        }
    };
    if body == "hang" {
        tokio::time::sleep(state.hang).await;
    }
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
