//! IP diversity of the Kademlia routing table (eclipse defence, as Ethereum's discv5).
//!
//! Peers are grouped by subnet: the /24 of an IPv4 address, the /64 of an IPv6 one. A
//! candidate is admitted only if its bucket holds fewer than `per_bucket` peers of its
//! subnet and the whole table fewer than `per_table`. Addresses without an IP (DNS
//! names) are admitted: the limit is about address space an attacker can cheaply hold.

use std::net::IpAddr;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// A /24 (IPv4) or /64 (IPv6) network prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subnet {
    V4([u8; 3]),
    V6([u8; 8]),
}

impl Subnet {
    pub fn of_ip(ip: IpAddr) -> Subnet {
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Subnet::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => {
                let mut p = [0u8; 8];
                p.copy_from_slice(&v6.octets()[..8]);
                Subnet::V6(p)
            }
        }
    }

    /// The subnet of the first IP in `addr`. For a relayed address that is the relay's.
    pub fn of_addr(addr: &Multiaddr) -> Option<Subnet> {
        addr.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(Subnet::of_ip(IpAddr::V4(ip))),
            Protocol::Ip6(ip) => Some(Subnet::of_ip(IpAddr::V6(ip))),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_bucket: usize,
    pub per_table: usize,
}

/// Why a candidate was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BucketFull { subnet: Subnet, count: usize },
    TableFull { subnet: Subnet, count: usize },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::BucketFull { subnet, count } => {
                write!(
                    f,
                    "{count} peers of subnet {subnet:?} already in this bucket"
                )
            }
            Refusal::TableFull { subnet, count } => {
                write!(f, "{count} peers of subnet {subnet:?} already in the table")
            }
        }
    }
}

/// Decides on a candidate given, for every peer already in the table, whether it shares
/// the candidate's bucket and the subnets of its addresses.
pub fn admit<'a>(
    limits: Limits,
    candidate: &Multiaddr,
    table: impl IntoIterator<Item = (bool, &'a [Subnet])>,
) -> Result<(), Refusal> {
    let Some(subnet) = Subnet::of_addr(candidate) else {
        return Ok(());
    };
    let (mut in_bucket, mut in_table) = (0, 0);
    for (same_bucket, subnets) in table {
        if subnets.contains(&subnet) {
            in_table += 1;
            if same_bucket {
                in_bucket += 1;
            }
        }
    }
    if in_bucket >= limits.per_bucket {
        return Err(Refusal::BucketFull {
            subnet,
            count: in_bucket,
        });
    }
    if in_table >= limits.per_table {
        return Err(Refusal::TableFull {
            subnet,
            count: in_table,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn slash24_grouping() {
        let a = Subnet::of_addr(&addr("/ip4/10.1.2.3/tcp/1")).unwrap();
        let b = Subnet::of_addr(&addr("/ip4/10.1.2.200/udp/1/quic-v1")).unwrap();
        let c = Subnet::of_addr(&addr("/ip4/10.1.3.3/tcp/1")).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(Subnet::of_addr(&addr("/dns4/example.org/tcp/1")).is_none());
    }

    #[test]
    fn limits_per_bucket_and_table() {
        let limits = Limits {
            per_bucket: 2,
            per_table: 10,
        };
        let s = [Subnet::of_addr(&addr("/ip4/127.0.5.1/tcp/1")).unwrap()];
        let cand = addr("/ip4/127.0.5.77/tcp/1");
        let two_same_bucket = vec![(true, &s[..]), (true, &s[..])];
        assert!(matches!(
            admit(limits, &cand, two_same_bucket),
            Err(Refusal::BucketFull { .. })
        ));
        let nine_elsewhere: Vec<_> = (0..9).map(|_| (false, &s[..])).collect();
        assert!(admit(limits, &cand, nine_elsewhere).is_ok());
        let ten_elsewhere: Vec<_> = (0..10).map(|_| (false, &s[..])).collect();
        assert!(matches!(
            admit(limits, &cand, ten_elsewhere),
            Err(Refusal::TableFull { .. })
        ));
        let other = addr("/ip4/127.0.6.1/tcp/1");
        let full: Vec<_> = (0..10).map(|_| (true, &s[..])).collect();
        assert!(admit(limits, &other, full).is_ok());
    }
}
