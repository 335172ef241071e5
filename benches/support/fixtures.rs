//! Signed tokens and the matching JWKS for the benchmarks, from the test fixture keys in
//! `tests/fixtures/keys` (the same keys `bench/mint.py` signs the load-test pools with).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{self, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis::{Alg, Config};
use serde_json::{Value, json};

pub const ISSUER: &str = "http://127.0.0.1:3000";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn der(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

enum Signer {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair, &'static str, usize),
    Rsa(rsa::KeyPair),
}

/// A fixture private key and the `kid` its public half is published under.
pub struct Fixture {
    pub alg: Alg,
    pub kid: String,
    signer: Signer,
}

impl Fixture {
    pub fn new(alg: Alg) -> Fixture {
        let signer = match alg {
            Alg::EdDSA => Signer::Ed(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der("ed25519.pem")).expect("key"),
            ),
            Alg::ES256 => Signer::Ec(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &der("p256.pem"),
                )
                .expect("key"),
                "P-256",
                32,
            ),
            Alg::ES512 => Signer::Ec(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
                    &der("p521.pem"),
                )
                .expect("key"),
                "P-521",
                66,
            ),
            Alg::RS256 | Alg::PS256 => {
                Signer::Rsa(rsa::KeyPair::from_pkcs8(&der("rsa2048.pem")).expect("key"))
            }
            Alg::HS256 => panic!("HS256 has no fixture key"),
        };
        Fixture {
            alg,
            kid: format!("bench-{}", alg.as_str().to_ascii_lowercase()),
            signer,
        }
    }

    /// The public JWK, with its `alg` (so an RSA key is published once per algorithm).
    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.signer {
            Signer::Ed(kp) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())})
            }
            Signer::Ec(kp, crv, len) => {
                let p = kp.public_key().as_ref();
                json!({"kty": "EC", "crv": crv, "x": b64(&p[1..1 + len]), "y": b64(&p[1 + len..])})
            }
            Signer::Rsa(kp) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(kp.public_key());
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.as_str());
        jwk
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Ed(kp) => kp.sign(message).as_ref().to_vec(),
            Signer::Ec(kp, ..) => kp.sign(&rng, message).expect("sign").as_ref().to_vec(),
            Signer::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                let padding = match self.alg {
                    Alg::PS256 => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                kp.sign(padding, &rng, message, &mut sig).expect("sign");
                sig
            }
        }
    }

    /// A compact JWS in Better Auth's shape (header `{alg, kid}`), for user `sub`.
    pub fn token(&self, sub: &str) -> String {
        let header = json!({"alg": self.alg.as_str(), "kid": self.kid});
        // Issued now: a fixed `iat` would one day lie in the future, which is refused.
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let claims = json!({
            "iss": ISSUER, "aud": ISSUER, "sub": sub,
            "iat": iat, "exp": 4_000_000_000u64,
            "email": format!("{sub}@example.com"),
        });
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(sig))
    }
}

/// The JWKS publishing every fixture.
pub fn jwks(fixtures: &[Fixture]) -> Vec<u8> {
    let keys: Vec<Value> = fixtures.iter().map(Fixture::jwk).collect();
    json!({ "keys": keys }).to_string().into_bytes()
}

/// A config with one provider whose keys are `fixture`'s, inline (nothing is fetched),
/// and a verified-token cache of `cache_entries`.
pub fn inline_config(fixture: &Fixture, cache_entries: u32) -> Config {
    Config::from_toml(
        &format!(
            "[server]\ntoken_cache_entries = {cache_entries}\n[[providers]]\nname = \"bench\"\n\
             issuer = \"{ISSUER}\"\naudiences = [\"{ISSUER}\"]\njwks = '''{}'''\n",
            String::from_utf8(jwks(std::slice::from_ref(fixture))).expect("UTF-8 JWKS")
        ),
        "bench.toml",
        std::path::Path::new("."),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}
