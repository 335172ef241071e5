//! Signing keys and a token minter, with aws-lc-rs as the integration tests do. The
//! long-lived keys are the repository's test fixtures (`tests/fixtures/keys`); the
//! rotating keys are generated during the run.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{self, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn der(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    let pem = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EdDSA,
    ES256,
    ES512,
    RS256,
    PS256,
}

impl Alg {
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

/// A private key and the `kid` it is published under.
pub struct SigningKey {
    pub kid: String,
    signer: Signer,
    public_raw: Vec<u8>,
}

impl SigningKey {
    fn ed(kid: &str, kp: Ed25519KeyPair) -> SigningKey {
        let public_raw = kp.public_key().as_ref().to_vec();
        SigningKey {
            kid: kid.into(),
            signer: Signer::Ed(kp),
            public_raw,
        }
    }

    fn ec(kid: &str, kp: EcdsaKeyPair, crv: &'static str, len: usize) -> SigningKey {
        let public_raw = kp.public_key().as_ref().to_vec();
        SigningKey {
            kid: kid.into(),
            signer: Signer::Ec(kp, crv, len),
            public_raw,
        }
    }

    /// A fresh Ed25519 key.
    pub fn generate_ed25519(kid: &str) -> SigningKey {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("keygen");
        let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).expect("ed25519 key");
        Self::ed(kid, kp)
    }

    /// A fresh P-256 key.
    pub fn generate_p256(kid: &str) -> SigningKey {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).expect("keygen");
        let kp = EcdsaKeyPair::from_pkcs8(alg, doc.as_ref()).expect("P-256 key");
        Self::ec(kid, kp, "P-256", 32)
    }

    pub fn fixture_ed25519(dir: &Path, file: &str, kid: &str) -> SigningKey {
        let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der(dir, file)).expect("ed25519");
        Self::ed(kid, kp)
    }

    pub fn fixture_p521(dir: &Path, kid: &str) -> SigningKey {
        let alg = &signature::ECDSA_P521_SHA512_FIXED_SIGNING;
        let kp = EcdsaKeyPair::from_pkcs8(alg, &der(dir, "p521.pem")).expect("P-521 key");
        Self::ec(kid, kp, "P-521", 66)
    }

    pub fn fixture_rsa(dir: &Path, kid: &str) -> SigningKey {
        let kp = rsa::KeyPair::from_pkcs8(&der(dir, "rsa2048.pem")).expect("RSA key");
        let public_raw = kp.public_key().as_ref().to_vec();
        SigningKey {
            kid: kid.into(),
            signer: Signer::Rsa(kp),
            public_raw,
        }
    }

    /// The algorithms this key signs with; `pick` chooses between RS256 and PS256.
    pub fn alg(&self, pick: u64) -> Alg {
        match &self.signer {
            Signer::Ed(_) => Alg::EdDSA,
            Signer::Ec(_, "P-256", _) => Alg::ES256,
            Signer::Ec(..) => Alg::ES512,
            Signer::Rsa(_) if pick.is_multiple_of(2) => Alg::RS256,
            Signer::Rsa(_) => Alg::PS256,
        }
    }

    /// The public JWK, as Better Auth publishes it (no `alg`).
    pub fn jwk(&self) -> Value {
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
        jwk
    }

    /// The public key's bytes (the secret of an HS256-with-public-key forgery).
    pub fn public_raw(&self) -> &[u8] {
        &self.public_raw
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
            _ => panic!("{alg:?} does not fit key {}", self.kid),
        }
    }

    /// A compact JWS of `claims` with header `{alg, kid}` (Better Auth's shape).
    pub fn mint(&self, alg: Alg, claims: &Value) -> String {
        self.mint_as(&self.kid, alg, claims)
    }

    /// As [`mint`], with another `kid` in the header (a forgery).
    pub fn mint_as(&self, kid: &str, alg: Alg, claims: &Value) -> String {
        mint_with_header(&json!({"alg": alg.name(), "kid": kid}), claims, |m| {
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

/// HMAC-SHA256 over `message` with `secret` (for the alg-confusion forgery).
pub fn hs256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
}
