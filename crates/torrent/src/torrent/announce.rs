//! Finding peers: tracker announces, DHT lookups, and web seeds (BEP 19).

use super::*;

impl Torrent {
    pub(super) fn announce_if_due(self: &Arc<Self>) {
        let due = {
            let g = self.lock();
            !g.settings.paused
                && !g.trackers.is_empty()
                && g.next_announce.is_some_and(|t| Instant::now() >= t)
        };
        if due {
            let first = self.lock().settings.downloaded == 0;
            self.announce_now(first.then_some("started"));
        }
    }

    pub(crate) fn announce_now(self: &Arc<Self>, event: Option<&'static str>) {
        let (trackers, left) = {
            let mut g = self.lock();
            if g.trackers.is_empty() {
                return;
            }
            // Until the answer says otherwise, try again in a minute.
            g.next_announce = Some(Instant::now() + Duration::from_secs(60));
            let left = g
                .picker
                .as_ref()
                .map(|p| p.wanted_left_bytes())
                .unwrap_or(1);
            (g.trackers.clone(), left)
        };
        let t = self.clone();
        tokio::spawn(async move {
            let port = t.shared.listen_addr().map(|a| a.port()).unwrap_or(0);
            for url in trackers {
                for id in &t.announce_ids() {
                    let req = crate::tracker::Announce {
                        info_hash: *id,
                        peer_id: t.shared.peer_id,
                        port,
                        uploaded: t.uploaded.load(Ordering::Relaxed),
                        downloaded: t.downloaded.load(Ordering::Relaxed),
                        left,
                        event,
                    };
                    match crate::tracker::announce(&t.shared.http, t.shared.bind_ip, &url, &req)
                        .await
                    {
                        Ok(resp) => {
                            t.add_peers(&resp.peers);
                            // The tracker's interval, within bounds that keep a hostile one from
                            // making us hammer it or fall silent.
                            let next = Duration::from_secs(resp.interval.clamp(5, 3600));
                            t.lock().next_announce = Some(Instant::now() + next);
                        }
                        Err(e) => {
                            tracing::debug!(target: "nodus::torrent", %url, "announce: {e}");
                        }
                    }
                }
            }
        });
    }

    /// The infohashes peers may know this torrent by: v1 (or truncated v2) and, for a
    /// hybrid, the truncated v2 too.
    pub(super) fn announce_ids(&self) -> Vec<Hash20> {
        let mut ids = vec![self.hashes.wire_id()];
        if let (Some(_), Some(v2)) = (self.hashes.v1, self.hashes.v2) {
            ids.push(crate::metainfo::truncate(&v2));
        }
        ids
    }

    /// Looks the torrent up in the DHT and announces it there, when due. Never for a
    /// private torrent (BEP 27: its peers come from its trackers only).
    pub(super) fn dht_if_due(self: &Arc<Self>) {
        let Some(dht) = self.shared.dht.get().cloned() else {
            return;
        };
        {
            let mut g = self.lock();
            let private = g.meta.as_ref().is_some_and(|m| m.info.private);
            if g.settings.paused || private || g.next_dht.is_none_or(|t| Instant::now() < t) {
                return;
            }
            if dht.nodes() == 0 {
                // Still joining: look again soon, without counting it as a failed lookup.
                g.next_dht = Some(Instant::now() + Duration::from_secs(1));
                return;
            }
            g.next_dht = None;
        }
        let t = self.clone();
        tokio::spawn(async move {
            let port = t.shared.listen_addr().map(|a| a.port()).unwrap_or(0);
            let (mut found, mut announced) = (0, false);
            for id in t.announce_ids() {
                let f = dht.get_peers(id, Some(port)).await;
                found += f.peers.len();
                announced |= f.announced > 0;
                t.add_peers(&f.peers);
            }
            let mut g = t.lock();
            let wait = if found > 0 && announced {
                g.dht_retry = DHT_RETRY_MIN;
                DHT_INTERVAL
            } else {
                let w = g.dht_retry;
                g.dht_retry = (w * 2).min(DHT_INTERVAL);
                w
            };
            tracing::debug!(target: "nodus::torrent", id = %t.id, found, announced, "DHT lookup; next in {wait:?}");
            g.next_dht = Some(Instant::now() + wait);
        });
    }

    /// Starts a task per web seed once the metadata is known.
    pub(super) fn start_web_seeds(self: &Arc<Self>, shutdown: &tokio::sync::watch::Receiver<bool>) {
        let urls = {
            let mut g = self.lock();
            if g.web_started || g.meta.is_none() || g.web_urls.is_empty() {
                return;
            }
            g.web_started = true;
            g.web_urls.clone()
        };
        for url in urls {
            tokio::spawn(crate::webseed::run(self.clone(), url, shutdown.clone()));
        }
    }

    pub(crate) fn add_web_seed(&self, key: PeerKey, url: &str) {
        self.lock().web_seeds.insert(key, (url.to_string(), 0));
    }

    pub(crate) fn remove_web_seed(&self, key: PeerKey) {
        self.lock().web_seeds.remove(&key);
    }

    pub(crate) fn web_seed_banned(&self, key: PeerKey) -> bool {
        self.lock()
            .web_seeds
            .get(&key)
            .is_none_or(|(_, s)| *s >= MAX_STRIKES)
    }
}
