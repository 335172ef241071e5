//! Protocols beyond plain HTTP/1.1 proxying: WebSocket upgrades (checked on the upgrade
//! request), gRPC-style HTTP/2 with trailers, and HTTPS upstreams with a private CA and a
//! client certificate (mTLS).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::*;

/// A WebSocket echo server that records the identity header of each handshake.
#[allow(clippy::result_large_err)] // the handshake callback's signature is tungstenite's
async fn websocket_echo() -> (String, Arc<std::sync::Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let callback =
                    |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                        let user = req
                            .headers()
                            .get("x-user-id")
                            .map(|v| v.to_str().unwrap().to_owned());
                        record.lock().unwrap().push(user);
                        Ok(resp)
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// The standard routes, with WebSocket upgrades allowed on `/api`.
fn websocket_routes_toml(upstream: &str) -> String {
    routes_toml(upstream).replacen(
        "prefix = \"/api\"\n",
        "prefix = \"/api\"\nwebsocket = true\n",
        1,
    )
}

#[tokio::test]
async fn websocket_upgrades_pass_after_auth_and_echo() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let (ws_url, seen) = websocket_echo().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        provider_toml(&jwks.url(), ""),
        websocket_routes_toml(&ws_url)
    ))
    .await;
    gw.wait_ready().await;

    let url = format!("ws://{}/api/socket", gw.addr);
    // Without a token: the upgrade is refused and the upstream never hears of it.
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let refused = tokio_tungstenite::client_async(url.as_str(), stream).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    assert!(seen.lock().unwrap().is_empty());

    // With a token: upgraded, identity set on the handshake, frames echoed both ways.
    let mut request = url.as_str().into_client_request().unwrap();
    let token = key.mint(Alg::EdDSA, &claims("alice"));
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
        .headers_mut()
        .insert("x-user-id", "mallory".parse().unwrap());
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through the gateway"] {
        ws.send(Message::text(text)).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), text);
    }
    assert_eq!(*seen.lock().unwrap(), vec![Some("alice".to_owned())]);
}

/// An h2c server answering like a gRPC service: a body, then `grpc-status` trailers.
async fn grpc_like_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let user = req
                            .headers()
                            .get("x-user-id")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let te = req
                            .headers()
                            .get("te")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        trailers.insert("x-echo-user", user.parse().unwrap());
                        trailers.insert("x-echo-te", te.parse().unwrap());
                        let frames = vec![
                            Ok::<_, std::convert::Infallible>(Frame::data(body)),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let resp = Response::builder()
                            .header("content-type", "application/grpc")
                            .body(StreamBody::new(futures_util::stream::iter(frames)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}

#[tokio::test]
async fn grpc_style_h2_with_trailers_is_proxied_intact() {
    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let upstream = grpc_like_upstream().await;
    let body = format!(
        "{}[[routes]]\nname = \"grpc\"\nprefix = \"/tasks.v1.Tasks\"\nupstream = \"{upstream}\"\nupstream_protocol = \"http2\"\n",
        provider_toml(&jwks.url(), "")
    );
    let gw = TestGateway::start(&body).await;
    gw.wait_ready().await;

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let token = key.mint(Alg::EdDSA, &claims("alice"));
    let req = Request::post(format!("http://{}/tasks.v1.Tasks/List", gw.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x05hello")))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(collected.to_bytes().as_ref(), b"\0\0\0\0\x05hello");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("x-echo-user").unwrap(), "alice");
    assert_eq!(trailers.get("x-echo-te").unwrap(), "trailers");
}

/// A private CA, a server certificate for localhost it signed, and a client certificate
/// it signed; all PEM files in `dir`.
fn private_pki(
    dir: &std::path::Path,
) -> (
    rustls::pki_types::CertificateDer<'static>,
    rustls::ServerConfig,
) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["portcullis".to_owned()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("client.pem"), client_cert.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server_cert.der().clone()], key)
        .unwrap();
    (ca_cert.der().clone(), config)
}

#[tokio::test]
async fn https_upstreams_with_a_private_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, server_config) = private_pki(dir.path());
    // An upstream that only talks to clients holding a certificate from the CA.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let has_client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty());
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let user = req
                            .headers()
                            .get("x-user-id")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let body =
                            serde_json::json!({"user": user, "client_cert": has_client_cert})
                                .to_string();
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            body,
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });

    let key = SigningKey::ed25519("k1");
    let jwks = JwksServer::start(vec![key.jwk(None)]).await;
    let d = dir.path().display();
    let body = format!(
        r#"{}
[[routes]]
name = "mtls"
prefix = "/mtls"
upstream = "https://localhost:{port}"
upstream_tls = {{ ca = "{d}/ca.pem", client_cert = "{d}/client.pem", client_key = "{d}/client.key" }}

[[routes]]
name = "no-client-cert"
prefix = "/plain-tls"
upstream = "https://localhost:{port}"
upstream_tls = {{ ca = "{d}/ca.pem" }}

[[routes]]
name = "system-roots"
prefix = "/system"
upstream = "https://localhost:{port}"
"#,
        provider_toml(&jwks.url(), "")
    );
    let gw = TestGateway::start(&body).await;
    gw.wait_ready().await;
    let token = key.mint(Alg::EdDSA, &claims("alice"));

    let ok = gw.get_as("/mtls/x", &token).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(
        ok.json(),
        serde_json::json!({"user": "alice", "client_cert": true})
    );
    // Without the client certificate the upstream refuses the handshake: 502.
    assert_eq!(
        gw.get_as("/plain-tls/x", &token).await.status,
        StatusCode::BAD_GATEWAY
    );
    // The system roots do not trust the private CA: 502, never a silent downgrade.
    assert_eq!(
        gw.get_as("/system/x", &token).await.status,
        StatusCode::BAD_GATEWAY
    );
}
