//! The client's address behind proxies (`TRUSTED_PROXIES`): the peer, unless the peer is a
//! trusted proxy, in which case the rightmost `X-Forwarded-For` hop that is not itself a
//! trusted proxy. A hop a trusted proxy appended is believed; nothing an untrusted peer says
//! is, so a client cannot choose the address it is counted under.

use std::net::IpAddr;

/// One network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, candidate: IpAddr) -> bool {
        match (self.address, canonical(candidate)) {
            (IpAddr::V4(network), IpAddr::V4(candidate)) => prefix_matches(
                network.to_bits().into(),
                candidate.to_bits().into(),
                32,
                self.prefix,
            ),
            (IpAddr::V6(network), IpAddr::V6(candidate)) => {
                prefix_matches(network.to_bits(), candidate.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `width` bits of `a` and `b` agree.
fn prefix_matches(a: u128, b: u128, width: u32, prefix: u8) -> bool {
    let host_bits = width - u32::from(prefix);
    // A /0 network has 128 host bits in IPv6, a shift `>>` would overflow on.
    (a ^ b).checked_shr(host_bits).unwrap_or(0) == 0
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Network>,
}

impl TrustedProxies {
    /// Parses `TRUSTED_PROXIES`: comma-separated CIDRs (`10.0.0.0/8`, `fd00::/8`) or single
    /// addresses; blank entries are ignored. The error names the first invalid entry.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = || format!("{entry:?} is not a CIDR such as 10.0.0.0/8 or fd00::/8");
            let (address, prefix) = match entry.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (entry, None),
            };
            let parsed = address.parse::<IpAddr>().map_err(|_| invalid())?;
            // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps.
            let (address, width, mapped_bits): (IpAddr, u8, u8) = match canonical(parsed) {
                address @ IpAddr::V4(_) if parsed.is_ipv6() => (address, 32, 96),
                address @ IpAddr::V4(_) => (address, 32, 0),
                address @ IpAddr::V6(_) => (address, 128, 0),
            };
            let prefix = match prefix {
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .and_then(|prefix| prefix.checked_sub(mapped_bits))
                    .ok_or_else(invalid)?,
                None => width,
            };
            if prefix > width {
                return Err(invalid());
            }
            networks.push(Network { address, prefix });
        }
        Ok(TrustedProxies { networks })
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.networks
            .iter()
            .any(|network| network.contains(address))
    }

    /// The client behind `peer`, given the request's `X-Forwarded-For` values in order
    /// (several headers read as one list). Walks the hops from the right while the hop that
    /// handed the request on is trusted; a hop that is not an address ends the walk at the
    /// proxy that passed it on.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let values: Vec<&[u8]> = forwarded_for.into_iter().collect();
        let hops = values
            .iter()
            .rev()
            .flat_map(|value| value.rsplit(|&byte| byte == b','));
        for hop in hops {
            let Some(address) = parse_hop(hop) else {
                return client;
            };
            client = address;
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`), surrounded by optional whitespace.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    if let Some(bracketed) = hop.strip_prefix('[') {
        let (address, _) = bracketed.split_once(']')?;
        return address.parse().ok().map(canonical);
    }
    let (address, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn client(trusted: &str, peer: &str, headers: &[&str]) -> String {
        TrustedProxies::parse(trusted)
            .expect("trusted proxies")
            .client(ip(peer), headers.iter().map(|value| value.as_bytes()))
            .to_string()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(client("", "192.0.2.9", &["198.51.100.1"]), "192.0.2.9");
        assert_eq!(
            client("10.0.0.0/8", "192.0.2.9", &["10.1.1.1"]),
            "192.0.2.9"
        );
        assert_eq!(
            client("10.0.0.0/8", "11.0.0.1", &["198.51.100.1"]),
            "11.0.0.1"
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        // The client prepended a lie; the proxy appended what it saw.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.5", &["203.0.113.7, 198.51.100.1"]),
            "198.51.100.1"
        );
        // Two trusted proxies in a row.
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.5",
                &["203.0.113.7, 198.51.100.1, 10.2.0.1"]
            ),
            "198.51.100.1"
        );
        // Several headers read as one list, the last header's hops rightmost.
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.5",
                &["203.0.113.7", "198.51.100.1,10.9.9.9"]
            ),
            "198.51.100.1"
        );
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.5", &["198.51.100.1", "10.9.9.9"]),
            "198.51.100.1"
        );
    }

    #[test]
    fn without_a_usable_hop_the_last_trusted_address_is_the_client() {
        assert_eq!(client("10.0.0.0/8", "10.0.0.5", &[]), "10.0.0.5");
        assert_eq!(client("10.0.0.0/8", "10.0.0.5", &["10.0.0.4"]), "10.0.0.4");
        for garbage in [
            "unknown",
            "",
            " , ",
            "198.51.100.1 x",
            "1.2.3.4:http",
            "[::1",
        ] {
            assert_eq!(
                client("10.0.0.0/8", "10.0.0.5", &[garbage]),
                "10.0.0.5",
                "{garbage:?}"
            );
        }
        // Garbage left of a real hop is never reached.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.5", &["nonsense, 198.51.100.1"]),
            "198.51.100.1"
        );
        // A hop that is garbage after a trusted one ends at that trusted one.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.5", &["bad, 10.3.3.3"]),
            "10.3.3.3"
        );
    }

    #[test]
    fn hops_may_carry_ports_spaces_and_ipv6() {
        assert_eq!(
            client("10.0.0.5", "10.0.0.5", &[" 198.51.100.1:4711 "]),
            "198.51.100.1"
        );
        assert_eq!(
            client("fd00::/8", "fd00::1", &["[2001:db8::7]:443"]),
            "2001:db8::7"
        );
        assert_eq!(
            client("fd00::/8", "fd00::1", &["2001:db8::7"]),
            "2001:db8::7"
        );
        // IPv4-mapped peers and hops are their IPv4 addresses.
        assert_eq!(
            client("10.0.0.0/8", "::ffff:10.0.0.5", &["::ffff:198.51.100.1"]),
            "198.51.100.1"
        );
        assert_eq!(
            client("::ffff:10.0.0.0/104", "10.0.0.5", &["198.51.100.1"]),
            "198.51.100.1"
        );
        assert!(TrustedProxies::parse("::ffff:10.0.0.0/95").is_err());
    }

    #[test]
    fn networks_match_on_their_prefix_only() {
        let trusted =
            TrustedProxies::parse("10.1.0.0/16, 192.0.2.1, 2001:db8::/32").expect("parse");
        assert!(trusted.trusts(ip("10.1.255.255")));
        assert!(!trusted.trusts(ip("10.2.0.0")));
        assert!(trusted.trusts(ip("192.0.2.1")));
        assert!(!trusted.trusts(ip("192.0.2.2")));
        assert!(trusted.trusts(ip("2001:db8:ffff::1")));
        assert!(!trusted.trusts(ip("2001:db9::1")));
        let everything = TrustedProxies::parse("0.0.0.0/0,::/0").expect("parse");
        assert!(everything.trusts(ip("203.0.113.1")) && everything.trusts(ip("2001:db8::1")));
        assert_eq!(TrustedProxies::parse(" , "), Ok(TrustedProxies::default()));
    }

    #[test]
    fn invalid_entries_are_named() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "ten",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
        ] {
            let error = TrustedProxies::parse(&format!("192.0.2.0/24,{bad}")).expect_err(bad);
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }
}
