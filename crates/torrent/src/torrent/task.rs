//! The torrent's own task: once a second, connect, announce, choke, flush.

use super::*;

impl Torrent {
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut rounds = 0u64;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            rounds += 1;
            self.connect_more();
            self.classify_peers();
            self.start_web_seeds(&shutdown);
            self.announce_if_due();
            self.dht_if_due();
            if rounds.is_multiple_of(2) {
                self.update_rates();
                self.shared
                    .emit(TorrentEvent::Progress(Box::new(self.info())));
            }
            if rounds.is_multiple_of(20) {
                self.choke_round(rounds.is_multiple_of(60));
            }
            if rounds.is_multiple_of(120) {
                self.send_pex();
            }
            self.flush().await;
            self.on_complete().await;
        }
        self.flush().await;
        self.persist(None);
        let g = self.lock();
        for p in g.peers.values() {
            let _ = p.tx.try_send(PeerCmd::Close);
        }
    }
}
