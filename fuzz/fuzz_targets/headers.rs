//! Header rewriting at the trust boundary. From any set of request headers, stripping
//! the identity headers and then the hop-by-hop ones leaves no header that a backend
//! could fold (ASCII lowercase, `_` and `.` read as `-`) into an identity header, no
//! hop-by-hop header, and nothing a `Connection` header named.
//!
//! The input is a header block: lines of `name: value` (split at the first `:`).

#![no_main]

use std::sync::LazyLock;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::internals::{IdentityHeaders, strip_hop_by_hop};

const IDENTITY: [&str; 3] = ["x-user-id", "x-user-email", "x-auth.roles"];
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

static IDENTITY_HEADERS: LazyLock<IdentityHeaders> = LazyLock::new(|| {
    let names: Vec<HeaderName> = IDENTITY
        .iter()
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

    IDENTITY_HEADERS.strip(&mut headers);
    strip_hop_by_hop(&mut headers);

    let identity: Vec<String> = IDENTITY.iter().map(|n| fold(n)).collect();
    for name in headers.keys() {
        let name = name.as_str();
        assert!(
            !identity.contains(&fold(name)),
            "{name} survived as an identity header"
        );
        assert!(!HOP_BY_HOP.contains(&name), "{name} survived");
        assert!(
            !named.iter().any(|n| n == name.as_bytes()),
            "{name} was named by Connection and survived"
        );
    }
    for te in headers.get_all(http::header::TE) {
        assert!(te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    }
});
