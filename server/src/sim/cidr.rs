//! IP address ranges as Neutron reads them (`10.0.0.0/24`, `fd00:1::/64`): parsed,
//! compared for overlap, and their host addresses, so that the simulated Neutron refuses
//! what the real one refuses (an invalid CIDR, one of the wrong IP version, one that
//! overlaps another subnet of its network) and gives a subnet its gateway and pool.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One range: the address as written, its prefix, and the network it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub v6: bool,
    /// The address as written (host bits possibly set).
    address: u128,
    /// The network's first address (host bits cleared).
    network: u128,
    prefix: u8,
}

impl Cidr {
    /// `address/prefix`; `None` for anything else (no prefix, a prefix too long, an
    /// address that is none, spaces).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = text.split_once('/')?;
        let address: IpAddr = address.parse().ok()?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        let (v6, bits, address) = match address {
            IpAddr::V4(a) => (false, 32, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, 128, u128::from(a)),
        };
        if prefix > bits {
            return None;
        }
        let network = address & mask(bits, prefix);
        Some(Cidr { v6, address, network, prefix })
    }

    fn bits(&self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    /// The last address of the range.
    fn end(&self) -> u128 {
        self.network | !mask(self.bits(), self.prefix) & all_ones(self.bits())
    }

    /// Whether the address is the network's own (no host bits set).
    pub fn is_network(&self) -> bool {
        self.address == self.network
    }

    /// The range written with its network address (`10.0.0.0/24` for `10.0.0.7/24`).
    pub fn canonical(&self) -> String {
        format!("{}/{}", self.render(self.network), self.prefix)
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.v6 == other.v6 && self.network <= other.end() && other.network <= self.end()
    }

    /// The `n`th address of the range (the gateway is the first host, `host(1)`), the last
    /// one when the range is smaller.
    pub fn host(&self, n: u128) -> String {
        self.render(self.network.saturating_add(n).min(self.end()))
    }

    /// The last address a host may take: the one before IPv4's broadcast address.
    pub fn last_host(&self) -> String {
        let end = self.end();
        self.render(if self.v6 || self.prefix >= 31 { end } else { end - 1 })
    }

    fn render(&self, value: u128) -> String {
        if self.v6 {
            Ipv6Addr::from(value).to_string()
        } else {
            Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX)).to_string()
        }
    }
}

fn all_ones(bits: u8) -> u128 {
    if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 }
}

fn mask(bits: u8, prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { all_ones(bits) & !(all_ones(bits - prefix.min(bits))) }
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    #[test]
    fn ranges_parse_overlap_and_name_their_hosts() {
        let a = Cidr::parse("10.0.0.0/24").expect("v4");
        assert_eq!((a.host(1), a.last_host()), ("10.0.0.1".to_owned(), "10.0.0.254".to_owned()));
        assert!(a.overlaps(&Cidr::parse("10.0.0.128/25").expect("inside")));
        assert!(a.overlaps(&Cidr::parse("10.0.0.0/16").expect("around")));
        assert!(!a.overlaps(&Cidr::parse("10.0.1.0/24").expect("next")));
        let odd = Cidr::parse("10.0.0.7/24").expect("host bits");
        assert!(!odd.is_network());
        assert_eq!(odd.canonical(), "10.0.0.0/24");
        let v6 = Cidr::parse("fd00:1::/64").expect("v6");
        assert!(v6.v6 && !v6.overlaps(&a));
        assert_eq!(v6.host(1), "fd00:1::1");
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0/24", "nonsense/8", "10.0.0.0/ 24", "10.0.0.0/-1", "::/129"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
        assert!(Cidr::parse("0.0.0.0/0").expect("all").overlaps(&a));
    }
}
