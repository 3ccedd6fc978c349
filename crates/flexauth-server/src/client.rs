//! The client's address: the TCP peer, or, behind proxies listed in
//! `FLEXAUTH_TRUSTED_PROXIES`, the address those proxies forwarded.

use std::net::IpAddr;

use actix_web::HttpRequest;

/// Which forwarding header the trusted proxies write. Only that one is read: a proxy that
/// appends to one passes the other through from the client untouched, so reading both, or
/// falling back from one to the other, would let a client name its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239).
    Forwarded,
}

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a network of one).
    ///
    /// # Errors
    /// A sentence naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| format!("`{text}` is not an IP address or network"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= max)
                .ok_or_else(|| format!("`{text}` has no valid prefix length"))?,
            None => max,
        };
        Ok(Self { address, prefix })
    }

    /// Whether `address` lies in this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(candidate)) => {
                masked(u128::from(u32::from(network)), u128::from(u32::from(candidate)), self.prefix, 32)
            }
            (IpAddr::V6(network), IpAddr::V6(candidate)) => {
                masked(u128::from(network), u128::from(candidate), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(network: u128, candidate: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (network >> shift) == (candidate >> shift)
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The address of the client that made `request`. From a peer that is not a trusted proxy, the
/// peer itself: forwarding headers are ignored, so a client cannot choose its own address.
/// From a trusted proxy, the forwarded chain (`Forwarded: for=…`, else `X-Forwarded-For`) read
/// right to left, skipping trusted hops: the first untrusted one is the client.
pub fn client_address(request: &HttpRequest, trusted: &[Network], header: ForwardedHeader) -> Option<IpAddr> {
    let peer = canonical(request.peer_addr()?.ip());
    if !trusted.iter().any(|network| network.contains(peer)) {
        return Some(peer);
    }
    // The closest trusted hop seen so far: the answer if the chain runs out, or turns to
    // something that is not an address, before an untrusted hop appears.
    let mut closest = peer;
    for hop in forwarded_chain(request, header).iter().rev() {
        let Some(hop) = hop.map(canonical) else {
            break;
        };
        if !trusted.iter().any(|network| network.contains(hop)) {
            return Some(hop);
        }
        closest = hop;
    }
    Some(closest)
}

/// The entries of the forwarded chain, client first; `None` for one that is not an address.
fn forwarded_chain(request: &HttpRequest, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let headers = request.headers();
    if header == ForwardedHeader::Forwarded {
        return headers
            .get_all("forwarded")
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
            .iter()
            .flat_map(|value| value.split(','))
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for").then(|| parse_forwarded_for(value)).flatten()
                })
            })
            .collect();
    }
    // Some proxies write the port too (`192.0.2.7:4711`, `[2001:db8::1]:443`).
    headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(parse_forwarded_for)
        .collect()
}

/// `for=192.0.2.7`, `for="[2001:db8::1]:4711"`, `for="192.0.2.7:4711"`.
fn parse_forwarded_for(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Some(bracketed) = value.strip_prefix('[') {
        return bracketed.split_once(']')?.0.parse().ok();
    }
    value.parse().ok().or_else(|| value.rsplit_once(':')?.0.parse().ok())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn request(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut builder = TestRequest::default().peer_addr(format!("{peer}:4711").parse().unwrap());
        for header in headers {
            builder = builder.insert_header(*header);
        }
        builder.to_http_request()
    }

    fn networks(list: &[&str]) -> Vec<Network> {
        list.iter().map(|text| Network::parse(text).unwrap()).collect()
    }

    #[test]
    fn networks_parse_and_contain_their_addresses() {
        let network = Network::parse("10.1.0.0/16").unwrap();
        assert!(network.contains("10.1.200.3".parse().unwrap()));
        assert!(!network.contains("10.2.0.1".parse().unwrap()));
        assert!(Network::parse("2001:db8::/32").unwrap().contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(Network::parse("127.0.0.1").unwrap().contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("proxy.local").is_err());
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let spoofed = request("203.0.113.5", &[("x-forwarded-for", "198.51.100.1"), ("forwarded", "for=198.51.100.2")]);
        assert_eq!(client_address(&spoofed, &[], ForwardedHeader::XForwardedFor), Some("203.0.113.5".parse().unwrap()));
        assert_eq!(
            client_address(&spoofed, &networks(&["10.0.0.0/8"]), ForwardedHeader::Forwarded),
            Some("203.0.113.5".parse().unwrap())
        );
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = networks(&["10.0.0.0/8"]);
        // The client prepended a fake address; the proxies appended what they saw.
        let xff = ForwardedHeader::XForwardedFor;
        let chain = request("10.0.0.2", &[("x-forwarded-for", "1.2.3.4, 198.51.100.9:5555, 10.0.0.7")]);
        assert_eq!(
            client_address(&chain, &trusted, xff),
            Some("198.51.100.9".parse().unwrap()),
            "a hop with a port counts as its address"
        );
        let forwarded = request("10.0.0.2", &[("forwarded", "for=1.2.3.4, for=\"[2001:db8::5]:443\";proto=https")]);
        assert_eq!(
            client_address(&forwarded, &trusted, ForwardedHeader::Forwarded),
            Some("2001:db8::5".parse().unwrap())
        );
        let none = request("10.0.0.2", &[]);
        assert_eq!(client_address(&none, &trusted, xff), Some("10.0.0.2".parse().unwrap()));
        // Garbage to the right of every untrusted hop stops the walk at the closest trusted one.
        let garbage = request("10.0.0.2", &[("x-forwarded-for", "198.51.100.9, unknown, 10.0.0.7")]);
        assert_eq!(client_address(&garbage, &trusted, xff), Some("10.0.0.7".parse().unwrap()));
    }

    #[test]
    fn only_the_configured_header_is_read_so_the_other_cannot_be_forged_through_the_proxy() {
        let trusted = networks(&["10.0.0.0/8"]);
        // The proxy appends to X-Forwarded-For and passes the client's own Forwarded through.
        let forged = request("10.0.0.2", &[("x-forwarded-for", "198.51.100.9"), ("forwarded", "for=192.0.2.1")]);
        assert_eq!(
            client_address(&forged, &trusted, ForwardedHeader::XForwardedFor),
            Some("198.51.100.9".parse().unwrap())
        );
    }
}
