//! How a provider's key set is fetched: where from (a JWKS URL, or the issuer's OIDC
//! discovery document) and on what schedule. The key store's own settings, kept here so
//! the key store depends on nothing in `config` (which builds them).

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    pub location: JwksLocation,
    /// `insecure_allow_http_jwks`: plain http to a host that is not loopback. Also
    /// applies to the `jwks_uri` a discovery document names.
    pub insecure_allow_http: bool,
    pub refresh_interval: Duration,
    /// Least gap between two refetches triggered by an unknown `kid`.
    pub refresh_cooldown: Duration,
    pub fetch_timeout: Duration,
    /// How long the last good key set may serve while every refresh fails; past it the
    /// provider fails closed (503) until a fetch succeeds.
    pub max_stale: Duration,
}

/// Where a fetched key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    /// `jwks_url`: the JWKS itself.
    Url(reqwest::Url),
    /// `discovery = true` or `discovery_url`: the issuer's OpenID Provider metadata, whose
    /// `issuer` must equal `issuer` exactly and whose `jwks_uri` names the JWKS. Read
    /// again before every key fetch, so a moved `jwks_uri` is followed.
    Discovery {
        document: reqwest::Url,
        issuer: String,
    },
}

impl fmt::Display for JwksLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksLocation::Url(u) => write!(f, "JWKS {u}"),
            JwksLocation::Discovery { document, .. } => write!(f, "OIDC discovery {document}"),
        }
    }
}
