//! Properties over generated inputs: path normalization is idempotent and never lets a
//! path escape the route prefix it matched, route matching agrees with a naive reference
//! (longest prefix on whole segments), and no spelling of an identity header survives
//! stripping.

use std::collections::BTreeSet;

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::Config;
use portcullis::internals::{IdentityHeaders, Match, RouteTable, strip_hop_by_hop};
use portcullis::path::normalize;
use proptest::prelude::*;

/// Path segments chosen to collide: dot segments in every encoding, `;` parameters,
/// empty segments, escapes of unreserved and non-ASCII bytes, and route names.
const SEGMENTS: [&str; 26] = [
    "api",
    "tasks",
    "public",
    "admin",
    "v1",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    ".%2E",
    "..;x",
    ".;y",
    "%2e%2e;jsessionid=1",
    "",
    ";p",
    "api;v=1",
    "tasks;x",
    "%61pi",
    "t%61sks",
    "%7e",
    "~",
    "caf%C3%A9",
    "caf%c3%a9",
    "%20",
    "a%3Bb",
    "x",
];

/// Route prefix segments: normalized, as the config requires.
const PREFIX_SEGMENTS: [&str; 8] = [
    "api",
    "tasks",
    "public",
    "admin",
    "v1",
    "~",
    "caf%C3%A9",
    "x",
];

fn dotty_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&SEGMENTS[..]), 0..10)
        .prop_map(|segs| format!("/{}", segs.join("/")))
}

/// Any short path over the characters that matter, malformed escapes included.
fn raw_path() -> impl Strategy<Value = String> {
    "/[a-c./;%2eEfF5C0~_-]{0,40}"
}

fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![3 => dotty_path(), 1 => raw_path()]
}

fn prefix() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&PREFIX_SEGMENTS[..]), 0..4)
        .prop_map(|segs| format!("/{}", segs.join("/")))
}

fn route_table() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(prefix(), 1..7)
}

/// The routes `prefixes` as a config: route `rN` has the N-th prefix.
fn config(prefixes: &BTreeSet<String>) -> Config {
    let mut text = String::from(
        "[[providers]]\nname = \"p\"\nissuer = \"http://127.0.0.1:3000\"\n\
         jwks_url = \"http://127.0.0.1:3000/jwks\"\n",
    );
    for (i, p) in prefixes.iter().enumerate() {
        let auth = if i % 2 == 0 { "required" } else { "public" };
        text.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\nprefix = \"{p}\"\n\
             upstream = \"http://127.0.0.1:1\"\nauth = \"{auth}\"\n"
        ));
    }
    Config::from_toml(&text, "properties.toml", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The naive reading: among the prefixes whose segments all equal the path's first
/// segments, the longest.
fn reference<'a>(prefixes: &'a BTreeSet<String>, segs: &[&str]) -> Option<&'a str> {
    prefixes
        .iter()
        .filter(|p| segs.starts_with(&segments(p)))
        .max_by_key(|p| segments(p).len())
        .map(String::as_str)
}

/// The prefix of the route the table picked for `path`: `Ok(None)` for no route,
/// `Err(())` when it called the path ambiguous.
fn routed<'a>(
    table: &RouteTable,
    prefixes: &'a BTreeSet<String>,
    path: &portcullis::path::NormalizedPath,
) -> Result<Option<&'a str>, ()> {
    match table.route(path) {
        Match::Route(r) => {
            let i: usize = r.name[1..].parse().unwrap();
            Ok(Some(prefixes.iter().nth(i).unwrap().as_str()))
        }
        Match::NoRoute => Ok(None),
        Match::Ambiguous => Err(()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn normalization_is_idempotent(raw in any_path()) {
        if let Ok(once) = normalize(&raw) {
            let twice = normalize(once.as_str());
            prop_assert_eq!(twice.as_ref(), Ok(&once), "{:?}", raw);
            let text = once.as_str();
            prop_assert!(!text.contains("//"), "{:?} -> {:?}", raw, text);
            for seg in segments(text) {
                let name = seg.split(';').next().unwrap();
                prop_assert!(name != "." && name != "..", "{:?} -> {:?}", raw, text);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_normalized_path_never_escapes_the_prefix_it_matched(
        prefixes in route_table(),
        raw in dotty_path(),
    ) {
        let table = RouteTable::for_matching(&config(&prefixes).routes);
        let Ok(path) = normalize(&raw) else { return Ok(()) };
        if let Ok(Some(prefix)) = routed(&table, &prefixes, &path) {
            prop_assert!(
                segments(path.as_str()).starts_with(&segments(prefix)),
                "{:?} -> {:?} matched {:?}", raw, path.as_str(), prefix
            );
        }
    }

    #[test]
    fn route_matching_agrees_with_the_naive_reference(
        prefixes in route_table(),
        raw in any_path(),
    ) {
        let table = RouteTable::for_matching(&config(&prefixes).routes);
        let Ok(path) = normalize(&raw) else { return Ok(()) };
        let segs = segments(path.as_str());
        let strict = reference(&prefixes, &segs);
        // A backend that drops `;` parameters reads each segment up to its first `;`.
        let dropped: Vec<&str> = segs.iter().map(|s| s.split(';').next().unwrap()).collect();
        let lenient = reference(&prefixes, &dropped);
        let expected = if strict == lenient { Ok(strict) } else { Err(()) };
        prop_assert_eq!(
            routed(&table, &prefixes, &path), expected,
            "{:?} -> {:?} over {:?}", raw, path.as_str(), prefixes
        );
    }
}

/// `name` in random case with each `-` written as `-`, `_` or `.`.
fn spelling(name: &'static str) -> impl Strategy<Value = String> {
    let n = name.len();
    (
        prop::collection::vec(any::<bool>(), n),
        prop::collection::vec(0..3usize, n),
    )
        .prop_map(move |(upper, sep)| {
            name.chars()
                .enumerate()
                .map(|(i, c)| match c {
                    '-' => ['-', '_', '.'][sep[i]],
                    c if upper[i] => c.to_ascii_uppercase(),
                    c => c,
                })
                .collect()
        })
}

fn fold(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn no_spelling_of_an_identity_header_survives_stripping(
        configured_id in spelling("x-user-id"),
        configured_email in spelling("x-user-email"),
        sent in prop::collection::vec(
            prop_oneof![spelling("x-user-id"), spelling("x-user-email")], 1..6),
        in_connection in any::<bool>(),
    ) {
        let configured = [
            HeaderName::from_bytes(configured_id.as_bytes()).unwrap(),
            HeaderName::from_bytes(configured_email.as_bytes()).unwrap(),
        ];
        let ids = IdentityHeaders::new(&configured);
        let mut h = HeaderMap::new();
        for name in &sent {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("forged"),
            );
        }
        // Near misses that must stay: a longer name, a missing separator.
        for keep in ["x-user-idx", "x-userid", "x-user-emails", "user-id"] {
            h.append(keep, HeaderValue::from_static("kept"));
        }
        if in_connection {
            let value = HeaderValue::from_str(&sent.join(", ")).unwrap();
            h.append(http::header::CONNECTION, value);
        }
        ids.strip(&mut h);
        strip_hop_by_hop(&mut h);
        let folded: Vec<String> = configured.iter().map(|n| fold(n.as_str())).collect();
        for name in h.keys() {
            prop_assert!(!folded.contains(&fold(name.as_str())), "{} survived", name);
        }
        let left: BTreeSet<&str> = h.keys().map(|k| k.as_str()).collect();
        let kept = BTreeSet::from(["x-user-idx", "x-userid", "x-user-emails", "user-id"]);
        prop_assert_eq!(left, kept);
    }
}
