//! The routing table: up to K nodes for each distance from our id (one bucket per
//! length of the prefix shared with it), the nodes that answered most recently kept.
//!
//! Invariants: a node id appears at most once; so does an address; our own id never.
//! A node that stopped answering (FAILS_TO_DROP timeouts in a row) is the first to
//! go when its bucket needs room; a live node is never pushed out by a newcomer,
//! which keeps long-lived nodes (the honest ones, mostly) in the table.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::krpc::NodeId;

pub const K: usize = 8;
const FAILS_TO_DROP: u8 = 2;
/// A node not heard from for this long may be replaced by a newcomer.
const STALE: Duration = Duration::from_secs(15 * 60);
/// Nodes sharing an IP address in one bucket, at most (a Sybil on one host fills no bucket).
const PER_IP_PER_BUCKET: usize = 2;

#[derive(Debug, Clone)]
struct Entry {
    id: NodeId,
    addr: SocketAddrV4,
    last_seen: Instant,
    fails: u8,
}

pub struct Table {
    own: NodeId,
    buckets: Vec<Vec<Entry>>,
}

pub fn distance(a: &NodeId, b: &NodeId) -> NodeId {
    let mut d = [0u8; 20];
    for i in 0..20 {
        d[i] = a[i] ^ b[i];
    }
    d
}

impl Table {
    pub fn new(own: NodeId) -> Table {
        Table {
            own,
            buckets: vec![Vec::new(); 160],
        }
    }

    fn bucket_of(&self, id: &NodeId) -> Option<usize> {
        let d = distance(&self.own, id);
        let zeros = d
            .iter()
            .position(|b| *b != 0)
            .map(|i| i * 8 + d[i].leading_zeros() as usize)?;
        Some(zeros.min(159))
    }

    /// A node answered, or sent us a query: add it, or note that it is alive.
    pub fn seen(&mut self, id: NodeId, addr: SocketAddrV4) {
        let Some(b) = self.bucket_of(&id) else {
            return;
        };
        let now = Instant::now();
        if let Some(e) = self.buckets[b].iter_mut().find(|e| e.id == id) {
            if e.addr == addr {
                e.last_seen = now;
                e.fails = 0;
            } else if e.fails >= FAILS_TO_DROP {
                // The id moved and the old address is dead: follow it.
                e.addr = addr;
                e.last_seen = now;
                e.fails = 0;
            }
            return;
        }
        // The same address under another id: a restarted node. Forget the old entry.
        for bucket in &mut self.buckets {
            bucket.retain(|e| e.addr != addr);
        }
        let bucket = &mut self.buckets[b];
        if bucket.iter().filter(|e| e.addr.ip() == addr.ip()).count() >= PER_IP_PER_BUCKET {
            return;
        }
        let entry = Entry {
            id,
            addr,
            last_seen: now,
            fails: 0,
        };
        if bucket.len() < K {
            bucket.push(entry);
            return;
        }
        let evict = bucket
            .iter()
            .enumerate()
            .filter(|(_, e)| e.fails >= FAILS_TO_DROP || now.duration_since(e.last_seen) > STALE)
            .max_by_key(|(_, e)| (e.fails, now.duration_since(e.last_seen)))
            .map(|(i, _)| i);
        if let Some(i) = evict {
            bucket[i] = entry;
        }
    }

    /// A query to `addr` went unanswered.
    pub fn failed(&mut self, addr: SocketAddrV4) {
        for bucket in &mut self.buckets {
            if let Some(i) = bucket.iter().position(|e| e.addr == addr) {
                bucket[i].fails = bucket[i].fails.saturating_add(1);
                // An unanswered node in a bucket with room to spare is just noise.
                if bucket[i].fails >= FAILS_TO_DROP * 2 {
                    bucket.remove(i);
                }
                return;
            }
        }
    }

    /// The `n` live nodes closest to `target`.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<(NodeId, SocketAddrV4)> {
        let mut all: Vec<(NodeId, NodeId, SocketAddrV4)> = self
            .buckets
            .iter()
            .flatten()
            .filter(|e| e.fails < FAILS_TO_DROP)
            .map(|e| (distance(&e.id, target), e.id, e.addr))
            .collect();
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().take(n).map(|(_, id, a)| (id, a)).collect()
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddrV4 {
        SocketAddrV4::new(std::net::Ipv4Addr::from(0x0a00_0000 + i), 6881)
    }

    #[test]
    fn closest_orders_by_xor_distance() {
        let mut t = Table::new([0; 20]);
        for i in 1..=50u8 {
            let mut id = [0u8; 20];
            id[0] = i;
            t.seen(id, addr(i as u32));
        }
        let mut target = [0u8; 20];
        target[0] = 0x21;
        let got: Vec<u8> = t.closest(&target, 3).iter().map(|(id, _)| id[0]).collect();
        assert_eq!(got, vec![0x21, 0x20, 0x23]);
    }

    #[test]
    fn a_full_bucket_keeps_live_nodes_and_replaces_dead_ones() {
        let mut t = Table::new([0; 20]);
        let id = |i: u8| {
            let mut id = [0xffu8; 20];
            id[19] = i;
            id
        };
        for i in 0..K as u8 {
            t.seen(id(i), addr(i as u32));
        }
        t.seen(id(100), addr(100));
        assert_eq!(t.len(), K, "a live bucket takes no newcomer");
        assert!(!t.closest(&id(100), K).iter().any(|(n, _)| *n == id(100)));
        t.failed(addr(3));
        t.failed(addr(3));
        t.seen(id(100), addr(100));
        assert!(
            t.closest(&id(100), 1)[0].0 == id(100),
            "a dead node makes room"
        );
        assert_eq!(t.len(), K);
    }

    #[test]
    fn one_host_fills_no_bucket_and_own_id_is_never_added() {
        let mut t = Table::new([0; 20]);
        for i in 0..20u8 {
            let mut id = [0xffu8; 20];
            id[19] = i;
            t.seen(id, SocketAddrV4::new([10, 0, 0, 1].into(), 1000 + i as u16));
        }
        assert_eq!(t.len(), PER_IP_PER_BUCKET);
        t.seen([0; 20], addr(7));
        assert_eq!(t.len(), PER_IP_PER_BUCKET);
    }
}
