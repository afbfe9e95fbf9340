//! Where vcw may send requests on a client's behalf (webhooks): never into the network it
//! runs in, unless the operator allows it.
//!
//! A callback URL comes from an uploader, so without this any uploader could make vcw
//! POST to `127.0.0.1`, the cloud metadata service (`169.254.169.254`) or an internal
//! admin endpoint (SSRF). Addresses are checked after resolution, on the address actually
//! connected to (so a name that resolves differently the second time gains nothing), and
//! redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The networks a deployment allows in spite of the rules below (`server.webhook_allow`,
/// e.g. `["10.20.0.0/16"]` for an internal receiver).
#[derive(Clone, Debug, Default)]
pub struct OutboundPolicy {
    allow: Vec<IpNet>,
}

impl OutboundPolicy {
    /// Parses CIDR networks (`10.0.0.0/8`, `::1/128`) or single addresses.
    pub fn new(allow: &[String]) -> Result<Self, String> {
        let allow = allow
            .iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not an address or a CIDR network"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allow })
    }

    /// `Err(why)` when vcw must not connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match forbidden(ip) {
            None => Ok(()),
            Some(kind) => Err(format!(
                "{ip} is a {kind} address: not a destination for callbacks (server.webhook_allow lists exceptions)"
            )),
        }
    }
}

/// What kind of internal or special address `ip` is, if it is one.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // Forms that carry an IPv4 address reach that address.
            if let Some(v4) = embedded_v4(v6) {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] & 0xffc0 == 0xfec0 {
                Some("site-local")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() || a >= 240 {
        Some("multicast or reserved")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_documentation() || (a == 198 && (b == 18 || b == 19)) {
        Some("documentation or benchmarking")
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if (s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1))
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        Some(low)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        OutboundPolicy::default().check(s.parse().unwrap()).is_err()
    }

    #[test]
    fn internal_addresses_are_refused_in_every_form() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
        for ip in [
            "93.184.215.14",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!refused(ip), "{ip} is public");
        }
    }

    #[test]
    fn the_allow_list_makes_exceptions() {
        let p = OutboundPolicy::new(&["127.0.0.0/8".into(), "fd00::7".into()]).unwrap();
        assert!(p.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("fd00::7".parse().unwrap()).is_ok());
        assert!(p.check("fd00::8".parse().unwrap()).is_err());
        assert!(p.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(OutboundPolicy::new(&["intranet".into()]).is_err());
    }
}
