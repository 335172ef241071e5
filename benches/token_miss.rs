//! A cache miss, end to end, for instruction counting: `Authenticator::authenticate` on
//! tokens it has never seen (parse, claim checks, key lookup, signature, cache insert),
//! with the default 100k-entry cache. Criterion's timings hide where a miss spends its
//! instructions; this driver runs a fixed number of misses so callgrind can split them
//! by function:
//!
//!     cargo bench --bench token_miss --no-run
//!     valgrind --tool=callgrind --toggle-collect='*Authenticator*authenticate*' \
//!         target/release/deps/token_miss-* ES256 2000 [CACHE_ENTRIES]
//!     callgrind_annotate --inclusive=yes callgrind.out.*
//!
//! Without valgrind it prints the average wall time of a miss, for a rough look.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::time::Instant;

use std::hint::black_box;

use portcullis::Alg;
use portcullis::internals::{KeySet, Profile, authenticator, parse_token};

use fixtures::{Fixture, inline_config, jwks};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let alg = match args.next().as_deref().unwrap_or("EdDSA") {
        "ES256" => Alg::ES256,
        "RS256" => Alg::RS256,
        _ => Alg::EdDSA,
    };
    let n: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(2000);
    // A cache smaller than `n` shows what a miss costs once the cache is full and every
    // insert evicts (as in a long run of distinct tokens).
    let entries: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let fixture = Fixture::new(alg);
    let config = inline_config(&fixture, entries);
    let auth = authenticator(&config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    // Signed before anything is counted.
    let tokens: Vec<String> = (0..n)
        .map(|i| fixture.token(&format!("user-{i:07}")))
        .collect();
    let started = Instant::now();
    for t in &tokens {
        rt.block_on(auth.authenticate(t, Profile::Bearer))
            .expect("verifies");
    }
    let per_miss = started.elapsed() / n;
    println!("{alg}: {n} misses, {per_miss:?} per miss");

    // The signature check alone, back to back (as criterion measures it), then with the
    // CPU caches cooled between checks by walking `COOL_KIB` of memory, as the rest of a
    // request through the gateway does: tables the check reads may no longer be cached.
    let set = KeySet::parse(&jwks(std::slice::from_ref(&fixture)), &[alg], None)
        .expect("the fixture JWKS parses")
        .set;
    let key = set.get(&fixture.kid).expect("published");
    let parsed: Vec<_> = tokens
        .iter()
        .map(|t| parse_token(t).expect("parses"))
        .collect();
    let cool_kib: usize = std::env::var("COOL_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let mut cold = vec![0u8; cool_kib * 1024];
    for cooled in [false, true] {
        let mut spent = std::time::Duration::ZERO;
        for (i, t) in parsed.iter().enumerate() {
            if cooled {
                for b in cold.iter_mut().step_by(64) {
                    *b = b.wrapping_add(i as u8);
                }
            }
            let started = Instant::now();
            assert!(key.verify(alg, t.signing_input, &t.signature));
            spent += started.elapsed();
        }
        let how = if cooled {
            "after walking COOL_KIB"
        } else {
            "back to back"
        };
        println!("{alg}: signature alone, {how}: {:?}", spent / n);
    }
    black_box(&cold);
}
