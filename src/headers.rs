//! Header rewriting at the trust boundary: client-sent copies of the identity headers are
//! removed in every spelling a backend might fold together (`X-User-Id`, `x_user_id`,
//! `X.User.Id`), hop-by-hop headers and everything a `Connection` header names are
//! removed, and only then does the gateway set the identity it verified.

use http::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the non-standard ones proxies still see).
/// `Trailer` is end-to-end (§6.6.2): it announces trailer fields, which pass on filtered.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers the gateway itself manages; none of them can be configured as an identity
/// header.
pub fn is_reserved(name: &HeaderName) -> bool {
    let key = spelling_key(name.as_str());
    HOP_BY_HOP.iter().any(|h| spelling_key(h.as_str()) == key)
        || matches!(
            key.as_str(),
            "te" | "trailer"
                | "host"
                | "authorization"
                | "content-length"
                | "content-type"
                | "cookie"
                | "forwarded"
                | "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "x-real-ip"
                | "expect"
        )
}

/// The form under which backends may fold header spellings together: ASCII lowercase,
/// `_` and `.` read as `-` (CGI, WSGI and PHP map `-` to `_`; some map `.` too).
pub fn spelling_key(name: &str) -> String {
    name.bytes().map(|b| fold(b) as char).collect()
}

#[inline]
fn fold(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        _ => b.to_ascii_lowercase(),
    }
}

/// Whether `name` is another spelling of `key` (a [`spelling_key`]).
#[inline]
fn same_spelling(name: &str, key: &str) -> bool {
    name.len() == key.len() && name.bytes().zip(key.bytes()).all(|(a, b)| fold(a) == b)
}

/// The identity headers, precompiled at config load.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    keys: Vec<String>,
}

impl IdentityHeaders {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a HeaderName>) -> IdentityHeaders {
        IdentityHeaders {
            keys: names
                .into_iter()
                .map(|n| spelling_key(n.as_str()))
                .collect(),
        }
    }

    /// Removes every value of every header that spells an identity header.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| self.keys.iter().any(|k| same_spelling(n.as_str(), k)))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(&name);
        }
    }
}

/// Removes hop-by-hop headers and every header any `Connection` header names. `TE:
/// trailers` is kept: it is the one TE value a proxy may pass on (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Byte-wise: one non-UTF-8 byte (obs-text) elsewhere in a value must not shield the
    // names listed beside it.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
    let te_trailers_only = headers
        .get_all(header::TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_trailers_only {
        headers.remove(header::TE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn every_spelling_of_an_identity_header_is_stripped() {
        let ids = IdentityHeaders::new([&HeaderName::from_static("x-user-id")]);
        let mut h = HeaderMap::new();
        for n in [
            "x-user-id",
            "X_User_Id",
            "x.user.id",
            "X-USER_ID",
            "x-user-idx",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("evil"),
            );
        }
        h.append("x-user-id", HeaderValue::from_static("evil2"));
        ids.strip(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-user-idx"]);
    }

    #[test]
    fn connection_named_headers_are_removed_across_all_values() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-a"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("X-B"));
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("1"));
        h.insert("x-c", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-c"]);
    }

    /// Caught by the `headers` fuzz target: a `Connection` value with a byte outside
    /// visible ASCII was skipped whole, so the names listed in it reached the upstream.
    #[test]
    fn connection_named_headers_are_removed_beside_a_non_utf8_value() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-secret, \xff").unwrap(),
        );
        h.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"\tx-other\t,caf\xc3\xa9").unwrap(),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn te_trailers_survives() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key(header::TE));
    }
}
