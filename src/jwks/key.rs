//! One JWK -> one verification key, parsed once into aws-lc-rs form when the key set loads
//! so a request costs a signature check and nothing else. A key is bound to its type and
//! curve (and to the JWK's `alg` when it has one): an Ed25519 key never checks an RS256
//! signature, and no public key is ever used as an HMAC secret.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use curve25519_dalek::edwards::CompressedEdwardsY;
use serde::Deserialize;

use crate::alg::Alg;

/// JWK members are base64url; some issuers pad them, which is harmless here.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// At most this many entries of a JWKS document are looked at.
pub const MAX_KEYS: usize = 100;

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// A verification key from a JWKS.
pub struct Key {
    kid: Option<Box<str>>,
    /// Identifies the key material; a refresh that returns the same JWK keeps the same
    /// `Arc<Key>`, so cached verifications survive refreshes but not removals.
    fingerprint: Box<[u8]>,
    verifiers: Vec<(Alg, ParsedPublicKey)>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algs: Vec<Alg> = self.verifiers.iter().map(|(a, _)| *a).collect();
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algs", &algs)
            .finish()
    }
}

/// Why a single JWK was skipped (the rest of the set is still used).
#[derive(Debug, thiserror::Error)]
pub enum SkipReason {
    #[error("not a JSON object with a `kty`")]
    Malformed,
    #[error("symmetric (`oct`) keys are never accepted from a JWKS")]
    Symmetric,
    #[error("key type `{0}` is not supported")]
    UnsupportedType(String),
    #[error("curve `{0}` is not supported")]
    UnsupportedCurve(String),
    #[error("`use` or `key_ops` says it is not for verifying signatures")]
    NotForSignatures,
    #[error("its `alg` does not fit its key type, or is not allowed for this provider")]
    AlgorithmNotAllowed,
    #[error("a required member is missing or not valid base64url")]
    BadMember,
    #[error("RSA modulus shorter than 2048 bits")]
    WeakRsa,
    #[error("Ed25519 public key is not a canonical point of prime order")]
    WeakEd25519,
    #[error("the key material was rejected")]
    Rejected,
}

/// Whether `x` encodes an Ed25519 public key a signature can be trusted under: a point
/// on the curve, in its one canonical encoding, in the prime-order subgroup. A
/// small-order key (the identity, or any of the other seven torsion points) lets a
/// signature with `R` = a torsion point and `S` = 0 verify for any message, and a key
/// with a torsion component makes verification depend on the verifier's equation.
fn strong_ed25519(x: &[u8; 32]) -> bool {
    let compressed = CompressedEdwardsY(*x);
    compressed.decompress().is_some_and(|point| {
        point.compress() == compressed && !point.is_small_order() && point.is_torsion_free()
    })
}

impl Key {
    pub fn supports(&self, alg: Alg) -> bool {
        self.verifiers.iter().any(|(a, _)| *a == alg)
    }

    /// Checks `signature` over `message` with this key under `alg`. `false` when the key
    /// cannot do `alg` or the signature does not verify.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .is_some_and(|(_, k)| k.verify_sig(message, signature).is_ok())
    }

    /// Parses one JWK, keeping only the algorithms `allowed` by the provider.
    pub fn from_jwk(value: &serde_json::Value, allowed: &[Alg]) -> Result<Key, SkipReason> {
        let jwk = RawJwk::deserialize(value).map_err(|_| SkipReason::Malformed)?;
        if jwk.use_.as_deref().is_some_and(|u| u != "sig")
            || jwk
                .key_ops
                .as_ref()
                .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
        {
            return Err(SkipReason::NotForSignatures);
        }
        let (candidates, material) = Material::of(&jwk)?;

        // The JWK's own `alg` narrows what the key may be used for (RFC 7517 §4.4).
        let algs: Vec<Alg> = candidates
            .into_iter()
            .filter(|a| allowed.contains(a))
            .filter(|a| match jwk.alg.as_deref() {
                None => true,
                Some(declared) => {
                    declared == a.as_str() || (*a == Alg::EdDSA && declared == "Ed25519")
                }
            })
            .collect();
        if algs.is_empty() {
            return Err(SkipReason::AlgorithmNotAllowed);
        }

        let verifiers = algs
            .into_iter()
            .map(|alg| Ok((alg, material.verifier(alg)?)))
            .collect::<Result<Vec<_>, SkipReason>>()?;

        let mut fingerprint = jwk.kty.into_bytes();
        fingerprint.push(0);
        fingerprint.extend_from_slice(jwk.alg.as_deref().unwrap_or("").as_bytes());
        fingerprint.push(0);
        material.fingerprint(&mut fingerprint);
        Ok(Key {
            kid: jwk.kid.map(String::into_boxed_str),
            fingerprint: fingerprint.into_boxed_slice(),
            verifiers,
        })
    }
}

/// The public key material of one JWK, in the form its verifier takes.
enum Material {
    /// Ed25519's `x`, or an uncompressed EC point (`04 || x || y`).
    Point(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

impl Material {
    /// The material of a JWK and the algorithms its type and curve allow. Weak keys
    /// (small-order Ed25519 points, RSA moduli under 2048 bits) never get this far.
    fn of(jwk: &RawJwk) -> Result<(Vec<Alg>, Material), SkipReason> {
        let b64 = |v: &Option<String>| -> Result<Vec<u8>, SkipReason> {
            let v = v.as_deref().ok_or(SkipReason::BadMember)?;
            JWK_B64.decode(v).map_err(|_| SkipReason::BadMember)
        };
        let unsupported =
            |crv: Option<&str>| SkipReason::UnsupportedCurve(crv.unwrap_or("").into());
        match jwk.kty.as_str() {
            "OKP" if jwk.crv.as_deref() == Some("Ed25519") => {
                let x: [u8; 32] = b64(&jwk.x)?.try_into().map_err(|_| SkipReason::BadMember)?;
                if !strong_ed25519(&x) {
                    return Err(SkipReason::WeakEd25519);
                }
                Ok((vec![Alg::EdDSA], Material::Point(x.to_vec())))
            }
            "OKP" => Err(unsupported(jwk.crv.as_deref())),
            "EC" => {
                let (alg, len) = match jwk.crv.as_deref() {
                    Some("P-256") => (Alg::ES256, 32),
                    Some("P-521") => (Alg::ES512, 66),
                    other => return Err(unsupported(other)),
                };
                let (x, y) = (b64(&jwk.x)?, b64(&jwk.y)?);
                if x.len() != len || y.len() != len {
                    return Err(SkipReason::BadMember);
                }
                Ok((vec![alg], Material::Point([&[4][..], &x, &y].concat())))
            }
            "RSA" => {
                let (n, e) = (b64(&jwk.n)?, b64(&jwk.e)?);
                if n.iter().skip_while(|&&b| b == 0).count() < 256 {
                    return Err(SkipReason::WeakRsa);
                }
                Ok((vec![Alg::RS256, Alg::PS256], Material::Rsa { n, e }))
            }
            "oct" => Err(SkipReason::Symmetric),
            other => Err(SkipReason::UnsupportedType(other.into())),
        }
    }

    /// The parsed key that checks `alg` signatures; aws-lc validates the material here
    /// (an EC point off its curve is rejected).
    fn verifier(&self, alg: Alg) -> Result<ParsedPublicKey, SkipReason> {
        match (self, alg) {
            (Material::Point(p), Alg::EdDSA) => ParsedPublicKey::new(&signature::ED25519, p),
            (Material::Point(p), Alg::ES256) => {
                ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p)
            }
            (Material::Point(p), Alg::ES512) => {
                ParsedPublicKey::new(&signature::ECDSA_P521_SHA512_FIXED, p)
            }
            (Material::Rsa { n, e }, Alg::RS256) => RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256),
            (Material::Rsa { n, e }, Alg::PS256) => RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&signature::RSA_PSS_2048_8192_SHA256),
            _ => return Err(SkipReason::AlgorithmNotAllowed),
        }
        .map_err(|_| SkipReason::Rejected)
    }

    fn fingerprint(&self, out: &mut Vec<u8>) {
        match self {
            Material::Point(p) => out.extend_from_slice(p),
            Material::Rsa { n, e } => {
                out.extend_from_slice(&(n.len() as u32).to_be_bytes());
                out.extend_from_slice(n);
                out.extend_from_slice(e);
            }
        }
    }
}

/// An immutable set of keys, swapped whole on refresh.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<Key>>,
    by_kid: HashMap<Box<str>, Arc<Key>>,
}

/// Why a whole JWKS document was refused (the previous set stays in use).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS is not a JSON object with a `keys` array")]
    Malformed,
    #[error("the JWKS lists `kid` {0:?} more than once")]
    DuplicateKid(String),
    #[error("the JWKS has no usable key")]
    NoUsableKeys,
}

/// What parsing a JWKS document produced.
pub struct Parsed {
    pub set: KeySet,
    /// `(kid, reason)` for each entry that was skipped.
    pub skipped: Vec<(Option<String>, SkipReason)>,
}

impl KeySet {
    /// Parses a JWKS body. Odd entries are skipped one by one; keys identical to one in
    /// `previous` are reused as the same `Arc`.
    pub fn parse(
        body: &[u8],
        allowed: &[Alg],
        previous: Option<&KeySet>,
    ) -> Result<Parsed, JwksError> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(body).map_err(|_| JwksError::Malformed)?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for value in doc.keys.iter().take(MAX_KEYS) {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let key = match Key::from_jwk(value, allowed) {
                Ok(k) => k,
                Err(reason) => {
                    skipped.push((kid, reason));
                    continue;
                }
            };
            let key = previous
                .and_then(|p| {
                    p.keys
                        .iter()
                        .find(|old| old.kid == key.kid && old.fingerprint == key.fingerprint)
                })
                .cloned()
                .unwrap_or_else(|| Arc::new(key));
            if let Some(kid) = key.kid.clone()
                && set.by_kid.insert(kid.clone(), key.clone()).is_some()
            {
                return Err(JwksError::DuplicateKid(kid.into()));
            }
            set.keys.push(key);
        }
        if doc.keys.len() > MAX_KEYS {
            skipped.push((None, SkipReason::Malformed));
        }
        if set.keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(Parsed { set, skipped })
    }

    pub fn get(&self, kid: &str) -> Option<&Arc<Key>> {
        self.by_kid.get(kid)
    }

    /// For a token without `kid`: the one key that can check `alg`, if exactly one can.
    pub fn sole_for(&self, alg: Alg) -> Option<&Arc<Key>> {
        let mut it = self.keys.iter().filter(|k| k.supports(alg));
        match (it.next(), it.next()) {
            (Some(k), None) => Some(k),
            _ => None,
        }
    }

    /// Whether this exact key is still in the set.
    pub fn contains(&self, key: &Arc<Key>) -> bool {
        match key.kid.as_deref() {
            Some(kid) => self.by_kid.get(kid).is_some_and(|k| Arc::ptr_eq(k, key)),
            None => self.keys.iter().any(|k| Arc::ptr_eq(k, key)),
        }
    }

    #[allow(clippy::len_without_is_empty)] // never empty: parse refuses a set without keys
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// Every one-bit change of `signature`, then of `message`, is refused.
    fn no_bit_flip_verifies(key: &Key, alg: Alg, message: &[u8], signature: &[u8]) {
        for i in 0..signature.len() * 8 {
            let mut s = signature.to_vec();
            s[i / 8] ^= 1 << (i % 8);
            assert!(!key.verify(alg, message, &s), "signature bit {i}");
        }
        for i in 0..message.len() * 8 {
            let mut m = message.to_vec();
            m[i / 8] ^= 1 << (i % 8);
            assert!(!key.verify(alg, &m, signature), "message bit {i}");
        }
    }

    /// A `kid` finds only the key published under it, never a key without one; a token
    /// without `kid` finds a key only when exactly one can check its algorithm.
    #[test]
    fn kid_lookups_never_fall_back_to_another_key() {
        let (a, b) = (
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            "0aQ5O_K_grNWeddIVtXE0UFT0G9n-J_dpkfnZhKZQPo",
        );
        let parse = |body: String| {
            KeySet::parse(body.as_bytes(), &Alg::ASYMMETRIC, None)
                .unwrap()
                .set
        };
        let one = parse(format!(
            r#"{{"keys": [{{"kty": "OKP", "crv": "Ed25519", "x": "{a}"}}]}}"#
        ));
        assert!(one.get("").is_none());
        assert!(one.get("k1").is_none());
        assert!(one.sole_for(Alg::EdDSA).is_some());
        assert!(one.sole_for(Alg::ES256).is_none());
        let two = parse(format!(
            r#"{{"keys": [{{"kty": "OKP", "crv": "Ed25519", "x": "{a}", "kid": "k1"}},
                          {{"kty": "OKP", "crv": "Ed25519", "x": "{b}"}}]}}"#
        ));
        assert!(two.get("k1").is_some());
        assert!(two.get("k2").is_none());
        assert!(two.get("").is_none());
        assert!(two.sole_for(Alg::EdDSA).is_none());
    }

    /// RFC 8725 §3.4: a public key is checked as it loads; a P-256 point moved off the
    /// curve (the RFC 7515 A.3 key with one bit of `y` flipped) is never used.
    #[test]
    fn an_ec_point_off_the_curve_is_rejected() {
        let jwk = |y: &str| {
            serde_json::json!({"kty": "EC", "crv": "P-256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": y})
        };
        let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        assert!(Key::from_jwk(&jwk(y), &Alg::ASYMMETRIC).is_ok());
        let mut bytes = URL_SAFE_NO_PAD.decode(y).unwrap();
        bytes[31] ^= 1;
        let off_curve = jwk(&URL_SAFE_NO_PAD.encode(bytes));
        assert!(matches!(
            Key::from_jwk(&off_curve, &Alg::ASYMMETRIC),
            Err(SkipReason::Rejected)
        ));
    }

    /// RFC 8725 §3.5: RSA moduli under 2048 bits are skipped, leading zero bytes and all.
    #[test]
    fn rsa_keys_under_2048_bits_are_skipped() {
        for n in [vec![0xC3; 128], [vec![0; 200], vec![0xC3; 255]].concat()] {
            let jwk =
                serde_json::json!({"kty": "RSA", "e": "AQAB", "n": URL_SAFE_NO_PAD.encode(n)});
            assert!(matches!(
                Key::from_jwk(&jwk, &Alg::ASYMMETRIC),
                Err(SkipReason::WeakRsa)
            ));
        }
    }

    /// RFC 8037 Appendix A.4 (the key of A.2): Ed25519 over `{"alg":"EdDSA"}` and
    /// "Example of Ed25519 signing".
    #[test]
    fn rfc8037_a4_ed25519_example_verifies_and_one_bit_off_does_not() {
        let jwks = br#"{"keys": [{"kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let set = KeySet::parse(jwks, &Alg::ASYMMETRIC, None).unwrap().set;
        let key = set
            .sole_for(Alg::EdDSA)
            .expect("the published key is usable");
        let input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let signature = URL_SAFE_NO_PAD
            .decode(
                "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
            )
            .unwrap();
        assert!(key.verify(Alg::EdDSA, input, &signature));
        for alg in [Alg::ES256, Alg::ES512, Alg::RS256, Alg::PS256, Alg::HS256] {
            assert!(!key.verify(alg, input, &signature), "{alg}");
        }
        no_bit_flip_verifies(key, Alg::EdDSA, input, &signature);
    }

    /// RFC 7515 Appendix A.2: RS256 over `{"alg":"RS256"}` and the `joe` claims, with
    /// the published 2048-bit RSA key.
    #[test]
    fn rfc7515_a2_rs256_example_verifies_and_one_bit_off_does_not() {
        let jwks = br#"{"keys": [{"kty": "RSA", "e": "AQAB",
            "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"}]}"#;
        let set = KeySet::parse(jwks, &Alg::ASYMMETRIC, None).unwrap().set;
        let key = set
            .sole_for(Alg::RS256)
            .expect("the published key is usable");
        let token = "eyJhbGciOiJSUzI1NiJ9\
            .eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
            .cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
        // The token front end reads it (CRLFs inside the JSON included) ...
        let t = crate::token::parse(token).unwrap();
        assert_eq!(t.alg, Alg::RS256);
        assert_eq!(t.claims.iss.as_deref(), Some("joe"));
        assert_eq!(t.signature.len(), 256);
        // ... and the published key verifies exactly what it signed, under RS256 only.
        assert!(key.verify(Alg::RS256, t.signing_input, &t.signature));
        assert!(!key.verify(Alg::PS256, t.signing_input, &t.signature));
        no_bit_flip_verifies(key, Alg::RS256, t.signing_input, &t.signature);
    }

    fn ed25519(x: &[u8]) -> serde_json::Value {
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(x)})
    }

    fn hex32(h: &str) -> [u8; 32] {
        let mut out = [0; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// With a small-order key, `R` = a torsion point and `S` = 0 verifies for any claims:
    /// every token would be forgeable. Every such encoding, canonical or not, and a good
    /// key with a torsion component added, is skipped when the JWKS loads.
    #[test]
    fn small_order_and_non_canonical_ed25519_keys_are_skipped() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut negative_identity = identity;
        negative_identity[31] |= 0x80;
        let weak = [
            identity,
            negative_identity,
            [0; 32],
            // y = -1 (order 2), and the two order-8 points.
            hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
            hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
            hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
            // y = p (a non-canonical 0) and y = p + 1 (a non-canonical identity).
            hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
            hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        ];
        for x in weak {
            assert!(
                matches!(
                    Key::from_jwk(&ed25519(&x), &Alg::ASYMMETRIC),
                    Err(SkipReason::WeakEd25519)
                ),
                "{x:02x?}"
            );
        }
        let good = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert!(Key::from_jwk(&ed25519(&good), &Alg::ASYMMETRIC).is_ok());
        let point = CompressedEdwardsY(good.clone().try_into().unwrap())
            .decompress()
            .unwrap();
        let mixed = (point + curve25519_dalek::constants::EIGHT_TORSION[1]).compress();
        assert!(matches!(
            Key::from_jwk(&ed25519(mixed.as_bytes()), &Alg::ASYMMETRIC),
            Err(SkipReason::WeakEd25519)
        ));
    }

    /// The verifier's own rules, with a good key: a small-order `R` with `S` = 0 does not
    /// verify, and neither does a valid signature whose `S` is made non-canonical (+ L).
    #[test]
    fn ed25519_verification_refuses_small_order_r_and_non_canonical_s() {
        let key = Key::from_jwk(
            &serde_json::json!({"kty": "OKP", "crv": "Ed25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            &Alg::ASYMMETRIC,
        )
        .unwrap();
        let input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        for r in [
            hex32("0100000000000000000000000000000000000000000000000000000000000000"),
            hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
        ] {
            let forged = [r, [0; 32]].concat();
            assert!(!key.verify(Alg::EdDSA, input, &forged));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(
                "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg",
            )
            .unwrap();
        assert!(key.verify(Alg::EdDSA, input, &signature));
        // S + L, little-endian: the same scalar, a second encoding.
        let l = hex32("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let mut s_plus_l = signature.clone();
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(signature[32 + i]) + u16::from(l[i]) + carry;
            s_plus_l[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        assert!(!key.verify(Alg::EdDSA, input, &s_plus_l));
    }
}
