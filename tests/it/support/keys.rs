//! Fixture signing keys and a token minter. The private keys live in
//! `tests/fixtures/keys`; the JWKS the tests serve is derived from them.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{self, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn der(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

/// The algorithms a fixture key can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EdDSA,
    ES256,
    ES512,
    RS256,
    PS256,
}

impl Alg {
    pub const ALL: [Alg; 5] = [Alg::EdDSA, Alg::ES256, Alg::ES512, Alg::RS256, Alg::PS256];

    pub fn name(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::ES512 => "ES512",
            Alg::RS256 => "RS256",
            Alg::PS256 => "PS256",
        }
    }
}

enum Signer {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair, &'static str, usize),
    Rsa(rsa::KeyPair),
}

/// A private key with the `kid` it is published under.
pub struct SigningKey {
    pub kid: String,
    signer: Signer,
    /// The DER of the private key (for minting HS256-with-public-key attacks etc.).
    pub public_raw: Vec<u8>,
}

impl SigningKey {
    pub fn ed25519(kid: &str) -> SigningKey {
        Self::ed25519_from("ed25519.pem", kid)
    }

    /// A second Ed25519 key that no JWKS publishes unless a test puts it there.
    pub fn ed25519_other(kid: &str) -> SigningKey {
        Self::ed25519_from("ed25519-other.pem", kid)
    }

    fn ed25519_from(file: &str, kid: &str) -> SigningKey {
        let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der(file)).expect("ed25519 key");
        let public_raw = kp.public_key().as_ref().to_vec();
        SigningKey {
            kid: kid.into(),
            signer: Signer::Ed(kp),
            public_raw,
        }
    }

    pub fn p256(kid: &str) -> SigningKey {
        let kp = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &der("p256.pem"),
        )
        .expect("P-256 key");
        let public_raw = kp.public_key().as_ref().to_vec();
        SigningKey {
            kid: kid.into(),
            signer: Signer::Ec(kp, "P-256", 32),
            public_raw,
        }
    }

    pub fn p521(kid: &str) -> SigningKey {
        let kp = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            &der("p521.pem"),
        )
        .expect("P-521 key");
        let public_raw = kp.public_key().as_ref().to_vec();
        SigningKey {
            kid: kid.into(),
            signer: Signer::Ec(kp, "P-521", 66),
            public_raw,
        }
    }

    pub fn rsa(kid: &str) -> SigningKey {
        let kp = rsa::KeyPair::from_pkcs8(&der("rsa2048.pem")).expect("RSA key");
        let public_raw = kp.public_key().as_ref().to_vec();
        SigningKey {
            kid: kid.into(),
            signer: Signer::Rsa(kp),
            public_raw,
        }
    }

    /// The fixture key for `alg`.
    pub fn for_alg(alg: Alg, kid: &str) -> SigningKey {
        match alg {
            Alg::EdDSA => Self::ed25519(kid),
            Alg::ES256 => Self::p256(kid),
            Alg::ES512 => Self::p521(kid),
            Alg::RS256 | Alg::PS256 => Self::rsa(kid),
        }
    }

    /// The public JWK, as Better Auth publishes it (no `alg` unless `with_alg`).
    pub fn jwk(&self, with_alg: Option<&str>) -> Value {
        let mut jwk = match &self.signer {
            Signer::Ed(_) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&self.public_raw)}),
            Signer::Ec(_, crv, len) => {
                let p = &self.public_raw;
                json!({"kty": "EC", "crv": crv, "x": b64(&p[1..1 + len]), "y": b64(&p[1 + len..])})
            }
            Signer::Rsa(kp) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(kp.public_key());
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
        };
        jwk["kid"] = json!(self.kid);
        if let Some(alg) = with_alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    pub fn sign(&self, alg: Alg, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match (&self.signer, alg) {
            (Signer::Ed(kp), Alg::EdDSA) => kp.sign(message).as_ref().to_vec(),
            (Signer::Ec(kp, ..), Alg::ES256 | Alg::ES512) => {
                kp.sign(&rng, message).expect("sign").as_ref().to_vec()
            }
            (Signer::Rsa(kp), Alg::RS256 | Alg::PS256) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                let enc = if alg == Alg::RS256 {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PSS_SHA256
                };
                kp.sign(enc, &rng, message, &mut sig).expect("sign");
                sig
            }
            _ => panic!("{alg:?} does not fit this key"),
        }
    }

    /// A compact JWS of `claims` with header `{alg, kid}` (Better Auth's shape).
    pub fn mint(&self, alg: Alg, claims: &Value) -> String {
        mint_with_header(&json!({"alg": alg.name(), "kid": self.kid}), claims, |m| {
            self.sign(alg, m)
        })
    }
}

/// A compact JWS with an arbitrary header, signed by `sign`.
pub fn mint_with_header(
    header: &Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(sig))
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
