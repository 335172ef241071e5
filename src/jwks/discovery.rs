//! OpenID Connect discovery: one bounded GET of the issuer's provider metadata, checked
//! before its `jwks_uri` is trusted. The document must name exactly the configured
//! issuer (OpenID Connect Discovery 1.0 §4.3, the mix-up defence): an issuer whose
//! metadata claims to be someone else never gets its keys used.

use std::time::Duration;

use serde_json::Value;

use super::fetch::{self, FetchError};

/// Where the provider metadata of `issuer` lives: `{issuer}/.well-known/openid-configuration`,
/// without doubling a trailing `/` (Auth0's issuers end with one). `None` when the issuer
/// is not a URL.
pub fn document_url(issuer: &str) -> Option<reqwest::Url> {
    let base = issuer.trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{base}/.well-known/openid-configuration")).ok()?;
    (url.query().is_none() && url.fragment().is_none()).then_some(url)
}

/// Why a discovery round did not produce a `jwks_uri`.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The document could not be read: an outage, like a failed JWKS fetch.
    #[error("discovery document fetch failed")]
    Fetch(#[source] FetchError),
    /// The document was read but is not provider metadata: also an outage.
    #[error("the discovery document is not a JSON object with string `issuer` and `jwks_uri`")]
    Malformed,
    /// The document speaks for another issuer: refused, the provider fails closed.
    #[error(
        "the discovery document names issuer {found:?}, not the configured {expected:?}; its keys are not trusted"
    )]
    IssuerMismatch { expected: String, found: String },
    /// The document names a JWKS the gateway may not fetch: refused, fails closed.
    #[error("the discovery document's jwks_uri {uri:?} is refused: {why}")]
    BadJwksUri { uri: String, why: String },
}

impl DiscoveryError {
    /// Whether the issuer answered with a document that must not be trusted (as opposed
    /// to not answering usefully at all).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            DiscoveryError::IssuerMismatch { .. } | DiscoveryError::BadJwksUri { .. }
        )
    }
}

/// Fetches the document at `document`, checks it speaks for `issuer`, and returns the
/// `jwks_uri` it names (under the same transport rule as a configured `jwks_url`).
pub async fn jwks_uri(
    client: &reqwest::Client,
    document: &reqwest::Url,
    issuer: &str,
    timeout: Duration,
    insecure_allow_http: bool,
) -> Result<reqwest::Url, DiscoveryError> {
    let fetched = fetch::fetch(client, document, timeout)
        .await
        .map_err(DiscoveryError::Fetch)?;
    read(&fetched.body, issuer, insecure_allow_http)
}

fn read(
    body: &[u8],
    issuer: &str,
    insecure_allow_http: bool,
) -> Result<reqwest::Url, DiscoveryError> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| DiscoveryError::Malformed)?;
    let field = |name: &str| doc.get(name).and_then(Value::as_str);
    let (Some(found), Some(uri)) = (field("issuer"), field("jwks_uri")) else {
        return Err(DiscoveryError::Malformed);
    };
    // Exact comparison: no trailing-slash or case folding (RFC 8414 §3.3).
    if found != issuer {
        return Err(DiscoveryError::IssuerMismatch {
            expected: issuer.to_owned(),
            found: found.to_owned(),
        });
    }
    let refused = |why: String| DiscoveryError::BadJwksUri {
        uri: uri.to_owned(),
        why,
    };
    let parsed = reqwest::Url::parse(uri).map_err(|e| refused(format!("not a URL: {e}")))?;
    if let Some(why) = fetch::transport_problem(&parsed, insecure_allow_http) {
        return Err(refused(why));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://issuer.example.com";

    #[test]
    fn the_document_url_never_doubles_a_slash() {
        for issuer in ["https://t.eu.auth0.com/", "https://t.eu.auth0.com"] {
            assert_eq!(
                document_url(issuer).unwrap().as_str(),
                "https://t.eu.auth0.com/.well-known/openid-configuration"
            );
        }
        assert_eq!(
            document_url("https://sso.example.com/realms/acme")
                .unwrap()
                .as_str(),
            "https://sso.example.com/realms/acme/.well-known/openid-configuration"
        );
        assert!(document_url("not a url").is_none());
    }

    #[test]
    fn only_a_document_for_exactly_this_issuer_is_used() {
        let doc = |iss: &str, uri: &str| format!(r#"{{"issuer":"{iss}","jwks_uri":"{uri}"}}"#);
        let jwks = "https://issuer.example.com/keys";
        assert_eq!(
            read(doc(ISS, jwks).as_bytes(), ISS, false)
                .unwrap()
                .as_str(),
            jwks
        );
        for other in [
            "https://issuer.example.com/",
            "https://ISSUER.example.com",
            "https://evil.example.com",
        ] {
            let e = read(doc(other, jwks).as_bytes(), ISS, false).unwrap_err();
            assert!(e.is_refusal(), "{other}: {e}");
            assert!(e.to_string().contains(other), "{e}");
        }
    }

    #[test]
    fn a_jwks_uri_over_plain_http_to_another_host_is_refused() {
        let doc = format!(r#"{{"issuer":"{ISS}","jwks_uri":"http://keys.example.com/jwks"}}"#);
        assert!(read(doc.as_bytes(), ISS, false).unwrap_err().is_refusal());
        assert!(read(doc.as_bytes(), ISS, true).is_ok());
    }

    #[test]
    fn a_document_without_string_fields_is_an_outage_not_a_refusal() {
        for body in [
            "<html>maintenance</html>",
            r#"{"issuer":"https://issuer.example.com"}"#,
            r#"{"issuer":1,"jwks_uri":"https://issuer.example.com/keys"}"#,
        ] {
            let e = read(body.as_bytes(), ISS, false).unwrap_err();
            assert!(matches!(e, DiscoveryError::Malformed), "{body}: {e}");
            assert!(!e.is_refusal());
        }
    }
}
