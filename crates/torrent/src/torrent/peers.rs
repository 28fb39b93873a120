//! The peers of a torrent: connecting to candidates, registering connections, bans.

use super::*;

impl Torrent {
    /// Peers the user named: tried now, and kept with the torrent so that they are
    /// tried again after a restart (at most [`MAX_NAMED_PEERS`]).
    pub fn add_named_peers(&self, addrs: &[SocketAddr]) {
        if addrs.is_empty() {
            return;
        }
        {
            let mut g = self.lock();
            for a in addrs {
                let a = a.to_string();
                if !g.settings.peers.contains(&a) && g.settings.peers.len() < MAX_NAMED_PEERS {
                    g.settings.peers.push(a);
                }
            }
        }
        self.persist(None);
        self.add_peers(addrs);
    }

    pub fn add_peers(&self, addrs: &[SocketAddr]) {
        let mut g = self.lock();
        for a in addrs {
            if a.port() == 0 || g.banned.contains(&a.ip()) || Some(*a) == self.shared.listen_addr()
            {
                continue;
            }
            if !g.known.contains(a) {
                if g.known.len() >= MAX_CANDIDATES {
                    continue;
                }
                g.known.insert(*a);
            }
            // Known before (a tracker repeating itself, a peer that went away): try it
            // again, no sooner than its retry time.
            if !g.candidates.contains(a) {
                g.candidates.push_back(*a);
            }
        }
        drop(g);
        self.wake.notify_one();
    }

    pub(crate) fn is_banned(&self, ip: IpAddr) -> bool {
        self.lock().banned.contains(&ip)
    }

    /// Registers a connected peer, or refuses it (too many, banned, paused, ourselves).
    pub(crate) fn register(
        &self,
        addr: SocketAddr,
        link: crate::peer::Link,
        tx: mpsc::Sender<PeerCmd>,
    ) -> Option<PeerKey> {
        let incoming = link.incoming;
        let mut g = self.lock();
        if g.settings.paused
            || g.banned.contains(&addr.ip())
            || g.peers.len() >= self.shared.config.max_peers_per_torrent
            || g.peers.values().any(|p| p.addr == addr)
        {
            return None;
        }
        let key = self.shared.next_key();
        g.peers.insert(
            key,
            PeerEntry {
                addr,
                tx,
                am_choking: true,
                interested: false,
                client: String::new(),
                incoming,
                encrypted: link.encrypted,
                utp: link.utp,
                listen_addr: (!incoming).then_some(addr),
                down: 0,
                up: 0,
                down_mark: 0,
                up_mark: 0,
                pieces: 0,
                seed: false,
                latency: None,
            },
        );
        if !incoming {
            g.known.insert(addr);
        }
        Some(key)
    }

    pub(crate) fn unregister(
        &self,
        key: PeerKey,
        bits: Option<&Bitfield>,
        inflight: Vec<BlockRef>,
    ) {
        let mut g = self.lock();
        if let Some(p) = g.picker.as_mut() {
            if let Some(b) = bits {
                p.remove_availability(b);
            }
            p.release(key, inflight);
        }
        if let Some(e) = g.peers.remove(&key)
            && let Some(l) = e.listen_addr
            && !g.banned.contains(&l.ip())
        {
            // Worth trying again later.
            g.candidates.push_back(l);
        }
        drop(g);
        self.wake.notify_one();
    }

    pub(crate) fn connecting_done(&self, addr: SocketAddr) {
        self.lock().connecting.remove(&addr);
    }

    pub(crate) fn set_peer_info(
        &self,
        key: PeerKey,
        client: Option<String>,
        listen_port: Option<u16>,
    ) {
        let mut g = self.lock();
        if let Some(p) = g.peers.get_mut(&key) {
            if let Some(c) = client {
                p.client = c;
            }
            if let Some(port) = listen_port {
                let l = SocketAddr::new(p.addr.ip(), port);
                p.listen_addr = Some(l);
                g.known.insert(l);
            }
        }
    }

    pub(crate) fn set_interested(&self, key: PeerKey, interested: bool) -> bool {
        let mut g = self.lock();
        let slots = self.shared.config.upload_slots;
        let unchoked = g.peers.values().filter(|p| !p.am_choking).count();
        let Some(p) = g.peers.get_mut(&key) else {
            return false;
        };
        p.interested = interested;
        // A free slot is given at once instead of at the next choke round.
        if interested && p.am_choking && unchoked < slots {
            p.am_choking = false;
            return true;
        }
        false
    }

    pub(crate) fn am_choking(&self, key: PeerKey) -> bool {
        self.lock().peers.get(&key).is_none_or(|p| p.am_choking)
    }

    pub(crate) fn mark_seed(&self, key: PeerKey, seed: bool) {
        if let Some(p) = self.lock().peers.get_mut(&key) {
            p.seed = seed;
        }
    }

    pub(super) fn connect_more(self: &Arc<Self>) {
        let addrs: Vec<SocketAddr> = {
            let mut g = self.lock();
            if g.settings.paused
                || g.picker.as_ref().is_some_and(|p| p.is_complete()) && g.peers.len() >= 4
            {
                return;
            }
            let room = self
                .shared
                .config
                .max_peers_per_torrent
                .saturating_sub(g.peers.len() + g.connecting.len());
            let connected: HashSet<SocketAddr> = g
                .peers
                .values()
                .flat_map(|p| [Some(p.addr), p.listen_addr])
                .flatten()
                .collect();
            let mut out = Vec::new();
            let mut tries = g.candidates.len();
            while out.len() < room.min(8) && tries > 0 {
                tries -= 1;
                let Some(a) = g.candidates.pop_front() else {
                    break;
                };
                if connected.contains(&a) || g.connecting.contains(&a) || g.banned.contains(&a.ip())
                {
                    continue;
                }
                if g.retry_after.get(&a).is_some_and(|t| Instant::now() < *t) {
                    g.candidates.push_back(a);
                    continue;
                }
                g.retry_after.insert(a, Instant::now() + RETRY);
                g.connecting.insert(a);
                out.push(a);
            }
            out
        };
        for a in addrs {
            let t = self.clone();
            tokio::spawn(async move {
                crate::peer::connect(t.clone(), a).await;
                t.connecting_done(a);
            });
        }
    }
}
