//! Tit-for-tat choking with an optimistic unchoke, transfer rates, and peer exchange
//! (BEP 11).

use super::*;

impl Torrent {
    pub(super) fn update_rates(&self) {
        let down = self.downloaded.load(Ordering::Relaxed);
        let up = self.uploaded.load(Ordering::Relaxed);
        let mut g = self.lock();
        let (dd, du) = (
            down.saturating_sub(g.last_down),
            up.saturating_sub(g.last_up),
        );
        g.last_down = down;
        g.last_up = up;
        // Per second (ticks of one second), smoothed.
        g.rate_down = 0.5 * g.rate_down + 0.5 * dd as f64;
        g.rate_up = 0.5 * g.rate_up + 0.5 * du as f64;
    }

    /// Marks the peers too slow for streaming readers' windows (see [`SLOW_FACTOR`]).
    pub(super) fn classify_peers(&self) {
        let mut g = self.lock();
        let quickest = g.peers.values().filter_map(|p| p.latency).min();
        let slow = match quickest {
            Some(q) => {
                let limit = (q * SLOW_FACTOR).max(q + SLOW_MARGIN);
                g.peers
                    .iter()
                    .filter(|(_, p)| p.latency.is_some_and(|l| l > limit))
                    .map(|(k, _)| *k)
                    .collect()
            }
            None => Default::default(),
        };
        if let Some(p) = g.picker.as_mut() {
            p.set_slow(slow);
        }
    }

    /// Tit-for-tat: the upload slots go to the peers that gave us the most since the last
    /// round (when seeding: those we could give the most), plus one optimistic unchoke
    /// that rotates every 30 s.
    pub(super) fn choke_round(&self, rotate_optimistic: bool) {
        let slots = self.shared.config.upload_slots.max(1);
        let mut g = self.lock();
        let seeding = g.picker.as_ref().is_some_and(|p| p.is_complete());
        let mut ranked: Vec<(PeerKey, u64)> = g
            .peers
            .iter()
            .filter(|(_, p)| p.interested)
            .map(|(k, p)| {
                let score = if seeding {
                    p.up - p.up_mark
                } else {
                    p.down - p.down_mark
                };
                (*k, score)
            })
            .collect();
        ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
        let mut unchoke: HashSet<PeerKey> =
            ranked.iter().take(slots - 1).map(|(k, _)| *k).collect();
        let rest: Vec<PeerKey> = ranked.iter().skip(slots - 1).map(|(k, _)| *k).collect();
        if rotate_optimistic || g.optimistic.is_none_or(|o| !rest.contains(&o)) {
            g.optimistic = rest.choose(&mut rand::rng()).copied();
        }
        if let Some(o) = g.optimistic {
            unchoke.insert(o);
        }
        for (k, p) in g.peers.iter_mut() {
            p.down_mark = p.down;
            p.up_mark = p.up;
            let want_choke = !unchoke.contains(k);
            if want_choke != p.am_choking {
                p.am_choking = want_choke;
                let _ = p.tx.try_send(if want_choke {
                    PeerCmd::Choke
                } else {
                    PeerCmd::Unchoke
                });
            }
        }
    }

    pub(super) fn send_pex(&self) {
        let g = self.lock();
        let addrs: Vec<SocketAddr> = g
            .peers
            .values()
            .filter_map(|p| p.listen_addr)
            .take(50)
            .collect();
        for p in g.peers.values() {
            let others: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| Some(*a) != p.listen_addr)
                .collect();
            if !others.is_empty() {
                let _ = p.tx.try_send(PeerCmd::Pex(others));
            }
        }
    }
}
