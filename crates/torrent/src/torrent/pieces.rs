//! Pieces: what peers have, picking blocks, verifying and storing completed pieces,
//! completion.

use super::*;

impl Torrent {
    /// Adds a peer's pieces to availability; returns whether it has something we want.
    pub(crate) fn on_bitfield(&self, bits: &Bitfield) -> bool {
        let mut g = self.lock();
        match g.picker.as_mut() {
            Some(p) => {
                p.add_availability(bits);
                p.interesting(bits)
            }
            None => false,
        }
    }

    pub(crate) fn on_have(&self, index: u32) -> bool {
        let mut g = self.lock();
        match g.picker.as_mut() {
            Some(p) => {
                p.add_have(index);
                p.wanted().get(index) && !p.have().get(index)
            }
            None => false,
        }
    }

    pub(crate) fn interesting(&self, bits: &Bitfield) -> bool {
        self.lock()
            .picker
            .as_ref()
            .is_some_and(|p| p.interesting(bits))
    }

    pub(crate) fn pick(&self, key: PeerKey, theirs: &Bitfield, n: usize) -> Vec<BlockRef> {
        let mut g = self.lock();
        if g.settings.paused || !g.layers_missing.is_empty() {
            return Vec::new();
        }
        g.picker
            .as_mut()
            .map(|p| p.pick(key, theirs, n))
            .unwrap_or_default()
    }

    pub(crate) fn release(&self, key: PeerKey, blocks: Vec<BlockRef>) {
        if let Some(p) = self.lock().picker.as_mut() {
            p.release(key, blocks);
        }
    }

    /// A block arrived. Returns a completed piece to verify, and the other peers asked
    /// for the same block (endgame) to cancel it with.
    /// `latency`: since the block was asked for, when it was.
    pub(crate) fn on_block(
        &self,
        key: PeerKey,
        index: u32,
        begin: u32,
        data: &[u8],
        latency: Option<Duration>,
    ) -> Option<CompletePiece> {
        self.downloaded
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut g = self.lock();
        if let Some(p) = g.peers.get_mut(&key) {
            p.down += data.len() as u64;
            if let Some(l) = latency {
                p.latency = Some(match p.latency {
                    Some(old) => (old * 7 + l) / 8,
                    None => l,
                });
            }
        }
        let picker = g.picker.as_mut()?;
        let askers = picker.askers(index, begin);
        let outcome = picker.on_block(key, index, begin, data);
        let cancel = BlockRef {
            index,
            begin,
            length: data.len() as u32,
        };
        for other in askers.into_iter().filter(|k| *k != key) {
            if let Some(p) = g.peers.get(&other) {
                let _ = p.tx.try_send(PeerCmd::Cancel(cancel));
            }
        }
        match outcome {
            crate::picker::BlockOutcome::Complete(c) => Some(c),
            _ => None,
        }
    }

    /// Verifies a completed piece off the async threads, writes it, and records the
    /// [`Verdict`].
    pub(crate) async fn verify_and_store(self: &Arc<Self>, piece: CompletePiece) {
        let (meta, storage) = {
            let g = self.lock();
            match (g.meta.clone(), g.storage.clone()) {
                (Some(m), Some(s)) => (m, s),
                _ => return,
            }
        };
        let me = self.clone();
        // All of it on the blocking pool: hashing, the write, and the journal (whose lock
        // the flush may hold while it renames the file), never on an async worker.
        let _ = tokio::task::spawn_blocking(move || {
            let CompletePiece {
                index,
                data,
                by_peer,
            } = piece;
            let hashed = meta
                .expected_piece_hash(index)
                .is_some_and(|h| h.verify(&data, meta.info.piece_length));
            let verdict = if !hashed {
                Verdict::BadHash
            } else {
                let (start, _) = storage.piece_range(index);
                match storage.write(start, &data) {
                    Ok(()) => Verdict::Stored,
                    Err(e) => {
                        tracing::error!(target: "nodus::torrent", id = %me.id, "writing piece {index}: {e}");
                        me.lock().error = Some(format!("disk write failed: {e}"));
                        Verdict::DiskError
                    }
                }
            };
            if verdict == Verdict::Stored && me.ahead_of_a_reader(index) {
                let len = storage.piece_range(index).1;
                let copy = bytes::Bytes::copy_from_slice(&data[..len]);
                me.fresh.lock().unwrap_or_else(|e| e.into_inner()).insert(index, copy);
            }
            // Journal first, then mark and announce: what peers hear of survives a kill.
            let mut j = me.journal.lock().unwrap_or_else(|e| e.into_inner());
            if verdict == Verdict::Stored
                && let Err(e) = me.journal_append(&mut j, index)
            {
                tracing::warn!(target: "nodus::torrent", id = %me.id, "piece journal: {e}");
            }
            drop(j);
            me.finish_piece(index, verdict, by_peer, data);
        })
        .await;
    }

    pub(super) fn finish_piece(
        &self,
        index: u32,
        verdict: Verdict,
        by_peer: HashMap<PeerKey, u32>,
        buffer: PieceBuf,
    ) {
        let ok = verdict == Verdict::Stored;
        let mut g = self.lock();
        let Some(picker) = g.picker.as_mut() else {
            return;
        };
        picker.on_verified(index, ok);
        let complete = picker.is_complete();
        if complete {
            // Seeding needs no piece buffers: do not keep the spares for as long as it lasts.
            drop(buffer);
            picker.free_buffers();
        } else {
            picker.recycle(buffer);
        }
        if ok {
            g.have_dirty = true;
            self.progress.send_modify(|n| *n += 1);
            let source = if let Some((best, _)) = by_peer.iter().max_by_key(|(_, n)| **n)
                && let Some(p) = g.peers.get_mut(best)
            {
                p.pieces += 1;
                Some(p.listen_addr.unwrap_or(p.addr).to_string())
            } else if let Some((best, _)) = by_peer.iter().max_by_key(|(_, n)| **n)
                && let Some((url, _)) = g.web_seeds.get(best)
            {
                Some(url.clone())
            } else {
                None
            };
            if let Some(source) = source {
                *g.pieces_from.entry(source.clone()).or_default() += 1;
                g.note_source(index, source);
            }
            for p in g.peers.values() {
                let _ = p.tx.try_send(PeerCmd::Have(index));
            }
            if complete {
                drop(g);
                // The torrent's task finishes the files and reports it (on_complete).
                self.wake.notify_one();
            }
            return;
        }
        if verdict == Verdict::DiskError {
            // Our disk's fault, not the peers': nobody is struck. Downloading on would
            // only fetch more pieces to throw away, so the torrent stops, its error shown.
            drop(g);
            self.set_paused(true);
            return;
        }
        g.hash_failures += 1;
        tracing::warn!(target: "nodus::torrent", id = %self.id, "piece {index} failed its hash check");
        for key in by_peer.keys() {
            if let Some((url, strikes)) = g.web_seeds.get_mut(key) {
                *strikes += 1;
                self.shared.metrics.hash_failures.inc();
                tracing::warn!(target: "nodus::torrent", id = %self.id, %url, "web seed sent a bad piece ({strikes})");
            }
        }
        let mut culprits: Vec<(PeerKey, IpAddr)> = by_peer
            .keys()
            .filter_map(|k| g.peers.get(k).map(|p| (*k, p.addr.ip())))
            .collect();
        // A piece with blocks from a peer banned for bad data is that peer's fault: the
        // others who helped finish it are not struck for it.
        if culprits.iter().any(|(_, ip)| g.banned.contains(ip)) {
            culprits.retain(|(_, ip)| g.banned.contains(ip));
        }
        for (key, ip) in culprits {
            let strikes = {
                let s = g.strikes.entry(ip).or_default();
                *s += 1;
                *s
            };
            self.shared.metrics.hash_failures.inc();
            if strikes >= MAX_STRIKES {
                tracing::warn!(target: "nodus::torrent", id = %self.id, %ip, "banned after {strikes} bad pieces");
                g.banned.insert(ip);
                self.shared.metrics.peers_banned.inc();
                if let Some(picker) = g.picker.as_mut() {
                    picker.forget_blocks_of(key);
                }
                if let Some(p) = g.peers.get(&key) {
                    // Its queue may be full (HAVEs): the close must not be lost.
                    let tx = p.tx.clone();
                    tokio::spawn(async move { tx.send(PeerCmd::Close).await });
                }
            }
        }
    }

    /// A piece had whose data on disk went bad: no longer had (persisted), downloaded
    /// again from whoever has it.
    pub(crate) fn lose_piece(&self, index: u32) {
        let mut g = self.lock();
        let Some(picker) = g.picker.as_mut() else {
            return;
        };
        if !picker.have().get(index) {
            return;
        }
        picker.lose(index);
        self.fresh
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(index);
        g.completed_announced = false;
        g.have_dirty = true;
        drop(g);
        self.persist(None);
        self.wake.notify_one();
    }

    /// Whether a streaming reader may still come to piece `index`.
    fn ahead_of_a_reader(&self, index: u32) -> bool {
        self.lock()
            .picker
            .as_ref()
            .and_then(|p| p.lowest_cursor())
            .is_some_and(|first| index >= first)
    }

    pub(crate) fn have_piece(&self, index: u32) -> bool {
        self.lock()
            .picker
            .as_ref()
            .is_some_and(|p| p.have().get(index))
    }

    pub(crate) fn have_bits(&self) -> Option<Bitfield> {
        self.lock().picker.as_ref().map(|p| p.have().clone())
    }

    pub(crate) fn add_uploaded(&self, key: PeerKey, n: u64) {
        self.uploaded.fetch_add(n, Ordering::Relaxed);
        if let Some(p) = self.lock().peers.get_mut(&key) {
            p.up += n;
        }
    }

    /// Once every wanted piece is here: gives the finished files their lengths (and
    /// creates the empty ones), then reports the torrent complete: state, event and
    /// tracker. In that order, so whoever hears "complete" finds every file in place.
    pub(super) async fn on_complete(self: &Arc<Self>) {
        let (due, storage, have) = {
            let g = self.lock();
            let wanted_done = g.picker.as_ref().is_some_and(|p| p.is_complete());
            let have = g.picker.as_ref().map(|p| p.have().clone());
            (
                wanted_done && !g.completed_announced,
                g.storage.clone(),
                have,
            )
        };
        if !due {
            return;
        }
        if let (Some(s), Some(have)) = (storage, have) {
            let done = move |a: u32, b: u32| (a..=b).all(|i| have.get(i));
            let _ = tokio::task::spawn_blocking(move || s.finalize_lengths(done)).await;
        }
        self.lock().completed_announced = true;
        self.shared.emit(TorrentEvent::Completed {
            id: self.id.clone(),
        });
        self.announce_now(Some("completed"));
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.lock()
            .picker
            .as_ref()
            .is_some_and(|p| p.is_complete() && p.have().is_full())
    }
}

/// What became of a completed piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Stored,
    /// The data does not match its hash: the peers that sent it are struck.
    BadHash,
    /// The data was good but could not be written.
    DiskError,
}
