//! The access log: one line per request, batched in memory and written to stderr in
//! large chunks, the way nginx's `access_log ... buffer=64k flush=1s` does. Logging a
//! request through `tracing`'s writer thread woke that thread (a futex, and spins of
//! `sched_yield`) and made one `write` for every line; here a request formats its line in
//! a buffer its thread reuses and appends it to a shared one, and a writer thread wakes
//! only when 64 KiB are waiting, once a second, and at shutdown.
//!
//! A request never waits on stderr: while the writer is stuck (a stalled log collector),
//! lines pile up to [`MAX_PENDING`], and beyond that they are dropped and counted in
//! `portcullis_access_log_dropped_total`. Errors and warnings stay on `tracing`.
//!
//! The line carries the method, the normalized path, the route, the status, the latency
//! and the user id: never a header, a query string or a token.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use prometheus_client::metrics::counter::Counter;

/// Written as soon as this much is waiting.
const BUFFER: usize = 64 * 1024;
/// Written at least this often when anything is waiting.
const FLUSH: Duration = Duration::from_secs(1);
/// Waiting lines past this are dropped (the writer cannot keep up).
pub(crate) const MAX_PENDING: usize = 16 * BUFFER;

/// Lines dropped because stderr could not keep up; one counter for the process, as the
/// log is.
pub(crate) static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

static LOG: OnceLock<Arc<Log>> = OnceLock::new();

thread_local! {
    /// Each thread formats its lines here, so a line costs no allocation.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// The access log's line format; the same as `--log-format` gives the other logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// One request, as the access line tells it.
pub(crate) struct Entry<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub route: &'a str,
    pub status: StatusCode,
    pub latency: Duration,
    pub user: &'a str,
}

struct Log {
    format: Format,
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer was woken for a full buffer and has not taken it yet.
    woken: bool,
    closing: bool,
}

/// Starts the access log, once per process (`None` if its thread cannot start). Until
/// it is started, [`record`] writes nothing: a gateway run in-process by a test logs no
/// access lines. Dropping the returned guard writes what is waiting and stops the writer.
pub fn start(format: Format) -> Option<Flush> {
    let log = Arc::new(Log {
        format,
        pending: Mutex::new(Pending {
            lines: Vec::with_capacity(BUFFER * 2),
            ..Pending::default()
        }),
        wake: Condvar::new(),
    });
    let writer = std::thread::Builder::new()
        .name("access-log".into())
        .spawn({
            let log = log.clone();
            move || write_loop(&log)
        })
        .ok()?;
    // Already started: the guard of this second writer stops it again at once.
    let _ = LOG.set(log.clone());
    Some(Flush {
        log,
        writer: Some(writer),
    })
}

/// Writes the lines still waiting and stops the writer when dropped (after the gateway
/// has drained, so every request's line is written on a clean shutdown).
pub struct Flush {
    log: Arc<Log>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Flush {
    fn drop(&mut self) {
        lock(&self.log.pending).closing = true;
        self.log.wake.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Logs one request: formats it in this thread's buffer and appends it to the waiting
/// lines; wakes the writer only when a full buffer is waiting.
pub(crate) fn record(entry: &Entry<'_>) {
    let Some(log) = LOG.get() else { return };
    LINE.with_borrow_mut(|line| {
        line.clear();
        format(line, log.format, SystemTime::now(), entry);
        let mut pending = lock(&log.pending);
        if pending.lines.len() + line.len() > MAX_PENDING {
            drop(pending);
            DROPPED.inc();
            return;
        }
        pending.lines.extend_from_slice(line);
        if pending.lines.len() >= BUFFER && !pending.woken {
            pending.woken = true;
            drop(pending);
            log.wake.notify_one();
        }
    });
}

/// The writer thread: takes the waiting lines when woken for a full buffer, or every
/// [`FLUSH`], and writes them in one go. The lines are taken by swapping buffers, so
/// requests append to the other one while this one is written.
fn write_loop(log: &Log) {
    let mut chunk = Vec::with_capacity(BUFFER * 2);
    loop {
        let mut pending = lock(&log.pending);
        if !pending.woken && !pending.closing {
            pending = log
                .wake
                .wait_timeout(pending, FLUSH)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::swap(&mut pending.lines, &mut chunk);
        pending.woken = false;
        let closing = pending.closing;
        drop(pending);
        if !chunk.is_empty() {
            // Holding stderr's lock keeps the other logs' lines out of the chunk.
            if std::io::stderr().lock().write_all(&chunk).is_err() {
                DROPPED.inc_by(chunk.iter().filter(|&&b| b == b'\n').count() as u64);
            }
            chunk.clear();
        }
        if closing {
            return;
        }
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // A panic while holding the lock leaves whole lines behind: keep going.
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// Appends one line, with its newline, in the shape `tracing`'s text and JSON formats
/// give the other logs.
fn format(out: &mut Vec<u8>, format: Format, now: SystemTime, e: &Entry<'_>) {
    let time = humantime::format_rfc3339_micros(now);
    let latency_us = e.latency.as_micros() as u64;
    let status = e.status.as_u16();
    // Writing to a Vec cannot fail.
    let _ = match format {
        Format::Text => writeln!(
            out,
            "{time}  INFO portcullis::access: request method={} path={:?} route={:?} \
             status={status} latency_us={latency_us} user={:?}",
            e.method, e.path, e.route, e.user
        ),
        Format::Json => {
            let _ = write!(
                out,
                r#"{{"timestamp":"{time}","level":"INFO","message":"request","method":"#
            );
            json_str(out, e.method.as_str());
            out.extend_from_slice(br#","path":"#);
            json_str(out, e.path);
            out.extend_from_slice(br#","route":"#);
            json_str(out, e.route);
            let _ = write!(
                out,
                r#","status":{status},"latency_us":{latency_us},"user":"#
            );
            json_str(out, e.user);
            out.extend_from_slice(b",\"target\":\"portcullis::access\"}\n");
            Ok(())
        }
    };
}

/// A JSON string, quoted and escaped.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(path: &'a str, user: &'a str) -> Entry<'a> {
        Entry {
            method: &Method::GET,
            path,
            route: "api",
            status: StatusCode::OK,
            latency: Duration::from_micros(1234),
            user,
        }
    }

    fn line(f: Format, e: &Entry<'_>) -> String {
        let mut out = Vec::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_763_200_123_456);
        format(&mut out, f, at, e);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_lines_read_like_the_other_logs() {
        assert_eq!(
            line(Format::Text, &entry("/api/tasks", "user-1")),
            "2025-12-03T12:00:00.123456Z  INFO portcullis::access: request method=GET \
             path=\"/api/tasks\" route=\"api\" status=200 latency_us=1234 user=\"user-1\"\n"
        );
    }

    #[test]
    fn json_lines_carry_every_field_once() {
        let text = line(Format::Json, &entry("/api/tasks", "-"));
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "timestamp": "2025-12-03T12:00:00.123456Z",
                "level": "INFO",
                "message": "request",
                "method": "GET",
                "path": "/api/tasks",
                "route": "api",
                "status": 200,
                "latency_us": 1234,
                "user": "-",
                "target": "portcullis::access",
            })
        );
    }

    #[test]
    fn a_user_id_cannot_forge_a_second_line_or_field() {
        let user = "evil\"\n2025-12-03T12:00:00Z  INFO portcullis::access: user=\"admin\\";
        let text = line(Format::Text, &entry("/a\"b", user));
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.contains(r#"path="/a\"b""#), "{text}");
        assert!(text.contains(r#"user="evil\"\n2025"#), "{text}");

        let json = line(Format::Json, &entry("/a\"b", user));
        assert_eq!(json.matches('\n').count(), 1, "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["user"], user);
        assert_eq!(v["path"], "/a\"b");
    }
}
