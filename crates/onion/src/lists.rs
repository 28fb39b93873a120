//! The relay and onion service lists handed to a node that joins: gossip brings each
//! descriptor when its relay or service publishes it again (every `publish_secs`, ten
//! minutes by default), so a node that just joined would wait that long to hear of
//! everyone. Instead it asks the first peers it connects to for the lists they hold.
//!
//! **Protocol** `/nodus/onion/lists/1`: the asker opens a stream and reads; the peer
//! writes every descriptor it holds as items, then closes. An item is its kind (one byte:
//! 0 a relay descriptor, 1 an onion service descriptor), its length (two bytes, big
//! endian, at most [`MAX_ITEM`]), and the signed descriptor exactly as gossip carries it.
//!
//! Nothing in the answer is trusted: each descriptor is verified and taken in as one
//! from gossip would be. An answer is bounded ([`MAX_ITEMS`] items, [`ANSWER_TIMEOUT`]);
//! a malformed item ends it and counts against the peer; a peer is answered at most once
//! per [`ANSWER_EVERY`], and at most [`ANSWERING`] answers are written at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use nodus_net::{NetEvent, NetworkHandle};
use tokio::sync::watch;

use crate::directory::{self, Directory};
use crate::hs::descriptor::{self as service_descriptor, Services};
use crate::{OnionError, lock};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/onion/lists/1");
/// The largest descriptor of either kind.
pub const MAX_ITEM: usize = 4096;
pub const MAX_ITEMS: usize = directory::MAX_RELAYS + service_descriptor::MAX_SERVICES;
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
pub const ANSWER_EVERY: Duration = Duration::from_secs(30);
pub const ANSWERING: usize = 8;
/// Peers asked after a start.
pub const ASK: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Relay(Vec<u8>),
    Service(Vec<u8>),
}

impl Item {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, bytes) = match self {
            Item::Relay(b) => (0u8, b),
            Item::Service(b) => (1u8, b),
        };
        if bytes.len() > MAX_ITEM {
            return;
        }
        out.push(kind);
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    }
}

/// An item's kind and length from its three-byte head.
pub fn head(h: [u8; 3]) -> Result<(u8, usize), OnionError> {
    let len = u16::from_be_bytes([h[1], h[2]]) as usize;
    if h[0] > 1 {
        return Err(OnionError::Malformed(format!("list item of kind {}", h[0])));
    }
    if len == 0 || len > MAX_ITEM {
        return Err(OnionError::Malformed(format!("list item of {len} bytes")));
    }
    Ok((h[0], len))
}

fn item(kind: u8, body: Vec<u8>) -> Item {
    match kind {
        0 => Item::Relay(body),
        _ => Item::Service(body),
    }
}

/// Every item in `bytes`, a whole answer (the fuzz target's entry).
pub fn decode(mut bytes: &[u8]) -> Result<Vec<Item>, OnionError> {
    let mut items = Vec::new();
    while !bytes.is_empty() {
        if items.len() == MAX_ITEMS {
            return Err(OnionError::Malformed("more list items than allowed".into()));
        }
        let h: [u8; 3] = bytes
            .get(..3)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| OnionError::Malformed("a list item cut short".into()))?;
        let (kind, len) = head(h)?;
        let body = bytes
            .get(3..3 + len)
            .ok_or_else(|| OnionError::Malformed("a list item cut short".into()))?;
        items.push(item(kind, body.to_vec()));
        bytes = &bytes[3 + len..];
    }
    Ok(items)
}

/// The next item of an answer, `None` at its end.
async fn read_item<R: futures::AsyncRead + Unpin>(r: &mut R) -> Result<Option<Item>, OnionError> {
    let mut h = [0u8; 3];
    let mut got = 0;
    while got < 3 {
        match r.read(&mut h[got..]).await {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(OnionError::Malformed("a list item cut short".into())),
            Ok(n) => got += n,
            Err(e) => return Err(OnionError::Net(e.to_string())),
        }
    }
    let (kind, len) = head(h)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .await
        .map_err(|_| OnionError::Malformed("a list item cut short".into()))?;
    Ok(Some(item(kind, body)))
}

/// The lists a node holds, to hand out and to fill.
#[derive(Clone)]
pub struct Lists {
    pub relays: Arc<Mutex<Directory>>,
    pub services: Arc<Mutex<Services>>,
    /// Descriptors new to this node taken from peers' answers.
    pub taken: Arc<AtomicU64>,
}

/// What an answer brought.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Descriptors new to this node.
    pub new: usize,
    /// Descriptors refused (a bad signature, expired, from the future).
    pub refused: usize,
}

impl Lists {
    fn answer(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in lock(&self.relays).relays() {
            Item::Relay(r.signed.clone()).encode(&mut out);
        }
        for s in lock(&self.services).signed() {
            Item::Service(s.to_vec()).encode(&mut out);
        }
        out
    }

    fn take(&self, item: &Item, now_ms: u64) -> Result<bool, OnionError> {
        match item {
            Item::Relay(b) => lock(&self.relays).insert(b, now_ms),
            Item::Service(b) => lock(&self.services).insert(b, now_ms),
        }
    }

    /// Asks `peer` for its lists and takes in what it holds.
    pub async fn fetch(&self, net: &NetworkHandle, peer: PeerId) -> Result<Taken, OnionError> {
        let mut s = net
            .open_stream(peer, PROTOCOL)
            .await
            .map_err(|e| OnionError::Net(e.to_string()))?;
        let mut taken = Taken::default();
        let reading = async {
            for _ in 0..MAX_ITEMS {
                let Some(item) = read_item(&mut s).await? else {
                    return Ok(());
                };
                match self.take(&item, crate::service::now_ms()) {
                    Ok(true) => {
                        taken.new += 1;
                        self.taken.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(_) => taken.refused += 1,
                }
            }
            Err(OnionError::Malformed("more list items than allowed".into()))
        };
        match tokio::time::timeout(ANSWER_TIMEOUT, reading).await {
            Ok(Ok(())) => Ok(taken),
            Ok(Err(e @ OnionError::Malformed(_))) => {
                net.report_misbehaviour(peer, format!("onion lists: {e}"));
                Err(e)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(OnionError::Timeout("the lists")),
        }
    }
}

/// Answers peers asking for the lists, until `shutdown`.
pub async fn serve(net: NetworkHandle, lists: Lists, mut shutdown: watch::Receiver<bool>) {
    let Ok(mut incoming) = net.incoming(PROTOCOL) else {
        tracing::warn!(target: "nodus::onion", "cannot answer for the relay lists: the protocol is taken");
        return;
    };
    let mut last: HashMap<PeerId, Instant> = HashMap::new();
    let mut answering = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            next = incoming.next() => {
                let Some((peer, mut s)) = next else { return };
                let now = Instant::now();
                last.retain(|_, t| now.duration_since(*t) < ANSWER_EVERY);
                if last.contains_key(&peer) || answering.len() >= ANSWERING {
                    continue;
                }
                last.insert(peer, now);
                let answer = lists.answer();
                answering.spawn(async move {
                    let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
                        s.write_all(&answer).await?;
                        s.close().await
                    })
                    .await;
                });
            }
            Some(_) = answering.join_next() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// After a start, asks the first [`ASK`] peers that answer for their lists.
pub async fn ask_on_joining(net: NetworkHandle, lists: Lists, mut shutdown: watch::Receiver<bool>) {
    let mut events = net.events();
    let mut asked: Vec<PeerId> = Vec::new();
    let mut answered = 0;
    let connected: Vec<PeerId> = match net.peers().await {
        Ok(peers) => peers
            .iter()
            .filter_map(|p| p.peer_id.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut queue = connected;
    while answered < ASK {
        while let Some(peer) = queue.pop() {
            if asked.contains(&peer) || answered >= ASK {
                continue;
            }
            asked.push(peer);
            match lists.fetch(&net, peer).await {
                Ok(t) => {
                    answered += 1;
                    tracing::debug!(target: "nodus::onion", %peer, new = t.new, refused = t.refused, "lists fetched");
                }
                Err(e) => tracing::debug!(target: "nodus::onion", %peer, "no lists: {e}"),
            }
        }
        tokio::select! {
            e = events.recv() => match e {
                Ok(NetEvent::PeerConnected { peer, .. }) => {
                    if let Ok(p) = peer.parse() {
                        queue.push(p);
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn items_round_trip(items in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 1..MAX_ITEM)), 0..8)
        ) {
            let items: Vec<Item> = items
                .into_iter()
                .map(|(relay, b)| if relay { Item::Relay(b) } else { Item::Service(b) })
                .collect();
            let mut bytes = Vec::new();
            for i in &items {
                i.encode(&mut bytes);
            }
            prop_assert_eq!(decode(&bytes).unwrap(), items);
        }

        #[test]
        fn any_bytes_decode_to_items_within_bounds_or_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..10_000)
        ) {
            if let Ok(items) = decode(&bytes) {
                let total: usize = items
                    .iter()
                    .map(|i| match i { Item::Relay(b) | Item::Service(b) => 3 + b.len() })
                    .sum();
                prop_assert_eq!(total, bytes.len());
            }
        }
    }

    #[test]
    fn a_bad_head_is_refused() {
        assert!(head([2, 0, 1]).is_err(), "unknown kind");
        assert!(head([0, 0, 0]).is_err(), "empty");
        assert!(head([1, 0x10, 0x01]).is_err(), "past the limit");
        assert_eq!(head([1, 0x10, 0x00]).unwrap(), (1, MAX_ITEM));
        assert!(decode(&[0, 0, 5, 1, 2]).is_err(), "cut short");
    }
}
