//! The gateway under test: the release binary as a child process, as an operator runs
//! it. Its JSON log on stderr is copied to `gateway.log`; the listening line gives the
//! bound addresses; `/proc` gives its RSS, file descriptors and threads; `/metrics` on
//! the admin listener gives its own view.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

pub struct Gateway {
    child: Child,
    pub pid: u32,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub log: Arc<LogCounts>,
}

/// What the gateway logged, by kind.
#[derive(Default)]
pub struct LogCounts {
    pub lines: AtomicU64,
    pub warn: AtomicU64,
    pub error: AtomicU64,
    /// Lines that are not JSON (a panic message, for one).
    pub other: AtomicU64,
    pub jwks_fetch_failed: AtomicU64,
    pub jwks_loaded: AtomicU64,
}

impl Gateway {
    /// Starts `bin` on `config`, logging JSON to `log_path`, and waits for the
    /// "portcullis listening" line.
    pub async fn start(bin: &Path, config: &Path, log_path: &Path) -> anyhow_lite::Result<Gateway> {
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .arg("--log-format")
            .arg("json")
            .arg("run")
            // The per-request access log would be most of the output; the rest stays.
            .env("PORTCULLIS_LOG", "info,portcullis::access=off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id().ok_or("the gateway exited at once")?;
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(LogCounts::default());
        let (tx, rx) = oneshot::channel();
        let mut file = tokio::fs::File::create(log_path)
            .await
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let counts = log.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
                counts.lines.fetch_add(1, Ordering::Relaxed);
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    counts.other.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                match v["level"].as_str() {
                    Some("WARN") => counts.warn.fetch_add(1, Ordering::Relaxed),
                    Some("ERROR") => counts.error.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                let message = v["message"].as_str().unwrap_or("");
                if message.starts_with("JWKS fetch failed") || message.starts_with("JWKS refused") {
                    counts.jwks_fetch_failed.fetch_add(1, Ordering::Relaxed);
                } else if message == "JWKS loaded" {
                    counts.jwks_loaded.fetch_add(1, Ordering::Relaxed);
                }
                if message == "portcullis listening" {
                    let addr = |k: &str| v[k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
                    if let (Some(p), Some(a), Some(tx)) =
                        (addr("proxy_addr"), addr("admin_addr"), tx.take())
                    {
                        let _ = tx.send((p, a));
                    }
                }
            }
            let _ = file.flush().await;
        });
        let (proxy, admin) = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(addrs)) => addrs,
            _ => {
                let status = child.try_wait().ok().flatten();
                return Err(format!(
                    "the gateway never logged \"portcullis listening\" (exit: {status:?}); see {}",
                    log_path.display()
                )
                .into());
            }
        };
        Ok(Gateway {
            child,
            pid,
            proxy,
            admin,
            log,
        })
    }

    /// Resident set size, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        status_field(self.pid, "VmRSS:")
    }

    pub fn threads(&self) -> Option<u64> {
        status_field(self.pid, "Threads:")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> Option<u64> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .ok()
            .map(|d| d.count() as u64)
    }

    /// SIGTERM, then waits up to `limit` for the exit. Returns the exit code and the time
    /// the drain took.
    pub async fn terminate(mut self, limit: Duration) -> (Option<i32>, Duration) {
        let start = std::time::Instant::now();
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => (status.code(), start.elapsed()),
            _ => {
                let _ = self.child.kill().await;
                (None, start.elapsed())
            }
        }
    }
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// A GET to the admin listener over a fresh HTTP/1.1 connection.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Option<(StatusCode, String)> {
    let fut = async {
        let stream = TcpStream::connect(admin).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get(path)
            .header("host", admin.to_string())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let status = resp.status();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
}

/// `name{labels}` -> value, from the Prometheus/OpenMetrics text.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of metric `name` whose labels contain `label` (or all).
pub fn metric_sum(m: &HashMap<String, f64>, name: &str, label: Option<&str>) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            let base = k.split('{').next().unwrap_or("");
            base == name && label.is_none_or(|l| k.contains(l))
        })
        .map(|(_, v)| *v)
        .sum()
}

/// A tiny error type: the driver reports and exits, it never recovers.
pub mod anyhow_lite {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}
