//! Strikes against misbehaving peers, and bans.

use super::*;

impl Actor {
    /// Counts a misbehaviour of `peer`; at [`MAX_STRIKES`] disconnects and bans it.
    pub(super) fn strike(&mut self, peer: PeerId, why: &str) {
        if self.strikes.len() >= MAX_TRACKED_OFFENDERS {
            self.strikes.clear();
        }
        let n = self.strikes.entry(peer).or_default();
        *n += 1;
        if *n < MAX_STRIKES {
            return;
        }
        self.strikes.remove(&peer);
        self.counters.peers_banned.inc();
        tracing::info!(target: "nodus::net", %peer, "banned for {BAN:?}: {why}");
        if self.bans.len() < MAX_TRACKED_OFFENDERS {
            self.bans.insert(peer, std::time::Instant::now() + BAN);
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        } else {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        self.swarm.behaviour_mut().kad.remove_peer(&peer);
        self.emit(NetEvent::PeerBanned {
            peer: peer.to_string(),
            reason: why.to_string(),
        });
    }

    pub(super) fn lift_expired_bans(&mut self) {
        let now = std::time::Instant::now();
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.bans.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
    }
}
