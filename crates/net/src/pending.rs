//! A cap on inbound connections still in their handshake (TLS or Noise, then Yamux),
//! where a newcomer at the cap pushes out the oldest.
//!
//! libp2p's own limit refuses a new pending connection when the count is full, so
//! connections that open and send nothing, from enough addresses to get past the
//! per-IP limit, locked new peers out for as long as they were held (a user saw 2,500
//! connections from 250 addresses keep a new node out for ~10 s). Here the oldest
//! pending one is dropped instead: a real peer, whose handshake takes a few round trips,
//! gets in unless the cap's worth of newer connections arrive during those.
//!
//! Connections from addresses of peers already known (the routing table, bootstrap peers
//! and relays: [`KnownIps`]) take no slot and are never pushed out; they are still held
//! to the per-IP limit.
//!
//! Invariant: a connection takes its slot when the swarm first polls its upgrade, which
//! is after every behaviour accepted it (so one the per-IP limit refuses evicts nobody),
//! and frees it when the upgrade ends or is dropped. Age is by arrival (the order the
//! listener produced connections), not by that first poll, whose order the swarm's tasks
//! do not keep.

use std::collections::HashSet;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::Multiaddr;
use libp2p::core::Transport;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use prometheus_client::metrics::counter::Counter;

use crate::slots::Slots;

/// Most addresses remembered as known.
const MAX_KNOWN: usize = 4096;

/// IP addresses of peers already known, shared by the actor (which adds to it) and the
/// transport (which reads it).
#[derive(Clone, Default)]
pub(crate) struct KnownIps(Arc<RwLock<HashSet<IpAddr>>>);

impl KnownIps {
    pub(crate) fn add(&self, addr: &Multiaddr) {
        let Some(ip) = ip_of(addr) else { return };
        let mut set = self.0.write().unwrap_or_else(|e| e.into_inner());
        if set.len() < MAX_KNOWN {
            set.insert(ip);
        }
    }

    fn contains(&self, addr: &Multiaddr) -> bool {
        ip_of(addr).is_some_and(|ip| {
            self.0
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&ip)
        })
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip.into()),
        libp2p::multiaddr::Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}

pub(crate) struct CapPending<T> {
    inner: T,
    slots: Slots,
    /// Inbound connections seen so far: a connection's age is its place in this count,
    /// since the swarm polls upgrades in no particular order.
    arrivals: u64,
    known: KnownIps,
    evicted: Counter,
}

impl<T> CapPending<T> {
    pub(crate) fn new(inner: T, cap: usize, known: KnownIps, evicted: Counter) -> Self {
        CapPending {
            inner,
            slots: Slots::new(cap),
            arrivals: 0,
            known,
            evicted,
        }
    }
}

impl<T> Transport for CapPending<T>
where
    T: Transport<Error = io::Error> + Unpin,
    T::ListenerUpgrade: Send + 'static,
    T::Output: Send + 'static,
{
    type Output = T::Output;
    type Error = io::Error;
    type ListenerUpgrade = BoxFuture<'static, Result<T::Output, io::Error>>;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        self.inner.dial(addr, opts)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let event = match Pin::new(&mut self.inner).poll(cx) {
            Poll::Ready(e) => e,
            Poll::Pending => return Poll::Pending,
        };
        if let TransportEvent::Incoming { send_back_addr, .. } = &event
            && self.known.contains(send_back_addr)
        {
            return Poll::Ready(event.map_upgrade(|upgrade| upgrade.boxed()));
        }
        let (slots, evicted) = (self.slots.clone(), self.evicted.clone());
        self.arrivals += 1;
        let arrival = self.arrivals;
        Poll::Ready(event.map_upgrade(move |upgrade| {
            async move {
                // None only when this one arrived before every connection holding a
                // slot: then it is the oldest, and the one to go.
                let Some(admitted) = slots.admit_arrived(arrival) else {
                    evicted.inc();
                    return Err(io::Error::other(
                        "handshake cut short: the pending connections were full and this was the oldest",
                    ));
                };
                let _slot = admitted.slot;
                match futures::future::select(Box::pin(upgrade), admitted.evicted).await {
                    futures::future::Either::Left((r, _)) => r,
                    futures::future::Either::Right(_) => {
                        evicted.inc();
                        Err(io::Error::other(
                            "handshake cut short: the pending connections were full and this was the oldest",
                        ))
                    }
                }
            }
            .boxed()
        }))
    }
}
