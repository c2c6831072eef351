//! The client's IP address, for per-IP limits.
//!
//! `X-Forwarded-For` is believed only when the TCP peer is a trusted proxy (`TRUSTED_PROXIES`,
//! default the local nginx). The header is then read from the right, skipping further trusted
//! hops, so a client cannot pick its own address by sending a forged header through nginx.
//!
//! Handlers take the address as the [`ClientIp`] extractor, which reads the service's
//! [`TrustedProxies`] from the app data: one way for every handler, none reaching into another
//! component's settings for the proxy list.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use ipnet::IpNet;

use crate::http::ApiError;

/// `TRUSTED_PROXIES`, registered once as app data (`web::Data<TrustedProxies>`) by every
/// service that reads client addresses.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

/// The client's address (`None` when actix knows no peer, as in some unit tests), resolved with
/// the app's [`TrustedProxies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequest for ClientIp {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Missing app data is a wiring bug; failing loudly beats counting every client behind
        // nginx as nginx's own address.
        ready(match req.app_data::<web::Data<TrustedProxies>>() {
            Some(trusted) => Ok(Self(of(req, &trusted.0))),
            None => Err(ApiError::Unexpected(anyhow::anyhow!(
                "TrustedProxies is not registered as app data"
            ))),
        })
    }
}

/// The client address of `req`, given the trusted proxy networks.
pub fn of(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client = resolve(peer, xff, trusted);
    if let Some(ip) = client {
        crate::concentration::observe(ip);
    }
    client
}

/// The rule, separated from actix for testing.
pub fn resolve(peer: Option<IpAddr>, xff: Option<&str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(xff) = xff else { return Some(peer) };
    let mut client = peer;
    for hop in xff.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A garbage entry ends the trusted chain: stay with the last good address.
            Err(_) => break,
        }
    }
    Some(client)
}

/// The key a per-IP rate limit counts under. An IPv4 address counts alone; an IPv6 client is
/// counted by its /64, because one subscriber usually holds a whole /64 and could otherwise take
/// a fresh quota from each of its 2^64 addresses; an IPv4-mapped IPv6 address counts as the IPv4
/// address it is.
pub fn limit_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The key of a client without a known address (actix knows no peer, as in some unit tests).
pub const UNKNOWN_CLIENT: &str = "unknown";

/// [`limit_key`] of a client, [`UNKNOWN_CLIENT`] when it has no address. The one spelling for
/// every crate: verifications-svc stores it as the owner of an SMS code and users-svc compares
/// it with the guesser's.
pub fn limit_key_of(client: Option<IpAddr>) -> String {
    client.map_or_else(|| UNKNOWN_CLIENT.to_owned(), limit_key)
}

/// The key a per-subnet limit counts under: an IPv4 address's /24, an IPv6 address's /48 (a
/// site's allocation), an IPv4-mapped address as its IPv4. A rented pool of neighbouring
/// addresses then shares one budget.
pub fn subnet_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().expect("net"),
            "10.0.0.0/8".parse().expect("net"),
        ];
        let cases = [
            (
                "untrusted peer ignores the header",
                "203.0.113.9",
                Some("1.2.3.4"),
                "203.0.113.9",
            ),
            (
                "trusted peer without header",
                "127.0.0.1",
                None,
                "127.0.0.1",
            ),
            (
                "trusted peer, one hop",
                "127.0.0.1",
                Some("198.51.100.7"),
                "198.51.100.7",
            ),
            (
                "forged leftmost entry is skipped",
                "127.0.0.1",
                Some("6.6.6.6, 198.51.100.7"),
                "198.51.100.7",
            ),
            (
                "trusted hops are skipped",
                "127.0.0.1",
                Some("198.51.100.7, 10.1.2.3"),
                "198.51.100.7",
            ),
            (
                "garbage stops the walk",
                "127.0.0.1",
                Some("198.51.100.7, junk"),
                "127.0.0.1",
            ),
        ];
        for (why, peer, xff, want) in cases {
            assert_eq!(
                resolve(Some(ip(peer)), xff, &trusted),
                Some(ip(want)),
                "{why}"
            );
        }
    }

    #[test]
    fn limit_keys_group_an_ipv6_slash_64_and_unmap_ipv4() {
        let cases = [
            ("IPv4 alone", "198.51.100.7", "198.51.100.7"),
            (
                "IPv4-mapped IPv6 is the IPv4",
                "::ffff:198.51.100.7",
                "198.51.100.7",
            ),
            (
                "IPv6 by its /64",
                "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
                "2001:db8:1:2::/64",
            ),
            (
                "same /64, other host",
                "2001:db8:1:2::1",
                "2001:db8:1:2::/64",
            ),
            ("other /64", "2001:db8:1:3::1", "2001:db8:1:3::/64"),
            ("loopback", "::1", "0:0:0:0::/64"),
        ];
        for (why, input, want) in cases {
            assert_eq!(limit_key(ip(input)), want, "{why}");
            assert_eq!(limit_key_of(Some(ip(input))), want, "{why}");
        }
        assert_eq!(limit_key_of(None), "unknown", "no address");
    }

    #[test]
    fn subnet_keys_are_an_ipv4_slash_24_and_an_ipv6_slash_48() {
        let cases = [
            ("IPv4 /24", "198.51.100.7", "198.51.100.0/24"),
            ("same /24", "198.51.100.250", "198.51.100.0/24"),
            ("mapped IPv4", "::ffff:198.51.101.7", "198.51.101.0/24"),
            ("IPv6 /48", "2001:db8:1:2::1", "2001:db8:1::/48"),
            (
                "same /48, other /64",
                "2001:db8:1:ffff::1",
                "2001:db8:1::/48",
            ),
        ];
        for (why, input, want) in cases {
            assert_eq!(subnet_key(ip(input)), want, "{why}");
        }
    }

    #[actix_web::test]
    async fn the_extractor_resolves_with_the_registered_proxies_and_refuses_without_them() {
        use actix_web::test::TestRequest;
        let peer: std::net::SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let forwarded = || {
            TestRequest::default()
                .peer_addr(peer)
                .insert_header(("x-forwarded-for", "198.51.100.7"))
        };
        let trusted = TrustedProxies(vec!["127.0.0.1/32".parse().expect("net")]);
        let req = forwarded()
            .app_data(web::Data::new(trusted))
            .to_http_request();
        let got = ClientIp::extract(&req).await.expect("registered");
        assert_eq!(got, ClientIp(Some(ip("198.51.100.7"))));
        let untrusted = forwarded()
            .app_data(web::Data::new(TrustedProxies::default()))
            .to_http_request();
        let got = ClientIp::extract(&untrusted).await.expect("registered");
        assert_eq!(
            got,
            ClientIp(Some(ip("127.0.0.1"))),
            "the peer, header ignored"
        );
        let unwired = forwarded().to_http_request();
        assert!(matches!(
            ClientIp::extract(&unwired).await,
            Err(ApiError::Unexpected(_))
        ));
    }
}
