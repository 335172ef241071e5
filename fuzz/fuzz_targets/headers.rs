//! Header rewriting at the trust boundary, as one pure function. From any set of request
//! headers (and any combination of what the gateway established about the request),
//! `rewrite_request` leaves: exactly the verified identity in the identity headers and
//! nothing a backend could fold (ASCII lowercase, `_` and `.` read as `-`) into one; no
//! override header (`X-Original-URL`, `Remote-User`, ...); no hop-by-hop header, no
//! `HTTP2-Settings`, and no `Upgrade` but the WebSocket one the route allowed; nothing a
//! `Connection` header named, except what the gateway itself sets afterwards; one
//! `Cookie` at most, holding none of the dropped cookies (in any case, with or without
//! `__Secure-`, whole or as chunks); no `Authorization` the gateway did not verify; and
//! an `X-Forwarded-For` that a direct client cannot choose.
//!
//! The input is a flags byte, then a header block: lines of `name: value` (split at the
//! first `:`).

#![no_main]

use std::sync::LazyLock;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::internals::{IdentityHeaders, OVERRIDE_HEADERS, Outbound, rewrite_request};

/// The auth server's cookies, dropped when flag 64 is set.
const DROP: [&str; 2] = ["better-auth.session_token", "better-auth.session_data"];
const IDENTITY: [&str; 3] = ["x-user-id", "x-user-email", "x-auth.roles"];
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];
/// What the gateway sets after stripping, so a `Connection` naming them cannot matter.
const SET_BY_GATEWAY: [&str; 7] = [
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
    "host",
    "x-user-id",
    "x-user-email",
];

static STRIPPED: LazyLock<IdentityHeaders> = LazyLock::new(|| {
    let names: Vec<HeaderName> = IDENTITY
        .iter()
        .chain(OVERRIDE_HEADERS.iter())
        .map(|n| HeaderName::from_static(n))
        .collect();
    IdentityHeaders::new(&names)
});

fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' | b'.' => '-',
            _ => b.to_ascii_lowercase() as char,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    // Every token any `Connection` value names, read byte-wise as a backend would.
    let named: Vec<Vec<u8>> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| t.trim_ascii().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();

    let user_header = HeaderName::from_static("x-user-id");
    let user_value = HeaderValue::from_static("alice");
    let claims = [(
        HeaderName::from_static("x-user-email"),
        HeaderValue::from_static("alice@example.com"),
    )];
    let websocket = HeaderValue::from_static("websocket");
    let drop: Vec<String> = DROP.iter().map(|n| (*n).to_owned()).collect();
    let verified = flags & 1 != 0;
    let out = Outbound {
        peer: "192.0.2.1".parse().unwrap(),
        client: "192.0.2.1".parse().unwrap(),
        peer_trusted: flags & 2 != 0,
        tls: flags & 4 != 0,
        authority: None,
        upstream_h2: flags & 8 != 0,
        keep_authorization: flags & 16 != 0,
        user: verified.then_some((&user_header, &user_value)),
        claims: if verified { &claims } else { &[] },
        upgrade: (flags & 32 != 0).then_some(&websocket),
        drop_cookies: if flags & 64 != 0 { &drop } else { &[] },
    };
    rewrite_request(&mut headers, &STRIPPED, &out);

    let identity: Vec<String> = IDENTITY.iter().map(|n| fold(n)).collect();
    for name in headers.keys() {
        let name = name.as_str();
        let folded = fold(name);
        if identity.contains(&folded) {
            assert!(verified && (name == "x-user-id" || name == "x-user-email"), "{name}");
            assert_eq!(headers.get_all(name).iter().count(), 1, "{name}");
        }
        assert!(!OVERRIDE_HEADERS.contains(&folded.as_str()), "{name} survived");
        if out.upgrade.is_some() && (name == "connection" || name == "upgrade") {
            continue;
        }
        assert!(!HOP_BY_HOP.contains(&name), "{name} survived");
        assert!(
            SET_BY_GATEWAY.contains(&name) || !named.iter().any(|n| n == name.as_bytes()),
            "{name} was named by Connection and survived"
        );
    }
    if verified {
        assert_eq!(headers["x-user-id"], "alice");
    }
    if let Some(ws) = out.upgrade {
        assert_eq!(headers.get_all("upgrade").iter().collect::<Vec<_>>(), [ws]);
        assert_eq!(headers["connection"], "upgrade");
    }
    for te in headers.get_all(http::header::TE) {
        assert!(te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    }
    assert!(headers.get_all(http::header::COOKIE).iter().count() <= 1);
    if let Some(cookie) = headers.get(http::header::COOKIE) {
        for pair in cookie.as_bytes().split(|&b| b == b';') {
            let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name.trim_ascii()).to_ascii_lowercase();
            let name = name.strip_prefix("__secure-").unwrap_or(&name);
            for d in out.drop_cookies {
                let rest = name.strip_prefix(d.as_str());
                let chunk = rest
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                assert!(rest != Some("") && !chunk, "{name} survived");
            }
        }
    }
    if !out.keep_authorization {
        assert!(!headers.contains_key(http::header::AUTHORIZATION));
    }
    let xff: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff.len(), 1);
    if !out.peer_trusted {
        assert_eq!(xff[0], "192.0.2.1");
    }
});
