//! Where a webhook may go. A webhook URL is chosen by whoever administers an
//! account, but the request is made from inside the operator's network: left
//! unchecked, it could reach the loopback interface, private networks or a
//! cloud's metadata service. Unless the operator allows private addresses
//! (`--allow-private-webhook-urls`), a URL whose host is, or resolves to, such
//! an address is refused when it is set and again at every attempt (DNS can
//! change between the two: the attempt connects only to the addresses its
//! own lookup checked).
//!
//! Tokens often live in a URL's userinfo or query string; [`redact`] is what
//! the outbox records and what logs may show.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Which addresses webhooks may be sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destinations {
    /// Public addresses only (the default).
    PublicOnly,
    /// Any address, loopback and private networks included (tests, and
    /// receivers on the operator's own network).
    Any,
}

impl Destinations {
    pub fn new(allow_private: bool) -> Self {
        if allow_private {
            Self::Any
        } else {
            Self::PublicOnly
        }
    }

    /// Checks a parsed webhook URL where it is set: its host must be, or
    /// resolve only to, public addresses. The error says why not.
    pub async fn check(self, url: &Url) -> Result<(), String> {
        if self == Self::Any {
            return Ok(());
        }
        match url.host() {
            None => Err("the URL has no host".into()),
            Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => {
                let port = url.port_or_known_default().unwrap_or(443);
                let addrs = resolve_public(name, port).await?;
                drop(addrs);
                Ok(())
            }
        }
    }

    /// The check made before each attempt for a host written as an address
    /// (names are checked by [`Self::resolver`] as they are resolved).
    pub fn check_literal(self, url: &Url) -> Result<(), String> {
        match (self, url.host()) {
            (Self::Any, _) => Ok(()),
            (_, Some(Host::Ipv4(ip))) => check_ip(IpAddr::V4(ip)),
            (_, Some(Host::Ipv6(ip))) => check_ip(IpAddr::V6(ip)),
            _ => Ok(()),
        }
    }

    /// The DNS resolver of the webhook client: `None` (the default
    /// resolver) when any address is allowed, else one that refuses names
    /// resolving to any address that is not public.
    pub fn resolver(self) -> Option<Arc<PublicResolver>> {
        match self {
            Self::Any => None,
            Self::PublicOnly => Some(Arc::new(PublicResolver)),
        }
    }
}

/// Resolves a name and refuses it if any of its addresses is not public
/// (a name that mixes public and private addresses is refused whole).
async fn resolve_public(name: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|e| format!("{name} does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{name} resolves to no address"));
    }
    for addr in &addrs {
        check_ip(addr.ip()).map_err(|e| format!("{name} resolves to {e}"))?;
    }
    Ok(addrs)
}

/// A resolver that refuses names with any address that is not public.
pub struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addrs = resolve_public(name.as_str(), 0).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

fn check_ip(ip: IpAddr) -> Result<(), String> {
    match why_not_public(ip) {
        None => Ok(()),
        Some(kind) => Err(format!(
            "{ip}, a {kind} address; webhooks go to public addresses only \
             (--allow-private-webhook-urls lifts this)"
        )),
    }
}

/// What kind of non-public address `ip` is, or `None` if it is public.
pub fn why_not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => why_not_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => why_not_public_v4(v4),
            None => why_not_public_v6(v6),
        },
    }
}

fn why_not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        // 169.254.169.254 is the metadata service of most clouds.
        Some("link-local (cloud metadata)")
    } else if a == 100 && (64..128).contains(&b) {
        // Shared address space; Alibaba's metadata service is 100.100.100.200.
        Some("shared (carrier-grade NAT, cloud metadata)")
    } else if a == 0
        || a >= 240
        || ip.is_broadcast()
        || ip.is_multicast()
        || (a == 192 && b == 0 && c == 0)
    {
        Some("reserved")
    } else {
        None
    }
}

fn why_not_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("reserved")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        // Unique local addresses; AWS's IPv6 metadata is fd00:ec2::254.
        Some("private (unique local, cloud metadata)")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        // NAT64 can carry any IPv4 address, private ones included.
        Some("NAT64")
    } else if ip.segments()[..6] == [0; 6] {
        // IPv4-compatible (deprecated): ::a.b.c.d
        Some("reserved")
    } else {
        None
    }
}

/// `url` without its userinfo, query string and fragment: what may be
/// recorded and logged. Text that is no URL is recorded as a placeholder.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let ip: IpAddr = ip.parse().expect("address");
            assert!(why_not_public(ip).is_some(), "{ip} counted as public");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
            let ip: IpAddr = ip.parse().expect("address");
            assert_eq!(why_not_public(ip), None, "{ip}");
        }
    }

    #[test]
    fn redact_drops_userinfo_query_and_fragment() {
        assert_eq!(
            redact("https://user:pass@example.com:8443/hook?token=s3cret#frag"),
            "https://example.com:8443/hook"
        );
        assert_eq!(redact("http://example.com/a"), "http://example.com/a");
    }
}
