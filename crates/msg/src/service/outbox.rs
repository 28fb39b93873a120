//! Encryption and the outbox: queueing, sessions, dispatch to the delivery workers, and what comes back from them.

use super::*;

impl Actor {
    /// Puts a pairwise message in the outbox, encrypted now if a session exists (or
    /// can be made from an invite key), else kept until the peer's keys are fetched.
    pub(super) fn queue_olm(
        &mut self,
        txn: &mut Txn,
        peer: &str,
        plain: Plain,
        user: bool,
    ) -> Result<(), MsgError> {
        self.queue_olm_item(txn, peer, plain, user, Vec::new())
    }

    /// Queues the texts written to each peer during this batch: several to one peer go
    /// as bundles (one Olm message, one outbox entry), a lone one as itself.
    pub(super) fn flush_bundles(&mut self, txn: &mut Txn) -> Result<(), MsgError> {
        for (peer, plains) in std::mem::take(&mut self.bundling) {
            let mut chunk: Vec<Plain> = Vec::new();
            let mut bytes = 0;
            for p in plains {
                let len = match &p.content {
                    Content::Text(t) => t.len(),
                    _ => 0,
                };
                if !chunk.is_empty() && (chunk.len() >= BUNDLE_MAX || bytes + len > BUNDLE_BYTES) {
                    self.queue_bundle(txn, &peer, std::mem::take(&mut chunk))?;
                    bytes = 0;
                }
                bytes += len;
                chunk.push(p);
            }
            self.queue_bundle(txn, &peer, chunk)?;
        }
        Ok(())
    }

    fn queue_bundle(
        &mut self,
        txn: &mut Txn,
        peer: &str,
        mut plains: Vec<Plain>,
    ) -> Result<(), MsgError> {
        if plains.len() <= 1 {
            return match plains.pop() {
                Some(p) => self.queue_olm(txn, peer, p, true),
                None => Ok(()),
            };
        }
        let members = plains.iter().map(|p| p.id).collect();
        let outer = Plain {
            id: wire::new_id(),
            seq: 0,
            sent_ms: now_ms(),
            content: Content::Batch(plains),
        };
        self.queue_olm_item(txn, peer, outer, true, members)
    }

    fn queue_olm_item(
        &mut self,
        txn: &mut Txn,
        peer: &str,
        plain: Plain,
        user: bool,
        members: Vec<MsgId>,
    ) -> Result<(), MsgError> {
        self.order += 1;
        let mut item = OutItem {
            id: plain.id,
            to: peer.to_string(),
            envelope: None,
            pending: None,
            prekey_plain: None,
            mailboxes: Vec::new(),
            user,
            stored: false,
            attempts: 0,
            created_ms: now_ms(),
            order: self.order,
            members,
        };
        if self.ensure_session(txn, peer)? {
            self.encrypt_item(&mut item, plain)?;
        } else {
            item.pending = Some(plain);
            self.want_keys(peer);
        }
        self.outbox_put(txn, item)?;
        self.dirty_dispatch = true;
        Ok(())
    }

    pub(super) fn ensure_session(&mut self, txn: &mut Txn, peer: &str) -> Result<bool, MsgError> {
        if self.crypto.has_session(peer) {
            return Ok(true);
        }
        let Some(c) = self.contacts.get_mut(peer) else {
            return Ok(false);
        };
        let Some(otk) = c.invite_key.take() else {
            return Ok(false);
        };
        let identity = c.card.curve25519;
        txn.put(store::CONTACTS, peer, c)?;
        match self.crypto.start_session(peer, &identity, &otk) {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::warn!(target: "nodus::msg", %peer, "invite key unusable: {e}");
                Ok(false)
            }
        }
    }

    pub(super) fn encrypt_item(
        &mut self,
        item: &mut OutItem,
        plain: Plain,
    ) -> Result<(), MsgError> {
        let (bytes, kind) = self.encrypt_envelope(&item.to.clone(), &plain)?;
        item.envelope = Some(bytes);
        item.prekey_plain = (kind == 0).then_some(plain);
        Ok(())
    }

    pub(super) fn encrypt_envelope(
        &mut self,
        peer: &str,
        plain: &Plain,
    ) -> Result<(Vec<u8>, u8), MsgError> {
        let (kind, ciphertext) = self
            .crypto
            .encrypt(peer, &wire::encode(plain))
            .map_err(MsgError::from)?;
        self.dirty_sessions.insert(peer.to_string());
        let envelope = Envelope {
            id: plain.id,
            sender: self.me.to_bytes(),
            body: Body::Olm {
                card: (kind == 0).then(|| self.card.clone()),
                kind,
                ciphertext,
            },
        };
        Ok((wire::encode(&envelope), kind))
    }

    /// Encrypts, in order, the items that waited for a session with `peer`.
    pub(super) fn encrypt_pending(&mut self, txn: &mut Txn, peer: &str) -> Result<(), MsgError> {
        let mut waiting: Vec<OutItem> = self
            .outbox
            .values()
            .filter(|i| i.to == peer && i.pending.is_some())
            .cloned()
            .collect();
        if waiting.is_empty() || !self.ensure_session(txn, peer)? {
            return Ok(());
        }
        waiting.sort_by_key(|i| i.order);
        for mut item in waiting {
            let Some(plain) = item.pending.take() else {
                continue;
            };
            self.encrypt_item(&mut item, plain)?;
            self.outbox_put(txn, item)?;
        }
        self.dirty_dispatch = true;
        Ok(())
    }

    pub(super) fn want_keys(&mut self, peer: &str) {
        if let Some(at) = self.key_fetches.get(peer)
            && at.elapsed() < Duration::from_secs(5)
        {
            return;
        }
        let Ok(p) = peer.parse::<PeerId>() else {
            return;
        };
        // An anonymous identity's keys are not in the DHT (looking them up would tie
        // this node to it): a session starts from an invite's one-time key.
        if self.cfg.anonymous {
            return;
        }
        self.key_fetches.insert(peer.to_string(), Instant::now());
        let net = self.net.clone();
        let inputs = self.inputs.clone();
        self.later(move || {
            tokio::spawn(async move {
                let bundle = match net.get_record(card::bundle_key(&p)).await {
                    Ok(v) => wire::decode::<KeyBundle>(&v).map_err(DeliveryError::from),
                    Err(e) => Err(e.into()),
                };
                let _ = inputs.send(Input::Keys { peer: p, bundle }).await;
            });
        });
    }

    pub(super) fn on_keys(
        &mut self,
        txn: &mut Txn,
        peer: PeerId,
        bundle: Result<KeyBundle, DeliveryError>,
    ) -> Result<(), MsgError> {
        let p = peer.to_string();
        let bundle = match bundle.and_then(|b| match b.verify() {
            Ok(signer) if signer == peer => Ok(b),
            Ok(_) => Err(DeliveryError::ForeignBundle),
            Err(e) => Err(e.into()),
        }) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(target: "nodus::msg", peer = %p, "no usable key bundle yet: {e}");
                return Ok(());
            }
        };
        self.key_fetches.remove(&p);
        if self.crypto.has_session(&p) {
            return self.encrypt_pending(txn, &p);
        }
        let Some(c) = self.contacts.get(&p) else {
            return Ok(());
        };
        if c.card.curve25519 != bundle.card.curve25519 {
            tracing::warn!(target: "nodus::msg", peer = %p, "published keys differ from the contact's card; not using them");
            return Ok(());
        }
        let otk = if bundle.one_time_keys.is_empty() || self.use_fallback.remove(&p) {
            bundle.fallback
        } else {
            let i = rand::random_range(0..bundle.one_time_keys.len());
            Some(bundle.one_time_keys[i])
        };
        let Some(otk) = otk else { return Ok(()) };
        let identity = c.card.curve25519;
        if let Err(e) = self.crypto.start_session(&p, &identity, &otk) {
            tracing::warn!(target: "nodus::msg", peer = %p, "cannot open a session: {e}");
            return Ok(());
        }
        self.encrypt_pending(txn, &p)
    }

    pub(super) fn dispatch(&mut self) {
        let now = Instant::now();
        // Nothing overtakes an earlier item still waiting for keys: a group message
        // must not reach a member before our group key does.
        // Nor one waiting to retry a failed delivery, unless mailboxes hold it already.
        let mut blocked: HashMap<&str, u64> = HashMap::new();
        for (k, i) in &self.outbox {
            let waiting = i.pending.is_some()
                || (!i.stored && self.retry_at.get(k).is_some_and(|t| *t > now));
            if waiting {
                let b = blocked.entry(i.to.as_str()).or_insert(u64::MAX);
                *b = (*b).min(i.order);
            }
        }
        let mut due: Vec<(&String, &OutItem)> = self
            .outbox
            .iter()
            .filter(|(k, i)| {
                i.envelope.is_some()
                    && blocked.get(i.to.as_str()).is_none_or(|b| i.order <= *b)
                    && !self.in_flight.contains(*k)
                    && self.retry_at.get(*k).is_none_or(|t| *t <= now)
            })
            .collect();
        due.sort_by_key(|(_, i)| i.order);
        let mut per_peer: HashMap<String, Vec<Outgoing>> = HashMap::new();
        let mut sent = Vec::new();
        for (k, i) in due {
            let Some(bytes) = i.envelope.clone() else {
                continue;
            };
            per_peer.entry(i.to.clone()).or_default().push(Outgoing {
                key: k.clone(),
                bytes,
            });
            sent.push((
                k.clone(),
                i.message_ids().to_vec(),
                i.to.clone(),
                i.user && !i.stored,
            ));
        }
        for (key, ..) in &sent {
            self.in_flight.insert(key.clone());
        }
        for (peer, batch) in per_peer {
            let Ok(p) = peer.parse::<PeerId>() else {
                continue;
            };
            self.hand_to_worker(p, batch);
        }
        // "sent" is an event only; the stored state stays queued until acknowledged.
        for (_, ids, to, user) in sent {
            if !user {
                continue;
            }
            for id in ids {
                let _ = self.events.send(MsgEvent::State {
                    id: hex::encode(id),
                    conversation: to.clone(),
                    to: to.clone(),
                    state: MessageState::Sent,
                    path: None,
                });
            }
        }
    }

    pub(super) fn hand_to_worker(&mut self, peer: PeerId, batch: Vec<Outgoing>) {
        let tx = match self.workers.get(&peer) {
            Some(tx) if !tx.is_closed() => tx.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(64);
                tokio::spawn(delivery::worker(
                    peer,
                    self.route.clone(),
                    rx,
                    self.inputs.clone(),
                ));
                self.workers.insert(peer, tx.clone());
                tx
            }
        };
        if let Err(e) = tx.try_send(batch) {
            // A full or closed worker: give the items back for the next round.
            let batch = match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
            };
            for o in batch {
                self.in_flight.remove(&o.key);
            }
            self.dirty_dispatch = true;
        }
    }

    pub(super) fn on_replies(
        &mut self,
        txn: &mut Txn,
        peer: PeerId,
        replies: Vec<(String, MsgReply)>,
        path: Option<DeliveryPath>,
    ) -> Result<(), MsgError> {
        let to = peer.to_string();
        let mut back_online = false;
        for (key, reply) in replies {
            self.in_flight.remove(&key);
            let Some(item) = self.outbox.get(&key).cloned() else {
                continue;
            };
            // Put back to plaintext by a refused session meanwhile: this reply is stale.
            if item.envelope.is_none() {
                continue;
            }
            self.retry_at.remove(&key);
            match reply {
                MsgReply::Ack(_) => {
                    self.metrics.sent.inc();
                    back_online = true;
                    self.outbox_remove(txn, &key)?;
                    if item.user {
                        for id in item.message_ids() {
                            if !self.outbox_has_id(id) {
                                if let Some(path) = &path {
                                    self.set_path(txn, id, path)?;
                                }
                                self.set_state(txn, id, &to, MessageState::Delivered)?;
                            }
                        }
                    }
                }
                MsgReply::Reject { reason, .. }
                    if reason == RejectReason::Undecryptable && item.prekey_plain.is_some() =>
                {
                    self.restart_session(txn, &to)?;
                }
                // A group message that overtook its key or the membership (they come
                // from other members, in no set order): try again a little later.
                MsgReply::Reject {
                    reason: RejectReason::MissingKey | RejectReason::UnknownGroup,
                    ..
                } if item.attempts < TRANSIENT_ATTEMPTS => {
                    let mut item = item;
                    item.attempts += 1;
                    let wait = config::retry_after(&self.cfg, item.attempts);
                    self.retry_at.insert(key.clone(), Instant::now() + wait);
                    self.outbox_put(txn, item)?;
                }
                MsgReply::Reject { reason, .. } => {
                    tracing::warn!(target: "nodus::msg", peer = %to, ?reason, "recipient refused a message");
                    self.outbox_remove(txn, &key)?;
                    if item.user {
                        for id in item.message_ids() {
                            self.set_state(txn, id, &to, MessageState::Failed)?;
                        }
                    }
                }
            }
        }
        if back_online && self.unreachable.contains(&to) {
            // The peer answers: what waits for a retry (or sits in mailboxes) goes now.
            self.retry_now(&to);
        }
        self.dirty_dispatch = true;
        Ok(())
    }

    /// Sends at once what waits for `peer` (a scan of the outbox: only for peers that
    /// failed before).
    pub(super) fn retry_now(&mut self, peer: &str) {
        if !self.unreachable.remove(peer) {
            return;
        }
        let now = Instant::now();
        for (k, i) in &self.outbox {
            if i.to == peer && i.envelope.is_some() && !self.in_flight.contains(k) {
                self.retry_at.insert(k.clone(), now);
                self.dirty_dispatch = true;
            }
        }
    }

    /// The recipient refused our new session (its one-time key was already taken by
    /// another sender). Every item encrypted on that session goes back to plaintext and
    /// waits for a session made from the recipient's fallback key, which cannot run out.
    pub(super) fn restart_session(&mut self, txn: &mut Txn, peer: &str) -> Result<(), MsgError> {
        tracing::debug!(target: "nodus::msg", %peer, "session refused; starting a new one from the fallback key");
        self.crypto.forget_sessions(peer);
        self.dirty_sessions.insert(peer.to_string());
        self.use_fallback.insert(peer.to_string());
        let items: Vec<OutItem> = self
            .outbox
            .values()
            .filter(|i| i.to == peer && i.prekey_plain.is_some())
            .cloned()
            .collect();
        for mut item in items {
            item.pending = item.prekey_plain.take();
            item.envelope = None;
            // Copies in mailboxes are on the refused session: useless, forget them.
            if let Ok(to) = peer.parse::<PeerId>() {
                for b in item
                    .mailboxes
                    .drain(..)
                    .filter_map(|b| b.parse::<PeerId>().ok())
                {
                    self.retractions.entry((b, to)).or_default().push(item.id);
                }
            }
            item.stored = false;
            let key = item.key();
            self.in_flight.remove(&key);
            self.retry_at.remove(&key);
            self.outbox_put(txn, item)?;
        }
        self.key_fetches.remove(peer);
        self.want_keys(peer);
        Ok(())
    }

    pub(super) fn outbox_has_id(&self, id: &MsgId) -> bool {
        self.outbox_ids.get(id).is_some_and(|n| *n > 0)
    }

    /// Adds or replaces an outbox entry, on disk and in memory.
    pub(super) fn outbox_put(&mut self, txn: &mut Txn, item: OutItem) -> Result<(), MsgError> {
        let key = item.key();
        txn.put(store::OUTBOX, &key, &item)?;
        if self.outbox.insert(key, item.clone()).is_none() {
            for id in item.message_ids() {
                *self.outbox_ids.entry(*id).or_default() += 1;
            }
        }
        Ok(())
    }

    pub(super) fn outbox_remove(
        &mut self,
        txn: &mut Txn,
        key: &str,
    ) -> Result<Option<OutItem>, MsgError> {
        let Some(item) = self.outbox.remove(key) else {
            return Ok(None);
        };
        txn.remove(store::OUTBOX, key)?;
        self.in_flight.remove(key);
        self.retry_at.remove(key);
        for id in item.message_ids() {
            if let Some(n) = self.outbox_ids.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    self.outbox_ids.remove(id);
                }
            }
        }
        if let Ok(to) = item.to.parse::<PeerId>() {
            for b in item
                .mailboxes
                .iter()
                .filter_map(|b| b.parse::<PeerId>().ok())
            {
                self.retractions.entry((b, to)).or_default().push(item.id);
            }
        }
        Ok(Some(item))
    }

    pub(super) fn on_send_failed(
        &mut self,
        txn: &mut Txn,
        peer: PeerId,
        keys: Vec<String>,
        error: DeliveryError,
    ) -> Result<(), MsgError> {
        self.unreachable.insert(peer.to_string());
        tracing::debug!(target: "nodus::msg", %peer, n = keys.len(), "direct delivery failed: {error}");
        let Some(card) = self.card_of(&peer.to_string()) else {
            for k in keys {
                self.in_flight.remove(&k);
            }
            return Ok(());
        };
        let mut to_store = Vec::new();
        for key in keys {
            let Some(item) = self.outbox.get_mut(&key) else {
                self.in_flight.remove(&key);
                continue;
            };
            item.attempts += 1;
            txn.put(store::OUTBOX, &key, item)?;
            let wait = config::retry_after(&self.cfg, item.attempts);
            self.retry_at.insert(key.clone(), Instant::now() + wait);
            if item.stored {
                self.in_flight.remove(&key);
            } else if let Some(bytes) = &item.envelope {
                match seal::seal(&card.seal, bytes, &peer.to_bytes()) {
                    Some(sealed) => to_store.push((key.clone(), item.id, item.order, sealed)),
                    None => {
                        self.in_flight.remove(&key);
                    }
                }
            }
        }
        if to_store.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = to_store.iter().map(|(k, ..)| k.clone()).collect();
        let items: Vec<(MsgId, u64, Vec<u8>)> = to_store
            .into_iter()
            .map(|(_, id, o, s)| (id, o, s))
            .collect();
        let (via, inputs) = (self.mailboxes.clone(), self.inputs.clone());
        let replicas = self.cfg.mailbox_replicas.max(1);
        let ttl = self.cfg.mailbox_ttl_secs.min(u32::MAX as u64) as u32;
        self.later(move || {
            tokio::spawn(async move {
                let result = delivery::store(via, peer, items, replicas, ttl).await;
                let _ = inputs.send(Input::Stored { keys, result }).await;
            });
        });
        Ok(())
    }

    pub(super) fn card_of(&self, peer: &str) -> Option<ContactCard> {
        self.contacts.get(peer).map(|c| c.card.clone())
    }

    pub(super) fn on_stored(
        &mut self,
        txn: &mut Txn,
        keys: Vec<String>,
        result: Result<Vec<PeerId>, DeliveryError>,
    ) -> Result<(), MsgError> {
        for key in keys {
            self.in_flight.remove(&key);
            let Some(item) = self.outbox.get_mut(&key) else {
                continue;
            };
            match &result {
                Ok(boxes) => {
                    item.stored = true;
                    item.mailboxes = boxes.iter().map(|b| b.to_string()).collect();
                    txn.put(store::OUTBOX, &key, item)?;
                    let wait = config::retry_after(&self.cfg, item.attempts);
                    self.retry_at.insert(key.clone(), Instant::now() + wait);
                    let (ids, to, user) = (item.message_ids().to_vec(), item.to.clone(), item.user);
                    if user {
                        let path = DeliveryPath::Mailboxes {
                            holders: boxes.iter().map(|b| b.to_string()).collect(),
                        };
                        for id in ids {
                            self.set_path(txn, &id, &path)?;
                            self.set_state(txn, &id, &to, MessageState::Stored)?;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(target: "nodus::msg", to = %item.to, "mailbox store failed: {e}");
                }
            }
        }
        Ok(())
    }
}
