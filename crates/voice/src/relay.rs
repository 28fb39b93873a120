//! The datagram relay: a call's media through a relay peer when neither side can reach
//! the other, without head-of-line blocking (plain UDP, as TURN does it, not a stream).
//!
//! An allocation is two random 16-byte tokens, one per side, handed out by the relay
//! (over the overlay, when a call asks) and passed to the other side inside the
//! contacts' encrypted signalling. Each side sends `token || packet` to the relay's UDP
//! port; the relay learns each side's address from its token and forwards the packet,
//! without the token, to the other side's address. It reads nothing of the packet
//! (SRTP seals it end to end). Bounded: allocations, packets per second per side, and
//! an idle allocation is dropped; anything that names no allocation is dropped and
//! counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

pub const TOKEN_LEN: usize = 16;
/// Largest datagram forwarded (an Opus frame in SRTP is a few hundred bytes).
pub const MAX_DATAGRAM: usize = 1500;
pub type Token = [u8; TOKEN_LEN];

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_allocations: usize,
    /// Packets a side may send a second (a 20 ms call sends 50).
    pub max_packets_per_sec: u32,
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_allocations: 1000,
            max_packets_per_sec: 200,
            idle: Duration::from_secs(30),
        }
    }
}

/// One side of an allocation.
#[derive(Debug, Clone)]
struct Side {
    addr: Option<SocketAddr>,
    window_start: Instant,
    in_window: u32,
}

#[derive(Debug)]
struct Allocation {
    sides: [Side; 2],
    last: Instant,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub forwarded: AtomicU64,
    /// Datagrams naming no allocation, too short or too long.
    pub garbage: AtomicU64,
    /// Over a side's packet rate.
    pub limited: AtomicU64,
}

/// The relay's state, shared by its UDP loop and whoever allocates.
pub struct Relay {
    by_token: Mutex<HashMap<Token, (Token, usize)>>,
    allocations: Mutex<HashMap<Token, Allocation>>,
    limits: Limits,
    pub counters: Counters,
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the relay has {0} calls, its limit")]
    Full(usize),
    #[error("relay socket: {0}")]
    Io(#[from] std::io::Error),
}

impl Relay {
    pub async fn bind(addr: &str, limits: Limits) -> Result<Arc<Relay>, RelayError> {
        let socket = UdpSocket::bind(addr).await?;
        let addr = socket.local_addr()?;
        Ok(Arc::new(Relay {
            by_token: Mutex::new(HashMap::new()),
            allocations: Mutex::new(HashMap::new()),
            limits,
            counters: Counters::default(),
            addr,
            socket: Arc::new(socket),
        }))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn allocations(&self) -> usize {
        self.allocations.lock().expect("allocations").len()
    }

    /// Whether `token` names a live allocation.
    pub fn live(&self, token: &Token) -> bool {
        self.by_token.lock().expect("tokens").contains_key(token)
    }

    /// A new allocation: the two sides' tokens.
    pub fn allocate(&self) -> Result<(Token, Token), RelayError> {
        self.expire(Instant::now());
        let mut allocations = self.allocations.lock().expect("allocations");
        if allocations.len() >= self.limits.max_allocations {
            return Err(RelayError::Full(self.limits.max_allocations));
        }
        let (a, b): (Token, Token) = (rand::random(), rand::random());
        let now = Instant::now();
        let side = Side {
            addr: None,
            window_start: now,
            in_window: 0,
        };
        allocations.insert(
            a,
            Allocation {
                sides: [side.clone(), side],
                last: now,
            },
        );
        let mut by = self.by_token.lock().expect("tokens");
        by.insert(a, (a, 0));
        by.insert(b, (a, 1));
        Ok((a, b))
    }

    fn expire(&self, now: Instant) {
        let mut allocations = self.allocations.lock().expect("allocations");
        let idle = self.limits.idle;
        let gone: Vec<Token> = allocations
            .iter()
            .filter(|(_, a)| now.duration_since(a.last) > idle)
            .map(|(k, _)| *k)
            .collect();
        if gone.is_empty() {
            return;
        }
        let mut by = self.by_token.lock().expect("tokens");
        for k in gone {
            allocations.remove(&k);
            by.retain(|_, (id, _)| *id != k);
        }
    }

    /// Where a datagram from `from` goes, and what of it: None to drop it.
    fn route(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Option<(SocketAddr, usize)> {
        if datagram.len() < TOKEN_LEN || datagram.len() > MAX_DATAGRAM + TOKEN_LEN {
            self.counters.garbage.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let token: Token = datagram[..TOKEN_LEN].try_into().ok()?;
        let Some((id, side)) = self.by_token.lock().expect("tokens").get(&token).copied() else {
            self.counters.garbage.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let mut allocations = self.allocations.lock().expect("allocations");
        let a = allocations.get_mut(&id)?;
        let me = &mut a.sides[side];
        // A side's address is the one its token last came from (it may move paths).
        me.addr = Some(from);
        if now.duration_since(me.window_start) >= Duration::from_secs(1) {
            me.window_start = now;
            me.in_window = 0;
        }
        me.in_window += 1;
        if me.in_window > self.limits.max_packets_per_sec {
            self.counters.limited.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        a.last = now;
        let to = a.sides[1 - side].addr?;
        Some((to, TOKEN_LEN))
    }

    /// Forwards datagrams until the socket fails or the task is dropped.
    pub async fn run(self: Arc<Relay>) {
        let mut buf = vec![0u8; MAX_DATAGRAM + TOKEN_LEN + 1];
        let mut last_expiry = Instant::now();
        loop {
            let Ok((n, from)) = self.socket.recv_from(&mut buf).await else {
                return;
            };
            let now = Instant::now();
            if now.duration_since(last_expiry) > Duration::from_secs(1) {
                self.expire(now);
                last_expiry = now;
            }
            if let Some((to, skip)) = self.route(from, &buf[..n], now)
                && self.socket.send_to(&buf[skip..n], to).await.is_ok()
            {
                self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What a side sends the relay for `packet`.
pub fn wrap(token: &Token, packet: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(TOKEN_LEN + packet.len());
    d.extend_from_slice(token);
    d.extend_from_slice(packet);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn side() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    async fn recv(s: &UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
            .await
            .expect("a datagram")
            .unwrap();
        buf[..n].to_vec()
    }

    #[tokio::test]
    async fn datagrams_go_from_one_side_to_the_other_and_garbage_is_counted() {
        let relay = Relay::bind("127.0.0.1:0", Limits::default()).await.unwrap();
        tokio::spawn(relay.clone().run());
        let (ta, tb) = relay.allocate().unwrap();
        let (a, b) = (side().await, side().await);
        // B makes itself known, then A's packet reaches it, token stripped.
        b.send_to(&wrap(&tb, b"hello"), relay.addr()).await.unwrap();
        a.send_to(&wrap(&ta, b"from a"), relay.addr())
            .await
            .unwrap();
        assert_eq!(recv(&b).await, b"from a");
        b.send_to(&wrap(&tb, b"from b"), relay.addr())
            .await
            .unwrap();
        assert_eq!(recv(&a).await, b"from b");
        // A stranger's datagrams go nowhere, and are counted.
        let c = side().await;
        c.send_to(&wrap(&[0; 16], b"x"), relay.addr())
            .await
            .unwrap();
        c.send_to(b"short", relay.addr()).await.unwrap();
        a.send_to(&wrap(&ta, b"still works"), relay.addr())
            .await
            .unwrap();
        assert_eq!(recv(&b).await, b"still works");
        assert_eq!(relay.counters.garbage.load(Ordering::Relaxed), 2);
        assert_eq!(relay.counters.forwarded.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_side_over_its_rate_is_cut_and_allocations_are_bounded() {
        let limits = Limits {
            max_allocations: 2,
            max_packets_per_sec: 5,
            idle: Duration::from_secs(30),
        };
        let relay = Relay::bind("127.0.0.1:0", limits).await.unwrap();
        let (ta, tb) = relay.allocate().unwrap();
        relay.allocate().unwrap();
        assert!(matches!(relay.allocate(), Err(RelayError::Full(2))));
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let now = Instant::now();
        assert!(
            relay.route(b, &wrap(&tb, b"hi"), now).is_none(),
            "A's address is not known yet"
        );
        let routed = (0..10)
            .filter(|_| relay.route(a, &wrap(&ta, b"p"), now).is_some())
            .count();
        assert_eq!(routed, 5);
        assert_eq!(relay.counters.limited.load(Ordering::Relaxed), 5);
        // A second later the side may send again.
        assert!(
            relay
                .route(a, &wrap(&ta, b"p"), now + Duration::from_secs(1))
                .is_some()
        );
    }

    proptest::proptest! {
        /// Any datagram from anyone: routed only with a live token, never a panic.
        #[test]
        fn any_datagram_is_routed_only_by_a_token(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600), known in proptest::prelude::any::<bool>()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let relay = rt.block_on(Relay::bind("127.0.0.1:0", Limits::default())).unwrap();
            let (ta, tb) = relay.allocate().unwrap();
            let now = Instant::now();
            relay.route("127.0.0.1:2".parse().unwrap(), &wrap(&tb, b"x"), now);
            let d = if known { wrap(&ta, &data) } else { data.clone() };
            let routed = relay.route("127.0.0.1:1".parse().unwrap(), &d, now);
            let valid = d.len() >= TOKEN_LEN && d.len() <= MAX_DATAGRAM + TOKEN_LEN && d[..TOKEN_LEN] == ta;
            proptest::prop_assert_eq!(routed.is_some(), valid);
        }
    }

    #[tokio::test]
    async fn an_idle_allocation_is_dropped() {
        let limits = Limits {
            idle: Duration::from_millis(0),
            ..Limits::default()
        };
        let relay = Relay::bind("127.0.0.1:0", limits).await.unwrap();
        relay.allocate().unwrap();
        relay.expire(Instant::now() + Duration::from_millis(5));
        assert_eq!(relay.allocations(), 0);
        assert!(relay.by_token.lock().unwrap().is_empty());
    }
}
