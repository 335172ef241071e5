//! The closed set of JWS algorithms Portcullis accepts: every one Better Auth can issue,
//! plus HS256 for shared-secret providers. `none` and anything else never parse.

use std::fmt;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Alg {
    EdDSA,
    ES256,
    ES512,
    RS256,
    PS256,
    HS256,
}

impl Alg {
    /// The default allow-list of a JWKS provider: every asymmetric algorithm Better Auth
    /// can be configured to sign with.
    pub const ASYMMETRIC: [Alg; 5] = [Alg::EdDSA, Alg::ES256, Alg::ES512, Alg::RS256, Alg::PS256];

    /// Parses the `alg` header value. Exact, case-sensitive match (RFC 7515 §4.1.1).
    pub fn from_header(s: &str) -> Option<Alg> {
        Some(match s {
            "EdDSA" => Alg::EdDSA,
            "ES256" => Alg::ES256,
            "ES512" => Alg::ES512,
            "RS256" => Alg::RS256,
            "PS256" => Alg::PS256,
            "HS256" => Alg::HS256,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::ES512 => "ES512",
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
            Alg::HS256 => "HS256",
        }
    }

    pub fn is_symmetric(self) -> bool {
        self == Alg::HS256
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
