use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use time::OffsetDateTime;
use uuid::Uuid;

use super::EventType;
use crate::system::{random_array, SecureRandom};

/// The identifier of a webhook endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointId(Uuid);

impl EndpointId {
    /// Wraps an identifier drawn by the domain or read back from storage.
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Reads an identifier typed by an operator, `None` if it is not a UUID.
    pub fn parse(text: &str) -> Option<Self> {
        Uuid::parse_str(text.trim()).ok().map(Self)
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The event types an endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// Every type, including the ones a later version adds.
    All,
    /// Only these (never empty, no repeats).
    Only(Vec<EventType>),
}

/// A list of event types that names an unknown type, or none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventFilterError {
    /// A name that is no event type.
    #[error("`{0}` is not an event type; the types are {list}", list = EventType::ALL.map(EventType::as_str).join(", "))]
    UnknownType(String),
    /// An empty list.
    #[error("name at least one event type, or leave the list out for all of them")]
    Empty,
}

impl EventFilter {
    /// Reads a comma-separated list of event types, `*` meaning all of them.
    ///
    /// # Errors
    /// [`EventFilterError`] for an unknown type or an empty list.
    pub fn parse(list: &str) -> Result<Self, EventFilterError> {
        let mut types = Vec::new();
        for name in list.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            if name == "*" {
                return Ok(Self::All);
            }
            let kind = EventType::parse(name).ok_or_else(|| EventFilterError::UnknownType(name.to_owned()))?;
            if !types.contains(&kind) {
                types.push(kind);
            }
        }
        if types.is_empty() {
            return Err(EventFilterError::Empty);
        }
        Ok(Self::Only(types))
    }

    /// The names stored, one per subscription: `*` for all.
    pub fn names(&self) -> Vec<&'static str> {
        match self {
            Self::All => vec!["*"],
            Self::Only(types) => types.iter().map(|kind| kind.as_str()).collect(),
        }
    }

    /// Whether an event of type `kind` goes to the endpoint.
    pub fn accepts(&self, kind: EventType) -> bool {
        match self {
            Self::All => true,
            Self::Only(types) => types.contains(&kind),
        }
    }
}

/// An endpoint's signing secret, `whsec_` and 32 random bytes in base64 as Standard Webhooks
/// writes it. Shown to the operator once, when made; its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    const PREFIX: &'static str = "whsec_";

    /// A new secret from `random`.
    pub fn generate(random: &dyn SecureRandom) -> Self {
        let bytes: [u8; 32] = random_array(random);
        Self(format!("{}{}", Self::PREFIX, base64::engine::general_purpose::STANDARD.encode(bytes)))
    }

    /// Wraps a secret read back from storage (opened, when it was sealed).
    pub fn from_storage(text: String) -> Self {
        Self(text)
    }

    /// The secret as the operator copies it into the receiver: `whsec_…`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key: the bytes after `whsec_`. `None` when the stored text is not a secret.
    pub fn key(&self) -> Option<Vec<u8>> {
        let encoded = self.0.strip_prefix(Self::PREFIX)?;
        base64::engine::general_purpose::STANDARD.decode(encoded).ok()
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// A webhook endpoint as operators see it (without its secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its identifier.
    pub id: EndpointId,
    /// Where messages are posted.
    pub url: String,
    /// What it receives.
    pub filter: EventFilter,
    /// When it was added.
    pub created_at: OffsetDateTime,
    /// Since when every delivery to it has failed, if the last one did.
    pub failing_since: Option<OffsetDateTime>,
    /// When flexauth stopped delivering to it after it failed for too long, or `None`.
    pub disabled_at: Option<OffsetDateTime>,
    /// Until when a rotated-out secret still signs beside the current one.
    pub previous_secret_until: Option<OffsetDateTime>,
}

/// A URL that webhooks cannot be posted to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// Not an absolute `http` or `https` URL with a host.
    #[error("not an http(s) URL with a host")]
    NotHttp,
    /// Plain `http` to a public address: the messages carry addresses and the receiver's
    /// answers would travel unprotected.
    #[error("use https (plain http is allowed only with FLEXAUTH_WEBHOOKS_ALLOW_PRIVATE=true)")]
    PlainHttp,
    /// User name or password in the URL: they would be sent in the clear to every hop and
    /// shown by `webhooks list`.
    #[error("a webhook URL may not carry a user name or password")]
    Credentials,
    /// The host is, or resolves to, an address that is not public.
    #[error(
        "{0} is not a public address (set FLEXAUTH_WEBHOOKS_ALLOW_PRIVATE=true for receivers on a private network)"
    )]
    NotPublic(IpAddr),
    /// The host has no address.
    #[error("the host does not resolve: {0}")]
    Unresolvable(String),
}

/// Where flexauth may post: only to public addresses, unless the operator allows private ones
/// (receivers on the same network, and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DestinationPolicy {
    /// `FLEXAUTH_WEBHOOKS_ALLOW_PRIVATE`: loopback, private, link-local and metadata addresses
    /// are allowed too, and plain `http`.
    pub allow_private: bool,
}

impl DestinationPolicy {
    /// Whether messages may go to `address`. Checked when an endpoint is added and again for
    /// every address a delivery connects to, so a name that resolves elsewhere later (DNS
    /// rebinding) still reaches no internal service.
    ///
    /// # Errors
    /// [`DestinationError::NotPublic`].
    pub fn check_address(&self, address: IpAddr) -> Result<(), DestinationError> {
        if self.allow_private || is_public(address) {
            Ok(())
        } else {
            Err(DestinationError::NotPublic(address))
        }
    }

    /// Whether a URL with this scheme may be used.
    ///
    /// # Errors
    /// [`DestinationError::PlainHttp`] or [`DestinationError::NotHttp`].
    pub fn check_scheme(&self, scheme: &str) -> Result<(), DestinationError> {
        match scheme {
            "https" => Ok(()),
            "http" if self.allow_private => Ok(()),
            "http" => Err(DestinationError::PlainHttp),
            _ => Err(DestinationError::NotHttp),
        }
    }
}

/// Whether `address` is on the public internet: not loopback, private (RFC 1918, unique local),
/// link-local (where cloud metadata services answer), shared (carrier-grade NAT), unspecified,
/// multicast, broadcast, documentation or reserved; an IPv4 address inside IPv6 is judged as
/// IPv4.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    !(address.is_unspecified()
        || address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_documentation()
        || a == 0
        // Shared address space (RFC 6598), used inside providers' networks.
        || (a == 100 && (64..128).contains(&b))
        // Azure's platform endpoint (metadata and DNS of its virtual machines).
        || (a == 168 && b == 63 && c == 129 && address.octets()[3] == 16)
        // IETF protocol assignments (RFC 6890), benchmarking (RFC 2544), reserved (240/4).
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    !(address.is_unspecified()
        || address.is_loopback()
        || address.is_multicast()
        // Unique local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // Documentation (2001:db8::/32), and IPv4-compatible, translated (::ffff:0:0/96),
        // NAT64 (64:ff9b::/96) or 6to4 (2002::/16) forms of any address.
        || (first == 0x2001 && address.segments()[1] == 0x0db8)
        || (first == 0x64 && address.segments()[1] == 0xff9b)
        || first == 0x2002
        || address.segments()[..4] == [0, 0, 0, 0] && address.segments()[4] == 0xffff && address.segments()[5] == 0
        || address.to_ipv4().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::MockSecureRandom;

    #[test]
    fn loopback_private_link_local_and_metadata_addresses_are_not_public() {
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "2002:a9fe:a9fe::1",
            "168.63.129.16",
            "2001:db8::1",
        ] {
            assert!(!is_public(text.parse().unwrap()), "{text}");
        }
        for text in ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(text.parse().unwrap()), "{text}");
        }
    }

    #[test]
    fn the_operator_may_allow_private_receivers_and_plain_http_together() {
        let strict = DestinationPolicy::default();
        let local = DestinationPolicy { allow_private: true };
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(strict.check_address(loopback), Err(DestinationError::NotPublic(loopback)));
        assert_eq!(local.check_address(loopback), Ok(()));
        assert_eq!(strict.check_scheme("http"), Err(DestinationError::PlainHttp));
        assert_eq!(local.check_scheme("http"), Ok(()));
        assert_eq!(strict.check_scheme("ftp"), Err(DestinationError::NotHttp));
    }

    #[test]
    fn a_filter_reads_types_or_a_star_and_refuses_unknown_names() {
        assert_eq!(EventFilter::parse("*"), Ok(EventFilter::All));
        assert_eq!(
            EventFilter::parse("session.ended, account.created,session.ended"),
            Ok(EventFilter::Only(vec![EventType::SessionEnded, EventType::AccountCreated]))
        );
        assert_eq!(EventFilter::parse(" , "), Err(EventFilterError::Empty));
        assert_eq!(
            EventFilter::parse("account.created,account.hacked"),
            Err(EventFilterError::UnknownType("account.hacked".into()))
        );
        assert!(EventFilter::Only(vec![EventType::SessionEnded]).accepts(EventType::SessionEnded));
        assert!(!EventFilter::Only(vec![EventType::SessionEnded]).accepts(EventType::SessionCreated));
    }

    #[test]
    fn a_secret_is_whsec_and_32_bytes_and_its_debug_shows_nothing() {
        let mut random = MockSecureRandom::new();
        random.expect_fill().returning(|buffer| buffer.fill(7));
        let secret = SigningSecret::generate(&random);
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(secret.key(), Some(vec![7; 32]));
        assert_eq!(format!("{secret:?}"), "SigningSecret(<redacted>)");
        assert_eq!(SigningSecret::from_storage("nonsense".into()).key(), None);
    }
}
