//! The client's address, as far as the gateway can vouch for it: the peer of the
//! connection, unless that peer is a trusted proxy (`server.trusted_proxies`), in which
//! case the nearest hop of its `X-Forwarded-For` that is not itself a trusted proxy. A
//! client that connects directly can never choose the address it is known by.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// Where a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address: the peer, or the nearest untrusted `X-Forwarded-For` hop.
    pub ip: IpAddr,
    /// The peer is a trusted proxy, so its `X-Forwarded-For` chain goes on.
    pub peer_trusted: bool,
}

fn trusted(proxies: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    proxies.iter().any(|net| net.contains(&ip))
}

/// The client address of a request from `peer` with these headers.
pub fn client_addr(proxies: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
    let peer = peer.to_canonical();
    if proxies.is_empty() || !trusted(proxies, peer) {
        return ClientAddr {
            ip: peer,
            peer_trusted: false,
        };
    }
    // Right to left: each hop was appended by the one after it; the first hop that is not
    // a trusted proxy is the client. A hop that does not parse ends the walk: nothing to
    // its left can be vouched for, so the last address that could be stands.
    let mut client = peer;
    let values: Vec<&[u8]> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let hops = values
        .iter()
        .rev()
        .flat_map(|v| v.rsplit(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|h| !h.is_empty());
    for hop in hops {
        let Some(ip) = std::str::from_utf8(hop)
            .ok()
            .and_then(|h| h.parse::<IpAddr>().ok())
        else {
            break;
        };
        client = ip.to_canonical();
        if !trusted(proxies, client) {
            break;
        }
    }
    ClientAddr {
        ip: client,
        peer_trusted: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_direct_client_is_its_peer_whatever_it_claims() {
        let addr = client_addr(
            &nets(&["10.0.0.0/8"]),
            "203.0.113.9".parse().unwrap(),
            &xff(&["1.2.3.4"]),
        );
        assert_eq!(addr.ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert!(!addr.peer_trusted);
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let proxies = nets(&["10.0.0.0/8"]);
        let peer = "10.0.0.2".parse().unwrap();
        // The client put a forged hop first; the proxies appended the real one and their own.
        let addr = client_addr(&proxies, peer, &xff(&["6.6.6.6, 198.51.100.7", "10.1.1.1"]));
        assert_eq!(addr.ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert!(addr.peer_trusted);
        // No header at all: the proxy itself is the client.
        assert_eq!(client_addr(&proxies, peer, &HeaderMap::new()).ip, peer);
        // A hop that is not an address stops the walk at the last trusted one.
        let addr = client_addr(&proxies, peer, &xff(&["198.51.100.7, junk, 10.1.1.1"]));
        assert_eq!(addr.ip, "10.1.1.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_ipv4_mapped_peer_matches_an_ipv4_network() {
        let addr = client_addr(
            &nets(&["10.0.0.0/8"]),
            "::ffff:10.0.0.2".parse().unwrap(),
            &xff(&["198.51.100.7"]),
        );
        assert_eq!(addr.ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    }
}
