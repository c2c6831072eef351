//! A warning when most requests come from one private address.
//!
//! Behind a proxy that the limits are not told about (`REAL_IP_FROM` at the gateway,
//! `TRUSTED_PROXIES` here), every client has the proxy's address, and every per-IP limit
//! becomes one site-wide limit that a single attacker exhausts. That address is nearly always a
//! private one (loopback, RFC 1918, IPv6 unique-local or link-local), while real clients are
//! public, so one private address sending most of the traffic is the symptom to log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Requests per window; the share is judged once per window.
const WINDOW: u32 = 1000;
/// At most one warning per this long per process.
const QUIET: Duration = Duration::from_secs(600);

/// Counts of one window of requests.
#[derive(Debug, Default)]
pub struct Window {
    counts: HashMap<IpAddr, u32>,
    seen: u32,
}

impl Window {
    /// Count `ip`; at the end of a window, the private address that sent more than half of it
    /// and its share of requests, if there is one.
    pub fn observe(&mut self, ip: IpAddr) -> Option<(IpAddr, u32)> {
        *self.counts.entry(ip.to_canonical()).or_default() += 1;
        self.seen += 1;
        if self.seen < WINDOW {
            return None;
        }
        let top = self
            .counts
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(ip, n)| (*ip, *n));
        let seen = self.seen;
        self.counts.clear();
        self.seen = 0;
        top.filter(|(ip, n)| is_private(*ip) && *n * 2 > seen)
    }
}

/// Loopback, RFC 1918, link-local, or IPv6 unique-local.
pub fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

static STATE: LazyLock<Mutex<(Window, Option<Instant>)>> = LazyLock::new(Mutex::default);

/// Count one request's client address; log the warning when a window shows the symptom.
pub fn observe(ip: IpAddr) {
    let Ok(mut state) = STATE.lock() else { return };
    let (window, last) = &mut *state;
    let Some((address, count)) = window.observe(ip) else {
        return;
    };
    if last.is_some_and(|t| t.elapsed() < QUIET) {
        return;
    }
    *last = Some(Instant::now());
    tracing::warn!(
        %address,
        share = format!("{count}/{WINDOW}"),
        "most requests come from one private address: a proxy in front that REAL_IP_FROM \
         (gateway) or TRUSTED_PROXIES (services) does not name makes every client share one \
         per-IP limit"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_private_address_with_most_of_a_window_is_reported_once_per_window() {
        let mut w = Window::default();
        for n in 0..WINDOW - 1 {
            let from = if n % 3 == 0 {
                "203.0.113.7"
            } else {
                "10.0.0.2"
            };
            assert_eq!(w.observe(ip(from)), None);
        }
        assert_eq!(w.observe(ip("10.0.0.2")), Some((ip("10.0.0.2"), 667)));
        assert_eq!(w.observe(ip("10.0.0.2")), None, "a new window starts");
    }

    #[test]
    fn public_or_spread_traffic_is_not_reported() {
        let mut w = Window::default();
        let mut reports = Vec::new();
        for n in 0..WINDOW * 2 {
            let from = if n < WINDOW {
                "198.51.100.1".to_owned()
            } else {
                format!("10.0.{}.{}", n % 7, n % 5)
            };
            reports.extend(w.observe(ip(&from)));
        }
        assert_eq!(reports, vec![]);
    }

    #[test]
    fn private_means_loopback_rfc1918_link_local_and_unique_local() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip(private)), "{private}");
        }
        for public in ["203.0.113.1", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_private(ip(public)), "{public}");
        }
    }
}
