//! The token front end and the signature check behind it. Any input, as an
//! `Authorization` value and as a compact JWS, must be refused without a panic, and no
//! input may ever verify against the fixture JWKS unless it is byte for byte one of the
//! tokens those keys signed (`fixtures/tokens.txt`, written by `examples/mint_seeds.rs`).

#![no_main]

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::Alg;
use portcullis::internals::{Key, KeySet, bearer, parse_token};

const ALL_ALGS: [Alg; 6] = [
    Alg::EdDSA,
    Alg::ES256,
    Alg::ES512,
    Alg::RS256,
    Alg::PS256,
    Alg::HS256,
];

struct Fixture {
    keys: KeySet,
    kids: Vec<String>,
    seeds: HashSet<&'static str>,
    /// `(signing input, raw signature)` of every seed.
    signed: HashSet<(Vec<u8>, Vec<u8>)>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let jwks = include_str!("../fixtures/jwks.json");
    let keys = KeySet::parse(jwks.as_bytes(), &Alg::ASYMMETRIC, None)
        .expect("the fixture JWKS parses")
        .set;
    let doc: serde_json::Value = serde_json::from_str(jwks).unwrap();
    let kids: Vec<String> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), kids.len(), "every fixture key is usable");
    let seeds: HashSet<&'static str> = include_str!("../fixtures/tokens.txt").lines().collect();
    let mut signed = HashSet::new();
    for seed in &seeds {
        // Some seeds are refused before any key is looked at (`crit`, string `exp`, ...).
        let Ok(t) = parse_token(seed) else {
            continue;
        };
        assert!(
            kids.iter().any(|k| keys
                .get(k)
                .unwrap()
                .verify(t.alg, t.signing_input, &t.signature)),
            "a fixture key signed {seed}"
        );
        signed.insert((t.signing_input.to_vec(), t.signature.clone()));
    }
    Fixture {
        keys,
        kids,
        seeds,
        signed,
    }
});

/// The key the gateway would pick: by `kid`, else the only key for the algorithm.
fn select(keys: &KeySet, kid: Option<&str>, alg: Alg) -> Option<Arc<Key>> {
    match kid {
        Some(kid) => keys.get(kid).cloned(),
        None => keys.sole_for(alg).cloned(),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;

    // As a header value: the bearer token, if any, is a piece of it.
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        if let Ok(Some(token)) = bearer(&headers) {
            assert!(!token.is_empty());
            assert!(data.windows(token.len()).any(|w| w == token.as_bytes()));
        }
    }

    // Raw signature checks: every key, every algorithm, the input split in two.
    if let Some((&cut, rest)) = data.split_first() {
        let (message, signature) = rest.split_at(usize::from(cut).min(rest.len()));
        for kid in &f.kids {
            let key = f.keys.get(kid).unwrap();
            for alg in ALL_ALGS {
                if key.verify(alg, message, signature) {
                    assert!(
                        f.signed.contains(&(message.to_vec(), signature.to_vec())),
                        "{alg} signature accepted over unsigned bytes"
                    );
                }
            }
        }
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = parse_token(text) else {
        return;
    };
    // What the signature covers is exactly the first two parts of the token.
    let (input, sig_b64) = text.rsplit_once('.').unwrap();
    assert_eq!(t.signing_input, input.as_bytes());
    assert_eq!(t.signature_b64, sig_b64);
    assert!(!t.signature.is_empty());

    let accepted_by_selected = select(&f.keys, t.kid.as_deref(), t.alg)
        .is_some_and(|k| k.supports(t.alg) && k.verify(t.alg, t.signing_input, &t.signature));
    if accepted_by_selected {
        assert!(f.seeds.contains(text), "a forged token verified: {text:?}");
    }
    // Whatever the `kid` says, no fixture key accepts anything that was not signed.
    for kid in &f.kids {
        let key = f.keys.get(kid).unwrap();
        assert!(
            !key.supports(Alg::HS256),
            "a public key is never an HMAC key"
        );
        if key.verify(t.alg, t.signing_input, &t.signature) {
            assert!(f.seeds.contains(text), "a forged token verified: {text:?}");
        }
    }
});
