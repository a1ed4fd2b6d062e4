//! Who sent a request: the one place the client's address and scheme are decided. The
//! connection's peer is the client unless it is a trusted proxy (`TRUSTED_PROXIES`); then
//! `X-Forwarded-For` is read from the right, and the first address that is not a trusted
//! proxy is the client (everything left of it could have been written by the client itself).
//! `X-Forwarded-Proto` is believed from a trusted proxy only.

use std::{net::IpAddr, net::SocketAddr, sync::Arc};

use app::backend::ClientInfo;
use axum::{
    extract::{ConnectInfo, Request},
    http::HeaderMap,
    middleware::Next,
    response::Response,
};
use ipnet::IpNet;

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    proxies.iter().any(|n| n.contains(&ip))
}

/// The client's address: the peer, or the rightmost untrusted hop of `X-Forwarded-For` when
/// the peer is a trusted proxy.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted(peer, proxies) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // A hop no proxy of ours wrote: stop at the last one we trust.
            break;
        };
        client = ip;
        if !trusted(ip, proxies) {
            break;
        }
    }
    Some(client)
}

/// Whether the request came over HTTPS to a trusted proxy (`X-Forwarded-Proto`; the first
/// value is the client-facing hop's).
pub fn forwarded_https(peer: Option<IpAddr>, headers: &HeaderMap, proxies: &[IpNet]) -> bool {
    peer.is_some_and(|p| trusted(p, proxies))
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// What the layer needs from the configuration.
pub struct ClientPolicy {
    pub proxies: Vec<IpNet>,
    pub public_https: bool,
}

/// Puts the request's [`ClientInfo`] into its extensions.
pub async fn attach(policy: Arc<ClientPolicy>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let headers = req.headers();
    let info = ClientInfo {
        ip: client_ip(peer, headers, &policy.proxies),
        secure: policy.public_https || forwarded_https(peer, headers, &policy.proxies),
    };
    req.extensions_mut().insert(info);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let proxies: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        // No trusted proxies: the header is ignored.
        assert_eq!(client_ip(ip("127.0.0.1"), &xff, &[]), ip("127.0.0.1"));
        // From an untrusted peer: ignored.
        assert_eq!(client_ip(ip("5.5.5.5"), &xff, &proxies), ip("5.5.5.5"));
        // Through trusted proxies: the rightmost untrusted hop, never the spoofed leftmost.
        assert_eq!(client_ip(ip("127.0.0.1"), &xff, &proxies), ip("1.2.3.4"));
        // Several headers are one list.
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        assert_eq!(client_ip(ip("127.0.0.1"), &split, &proxies), ip("1.2.3.4"));
        // Garbage stops the walk at the last trusted hop.
        let junk = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip, 10.0.0.9")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &junk, &proxies), ip("10.0.0.9"));
        // Only trusted hops: the leftmost of them.
        let inner = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &inner, &proxies), ip("10.1.1.1"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &HeaderMap::new(), &proxies),
            ip("127.0.0.1")
        );
        // An IPv4-mapped IPv6 peer matches an IPv4 CIDR.
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &xff, &proxies),
            ip("1.2.3.4")
        );
        assert_eq!(client_ip(None, &xff, &proxies), None);
    }

    #[test]
    fn forwarded_proto_is_believed_from_trusted_proxies_only() {
        let proxies: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let https = headers(&[("x-forwarded-proto", "https")]);
        assert!(forwarded_https(ip("127.0.0.1"), &https, &proxies));
        assert!(!forwarded_https(ip("8.8.8.8"), &https, &proxies));
        assert!(!forwarded_https(ip("127.0.0.1"), &https, &[]));
        let http = headers(&[("x-forwarded-proto", "http")]);
        assert!(!forwarded_https(ip("127.0.0.1"), &http, &proxies));
    }
}
