//! Message stream encryption (MSE/PE, "protocol encryption"): the obfuscated
//! handshake libtorrent, Transmission, aria2 and uTorrent speak, both as the side that
//! connects and the side that accepts, and the stream it leaves behind (RC4 or plain).
//!
//! The handshake: a 768-bit Diffie-Hellman exchange (each side's public key followed
//! by up to 512 bytes of random padding), then the initiator proves it knows the
//! torrent (the infohash, SKEY) without sending it, offers RC4 and/or plaintext, and
//! sends its first payload (our BitTorrent handshake). RC4 keys are SHA-1 of
//! "keyA"/"keyB", the shared secret and SKEY, with the first 1024 bytes of keystream
//! discarded. MSE hides the protocol from traffic shaping; it is not authenticated
//! encryption and is not treated as such (the big-integer arithmetic is not constant
//! time for the same reason: the DH secrets protect nothing beyond one connection's
//! obfuscation).
//!
//! Every length read from the peer is bounded (padding 512, initial payload
//! MAX_IA) and every wait is bounded by the caller's timeout.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use num_bigint::BigUint;
use rc4::{KeyInit, StreamCipher};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

type Rc4 = rc4::Rc4<rc4::consts::U20>;

/// The MSE prime (768 bits) and generator.
const P_HEX: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";
const KEY_LEN: usize = 96;
const MAX_PAD: usize = 512;
/// The longest initial payload accepted (a BitTorrent handshake is 68 bytes; some
/// clients append their first messages).
const MAX_IA: usize = 4096;
const VC: [u8; 8] = [0; 8];
pub const CRYPTO_PLAIN: u32 = 0x01;
pub const CRYPTO_RC4: u32 = 0x02;

/// What a node accepts and asks for (`[torrent] encryption`).
pub use crate::config::Encryption as Policy;

fn provide(policy: Policy) -> u32 {
    match policy {
        Policy::Require => CRYPTO_RC4,
        _ => CRYPTO_RC4 | CRYPTO_PLAIN,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MseError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("MSE: {0}")]
    Protocol(&'static str),
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn prime() -> &'static BigUint {
    static P: std::sync::OnceLock<BigUint> = std::sync::OnceLock::new();
    P.get_or_init(|| BigUint::parse_bytes(P_HEX.as_bytes(), 16).expect("the MSE prime"))
}

fn to_key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let b = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    out[KEY_LEN - b.len()..].copy_from_slice(&b);
    out
}

/// A DH key pair: (private, public as 96 bytes).
fn keypair() -> (BigUint, [u8; KEY_LEN]) {
    let x = BigUint::from_bytes_be(&rand::random::<[u8; 20]>());
    let y = BigUint::from(2u32).modpow(&x, prime());
    (x, to_key_bytes(&y))
}

fn shared_secret(x: &BigUint, their_public: &[u8]) -> Result<[u8; KEY_LEN], MseError> {
    let p = prime();
    let y = BigUint::from_bytes_be(their_public);
    // 0, 1 and p-1 (and anything not below p) would make the secret guessable.
    if y <= BigUint::from(1u32) || y >= p - 1u32 {
        return Err(MseError::Protocol("degenerate public key"));
    }
    Ok(to_key_bytes(&y.modpow(x, p)))
}

fn cipher(name: &[u8], s: &[u8], skey: &[u8; 20]) -> Rc4 {
    let key = sha1(&[name, s, skey]);
    let mut c = Rc4::new(&key.into());
    let mut discard = [0u8; 1024];
    c.apply_keystream(&mut discard);
    c
}

fn random_pad() -> Vec<u8> {
    let len = rand::random_range(0..=MAX_PAD);
    (0..len).map(|_| rand::random()).collect()
}

/// Reads from `s` into `buf` until `pattern` appears within the first `limit` bytes;
/// returns the bytes after it.
async fn sync_on<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    pattern: &[u8],
    limit: usize,
) -> Result<Vec<u8>, MseError> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(i) = buf.windows(pattern.len()).position(|w| w == pattern) {
            return Ok(buf[i + pattern.len()..].to_vec());
        }
        if buf.len() >= limit {
            return Err(MseError::Protocol("no synchronisation pattern"));
        }
        let n = s.read(&mut chunk[..(limit - buf.len()).min(1024)]).await?;
        if n == 0 {
            return Err(MseError::Protocol("closed during the handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Bytes already read (`have`) then the stream, decrypting with `c`.
struct Reader<'a, S> {
    s: &'a mut S,
    have: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Reader<'_, S> {
    async fn take_raw(&mut self, n: usize) -> Result<Vec<u8>, MseError> {
        while self.have.len() < n {
            let mut chunk = vec![0u8; n - self.have.len()];
            let k = self.s.read(&mut chunk).await?;
            if k == 0 {
                return Err(MseError::Protocol("closed during the handshake"));
            }
            self.have.extend_from_slice(&chunk[..k]);
        }
        Ok(self.have.drain(..n).collect())
    }

    async fn take(&mut self, n: usize, c: &mut Rc4) -> Result<Vec<u8>, MseError> {
        let mut out = self.take_raw(n).await?;
        c.apply_keystream(&mut out);
        Ok(out)
    }
}

fn u16_at(b: &[u8]) -> usize {
    u16::from_be_bytes([b[0], b[1]]) as usize
}

/// Connects over `s` as the initiator for torrent `skey`, sending `ia` (our
/// BitTorrent handshake) as the initial payload.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    skey: [u8; 20],
    ia: &[u8],
    policy: Policy,
) -> Result<MseStream<S>, MseError> {
    let (x, ya) = keypair();
    let mut out = ya.to_vec();
    out.extend_from_slice(&random_pad());
    s.write_all(&out).await?;

    let mut yb = [0u8; KEY_LEN];
    s.read_exact(&mut yb).await?;
    let secret = shared_secret(&x, &yb)?;
    let mut enc = cipher(b"keyA", &secret, &skey);
    let mut dec = cipher(b"keyB", &secret, &skey);

    let mut out = sha1(&[b"req1", &secret]).to_vec();
    let req2 = sha1(&[b"req2", &skey]);
    let req3 = sha1(&[b"req3", &secret]);
    out.extend(req2.iter().zip(req3).map(|(a, b)| a ^ b));
    let mut tail = VC.to_vec();
    tail.extend_from_slice(&provide(policy).to_be_bytes());
    tail.extend_from_slice(&0u16.to_be_bytes()); // no PadC
    tail.extend_from_slice(&(ia.len() as u16).to_be_bytes());
    tail.extend_from_slice(ia);
    enc.apply_keystream(&mut tail);
    out.extend_from_slice(&tail);
    s.write_all(&out).await?;

    // Their answer starts after PadB with VC encrypted: find it.
    let mut vc = VC;
    dec.apply_keystream(&mut vc);
    let mut buf = Vec::new();
    let rest = sync_on(&mut s, &mut buf, &vc, MAX_PAD + VC.len()).await?;
    let mut r = Reader {
        s: &mut s,
        have: rest,
    };
    let head = r.take(6, &mut dec).await?;
    let select = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let pad_d = u16_at(&head[4..]);
    if pad_d > MAX_PAD {
        return Err(MseError::Protocol("padding too long"));
    }
    r.take(pad_d, &mut dec).await?;
    let leftover = std::mem::take(&mut r.have);
    match select {
        CRYPTO_RC4 => Ok(MseStream::rc4(s, enc, dec, leftover)),
        CRYPTO_PLAIN if policy != Policy::Require => Ok(MseStream::plain(s, leftover)),
        _ => Err(MseError::Protocol(
            "the peer chose a method we did not offer",
        )),
    }
}

/// What the accepting side learned: the stream, the torrent (SKEY) and the initial
/// payload, which is already at the front of the stream's reads.
pub struct Accepted<S> {
    pub stream: MseStream<S>,
    pub skey: [u8; 20],
}

/// Answers an MSE handshake on `s` whose first bytes (`first`, part of the
/// initiator's public key) were already read. `skeys` are the infohashes we serve.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    first: &[u8],
    skeys: &[[u8; 20]],
    policy: Policy,
) -> Result<Accepted<S>, MseError> {
    if first.len() > KEY_LEN {
        return Err(MseError::Protocol("internal: too much read ahead"));
    }
    let mut ya = first.to_vec();
    ya.resize(KEY_LEN, 0);
    s.read_exact(&mut ya[first.len()..]).await?;
    let (x, yb) = keypair();
    let secret = shared_secret(&x, &ya)?;
    let mut out = yb.to_vec();
    out.extend_from_slice(&random_pad());
    s.write_all(&out).await?;

    let req1 = sha1(&[b"req1", &secret]);
    let mut buf = Vec::new();
    let rest = sync_on(&mut s, &mut buf, &req1, MAX_PAD + 20).await?;
    let mut r = Reader {
        s: &mut s,
        have: rest,
    };
    let obfuscated = r.take_raw(20).await?;
    let req3 = sha1(&[b"req3", &secret]);
    let req2: Vec<u8> = obfuscated.iter().zip(req3).map(|(a, b)| a ^ b).collect();
    let skey = *skeys
        .iter()
        .find(|k| sha1(&[b"req2", k.as_slice()]).as_slice() == req2)
        .ok_or(MseError::Protocol("no torrent of ours matches"))?;
    let mut dec = cipher(b"keyA", &secret, &skey);
    let mut enc = cipher(b"keyB", &secret, &skey);
    let head = r.take(14, &mut dec).await?;
    if head[..8] != VC {
        return Err(MseError::Protocol("bad verification constant"));
    }
    let provide = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    let pad_c = u16_at(&head[12..]);
    if pad_c > MAX_PAD {
        return Err(MseError::Protocol("padding too long"));
    }
    r.take(pad_c, &mut dec).await?;
    let ia_len = u16_at(&r.take(2, &mut dec).await?);
    if ia_len > MAX_IA {
        return Err(MseError::Protocol("initial payload too long"));
    }
    let ia = r.take(ia_len, &mut dec).await?;
    let select = if policy != Policy::Require && provide & CRYPTO_PLAIN != 0 {
        CRYPTO_PLAIN
    } else if provide & CRYPTO_RC4 != 0 {
        CRYPTO_RC4
    } else {
        return Err(MseError::Protocol("no method in common"));
    };
    let mut reply = VC.to_vec();
    reply.extend_from_slice(&select.to_be_bytes());
    reply.extend_from_slice(&0u16.to_be_bytes()); // no PadD
    enc.apply_keystream(&mut reply);
    let leftover = std::mem::take(&mut r.have);
    s.write_all(&reply).await?;
    let stream = if select == CRYPTO_RC4 {
        let mut st = MseStream::rc4(s, enc, dec, leftover);
        st.front.splice(0..0, ia);
        st
    } else {
        let mut front = ia;
        front.extend_from_slice(&leftover);
        MseStream::plain(s, front)
    };
    Ok(Accepted { stream, skey })
}

/// A connection after the handshake: reads give plaintext (first `front`, bytes
/// already received and decrypted), writes are encrypted when RC4 was chosen.
/// A plain stream passes through untouched, so plain connections cost nothing.
pub struct MseStream<S> {
    inner: S,
    /// Plaintext received before the stream was handed over.
    front: Vec<u8>,
    front_pos: usize,
    enc: Option<Rc4>,
    dec: Option<Rc4>,
    /// Encrypted bytes not yet taken by `inner`.
    pending: Vec<u8>,
    pending_pos: usize,
}

/// Plaintext encrypted per write, at most (bounds `pending`).
const WRITE_CHUNK: usize = 64 * 1024;

impl<S> MseStream<S> {
    /// No encryption; `front` is read before the stream.
    pub fn plain(inner: S, front: Vec<u8>) -> Self {
        MseStream {
            inner,
            front,
            front_pos: 0,
            enc: None,
            dec: None,
            pending: Vec::new(),
            pending_pos: 0,
        }
    }

    /// `leftover` is ciphertext already read from `inner`.
    fn rc4(inner: S, enc: Rc4, mut dec: Rc4, mut leftover: Vec<u8>) -> Self {
        dec.apply_keystream(&mut leftover);
        MseStream {
            inner,
            front: leftover,
            front_pos: 0,
            enc: Some(enc),
            dec: Some(dec),
            pending: Vec::new(),
            pending_pos: 0,
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.enc.is_some()
    }
}

impl<S: AsyncWrite + Unpin> MseStream<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.pending_pos < self.pending.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_pos..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.pending_pos += n;
        }
        self.pending.clear();
        self.pending_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MseStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if me.front_pos < me.front.len() {
            let n = (me.front.len() - me.front_pos).min(buf.remaining());
            buf.put_slice(&me.front[me.front_pos..me.front_pos + n]);
            me.front_pos += n;
            if me.front_pos == me.front.len() {
                me.front = Vec::new();
                me.front_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut me.inner).poll_read(cx, buf))?;
        if let Some(dec) = &mut me.dec {
            dec.apply_keystream(&mut buf.filled_mut()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MseStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        if me.enc.is_none() {
            return Pin::new(&mut me.inner).poll_write(cx, buf);
        }
        // Earlier ciphertext goes first; only then is more plaintext taken (and the
        // keystream advanced), so nothing is encrypted twice or lost.
        ready!(me.poll_drain(cx))?;
        let n = buf.len().min(WRITE_CHUNK);
        me.pending.extend_from_slice(&buf[..n]);
        if let Some(enc) = &mut me.enc {
            enc.apply_keystream(&mut me.pending);
        }
        // Hand it on now if the socket takes it; what it does not is written by the
        // next write or flush.
        let _ = me.poll_drain(cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        if me.enc.is_none() {
            return Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        }
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
        Pin::new(me).poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.enc.is_none() && self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prime_is_768_bits() {
        assert_eq!(prime().bits(), 768);
    }

    async fn pair(out: Policy, inn: Policy) -> Result<(bool, bool), MseError> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let skey = [7u8; 20];
        let ia = b"hello, this is the BitTorrent handshake".to_vec();
        let ia2 = ia.clone();
        let acceptor = tokio::spawn(async move {
            let mut b = b;
            let mut first = [0u8; 20];
            b.read_exact(&mut first).await?;
            let mut acc = respond(b, &first, &[[1; 20], skey], inn).await?;
            assert_eq!(acc.skey, skey);
            let mut got = vec![0u8; ia2.len()];
            acc.stream.read_exact(&mut got).await?;
            assert_eq!(got, ia2);
            let mut big = vec![0u8; 300_000];
            acc.stream.read_exact(&mut big).await?;
            assert!(big.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
            acc.stream.write_all(b"pong").await?;
            acc.stream.flush().await?;
            Ok::<_, MseError>(acc.stream.is_encrypted())
        });
        let mut s = initiate(a, skey, &ia, out).await?;
        let big: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
        s.write_all(&big).await?;
        s.flush().await?;
        let mut pong = [0u8; 4];
        s.read_exact(&mut pong).await?;
        assert_eq!(&pong, b"pong");
        let theirs = acceptor.await.expect("task")?;
        Ok((s.is_encrypted(), theirs))
    }

    #[tokio::test]
    async fn both_sides_agree_on_the_method() {
        assert_eq!(
            pair(Policy::Prefer, Policy::Prefer).await.unwrap(),
            (false, false)
        );
        assert_eq!(
            pair(Policy::Require, Policy::Prefer).await.unwrap(),
            (true, true)
        );
        assert_eq!(
            pair(Policy::Prefer, Policy::Require).await.unwrap(),
            (true, true)
        );
        assert_eq!(
            pair(Policy::Require, Policy::Require).await.unwrap(),
            (true, true)
        );
    }

    #[tokio::test]
    async fn an_unknown_torrent_is_refused() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio::spawn(async move {
            let mut b = b;
            let mut first = [0u8; 20];
            b.read_exact(&mut first).await.unwrap();
            respond(b, &first, &[[1; 20]], Policy::Prefer).await.err()
        });
        let _ = initiate(a, [9; 20], b"x", Policy::Prefer).await;
        assert!(matches!(
            acceptor.await.unwrap(),
            Some(MseError::Protocol("no torrent of ours matches"))
        ));
    }
}
