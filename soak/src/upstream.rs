//! The backend: an echo server that reports what the gateway forwarded, so the driver
//! can check every 200 against the token it sent. It reports the request id, every
//! identity header it received (the trusted one and any spelling of it), the claim
//! header, the path and the body length.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        async move { Ok::<_, Infallible>(echo(req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { addr, hits }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let mut user = String::from("-");
    let mut trusted = 0;
    let mut odd = 0;
    let mut forged = 0;
    for (name, value) in &parts.headers {
        let normalized = name.as_str().replace(['_', '.'], "-");
        if normalized != "x-user-id" {
            continue;
        }
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if v.starts_with("forged") {
            forged += 1;
        }
        if name.as_str() == "x-user-id" {
            trusted += 1;
            user = v;
        } else {
            odd += 1;
        }
    }
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_else(|| "-".into())
    };
    let rid = header("x-soak-rid");
    let email = header("x-user-email");
    let target = parts
        .uri
        .path_and_query()
        .map_or("-".to_owned(), |p| p.as_str().to_owned());
    let len = match body.collect().await {
        Ok(b) => b.to_bytes().len() as i64,
        Err(_) => -1,
    };
    if parts.uri.path().starts_with("/api/slow/") {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let text = format!(
        "rid={rid} user={user} n={trusted} odd={odd} forged={forged} email={email} len={len} target={target}"
    );
    Response::new(Full::new(Bytes::from(text)))
}

/// The echo body, parsed.
#[derive(Debug, Default)]
pub struct Echo {
    pub rid: String,
    pub user: String,
    pub n: u32,
    pub odd: u32,
    pub forged: u32,
    pub email: String,
    pub len: i64,
    pub target: String,
}

impl Echo {
    pub fn parse(body: &[u8]) -> Option<Echo> {
        let text = std::str::from_utf8(body).ok()?;
        let mut e = Echo::default();
        for field in text.split(' ') {
            let (k, v) = field.split_once('=')?;
            match k {
                "rid" => e.rid = v.into(),
                "user" => e.user = v.into(),
                "n" => e.n = v.parse().ok()?,
                "odd" => e.odd = v.parse().ok()?,
                "forged" => e.forged = v.parse().ok()?,
                "email" => e.email = v.into(),
                "len" => e.len = v.parse().ok()?,
                "target" => e.target = v.into(),
                _ => return None,
            }
        }
        Some(e)
    }
}
