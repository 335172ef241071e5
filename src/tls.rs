//! TLS termination with rustls (aws-lc-rs): TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.
//! Certificates are read when the config loads, so a reload re-reads them and new
//! connections use the new ones while open connections keep theirs.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used. Never includes key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read a certificate chain from {path}: {source}")]
    Certs {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCerts { path: String },
    #[error("cannot read a private key from {path}: {source}")]
    Key {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the certificate and key do not form a usable pair: {0}")]
    Config(#[source] rustls::Error),
}

/// Builds the server side of TLS from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = some_certs(cert)?;
    let key = read_key(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side of TLS to an upstream: the system's roots, or only those in `ca`;
/// and a client certificate when the upstream wants to know the caller is the gateway.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in some_certs(path)? {
                roots.add(cert).map_err(TlsError::Config)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(TlsError::Config)?,
    };
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file, in order.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect())
        .map_err(|source| TlsError::Certs {
            path: path.display().to_string(),
            source,
        })
}

/// The certificates of a PEM file that must hold at least one.
fn some_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = read_certs(path)?;
    if certs.is_empty() {
        return Err(TlsError::NoCerts {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Key {
        path: path.display().to_string(),
        source,
    })
}
