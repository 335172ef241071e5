//! The clients to the upstreams: plain HTTP/1.1 by default, HTTPS with the system's roots
//! or a configured CA (and a client certificate for mTLS), and HTTP/2 for gRPC backends
//! (h2c with prior knowledge, or h2 negotiated over TLS); and the bound on requests in
//! flight to each upstream (`slots`).
//!
//! HTTP/1.1, the hop nearly every request takes, goes through our own keep-alive client
//! (`http1`), built on hyper's connection API: it costs one task per connection and a
//! push and a pop on a short list per request, where hyper-util's pooled client spawned
//! a task per request and kept more books. Its rules for reusing a connection are
//! written down there. HTTP/2 upstreams, multiplexed on one connection, keep hyper-util's
//! client.

mod http1;
mod slots;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::{BoxError, RequestBody};
use crate::config::{Upstream, UpstreamProtocol};

pub use slots::{SlotBody, Slots};

/// The client that reaches one kind of upstream; clones share its connections.
#[derive(Clone)]
pub enum UpstreamClient {
    Http1(http1::Client),
    Http2(Box<LegacyClient>),
}

type LegacyClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, RequestBody>;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not connect")]
    Connect(#[source] BoxError),
    #[error("the exchange failed")]
    Exchange(#[source] hyper::Error),
    #[error("the request names no upstream host")]
    NoAuthority,
    #[error(transparent)]
    Http2(hyper_util::client::legacy::Error),
}

impl Error {
    /// The upstream could not be reached at all (refused, unresolved, TLS handshake).
    pub fn is_connect(&self) -> bool {
        match self {
            Error::Connect(_) => true,
            Error::Http2(e) => e.is_connect(),
            Error::Exchange(_) | Error::NoAuthority => false,
        }
    }
}

/// Builds a client for upstreams reached the way `upstream` says. `default_tls` is used
/// for HTTPS when the route configures no TLS of its own.
pub fn client(upstream: &Upstream, default_tls: &Arc<rustls::ClientConfig>) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let tls = upstream.tls.as_ref().map_or(default_tls, |t| &t.config);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config((**tls).clone())
        .https_or_http();
    match upstream.protocol {
        UpstreamProtocol::Http1 => UpstreamClient::Http1(http1::Client::new(
            builder.enable_http1().wrap_connector(http),
        )),
        UpstreamProtocol::Http2 => {
            let connector = builder.enable_http2().wrap_connector(http);
            let mut client = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
            client.pool_idle_timeout(Duration::from_secs(60));
            client.http2_only(true);
            UpstreamClient::Http2(Box::new(client.build(connector)))
        }
    }
}

impl UpstreamClient {
    /// This client, sharing its connections, made ready for requests to `upstream`: an
    /// HTTP/1.1 client holds that upstream's idle list, found once here instead of per
    /// request.
    pub fn bound_to(&self, upstream: &Upstream) -> UpstreamClient {
        match self {
            UpstreamClient::Http1(client) => {
                UpstreamClient::Http1(client.bound_to(upstream.https, &upstream.authority))
            }
            UpstreamClient::Http2(client) => UpstreamClient::Http2(client.clone()),
        }
    }

    /// Sends `req`, whose URI names the upstream (scheme and authority).
    pub async fn request(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, Error> {
        match self {
            UpstreamClient::Http1(client) => client.request(req).await,
            UpstreamClient::Http2(client) => {
                let resp = client.request(req).await.map_err(Error::Http2)?;
                Ok(resp.map(|body| UpstreamBody::new(body, None)))
            }
        }
    }
}

/// An upstream's response body, streamed as it arrives. Read to its end, it hands its
/// HTTP/1.1 connection back for the next request; dropped before, it closes it. Either
/// way, a request body not yet all sent goes no further (see `http1`).
pub struct UpstreamBody {
    inner: Incoming,
    lease: Option<http1::Lease>,
}

impl UpstreamBody {
    fn new(inner: Incoming, lease: Option<http1::Lease>) -> UpstreamBody {
        UpstreamBody { inner, lease }
    }

    /// The response has ended, read to its end (`complete`) or not.
    fn end(&mut self, complete: bool) {
        if let Some(lease) = self.lease.take() {
            lease.end(complete);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.end(true),
            // Trailers are always the last frame.
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() || self.inner.is_end_stream() => {
                self.end(true)
            }
            Poll::Ready(Some(Err(_))) => self.end(false),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body with nothing left to read (HEAD, 204, 304, a length fully read) is often
        // dropped without a last poll.
        let complete = self.inner.is_end_stream();
        self.end(complete);
    }
}
