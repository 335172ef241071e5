//! Writes the `token` target's fixtures: `fixtures/jwks.json` (the public keys of
//! `tests/fixtures/keys`), `fixtures/tokens.txt` (every token those keys signed, the
//! gateway-acceptable Better Auth-shaped ones and those refused for their header or
//! claims: the only inputs whose signature may ever verify) and `corpus/token/` (all of
//! them plus forgeries: another key, `none`, HMAC with a public key, broken encodings).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example mint_seeds`
//!
//! ECDSA and PSS signatures are randomized, so a re-run signs those tokens anew: clear
//! `fuzz/target/corpus/token` afterwards, or the old ones found there (signed by the same
//! keys, no longer listed) will fail the target.

use std::fs;
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{self, PublicKeyComponents};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

const KID_ED: &str = "xGGzk4q7w2Rb8mTLf0NfVv5JcQyD3pAs";
const KID_P256: &str = "p256-Lm2Vn8Qd4sWk0Hy6Tr1Bz9Xc";
const KID_P521: &str = "p521-Ja7Ue3Rf5Gt9Ki2Ol4Pm6Nb8";
const KID_RSA: &str = "rsa-Zq1Wx2Ec3Rv4Tb5Yn6Um7Ik8";
const ISS: &str = "http://localhost:3000";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_owned()
}

fn der(name: &str) -> Vec<u8> {
    let path = root().join("../tests/fixtures/keys").join(name);
    let pem = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Better Auth's JWT plugin payload: the session user, then `iat`, `iss`, `aud`, `exp`,
/// `sub`.
fn user_claims(id: &str, name: &str) -> Value {
    json!({
        "name": name,
        "email": format!("{}@example.com", name.to_lowercase().replace(' ', ".")),
        "emailVerified": true,
        "image": null,
        "createdAt": "2026-01-01T09:00:00.000Z",
        "updatedAt": "2026-01-01T09:00:00.000Z",
        "id": id,
        "iat": 1_767_258_000,
        "iss": ISS,
        "aud": ISS,
        "exp": 1_767_258_900,
        "sub": id,
    })
}

fn compact(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(sig))
}

fn main() {
    let rng = SystemRandom::new();
    let ed = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der("ed25519.pem")).unwrap();
    let ed_other = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der("ed25519-other.pem")).unwrap();
    let p256 = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der("p256.pem"),
    )
    .unwrap();
    let p521 = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        &der("p521.pem"),
    )
    .unwrap();
    let rsa = rsa::KeyPair::from_pkcs8(&der("rsa2048.pem")).unwrap();

    let ec_jwk = |kp: &EcdsaKeyPair, crv: &str, len: usize, kid: &str| {
        let p = kp.public_key().as_ref();
        json!({"kty": "EC", "crv": crv, "x": b64(&p[1..1 + len]), "y": b64(&p[1 + len..]), "kid": kid})
    };
    let rsa_pub = PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref()), "kid": KID_ED},
        ec_jwk(&p256, "P-256", 32, KID_P256),
        ec_jwk(&p521, "P-521", 66, KID_P521),
        {"kty": "RSA", "n": b64(&rsa_pub.n), "e": b64(&rsa_pub.e), "kid": KID_RSA},
    ]});

    let sign_ed = |m: &[u8]| ed.sign(m).as_ref().to_vec();
    let sign_rsa = |m: &[u8], enc: &'static dyn signature::RsaEncoding| {
        let mut sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(enc, &rng, m, &mut sig).unwrap();
        sig
    };
    let alice = user_claims("pXkM7wQ2vR9sT4uY6zA1bC3dE5fG8hJ0", "Alice Example");
    let bob = user_claims("Nq3Lr8Sx1Tv6Wy0Zb2Cd4Ef7Gh9Jk5Mn", "Bob Example");

    // Tokens the fixture JWKS verifies.
    let valid = [
        (
            "eddsa_better_auth",
            compact(&json!({"alg": "EdDSA", "kid": KID_ED}), &alice, sign_ed),
        ),
        (
            "eddsa_no_kid",
            compact(&json!({"alg": "EdDSA"}), &bob, sign_ed),
        ),
        (
            "eddsa_typ_jwt",
            compact(
                &json!({"alg": "EdDSA", "kid": KID_ED, "typ": "JWT"}),
                &bob,
                sign_ed,
            ),
        ),
        (
            "es256",
            compact(&json!({"alg": "ES256", "kid": KID_P256}), &alice, |m| {
                p256.sign(&rng, m).unwrap().as_ref().to_vec()
            }),
        ),
        (
            "es512",
            compact(&json!({"alg": "ES512", "kid": KID_P521}), &alice, |m| {
                p521.sign(&rng, m).unwrap().as_ref().to_vec()
            }),
        ),
        (
            "rs256",
            compact(&json!({"alg": "RS256", "kid": KID_RSA}), &alice, |m| {
                sign_rsa(m, &signature::RSA_PKCS1_SHA256)
            }),
        ),
        (
            "ps256",
            compact(&json!({"alg": "PS256", "kid": KID_RSA}), &bob, |m| {
                sign_rsa(m, &signature::RSA_PSS_SHA256)
            }),
        ),
    ];

    // Near misses, refused by the gateway: some are signed by a fixture key under the
    // header's own `alg` (refused for their `kid`, header or claims), the rest are
    // forgeries whose signature no fixture key made under that `alg`.
    let ed_pub = ed.public_key().as_ref().to_vec();
    let hmac_with = |secret: &[u8], m: &[u8]| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), m)
            .as_ref()
            .to_vec()
    };
    let near_misses = [
        (
            "wrong_key_same_kid",
            compact(&json!({"alg": "EdDSA", "kid": KID_ED}), &alice, |m| {
                ed_other.sign(m).as_ref().to_vec()
            }),
        ),
        (
            "alg_none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none"}).to_string()),
                b64(alice.to_string())
            ),
        ),
        (
            "alg_none_with_sig",
            compact(&json!({"alg": "none", "kid": KID_ED}), &alice, sign_ed),
        ),
        (
            "hs256_with_public_key",
            compact(&json!({"alg": "HS256", "kid": KID_ED}), &alice, |m| {
                hmac_with(&ed_pub, m)
            }),
        ),
        (
            "hs256_with_rsa_modulus",
            compact(&json!({"alg": "HS256", "kid": KID_RSA}), &alice, |m| {
                hmac_with(&rsa_pub.n, m)
            }),
        ),
        (
            "rs256_header_pss_signature",
            compact(&json!({"alg": "RS256", "kid": KID_RSA}), &alice, |m| {
                sign_rsa(m, &signature::RSA_PSS_SHA256)
            }),
        ),
        (
            "eddsa_with_rsa_kid",
            compact(&json!({"alg": "EdDSA", "kid": KID_RSA}), &alice, sign_ed),
        ),
        (
            "unknown_kid",
            compact(
                &json!({"alg": "EdDSA", "kid": "rotated-away"}),
                &alice,
                sign_ed,
            ),
        ),
        (
            "empty_kid",
            compact(&json!({"alg": "EdDSA", "kid": ""}), &alice, sign_ed),
        ),
        (
            "embedded_jwk",
            compact(
                &json!({"alg": "EdDSA", "kid": KID_ED,
                        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64(ed_other.public_key().as_ref())}}),
                &alice,
                |m| ed_other.sign(m).as_ref().to_vec(),
            ),
        ),
        (
            "jku_x5u",
            compact(
                &json!({"alg": "EdDSA", "kid": KID_ED, "jku": "http://attacker.invalid/jwks",
                        "x5u": "http://attacker.invalid/cert"}),
                &alice,
                |m| ed_other.sign(m).as_ref().to_vec(),
            ),
        ),
        (
            "crit",
            compact(
                &json!({"alg": "EdDSA", "kid": KID_ED, "crit": ["exp"], "exp": 1}),
                &alice,
                sign_ed,
            ),
        ),
        (
            "b64_false",
            compact(
                &json!({"alg": "EdDSA", "kid": KID_ED, "b64": false}),
                &alice,
                sign_ed,
            ),
        ),
        (
            "typ_dpop",
            compact(
                &json!({"alg": "EdDSA", "kid": KID_ED, "typ": "dpop+jwt"}),
                &alice,
                sign_ed,
            ),
        ),
        (
            "string_exp",
            compact(
                &json!({"alg": "EdDSA", "kid": KID_ED}),
                &json!({"sub": "u", "iss": ISS, "exp": "9999999999"}),
                sign_ed,
            ),
        ),
        ("duplicate_sub", {
            let header = b64(json!({"alg": "EdDSA", "kid": KID_ED}).to_string());
            let payload = b64(
                r#"{"sub":"alice","iss":"http://localhost:3000","exp":1767258900,"sub":"admin"}"#,
            );
            let input = format!("{header}.{payload}");
            format!("{input}.{}", b64(sign_ed(input.as_bytes())))
        }),
        ("two_parts", {
            let t = &valid[0].1;
            t[..t.rfind('.').unwrap()].to_owned()
        }),
        ("four_parts", format!("{}.e30", valid[0].1)),
        ("padded_signature", format!("{}==", valid[0].1)),
        (
            "standard_alphabet",
            valid[5].1.replace('-', "+").replace('_', "/"),
        ),
        (
            "truncated_signature",
            valid[0].1[..valid[0].1.len() - 4].to_owned(),
        ),
    ];

    let fixtures = root().join("fixtures");
    fs::create_dir_all(&fixtures).unwrap();
    fs::write(
        fixtures.join("jwks.json"),
        serde_json::to_string_pretty(&jwks).unwrap() + "\n",
    )
    .unwrap();
    // Signed by a fixture key under the `alg` their header names.
    const SIGNED: [&str; 8] = [
        "eddsa_with_rsa_kid",
        "unknown_kid",
        "empty_kid",
        "crit",
        "b64_false",
        "typ_dpop",
        "string_exp",
        "duplicate_sub",
    ];
    let mut list = String::new();
    let signed = near_misses.iter().filter(|(n, _)| SIGNED.contains(n));
    for (_, t) in valid.iter().chain(signed) {
        list.push_str(t);
        list.push('\n');
    }
    fs::write(fixtures.join("tokens.txt"), list).unwrap();

    let corpus = root().join("corpus/token");
    fs::create_dir_all(&corpus).unwrap();
    for (name, t) in valid.iter().chain(&near_misses) {
        fs::write(corpus.join(name), t).unwrap();
    }
    println!(
        "{} seed tokens: {} valid, {} signed but refused, {} forged",
        valid.len() + near_misses.len(),
        valid.len(),
        SIGNED.len(),
        near_misses.len() - SIGNED.len()
    );
}
