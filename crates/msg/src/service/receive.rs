//! Envelopes from peers and mailboxes: dedupe, decrypt, check, store, acknowledge.

use super::*;

impl Actor {
    pub(super) fn receive(
        &mut self,
        txn: &mut Txn,
        from: Origin,
        env: Envelope,
    ) -> Result<MsgReply, MsgError> {
        let id_hex = hex::encode(env.id);
        if txn.contains(store::SEEN, &id_hex)? {
            self.metrics.duplicates.inc();
            return Ok(MsgReply::Ack(env.id));
        }
        let reject = |reason| MsgReply::Reject { id: env.id, reason };
        let Some(sender) = peer_str(&env.sender) else {
            self.metrics.rejected(RejectReason::WrongSender);
            return Ok(reject(RejectReason::WrongSender));
        };
        if let Origin::Peer(f) = from
            && f.to_string() != sender
        {
            self.metrics.rejected(RejectReason::WrongSender);
            return Ok(reject(RejectReason::WrongSender));
        }
        let via_mailbox = matches!(from, Origin::Mailbox);
        let result = match env.body {
            Body::Olm {
                card,
                kind,
                ciphertext,
            } => self.receive_olm(txn, &sender, env.id, card, kind, &ciphertext, via_mailbox)?,
            Body::Group {
                group,
                session,
                ciphertext,
            } => self.receive_group(
                txn,
                &sender,
                env.id,
                group,
                &session,
                &ciphertext,
                via_mailbox,
            )?,
        };
        match result {
            Ok(()) => {
                txn.put(store::SEEN, &id_hex, &now_ms())?;
                self.metrics.received.inc();
                Ok(MsgReply::Ack(env.id))
            }
            Err(reason) => {
                self.metrics.rejected(reason);
                tracing::debug!(target: "nodus::msg", %sender, ?reason, "refusing an envelope");
                Ok(reject(reason))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn receive_olm(
        &mut self,
        txn: &mut Txn,
        sender: &str,
        id: MsgId,
        card: Option<ContactCard>,
        kind: u8,
        ciphertext: &[u8],
        via_mailbox: bool,
    ) -> Result<Result<(), RejectReason>, MsgError> {
        // Who is it? A contact we know, or a card bound to the sender's peer id.
        let new_card = match (&card, self.contacts.get(sender)) {
            (_, Some(_)) => None,
            (Some(c), None) => match c.verify() {
                Ok(p) if p.to_string() == sender => Some(c.clone()),
                _ => return Ok(Err(RejectReason::WrongSender)),
            },
            (None, None) => return Ok(Err(RejectReason::Undecryptable)),
        };
        let identity = match (&new_card, self.contacts.get(sender)) {
            (Some(c), _) => c.curve25519,
            (None, Some(c)) => c.card.curve25519,
            (None, None) => return Ok(Err(RejectReason::Undecryptable)),
        };
        let decrypted = match self.crypto.decrypt(sender, &identity, kind, ciphertext) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(target: "nodus::msg", %sender, kind, "cannot decrypt: {e}");
                return Ok(Err(RejectReason::Undecryptable));
            }
        };
        let plain: Plain = match wire::decode(&decrypted.plaintext) {
            Ok(p) => p,
            Err(_) => return Ok(Err(RejectReason::Malformed)),
        };
        // A replay under a fresh id: refused, and the ratchet stays where it was.
        if plain.id != id {
            return Ok(Err(RejectReason::Malformed));
        }
        if let Content::Batch(inner) = &plain.content
            && (inner.is_empty() || inner.iter().any(|p| !matches!(p.content, Content::Text(_))))
        {
            return Ok(Err(RejectReason::Malformed));
        }
        if let Content::Files { text, files } = &plain.content
            && (files.is_empty()
                || files.len() > wire::MAX_FILES
                || text.len() > MAX_TEXT
                || !files.iter().all(wire::FileOffer::well_formed))
        {
            return Ok(Err(RejectReason::Malformed));
        }
        let used_key = decrypted.used_one_time_key.is_some();
        self.crypto.accept(sender, decrypted);
        self.dirty_sessions.insert(sender.to_string());
        if used_key {
            self.dirty_account = true;
            if self.crypto.needs_keys() {
                self.publish.dirty = true;
            }
        }
        if let Some(c) = new_card {
            let contact = Contact {
                name: c.name.clone(),
                card: c,
                added_ms: now_ms(),
                out_seq: 0,
                invite_key: None,
            };
            txn.put(store::CONTACTS, sender, &contact)?;
            let info = self.contact_info(sender, &contact);
            self.contacts.insert(sender.to_string(), contact);
            self.emit(MsgEvent::Contact { contact: info });
            self.encrypt_pending(txn, sender)?;
        }
        match plain.content {
            Content::Text(text) => {
                let m = self.incoming_text(sender, &id, plain.seq, plain.sent_ms, text);
                self.accept_incoming(txn, m, &id, via_mailbox.then_some(sender))?;
            }
            Content::Files { text, files } => {
                let mut m = self.incoming_text(sender, &id, plain.seq, plain.sent_ms, text);
                let key = message_key(&m.conversation, m.sent_ms, m.seq, &id);
                m.files = self.take_offers(txn, sender, &key, &files)?;
                self.accept_incoming(txn, m, &id, via_mailbox.then_some(sender))?;
            }
            Content::Batch(inner) => {
                // One receipt for the lot, the bundle's own id first: that is the
                // outbox entry the sender forgets.
                let mut ids = vec![id];
                for p in inner {
                    if let Content::Text(text) = p.content {
                        let m = self.incoming_text(sender, &p.id, p.seq, p.sent_ms, text);
                        self.accept_incoming(txn, m, &p.id, None)?;
                        ids.push(p.id);
                    }
                }
                if via_mailbox {
                    self.queue_receipt(txn, sender, ids, false)?;
                }
            }
            Content::Receipt { ids, read } => {
                let state = if read {
                    MessageState::Read
                } else {
                    MessageState::Delivered
                };
                for mid in ids {
                    self.outbox_remove(txn, &store::out_key(&mid, sender))?;
                    if !self.outbox_has_id(&mid) {
                        self.set_state(txn, &mid, sender, state)?;
                    }
                }
            }
            Content::Signal { app, body } => {
                // Only from contacts, and only as long as the signal is fresh: a call's
                // ring delivered from a mailbox an hour later rings nobody.
                if let Some(c) = self.contacts.get(sender)
                    && body.len() <= wire::MAX_SIGNAL
                    && plain.sent_ms + SIGNAL_FRESH_MS >= now_ms()
                {
                    let signal = crate::Signal {
                        from: sender.to_string(),
                        from_name: c.name.clone(),
                        app,
                        body,
                        sent_ms: plain.sent_ms,
                    };
                    let signals = self.signals.clone();
                    self.later(move || {
                        let _ = signals.send(signal);
                    });
                }
            }
            Content::GroupKey { group, session_key } => {
                if let Ok((k, pickle)) = self.groups.add_inbound(group, sender, &session_key) {
                    txn.put(store::GROUP_IN, &k, &json(&pickle))?;
                }
            }
            Content::GroupState {
                group,
                name,
                epoch,
                members,
            } => self.on_group_state(txn, sender, group, name, epoch, members)?,
        }
        Ok(Ok(()))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn receive_group(
        &mut self,
        txn: &mut Txn,
        sender: &str,
        id: MsgId,
        group: MsgId,
        session: &str,
        ciphertext: &[u8],
        via_mailbox: bool,
    ) -> Result<Result<(), RejectReason>, MsgError> {
        let Some(g) = self.group_state.get(&group) else {
            return Ok(Err(RejectReason::UnknownGroup));
        };
        let Some(member) = g
            .members
            .iter()
            .find(|c| peer_str(&c.peer).as_deref() == Some(sender))
        else {
            return Ok(Err(RejectReason::UnknownGroup));
        };
        let sender_name = self
            .contacts
            .get(sender)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| member.name.clone());
        let (plaintext, k, pickle) = match self.groups.decrypt(group, sender, session, ciphertext) {
            Ok(r) => r,
            Err(crate::megolm::GroupCryptoError::UnknownSession) => {
                return Ok(Err(RejectReason::MissingKey));
            }
            Err(_) => return Ok(Err(RejectReason::Undecryptable)),
        };
        let plain: GroupPlain = match wire::decode(&plaintext) {
            Ok(p) => p,
            Err(_) => return Ok(Err(RejectReason::Malformed)),
        };
        // Older than the ids we remember: it can only be a replay.
        if plain.id != id || plain.sent_ms + SEEN_FOR_MS < now_ms() {
            return Ok(Err(RejectReason::Malformed));
        }
        txn.put(store::GROUP_IN, &k, &json(&pickle))?;
        let m = Message {
            id: hex::encode(id),
            conversation: group_conv(&group),
            from: sender.to_string(),
            from_name: sender_name,
            outgoing: false,
            text: plain.text,
            state: MessageState::Received,
            seq: plain.seq,
            sent_ms: plain.sent_ms,
            stored_ms: now_ms(),
            seen: false,
            files: Vec::new(),
            path: None,
        };
        let receipt_to = (via_mailbox && self.contacts.contains_key(sender)).then_some(sender);
        self.accept_incoming(txn, m, &id, receipt_to)?;
        Ok(Ok(()))
    }

    fn incoming_text(
        &self,
        sender: &str,
        id: &MsgId,
        seq: u64,
        sent_ms: u64,
        text: String,
    ) -> Message {
        Message {
            id: hex::encode(id),
            conversation: sender.to_string(),
            from: sender.to_string(),
            from_name: self
                .contacts
                .get(sender)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            outgoing: false,
            text,
            state: MessageState::Received,
            seq,
            sent_ms,
            stored_ms: now_ms(),
            seen: false,
            files: Vec::new(),
            path: None,
        }
    }

    /// Stores an incoming message, tells the event stream at once, and (for one that came from a
    /// mailbox, which the sender cannot know arrived) sends a delivery receipt.
    fn accept_incoming(
        &mut self,
        txn: &mut Txn,
        m: Message,
        id: &MsgId,
        receipt_to: Option<&str>,
    ) -> Result<(), MsgError> {
        self.store_message(txn, &m, id)?;
        self.metrics.messages_received.inc();
        let key = message_key(&m.conversation, m.sent_ms, m.seq, id);
        txn.put(store::UNSEEN, &key, &())?;
        // Shown at once, acknowledged only after the commit (the acknowledgement leaves
        // with the batch's replies): after a crash in between, the sender sends it again
        // and it is shown again, the same id. Anything that asks the store about it
        // queues behind this batch's commit, so it sees what the event said.
        let _ = self.events.send(MsgEvent::Message { message: m });
        if let Some(peer) = receipt_to {
            self.queue_receipt(txn, peer, vec![*id], false)?;
        }
        Ok(())
    }
}
