//! The SOCKS5 side (RFC 1928, with RFC 1929's username and password): how ordinary
//! programs hand a connection to a circuit.
//!
//! Only CONNECT is served, to an IPv4 or IPv6 address or a domain name (passed to the
//! exit unresolved, so names never leak to the local resolver: `curl --socks5-hostname`,
//! `socks5h://`). A username and password are not checked: as with Tor's
//! IsolateSOCKSAuth, they choose the circuit, so connections with different credentials
//! never share one. Everything a client sends is bounded by its own length bytes (at
//! most 255 each); anything else is refused with the RFC's reply and the connection ends.

use std::net::{Ipv4Addr, Ipv6Addr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cell::EndReason;

/// What a SOCKS client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `host:port`, IPv6 literals in brackets.
    pub target: String,
    /// The username and password given, which pick the circuit; `None` without them.
    pub isolation: Option<(Vec<u8>, Vec<u8>)>,
}

/// Why a SOCKS conversation ended before a request was made.
#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    #[error("not SOCKS version 5 (first byte {0})")]
    Version(u8),
    #[error("the client offers no method this proxy speaks (no auth, username/password)")]
    NoMethod,
    #[error("bad username/password subnegotiation version {0}")]
    AuthVersion(u8),
    #[error("command {0} is not supported (CONNECT only)")]
    Command(u8),
    #[error("address type {0} is not supported")]
    AddressType(u8),
    #[error("the domain name is empty or not UTF-8")]
    Name,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

const NO_AUTH: u8 = 0x00;
const USER_PASS: u8 = 0x02;
const NO_ACCEPTABLE: u8 = 0xff;

/// Reply codes (RFC 1928 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowed = 0x02,
    HostUnreachable = 0x04,
    ConnectionRefused = 0x05,
    TtlExpired = 0x06,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

impl Reply {
    /// The reply for a stream the exit refused.
    pub fn for_end(reason: EndReason) -> Reply {
        match reason {
            EndReason::ExitPolicy => Reply::NotAllowed,
            EndReason::ResolveFailed => Reply::HostUnreachable,
            EndReason::ConnectFailed => Reply::ConnectionRefused,
            EndReason::Done | EndReason::Misc => Reply::GeneralFailure,
        }
    }
}

/// Reads a client's greeting and request from `r`, answering on `w`. Returns the request;
/// the caller then answers it with [`reply`]. On an error the refusal has been sent.
pub async fn accept<R, W>(r: &mut R, w: &mut W) -> Result<Request, SocksError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let version = r.read_u8().await?;
    if version != 5 {
        return Err(SocksError::Version(version));
    }
    let n = r.read_u8().await? as usize;
    let mut methods = [0u8; 255];
    r.read_exact(&mut methods[..n]).await?;
    let methods = &methods[..n];
    let isolation = if methods.contains(&USER_PASS) {
        w.write_all(&[5, USER_PASS]).await?;
        let v = r.read_u8().await?;
        if v != 1 {
            w.write_all(&[1, 1]).await?;
            return Err(SocksError::AuthVersion(v));
        }
        let user = read_short(r).await?;
        let pass = read_short(r).await?;
        w.write_all(&[1, 0]).await?;
        Some((user, pass))
    } else if methods.contains(&NO_AUTH) {
        w.write_all(&[5, NO_AUTH]).await?;
        None
    } else {
        w.write_all(&[5, NO_ACCEPTABLE]).await?;
        return Err(SocksError::NoMethod);
    };
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await?;
    let [version, command, _, atyp] = head;
    if version != 5 {
        return Err(SocksError::Version(version));
    }
    let host = match atyp {
        1 => {
            let mut a = [0u8; 4];
            r.read_exact(&mut a).await?;
            Ipv4Addr::from(a).to_string()
        }
        3 => {
            let name = read_short(r).await?;
            match String::from_utf8(name) {
                Ok(n) if !n.is_empty() => n,
                _ => {
                    reply(w, Reply::GeneralFailure).await?;
                    return Err(SocksError::Name);
                }
            }
        }
        4 => {
            let mut a = [0u8; 16];
            r.read_exact(&mut a).await?;
            format!("[{}]", Ipv6Addr::from(a))
        }
        other => {
            reply(w, Reply::AddressTypeNotSupported).await?;
            return Err(SocksError::AddressType(other));
        }
    };
    let port = r.read_u16().await?;
    if command != 1 {
        reply(w, Reply::CommandNotSupported).await?;
        return Err(SocksError::Command(command));
    }
    let target = format!("{host}:{port}");
    // A name the exit could not read back ("[]", say) is refused here, not sent.
    if crate::exit::parse_target(&target).is_none() {
        reply(w, Reply::GeneralFailure).await?;
        return Err(SocksError::Name);
    }
    Ok(Request { target, isolation })
}

async fn read_short<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, SocksError> {
    let n = r.read_u8().await? as usize;
    let mut v = vec![0u8; n];
    r.read_exact(&mut v).await?;
    Ok(v)
}

/// Answers a request; the bound address is not meaningful here and is sent as 0.0.0.0:0.
pub async fn reply<W: AsyncWrite + Unpin>(w: &mut W, code: Reply) -> std::io::Result<()> {
    w.write_all(&[5, code as u8, 0, 1, 0, 0, 0, 0, 0, 0])
        .await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzzer: the name "[]" was accepted, and no exit can read "[]:112".
    #[tokio::test]
    async fn a_name_the_exit_cannot_read_is_refused() {
        let (got, out) = run(&[5, 2, 0, 220, 5, 1, 0, 3, 2, b'[', b']', 0, 112]).await;
        assert!(matches!(got, Err(SocksError::Name)), "{got:?}");
        assert_eq!(out[out.len() - 10..][1], Reply::GeneralFailure as u8);
    }

    async fn run(input: &[u8]) -> (Result<Request, SocksError>, Vec<u8>) {
        let mut r = input;
        let mut out = Vec::new();
        let got = accept(&mut r, &mut out).await;
        (got, out)
    }

    #[tokio::test]
    async fn the_three_address_types_and_credentials() {
        let (got, out) = run(&[5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 80]).await;
        assert_eq!(got.unwrap().target, "10.0.0.1:80");
        assert_eq!(out, [5, 0]);
        let mut name = vec![5, 1, 0, 5, 1, 0, 3, 11];
        name.extend_from_slice(b"example.org");
        name.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(run(&name).await.0.unwrap().target, "example.org:443");
        let mut v6 = vec![5, 1, 0, 5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 22]);
        assert_eq!(run(&v6).await.0.unwrap().target, "[::1]:22");
        // Username and password: accepted whatever they are, and they isolate.
        let auth = [
            5, 2, 0, 2, 1, 1, b'a', 2, b'p', b'w', 5, 1, 0, 1, 1, 2, 3, 4, 0, 80,
        ];
        let (got, out) = run(&auth).await;
        let got = got.unwrap();
        assert_eq!(got.isolation, Some((b"a".to_vec(), b"pw".to_vec())));
        assert_eq!(out, [5, 2, 1, 0]);
    }

    #[tokio::test]
    async fn what_is_not_served_is_refused_with_its_code() {
        let (got, out) = run(&[4, 1, 0]).await;
        assert!(matches!(got, Err(SocksError::Version(4))));
        assert!(out.is_empty());
        let (got, out) = run(&[5, 1, 0x80]).await;
        assert!(matches!(got, Err(SocksError::NoMethod)));
        assert_eq!(out, [5, 0xff]);
        // BIND
        let (got, out) = run(&[5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80]).await;
        assert!(matches!(got, Err(SocksError::Command(2))));
        assert_eq!(out[2..4], [5, Reply::CommandNotSupported as u8]);
        let (got, _) = run(&[5, 1, 0, 5, 1, 0, 9]).await;
        assert!(matches!(got, Err(SocksError::AddressType(9))));
        let (got, _) = run(&[5, 1, 0, 5, 1, 0, 3, 0, 0, 80]).await;
        assert!(matches!(got, Err(SocksError::Name)));
        // Cut short anywhere: an I/O error, never a panic.
        let full = [5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 80];
        for n in 0..full.len() {
            assert!(run(&full[..n]).await.0.is_err(), "{n} bytes");
        }
    }
}
