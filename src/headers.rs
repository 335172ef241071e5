//! Header rewriting at the trust boundary: client-sent copies of the identity headers
//! (and of the headers backends read as identity or as a routing override) are removed in
//! every spelling a backend might fold together (`X-User-Id`, `x_user_id`, `X.User.Id`),
//! hop-by-hop headers and everything a `Connection` header names are removed, and only
//! then does the gateway set what it verified. [`rewrite_request`] is that whole step as
//! one pure function (headers in, headers out), so it can be tested and fuzzed alone.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the non-standard ones proxies still see).
/// `Trailer` is end-to-end (§6.6.2): it announces trailer fields, which pass on filtered.
/// `HTTP2-Settings` belongs to an `Upgrade: h2c` (RFC 7540 §3.2.1), which is never
/// passed on.
const HOP_BY_HOP_COUNT: usize = 8;
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Headers that backends and the frameworks in front of them read as the user's identity
/// (oauth2-proxy's, nginx `auth_request`'s, Apache's and CGI's conventions) or as the real
/// URL of the request (IIS and Symfony's `X-Original-URL` / `X-Rewrite-URL`), or as its
/// scheme, port or path base. A client
/// must never be able to set them, so every route strips them in every spelling, like the
/// configured identity headers. `[identity] strip_headers` adds to this list and
/// `insecure_keep_headers` lets one through where the gateway sits behind a proxy that
/// sets it.
pub const OVERRIDE_HEADERS: [&str; 23] = [
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
    "remote-user",
    "x-remote-user",
    "x-authenticated-user",
    // The rest of the `X-Forwarded-*` family the gateway does not set: Werkzeug's
    // ProxyFix, Rack and Django read them for the request's scheme, port and path base
    // (a forged `X-Forwarded-Ssl: on` makes Rack treat the request as https).
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-server",
    "x-url-scheme",
    "front-end-https",
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

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

/// What the gateway has established about a request by the time it forwards it: the
/// input of [`rewrite_request`] besides the client's own headers.
pub struct Outbound<'a> {
    /// The connection's peer.
    pub peer: IpAddr,
    /// The client's address: the peer, or the nearest untrusted hop of `X-Forwarded-For`
    /// when the peer is a trusted proxy.
    pub client: IpAddr,
    /// Whether the peer is a trusted proxy, whose `X-Forwarded-For` chain is kept.
    pub peer_trusted: bool,
    /// The connection to the gateway is TLS.
    pub tls: bool,
    /// The request target's authority (HTTP/2's `:authority`), used when there is no `Host`.
    pub authority: Option<&'a Authority>,
    /// The upstream speaks HTTP/2: the host travels in `:authority`, not `Host`.
    pub upstream_h2: bool,
    /// Whether the client's `Authorization` header goes on: only when the gateway verified
    /// the token in it (or the route is public) and the route forwards it.
    pub keep_authorization: bool,
    /// The verified user: the configured user id header and its value.
    pub user: Option<(&'a HeaderName, &'a HeaderValue)>,
    /// The verified claims mapped to headers.
    pub claims: &'a [(HeaderName, HeaderValue)],
    /// A WebSocket upgrade the route allows: `Connection: upgrade` and this `Upgrade`.
    pub upgrade: Option<&'a HeaderValue>,
    /// Cookies the upstream must not see (the auth server's session cookies on a route
    /// to another backend): each name also with `__Secure-` and as chunks `NAME.n`.
    pub drop_cookies: &'a [String],
}

/// The trust-boundary rewrite of a request's headers, in an order that matters: the
/// client's identity and override headers out, hop-by-hop headers out, an unverified
/// `Authorization` out, cookie crumbs joined and the session cookies of the auth server
/// taken out, the gateway's own forwarding headers set,
/// and only then the verified identity in, so no header a client sends (`Connection:
/// X-User-Id` included) can remove or replace it.
pub fn rewrite_request(headers: &mut HeaderMap, stripped: &IdentityHeaders, out: &Outbound<'_>) {
    // The host the client asked for: `Host` (HTTP/1) or the `:authority` (HTTP/2).
    let host = headers.get(header::HOST).cloned().or_else(|| {
        out.authority
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    stripped.strip(headers);
    strip_hop_by_hop(headers);
    if !out.keep_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    join_cookies(headers);
    drop_cookies(headers, out.drop_cookies);

    let xff = forwarded_for(headers, out.peer, out.peer_trusted);
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    // The gateway speaks `X-Forwarded-*` and `X-Real-IP`; a client-sent `Forwarded` would
    // let a backend that prefers it read forged client details.
    headers.remove(header::FORWARDED);
    headers.insert(X_REAL_IP.clone(), ip_value(out.client));
    // Behind a trusted proxy that terminated TLS, its word on the scheme stands.
    let proto = match headers.get(&X_FORWARDED_PROTO).map(HeaderValue::as_bytes) {
        Some(b"https") if out.peer_trusted => "https",
        Some(b"http") if out.peer_trusted => "http",
        _ if out.tls => "https",
        _ => "http",
    };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host.clone());
            if out.upstream_h2 {
                // HTTP/2 names the host in `:authority` (the upstream's); the client's
                // host travels in X-Forwarded-Host.
                headers.remove(header::HOST);
            } else {
                headers.insert(header::HOST, host);
            }
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }

    if let Some((name, value)) = out.user {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in out.claims {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(protocol) = out.upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
}

/// An address as header text. IPv4, nearly every peer, is written digit by digit on the
/// stack: through `Display` it cost more than the rest of the rewrite.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).expect("an IP is a valid header value");
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    HeaderValue::from_bytes(&text[..len]).expect("an IP is a valid header value")
}

/// `X-Forwarded-For` toward the upstream: the peer's address alone, or, behind a trusted
/// proxy, the chain it sent with the peer appended. A client that connects directly can
/// never put an address of its choosing in front of its own.
fn forwarded_for(h: &HeaderMap, peer: IpAddr, peer_trusted: bool) -> HeaderValue {
    if !peer_trusted {
        return ip_value(peer);
    }
    let peer = peer.to_string();
    let mut chain: Vec<&str> = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        // An empty hop (`, 127.0.0.1`, `a,,b`) is one a backend may read as the client's
        // address: each hop is kept on its own, empty ones dropped.
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    chain.push(&peer);
    HeaderValue::from_str(&chain.join(", "))
        .unwrap_or_else(|_| HeaderValue::from_str(&peer).expect("an IP is a valid header value"))
}

/// Joins several `Cookie` fields into one, with `"; "` (RFC 9113 §8.2.3): HTTP/2 clients
/// send each cookie as its own field, and a backend reading only the first or the last
/// `Cookie` line would see other cookies than the browser sent.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        let v = v.as_bytes().trim_ascii();
        if v.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v);
    }
    match HeaderValue::from_bytes(&joined) {
        Ok(v) => {
            headers.insert(header::COOKIE, v);
        }
        Err(_) => {
            headers.remove(header::COOKIE);
        }
    }
}

/// Removes from the (joined) `Cookie` header every cookie in the family of one of
/// `names`; the others stay as they were, in order. No cookie left: no header.
fn drop_cookies(headers: &mut HeaderMap, names: &[String]) {
    if names.is_empty() {
        return;
    }
    let Some(value) = headers.get(header::COOKIE) else {
        return;
    };
    let pairs = || {
        value
            .as_bytes()
            .split(|&b| b == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|pair| !pair.is_empty())
    };
    let dropped = |pair: &&[u8]| {
        let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
        // A name that is not text is no cookie of the auth server's.
        let name = String::from_utf8_lossy(name.trim_ascii());
        names.iter().any(|n| crate::session::in_family(&name, n))
    };
    // Most requests carry none of them: their header is left as it came.
    if !pairs().any(|pair| dropped(&pair)) {
        return;
    }
    let kept: Vec<&[u8]> = pairs().filter(|pair| !dropped(pair)).collect();
    if kept.is_empty() {
        headers.remove(header::COOKIE);
        return;
    }
    match HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
        Ok(v) => {
            headers.insert(header::COOKIE, v);
        }
        Err(_) => {
            headers.remove(header::COOKIE);
        }
    }
}

/// Removes hop-by-hop headers and every header any `Connection` header names. `TE:
/// trailers` is kept: it is the one TE value a proxy may pass on (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which of these are present (most messages carry none
    // but `Connection`), so only those are looked up. Headers a `Connection` names can
    // only be there if a `Connection` is.
    let mut present = [false; HOP_BY_HOP_COUNT];
    let mut te = false;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        } else if name == header::TE {
            te = true;
        }
    }
    if present[0] {
        // Byte-wise: one non-UTF-8 byte (obs-text) elsewhere in a value must not shield
        // the names listed beside it.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
        // A `Connection` may name `TE` itself.
        te = te && headers.contains_key(header::TE);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
    let te_trailers_only = !te
        || headers
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

    fn outbound<'a>(
        user: Option<(&'a HeaderName, &'a HeaderValue)>,
        claims: &'a [(HeaderName, HeaderValue)],
    ) -> Outbound<'a> {
        Outbound {
            peer: "127.0.0.1".parse().unwrap(),
            client: "127.0.0.1".parse().unwrap(),
            peer_trusted: false,
            tls: false,
            authority: None,
            upstream_h2: false,
            keep_authorization: true,
            user,
            claims,
            upgrade: None,
            drop_cookies: &[],
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_rewrite_sets_exactly_the_verified_identity_whatever_the_client_sent() {
        let user = HeaderName::from_static("x-user-id");
        let email = HeaderName::from_static("x-user-email");
        let stripped = IdentityHeaders::new(
            [&user, &email]
                .into_iter()
                .chain(&OVERRIDE_HEADERS.map(HeaderName::from_static)),
        );
        let mut h = map(&[
            ("x-user-id", "mallory"),
            ("x_user_id", "mallory"),
            ("connection", "x-user-id, x-user-email"),
            ("x-original-url", "/admin"),
            ("remote_user", "admin"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("host", "app.example"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ]);
        let alice = HeaderValue::from_static("alice");
        let claims = [(email.clone(), HeaderValue::from_static("alice@example.com"))];
        rewrite_request(&mut h, &stripped, &outbound(Some((&user, &alice)), &claims));
        let all =
            |n: &str| -> Vec<&str> { h.get_all(n).iter().map(|v| v.to_str().unwrap()).collect() };
        assert_eq!(all("x-user-id"), ["alice"]);
        assert_eq!(all("x-user-email"), ["alice@example.com"]);
        assert_eq!(all("x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(all("x-real-ip"), ["127.0.0.1"]);
        assert_eq!(all("x-forwarded-host"), ["app.example"]);
        assert_eq!(all("host"), ["app.example"]);
        assert_eq!(all("cookie"), ["a=1; b=2"]);
        for gone in [
            "x_user_id",
            "connection",
            "x-original-url",
            "remote_user",
            "upgrade",
            "http2-settings",
            "forwarded",
        ] {
            assert!(all(gone).is_empty(), "{gone}");
        }
    }

    #[test]
    fn an_unverified_authorization_is_dropped_and_a_websocket_upgrade_is_kept() {
        let stripped = IdentityHeaders::new([&HeaderName::from_static("x-user-id")]);
        let mut h = map(&[("authorization", "Basic dTpw"), ("upgrade", "websocket")]);
        let websocket = HeaderValue::from_static("websocket");
        let mut out = outbound(None, &[]);
        out.keep_authorization = false;
        out.upgrade = Some(&websocket);
        rewrite_request(&mut h, &stripped, &out);
        assert!(h.get(header::AUTHORIZATION).is_none());
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert!(h.get("x-user-id").is_none());
    }

    #[test]
    fn a_trusted_proxy_chain_goes_on_and_an_h2_upstream_gets_no_host() {
        let stripped = IdentityHeaders::new([&HeaderName::from_static("x-user-id")]);
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.7, "),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        let authority = Authority::from_static("app.example");
        let mut out = outbound(None, &[]);
        out.peer = "10.0.0.2".parse().unwrap();
        out.client = "203.0.113.7".parse().unwrap();
        out.peer_trusted = true;
        out.authority = Some(&authority);
        out.upstream_h2 = true;
        rewrite_request(&mut h, &stripped, &out);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.0.0.1, 10.0.0.2");
        assert_eq!(h["x-real-ip"], "203.0.113.7");
        assert_eq!(h["x-forwarded-host"], "app.example");
        assert!(h.get(header::HOST).is_none());
    }

    #[test]
    fn cookie_crumbs_join_and_empty_ones_vanish() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", " "), ("cookie", "b=2; c=3")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2; c=3");
        let mut one = map(&[("cookie", "a=1")]);
        join_cookies(&mut one);
        assert_eq!(one[header::COOKIE], "a=1");
    }

    #[test]
    fn the_auth_servers_cookies_are_dropped_and_the_others_kept_in_order() {
        let stripped = IdentityHeaders::new([&HeaderName::from_static("x-user-id")]);
        let mut h = map(&[
            ("cookie", "theme=dark; better-auth.session_token=t.sig"),
            (
                "cookie",
                "__Secure-better-auth.session_data.0=a; better-auth.session_data.1=b",
            ),
            ("cookie", "cart=3; better-auth.dont_remember=true; flag"),
        ]);
        let names = [
            "better-auth.session_token".to_owned(),
            "better-auth.session_data".to_owned(),
            "better-auth.dont_remember".to_owned(),
        ];
        let mut out = outbound(None, &[]);
        out.drop_cookies = &names;
        rewrite_request(&mut h, &stripped, &out);
        assert_eq!(h[header::COOKIE], "theme=dark; cart=3; flag");
        let mut only = map(&[("cookie", "better-auth.session_token=t")]);
        rewrite_request(&mut only, &stripped, &out);
        assert!(only.get(header::COOKIE).is_none());
        // A route to the auth server itself passes them unchanged.
        let mut kept = map(&[("cookie", "better-auth.session_token=t; a=1")]);
        rewrite_request(&mut kept, &stripped, &outbound(None, &[]));
        assert_eq!(kept[header::COOKIE], "better-auth.session_token=t; a=1");
    }

    #[test]
    fn an_ipv4_address_is_written_as_display_writes_it() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.9",
            "192.168.10.99",
            "255.255.255.255",
            "1.20.100.205",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip), ip.to_string().as_str());
        }
        let v6: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(ip_value(v6), "::ffff:10.0.0.2");
    }

    #[test]
    fn te_goes_without_a_connection_header_and_named_hop_headers_go_in_any_case() {
        let mut h = map(&[("te", "gzip"), ("keep-alive", "timeout=5"), ("x-a", "1")]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-a"]);
        let mut h = map(&[
            ("connection", "Keep-Alive, TE, Upgrade"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-a", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-a"]);
        let mut clean = map(&[("host", "a"), ("te", "trailers"), ("x-a", "1")]);
        strip_hop_by_hop(&mut clean);
        assert_eq!(clean.len(), 3);
    }

    #[test]
    fn te_trailers_survives() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key(header::TE));
    }
}
