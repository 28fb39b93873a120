//! What an exit relay lets a circuit reach, and the connection it makes.
//!
//! The policy is checked against every address a name resolves to, after resolving, so
//! a name that points at a private address is refused like the address itself.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

use crate::cell::EndReason;

/// An exit's rules. By default nothing private, loopback, link-local, multicast or
/// unspecified is reachable, on any port.
#[derive(Debug, Clone, Default)]
pub struct ExitPolicy {
    /// Let circuits reach loopback and private ranges (test networks only).
    pub allow_private: bool,
    /// Ports refused on any address.
    pub reject_ports: Vec<u16>,
}

impl ExitPolicy {
    pub fn allows(&self, addr: &SocketAddr) -> bool {
        if self.reject_ports.contains(&addr.port()) || addr.port() == 0 {
            return false;
        }
        self.allow_private || is_public(&addr.ip())
    }
}

fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10, shared address space
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(&IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80) // link-local
        }
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6 literals).
pub fn parse_target(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.len() > 255 {
        return None;
    }
    Some((host.to_string(), port))
}

/// An exit gives up resolving and connecting after this, and answers END, so that a
/// client hears from an honest exit before its own wait ([`crate::client::CONNECT_TIMEOUT`]).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// Resolves and connects to `target` within `policy`, in [`CONNECT_TIMEOUT`].
pub async fn connect(policy: &ExitPolicy, target: &str) -> Result<TcpStream, EndReason> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_now(policy, target))
        .await
        .unwrap_or(Err(EndReason::ConnectFailed))
}

async fn connect_now(policy: &ExitPolicy, target: &str) -> Result<TcpStream, EndReason> {
    let (host, port) = parse_target(target).ok_or(EndReason::Misc)?;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| EndReason::ResolveFailed)?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(EndReason::ResolveFailed);
    }
    let allowed: Vec<SocketAddr> = addrs.into_iter().filter(|a| policy.allows(a)).collect();
    if allowed.is_empty() {
        return Err(EndReason::ExitPolicy);
    }
    for a in allowed {
        if let Ok(s) = TcpStream::connect(a).await {
            let _ = s.set_nodelay(true);
            return Ok(s);
        }
    }
    Err(EndReason::ConnectFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_refused_by_default() {
        let p = ExitPolicy::default();
        for a in [
            "127.0.0.1:80",
            "10.1.2.3:80",
            "192.168.1.1:443",
            "172.16.0.1:80",
            "169.254.1.1:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[fd00::1]:80",
            "[fe80::1]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(!p.allows(&a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34:80", "[2606:2800:220:1::1]:443"] {
            assert!(p.allows(&a.parse().unwrap()), "{a}");
        }
        let test = ExitPolicy {
            allow_private: true,
            reject_ports: vec![25],
        };
        assert!(test.allows(&"127.0.0.1:80".parse().unwrap()));
        assert!(!test.allows(&"127.0.0.1:25".parse().unwrap()));
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("example.org:80"),
            Some(("example.org".into(), 80))
        );
        assert_eq!(parse_target("[::1]:8080"), Some(("::1".into(), 8080)));
        assert_eq!(parse_target("example.org"), None);
        assert_eq!(parse_target(":80"), None);
        assert_eq!(parse_target("a:99999"), None);
    }
}
