//! Pooled keep-alive clients to the upstreams: plain HTTP/1.1 by default, HTTPS with the
//! system's roots or a configured CA (and a client certificate for mTLS), and HTTP/2 for
//! gRPC backends (h2c with prior knowledge, or h2 negotiated over TLS); and the bound on
//! requests in flight to each upstream (`slots`).

mod slots;

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::RequestBody;
use crate::config::{Upstream, UpstreamProtocol};

pub use slots::{SlotBody, Slots};

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, RequestBody>;

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
    let connector = match upstream.protocol {
        UpstreamProtocol::Http1 => builder.enable_http1().wrap_connector(http),
        UpstreamProtocol::Http2 => builder.enable_http2().wrap_connector(http),
    };
    let mut client = Client::builder(TokioExecutor::new());
    client.pool_idle_timeout(Duration::from_secs(60));
    if upstream.protocol == UpstreamProtocol::Http2 {
        client.http2_only(true);
    }
    client.build(connector)
}
