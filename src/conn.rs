//! One client connection, from accept to close: which HTTP version it speaks, its idle
//! timeout, its graceful close on shutdown, and what it costs while it waits.
//!
//! An HTTP/1.1 keep-alive connection spends most of its life idle between requests, and
//! hyper keeps two 8 KiB buffers and its connection state for it all that time. Like
//! nginx, the gateway *parks* a plaintext HTTP/1.1 connection that has been quiet for
//! [`PARK_AFTER`] at a message boundary: hyper's connection is taken apart
//! (`into_parts`), everything but the socket is freed, and a fresh hyper connection is
//! built when the client sends its next byte. An idle keep-alive connection then costs
//! the socket and a small task instead of ~25 KiB.
//!
//! Parking must never lose or reinterpret a byte, so it happens only when every request
//! body was read to its end (or there was none), every response was handed to hyper in
//! full and flushed to the socket, and hyper is waiting for the next request. A request
//! body the gateway did not read (it answered early) may still be draining inside
//! hyper: such a connection is never parked again. HTTP/2 and TLS connections are not
//! parked (h2 multiplexes its idle time away; rustls holds buffered state of its own).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// The first bytes of every HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a plaintext HTTP/1.1 connection must be quiet, between requests, before it
/// is parked. Long enough that a client sending requests back to back never pays for
/// re-building hyper's state; short enough that thousands of idle keep-alive
/// connections hold almost nothing.
pub const PARK_AFTER: Duration = Duration::from_millis(100);

/// Request bodies as the handlers see them: hyper's, watched so the connection knows
/// whether each one was read to its end.
pub type ClientBody = Watched<Incoming, ReadToEnd>;

/// A handler: what a listener does with each request.
pub trait Handler: Clone + Send + Sync + Unpin + 'static {
    fn call(
        &self,
        req: Request<ClientBody>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request<ClientBody>) -> Fut + Clone + Send + Sync + Unpin + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    fn call(
        &self,
        req: Request<ClientBody>,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        self(req)
    }
}

/// The HTTP settings every connection of one listener is served with.
pub struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Protocols {
    pub fn new(server: &ServerConfig) -> Protocols {
        // `max_buf_size` is what bounds a request head in hyper: a head still incomplete
        // when the read buffer is full gets 431 (`max_header_size` alone is checked
        // only once a head is complete, after up to ~400 KiB were buffered for it). It
        // also caps each read of a request body (64 KiB reads by default, as nginx's
        // bench configuration uses) and how much hyper queues before a flush, but not
        // the size of one write: a response body is written out frame by frame as the
        // upstream side delivered it (hundreds of KiB per `writev` for a download).
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(server.header_read_timeout)
            .max_buf_size(server.max_header_bytes)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(server.max_header_bytes as u32)
            .max_concurrent_streams(256);
        Protocols {
            http1,
            http2,
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
        }
    }
}

/// A client stream the gateway can serve; a plaintext TCP stream can also be parked.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The socket to wait on while parked, if this stream may be parked at all.
    fn parkable(&self) -> Option<&TcpStream>;
}

impl ClientStream for TcpStream {
    fn parkable(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn parkable(&self) -> Option<&TcpStream> {
        None
    }
}

/// Serves one connection until it ends. On shutdown, or after `idle_timeout` without a
/// byte either way, it is closed gracefully: a request in progress still finishes.
pub async fn serve<I: ClientStream, H: Handler>(
    protocols: &Protocols,
    stream: I,
    handler: H,
    metrics: Option<&Metrics>,
    cancel: CancellationToken,
) {
    let state = Arc::new(ConnState::new());
    let mut io = ClientIo {
        inner: stream,
        prefix: Bytes::new(),
        state: state.clone(),
    };
    // Which protocol: HTTP/2 with prior knowledge starts with its preface, anything else
    // is read as HTTP/1. A client that sends nothing is held no longer than a slow header.
    let h2 = match tokio::time::timeout(protocols.header_read_timeout, sniff(&mut io)).await {
        Ok(Ok(Some(h2))) => h2,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!("connection ended: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("connection ended: no request head in time");
            return;
        }
    };
    let service = Exchanges { handler, state };
    if h2 {
        serve_h2(protocols, io, service, cancel).await;
    } else {
        serve_h1(protocols, io, service, metrics, cancel).await;
    }
}

/// Reads the first bytes of a connection into `io`'s prefix until they either are the
/// HTTP/2 preface or cannot be. `None`: the client closed without a byte.
async fn sniff<I: ClientStream>(io: &mut ClientIo<I>) -> std::io::Result<Option<bool>> {
    let mut seen = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    while n < seen.len() {
        let read = io.inner.read(&mut seen[n..]).await?;
        if read == 0 {
            if n == 0 {
                return Ok(None);
            }
            break;
        }
        io.state.touch();
        n += read;
        if seen[..n] != H2_PREFACE[..n] {
            break;
        }
    }
    io.prefix = Bytes::copy_from_slice(&seen[..n]);
    Ok(Some(n == H2_PREFACE.len() && seen == *H2_PREFACE))
}

async fn serve_h2<I: ClientStream, H: Handler>(
    protocols: &Protocols,
    io: ClientIo<I>,
    service: Exchanges<H>,
    cancel: CancellationToken,
) {
    let state = io.state.clone();
    let mut conn = Box::pin(protocols.http2.serve_connection(TokioIo::new(io), service));
    let mut closing = false;
    let timer = tokio::time::sleep(protocols.idle_timeout);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            () = cancel.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = &mut timer, if !closing => {
                let last = state.last_activity();
                if last.elapsed() >= protocols.idle_timeout {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                } else {
                    timer.as_mut().reset(last + protocols.idle_timeout);
                }
            }
        }
    }
}

/// Serves HTTP/1 until the connection ends, parking it whenever it idles at a message
/// boundary. The phases are separate futures so that a parked connection's task holds
/// only what waiting needs: no timer or select state of the hyper phase.
async fn serve_h1<I: ClientStream, H: Handler>(
    protocols: &Protocols,
    mut io: ClientIo<I>,
    service: Exchanges<H>,
    metrics: Option<&Metrics>,
    cancel: CancellationToken,
) {
    loop {
        let Some(parked) = drive_h1(protocols, io, &service, &cancel).await else {
            return;
        };
        io = parked;
        if !wait_parked(&io, protocols.idle_timeout, metrics, &cancel).await {
            return;
        }
    }
}

/// Runs hyper on the connection until it ends (`None`) or has been quiet at a message
/// boundary long enough to park (`Some`, the bare stream).
async fn drive_h1<I: ClientStream, H: Handler>(
    protocols: &Protocols,
    mut io: ClientIo<I>,
    service: &Exchanges<H>,
    cancel: &CancellationToken,
) -> Option<ClientIo<I>> {
    let state = io.state.clone();
    let idle_timeout = protocols.idle_timeout;
    let may_park = io.inner.parkable().is_some();
    loop {
        // Boxed, so a parked connection's task holds none of hyper's state.
        let mut conn = Box::new(
            protocols
                .http1
                .serve_connection(TokioIo::new(io), service.clone())
                .with_upgrades(),
        );
        let mut closing = false;
        let timer = tokio::time::sleep_until(next_check(&state, may_park, idle_timeout));
        tokio::pin!(timer);
        loop {
            tokio::select! {
                // Hyper first: under load a connection's task may wait in the run queue
                // past its park timer while its next request already sits in the socket.
                // Polled in random order, half of those would be parked and rebuilt at
                // once, for nothing; polled first, hyper reads the request and the
                // connection is no longer at a message boundary.
                biased;
                result = Pin::new(&mut *conn) => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                    return None;
                }
                () = cancel.cancelled(), if !closing => {
                    closing = true;
                    Pin::new(&mut *conn).graceful_shutdown();
                }
                () = &mut timer, if !closing => {
                    let quiet = state.last_activity().elapsed();
                    if quiet >= idle_timeout {
                        closing = true;
                        Pin::new(&mut *conn).graceful_shutdown();
                    } else if may_park && quiet >= PARK_AFTER && state.at_message_boundary() {
                        break;
                    } else {
                        timer.as_mut().reset(next_check(&state, may_park, idle_timeout));
                    }
                }
            }
        }
        // Park: take hyper's connection apart at the message boundary.
        let http1::Parts {
            io: parked,
            read_buf,
            ..
        } = conn.into_parts()?;
        io = parked.into_inner();
        if read_buf.is_empty() {
            // Even empty, it still holds hyper's whole read buffer.
            drop(read_buf);
            return Some(io);
        }
        // The start of a request that stalled: serve it on, without parking again (so a
        // slow client cannot restart hyper's header timer over and over).
        io.prefix = read_buf;
        state.never_park.store(true, Ordering::Relaxed);
    }
}

/// Holds a parked connection, with nothing but its socket, until the client sends its
/// next byte (`true`), or it has been idle too long or the gateway shuts down (`false`).
async fn wait_parked<I: ClientStream>(
    io: &ClientIo<I>,
    idle_timeout: Duration,
    metrics: Option<&Metrics>,
    cancel: &CancellationToken,
) -> bool {
    let socket = io.inner.parkable().expect("only parkable streams park");
    let deadline = io.state.last_activity() + idle_timeout;
    let _parked = metrics.map(Metrics::parked);
    tokio::select! {
        ready = socket.readable() => {
            if ready.is_err() {
                return false;
            }
            // Bytes are waiting: the connection is not idle, whatever the timer says.
            io.state.touch();
            true
        }
        () = cancel.cancelled() => false,
        () = tokio::time::sleep_until(deadline) => false,
    }
}

/// When to look at a connection next: once it may have been quiet long enough to park,
/// or to time out.
fn next_check(state: &ConnState, may_park: bool, idle_timeout: Duration) -> Instant {
    let last = state.last_activity();
    let now = Instant::now();
    let mut at = last + idle_timeout;
    if may_park && !state.never_park.load(Ordering::Relaxed) {
        let park = if last + PARK_AFTER > now {
            last + PARK_AFTER
        } else if state.exchanges.load(Ordering::Relaxed) > 0 {
            // A request in flight for a while (a slow or busy upstream): look again after
            // as long as it has taken so far rather than every PARK_AFTER. With 10k
            // connections each waiting about a second for its answer, a check every
            // 100 ms woke every connection ten times per request. It parks at most that
            // much later once the response is out.
            now + (now - last)
        } else {
            now + PARK_AFTER
        };
        at = at.min(park);
    }
    at.max(now + Duration::from_millis(1))
}

/// What the connection's IO, its service and its bodies report, for the idle timeout and
/// for parking. One task touches it; the atomics are only there because hyper's service
/// and bodies must be `Send`.
struct ConnState {
    opened: Instant,
    /// When the connection last moved a byte, in milliseconds after `opened`.
    last_ms: AtomicU64,
    /// Hyper wrote since its last completed flush.
    unflushed: AtomicBool,
    /// Hyper's last read found nothing to read.
    read_waiting: AtomicBool,
    /// Responses hyper still holds (not yet written out in full).
    exchanges: AtomicUsize,
    /// Request bodies still being read: a response can be written in full (an upstream
    /// that answered early) while its request's body still streams in, and the bytes
    /// that come next are that body's, never the start of a request.
    bodies: AtomicUsize,
    /// A request body was left unread (hyper may still be discarding it), or a request
    /// stalled mid-head: this connection is never parked.
    never_park: AtomicBool,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            unflushed: AtomicBool::new(false),
            read_waiting: AtomicBool::new(false),
            exchanges: AtomicUsize::new(0),
            bodies: AtomicUsize::new(0),
            never_park: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last_activity(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Whether hyper is between two requests with nothing buffered to write.
    fn at_message_boundary(&self) -> bool {
        self.exchanges.load(Ordering::Relaxed) == 0
            && self.bodies.load(Ordering::Relaxed) == 0
            && !self.unflushed.load(Ordering::Relaxed)
            && self.read_waiting.load(Ordering::Relaxed)
            && !self.never_park.load(Ordering::Relaxed)
    }
}

/// The client stream as hyper sees it: bytes already read (while sniffing the protocol,
/// or left over when a connection was taken apart) come first; every read and write is
/// recorded in the connection's state.
struct ClientIo<I> {
    inner: I,
    prefix: Bytes,
    state: Arc<ConnState>,
}

impl<I: AsyncRead + Unpin> AsyncRead for ClientIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Let go of its allocation: an idle connection keeps its IO for hours.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.state
            .read_waiting
            .store(poll.is_pending(), Ordering::Relaxed);
        if buf.filled().len() > before {
            self.state.touch();
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ClientIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.state.unflushed.store(true, Ordering::Relaxed);
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(poll, Poll::Ready(Ok(()))) {
            self.state.unflushed.store(false, Ordering::Relaxed);
        }
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.state.unflushed.store(true, Ordering::Relaxed);
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The hyper service of a connection: counts each exchange from request to the end of
/// its response, and watches request bodies.
struct Exchanges<H> {
    handler: H,
    state: Arc<ConnState>,
}

impl<H: Clone> Clone for Exchanges<H> {
    fn clone(&self) -> Self {
        Exchanges {
            handler: self.handler.clone(),
            state: self.state.clone(),
        }
    }
}

impl<H: Handler> hyper::service::Service<Request<Incoming>> for Exchanges<H> {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Respond;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let open = Exchange::open(&self.state);
        let state = self.state.clone();
        let req = req.map(|inner| Watched {
            watch: ReadToEnd::new(inner.is_end_stream(), state),
            inner,
        });
        Respond {
            // Boxed where it is made: hyper keeps the future of the request in flight
            // inside the connection, and the pipeline's future is a few KiB, so it is
            // moved once, into its box, and never again.
            handling: Box::pin(self.handler.call(req)),
            open: Some(open),
        }
    }
}

/// The future of one exchange: the pipeline's, whose response is then watched until
/// hyper has written it.
struct Respond {
    handling: Pin<Box<dyn Future<Output = Response<Body>> + Send>>,
    open: Option<Exchange>,
}

impl Future for Respond {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let resp = ready!(self.handling.as_mut().poll(cx));
        let watch = self.open.take().expect("a response is produced once");
        Poll::Ready(Ok(resp.map(|inner| Watched { inner, watch })))
    }
}

/// One request on the connection whose response hyper has not finished with.
struct Exchange(Arc<ConnState>);

impl Exchange {
    fn open(state: &Arc<ConnState>) -> Exchange {
        state.exchanges.fetch_add(1, Ordering::Relaxed);
        Exchange(state.clone())
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.0.exchanges.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body; hyper drops it once the whole body is in its write buffer (or the
/// connection failed), which ends the exchange.
type ResponseBody = Watched<Body, Exchange>;

impl Watch for Exchange {}

/// A body passed on frame by frame, with a watch that hears when it has been read to its
/// end and is dropped with it.
pub struct Watched<B: HttpBody, W: Watch> {
    inner: B,
    watch: W,
}

/// What a [`Watched`] body reports to.
pub trait Watch: Unpin {
    /// The body has been read to its end.
    fn ended(&mut self) {}
}

impl<B, W> HttpBody for Watched<B, W>
where
    B: HttpBody<Data = Bytes, Error = hyper::Error> + Unpin,
    W: Watch,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() || self.inner.is_end_stream() {
            self.watch.ended();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: HttpBody, W: Watch> Drop for Watched<B, W> {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.watch.ended();
        }
    }
}

/// Whether a request body was read to its end.
pub struct ReadToEnd {
    ended: bool,
    state: Arc<ConnState>,
}

impl ReadToEnd {
    fn new(ended: bool, state: Arc<ConnState>) -> ReadToEnd {
        if !ended {
            state.bodies.fetch_add(1, Ordering::Relaxed);
        }
        ReadToEnd { ended, state }
    }
}

impl Watch for ReadToEnd {
    fn ended(&mut self) {
        if !self.ended {
            self.ended = true;
            self.state.bodies.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for ReadToEnd {
    fn drop(&mut self) {
        if !self.ended {
            // Hyper may still be reading the rest of it off the connection.
            self.state.never_park.store(true, Ordering::Relaxed);
            self.state.bodies.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
