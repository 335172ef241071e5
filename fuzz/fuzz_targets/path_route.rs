//! Path normalization and route matching. For any request path: normalizing is
//! idempotent; the canonical form has no empty, `.` or `..` segment (also not before a
//! `;`), no encoded `/`, `\` or NUL, and is a valid URI path; and the route table picks
//! exactly the longest configured prefix of it on whole segments (or calls it ambiguous
//! when dropping `;` parameters or folding ASCII case would pick another route).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis::Config;
use portcullis::internals::{Match, RouteTable};
use portcullis::path::normalize;

const CONFIG: &str = r#"
[[providers]]
name = "better-auth"
issuer = "http://localhost:3000"
jwks_url = "http://localhost:3000/api/auth/jwks"

[[routes]]
name = "public"
prefix = "/public"
upstream = "http://127.0.0.1:8000"
auth = "public"

[[routes]]
name = "api"
prefix = "/api"
upstream = "http://127.0.0.1:8000"

[[routes]]
name = "tasks"
prefix = "/api/tasks"
upstream = "http://127.0.0.1:8000"

[[routes]]
name = "health"
prefix = "/api/health"
upstream = "http://127.0.0.1:8000"
auth = "public"

[[routes]]
name = "admin"
prefix = "/admin/users"
upstream = "http://127.0.0.1:8000"
auth = "optional"

[[routes]]
name = "unicode"
prefix = "/caf%C3%A9/~me"
upstream = "http://127.0.0.1:8000"
auth = "public"
"#;

struct Fixture {
    table: RouteTable,
    /// `(name, prefix segments)` of every route.
    prefixes: Vec<(String, Vec<String>)>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let config = Config::from_toml(CONFIG, "fuzz.toml", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    let prefixes = config
        .routes
        .iter()
        .map(|r| (r.name.to_string(), segments(&r.prefix)))
        .collect();
    Fixture {
        table: RouteTable::for_matching(&config.routes),
        prefixes,
    }
});

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The naive reading: the longest prefix whose segments all equal the path's first ones.
fn reference<'a>(prefixes: &'a [(String, Vec<String>)], segs: &[String]) -> Option<&'a str> {
    prefixes
        .iter()
        .filter(|(_, p)| segs.len() >= p.len() && segs[..p.len()] == p[..])
        .max_by_key(|(_, p)| p.len())
        .map(|(n, _)| n.as_str())
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(once) = normalize(raw) else {
        return;
    };
    let text = once.as_str();

    let twice = normalize(text).expect("a normalized path normalizes");
    assert_eq!(twice, once, "normalization is idempotent");

    assert!(text.starts_with('/'));
    assert!(!text.contains("//"), "{text:?}");
    let upper = text.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%00", "%2E", "\\"] {
        assert!(!upper.contains(bad), "{bad} in {text:?}");
    }
    assert!(!text.bytes().any(|b| b.is_ascii_control() || !b.is_ascii()));
    for seg in text.split('/').skip(1) {
        let name = seg.split(';').next().unwrap();
        assert!(name != "." && name != "..", "dot segment in {text:?}");
    }
    assert!(
        http::uri::PathAndQuery::try_from(text).is_ok(),
        "not a URI path: {text:?}"
    );

    let f = &*FIXTURE;
    let segs = segments(text);
    let strict = reference(&f.prefixes, &segs);
    // The readings a lenient backend may make: `;` parameters dropped, ASCII case folded.
    let readings = [(true, false), (false, true), (true, true)].map(|(drop, fold)| {
        let segs: Vec<String> = segs
            .iter()
            .map(|s| {
                let s = if drop { s.split(';').next().unwrap() } else { s };
                if fold { s.to_ascii_lowercase() } else { s.to_owned() }
            })
            .collect();
        let prefixes: Vec<(String, Vec<String>)> = f
            .prefixes
            .iter()
            .map(|(n, p)| {
                let p = p.iter().map(|s| if fold { s.to_ascii_lowercase() } else { s.clone() });
                (n.clone(), p.collect())
            })
            .collect();
        reference(&prefixes, &segs).map(str::to_owned)
    });
    let strict_owned = strict.map(str::to_owned);
    let got = match f.table.route(&once) {
        Match::Route(r) => Some(r.name.as_str()),
        Match::NoRoute => None,
        Match::Ambiguous => {
            assert!(
                readings.iter().any(|r| *r != strict_owned),
                "ambiguous, yet every reading agrees: {text:?}"
            );
            return;
        }
    };
    assert!(
        readings.iter().all(|r| *r == strict_owned),
        "a lenient reading of {text:?} picks another route"
    );
    assert_eq!(got, strict, "route of {text:?}");
    if let Some(name) = got {
        let (_, prefix) = f.prefixes.iter().find(|(n, _)| n == name).unwrap();
        assert!(segs.starts_with(prefix), "{text:?} escaped {name}");
    }
});
