//! The gateway's per-request hot paths, below the network: finding and parsing the
//! token, the verified-token cache hit, each signature algorithm, path normalization with
//! the route match, and the header rewrite at the trust boundary.
//!
//!     cargo bench --bench hot_paths                 # everything
//!     cargo bench --bench hot_paths -- signature    # one group
//!
//! What a whole request costs through the real binary, beside Envoy, nginx, Node and
//! FastAPI, is measured by `bench/run.sh`.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::hint::black_box;
use std::path::Path;

use aws_lc_rs::digest;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use portcullis::internals::{
    IdentityHeaders, KeySet, Match, OVERRIDE_HEADERS, Outbound, Profile, RouteTable, authenticator,
    bearer, parse_token, rewrite_request,
};
use portcullis::{Alg, Config};

use fixtures::{Fixture, inline_config, jwks};

const ALGS: [Alg; 5] = [Alg::EdDSA, Alg::ES256, Alg::ES512, Alg::RS256, Alg::PS256];

fn key_set(fixtures: &[Fixture]) -> KeySet {
    KeySet::parse(&jwks(fixtures), &ALGS, None)
        .expect("the fixture JWKS parses")
        .set
}

fn request_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut add = |name: &'static str, value: &str| {
        h.append(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("valid header value"),
        );
    };
    add("host", "api.example.com");
    add(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    );
    add("accept", "application/json");
    add("accept-encoding", "gzip, deflate, br, zstd");
    add("accept-language", "en-GB,en;q=0.7");
    add("authorization", &format!("Bearer {token}"));
    add("content-type", "application/json");
    add("origin", "http://localhost:3000");
    add("referer", "http://localhost:3000/tasks");
    add("connection", "keep-alive");
    add("x-request-id", "9b2c7f3e-6a1d-4c53-9d0e-1f2a3b4c5d6e");
    h
}

/// Finding the bearer token in the headers, and parsing it (base64 + JSON of header and
/// claims, no signature check): what a cache miss pays before the signature.
fn token(c: &mut Criterion) {
    let mut g = c.benchmark_group("token");
    let t = Fixture::new(Alg::EdDSA).token("user-0000001");
    let headers = request_headers(&t);
    g.bench_function("bearer", |b| {
        b.iter(|| {
            bearer(black_box(&headers))
                .expect("well-formed")
                .expect("a token")
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| parse_token(black_box(&t)).expect("parses"))
    });
    g.bench_function("sha256", |b| {
        b.iter(|| digest::digest(&digest::SHA256, black_box(t.as_bytes())))
    });
    g.finish();
}

/// `Authenticator::authenticate` on a cache hit, the gateway's own code (SHA-256 of the
/// token, the moka lookup, the expiry check and the is-its-key-still-published check),
/// on a cache holding 100k tokens as the default `token_cache_entries` allows. The
/// provider's keys are inline, so nothing is fetched; a JWKS provider's check loads its
/// key set through one more `ArcSwap`.
fn token_cache(c: &mut Criterion) {
    let fixture = Fixture::new(Alg::EdDSA);
    let config = inline_config(&fixture, 100_000);
    let auth = authenticator(&config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let token = fixture.token("user-0000001");
    // Fill the cache as 100k users would (a few seconds of signing and verifying).
    for i in 0..100_000u32 {
        let other = fixture.token(&format!("user-{i:07}"));
        rt.block_on(auth.authenticate(&other, Profile::Bearer))
            .expect("verifies");
    }
    rt.block_on(auth.authenticate(&token, Profile::Bearer))
        .expect("verifies");

    let mut g = c.benchmark_group("token");
    g.bench_function("cache_hit", |b| {
        b.iter(|| {
            rt.block_on(auth.authenticate(black_box(&token), Profile::Bearer))
                .expect("cached")
        })
    });
    g.finish();
}

/// One signature check per algorithm, with keys parsed from a JWKS the way the gateway
/// loads them (`KeySet::parse`, then `Key::verify`): the cost of a cache miss.
fn signature(c: &mut Criterion) {
    let fixtures: Vec<Fixture> = ALGS.iter().map(|&a| Fixture::new(a)).collect();
    let set = key_set(&fixtures);
    let mut g = c.benchmark_group("signature");
    for f in &fixtures {
        let token = f.token("user-0000001");
        let t = parse_token(&token).expect("parses");
        let key = set.get(&f.kid).expect("published");
        assert!(key.verify(f.alg, t.signing_input, &t.signature));
        g.bench_function(f.alg.as_str(), |b| {
            b.iter(|| key.verify(f.alg, black_box(t.signing_input), black_box(&t.signature)))
        });
    }
    // Parse + key lookup + signature: a whole miss but for the claim checks.
    let f = &fixtures[0];
    let token = f.token("user-0000001");
    g.bench_function("EdDSA+parse", |b| {
        b.iter(|| {
            let t = parse_token(black_box(&token)).expect("parses");
            let key = set.get(t.kid.as_deref().expect("kid")).expect("published");
            key.verify(t.alg, t.signing_input, &t.signature)
        })
    });
    g.finish();
}

const ROUTES: &str = r#"
[[providers]]
name = "better-auth"
issuer = "http://127.0.0.1:3000"
jwks_url = "http://127.0.0.1:3000/api/auth/jwks"
audiences = ["http://127.0.0.1:3000"]

[[routes]]
name = "tasks"
prefix = "/api/tasks"
upstream = "http://127.0.0.1:8000"

[[routes]]
name = "users"
prefix = "/api/users"
upstream = "http://127.0.0.1:8000"

[[routes]]
name = "admin"
prefix = "/api/admin/reports"
upstream = "http://127.0.0.1:8001"
roles = ["admin"]

[[routes]]
name = "health"
prefix = "/health"
upstream = "http://127.0.0.1:8000"
auth = "public"

[[routes]]
name = "static"
prefix = "/static"
upstream = "http://127.0.0.1:8002"
auth = "public"

[[routes]]
name = "app"
prefix = "/"
upstream = "http://127.0.0.1:8003"
auth = "optional"
"#;

/// Path normalization and the longest-prefix route match, on a typical path and on
/// paths that make the normalizer work (dot segments, escapes, `;` parameters).
fn routing(c: &mut Criterion) {
    let config = Config::from_toml(ROUTES, "bench.toml", Path::new(".")).expect("valid config");
    let table = RouteTable::for_matching(&config.routes);
    let mut g = c.benchmark_group("route");
    for (name, raw) in [
        ("plain", "/api/tasks/42"),
        ("deep", "/api/admin/reports/2026/11/summary.json"),
        (
            "dots+escapes",
            "/api/tasks/./a/%2e%2e/b//c/%7Euser/caf%C3%A9",
        ),
        ("params", "/api/tasks;jsessionid=abc/42"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let path = portcullis::path::normalize(black_box(raw)).expect("valid path");
                matches!(table.route(&path), Match::Route(_))
            })
        });
    }
    g.finish();
}

/// The rewrite at the trust boundary (`rewrite_request`, the gateway's own): every
/// spelling of the identity and override headers out, the hop-by-hop headers and whatever
/// `Connection` names out, the auth server's cookies out (the default `[cookies] strip`),
/// the forwarding headers and the identity in (on a copy of a browser's request headers,
/// the copy made outside the timing).
fn headers(c: &mut Criterion) {
    let user = HeaderName::from_static("x-user-id");
    let email = HeaderName::from_static("x-user-email");
    let stripped = IdentityHeaders::new(
        [&user, &email]
            .into_iter()
            .chain(&OVERRIDE_HEADERS.map(HeaderName::from_static)),
    );
    let config = Config::from_toml(ROUTES, "bench.toml", Path::new(".")).expect("valid config");
    let alice = HeaderValue::from_static("alice");
    let claims = [(email.clone(), HeaderValue::from_static("alice@example.com"))];
    let out = Outbound {
        peer: "127.0.0.1".parse().expect("an IP"),
        client: "127.0.0.1".parse().expect("an IP"),
        peer_trusted: false,
        tls: false,
        authority: None,
        upstream_h2: false,
        keep_authorization: true,
        user: Some((&user, &alice)),
        claims: &claims,
        upgrade: None,
        drop_cookies: &config.cookies.strip,
    };
    let token = Fixture::new(Alg::EdDSA).token("user-0000001");
    let clean = request_headers(&token);
    let mut forged = clean.clone();
    forged.append("x_user_id", HeaderValue::from_static("admin"));
    forged.append(header::CONNECTION, HeaderValue::from_static("x-request-id"));
    let mut cookies = clean.clone();
    cookies.insert(
        header::COOKIE,
        HeaderValue::from_static("theme=dark; _ga=GA1.2.1234567890.1764763200; cart=3"),
    );

    let mut g = c.benchmark_group("headers");
    for (name, input) in [
        ("typical", &clean),
        ("forged", &forged),
        ("cookies", &cookies),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || input.clone(),
                |h| rewrite_request(h, &stripped, &out),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, token, token_cache, signature, routing, headers);
criterion_main!(benches);
