//! The HTTP API's commands: contacts, sending, inbox and history.

use super::*;

impl Actor {
    pub(super) fn command(&mut self, txn: &mut Txn, cmd: Command) -> Result<(), MsgError> {
        match cmd {
            Command::Invite(reply) => {
                let otk = self.crypto.new_one_time_keys(1);
                let r = match otk.first() {
                    Some(k) => {
                        self.dirty_account = true;
                        Invite::new(&self.key, self.card.clone(), *k)
                            .map(|i| i.to_code())
                            .map_err(MsgError::from)
                    }
                    None => Err(MsgError::Store(StoreError::Damaged(
                        "no one-time key generated".into(),
                    ))),
                };
                self.reply(reply, r);
            }
            Command::AddContact { code, name, reply } => {
                let r = self.add_contact(txn, &code, name);
                self.reply(reply, r);
            }
            Command::Contacts(reply) => {
                let mut list: Vec<ContactInfo> = self
                    .contacts
                    .iter()
                    .map(|(p, c)| self.contact_info(p, c))
                    .collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                self.reply(reply, Ok(list));
            }
            Command::Send { to, text, reply } => {
                let r = self.send_text(txn, &to, text);
                self.reply(reply, r);
            }
            Command::SendFiles {
                to,
                text,
                files,
                reply,
            } => {
                let r = if self.cfg.anonymous {
                    Err(MsgError::NotAnonymousYet("sending files"))
                } else {
                    self.send_files(txn, &to, text, files)
                };
                self.reply(reply, r);
            }
            Command::File { hash, reply } => {
                let r = self.file_by_hash(txn, &hash.to_ascii_lowercase());
                self.reply(reply, r);
            }
            Command::Signal {
                to,
                app,
                body,
                reply,
            } => {
                // A call's signals carry the caller's addresses.
                let r = if self.cfg.anonymous {
                    Err(MsgError::NotAnonymousYet(
                        "calling (its signals carry addresses)",
                    ))
                } else {
                    self.send_signal(txn, &to, app, body)
                };
                self.reply(reply, r);
            }
            Command::Inbox { all, reply } => {
                let r = self.inbox(txn, all);
                self.reply(reply, r);
            }
            Command::History { with, reply } => {
                let r = self.history(txn, &with);
                self.reply(reply, r);
            }
            Command::GroupCreate { name, reply } => {
                let r = self.group_create(txn, name);
                self.reply(reply, r);
            }
            Command::GroupAdd {
                group,
                contact,
                reply,
            } => {
                let r = self.group_change(txn, &group, &contact, true);
                self.reply(reply, r);
            }
            Command::GroupRemove {
                group,
                contact,
                reply,
            } => {
                let r = self.group_change(txn, &group, &contact, false);
                self.reply(reply, r);
            }
            Command::GroupSend { group, text, reply } => {
                let r = self.group_send(txn, &group, text);
                self.reply(reply, r);
            }
            Command::Groups(reply) => {
                let mut list: Vec<GroupInfo> = self
                    .group_state
                    .iter()
                    .map(|(id, g)| self.group_info(id, g))
                    .collect();
                list.sort_by(|a, b| a.name.cmp(&b.name));
                self.reply(reply, Ok(list));
            }
            Command::Stats(reply) => {
                let s = MsgStats {
                    contacts: self.contacts.len(),
                    groups: self.group_state.len(),
                    outbox: self.outbox.len(),
                    mailbox_items: self.mailbox_total,
                    one_time_keys: self.crypto.published.len(),
                    rejected: self.metrics.rejected_total.get(),
                    duplicates: self.metrics.duplicates.get(),
                    received: self.metrics.received.get(),
                    messages_received: self.metrics.messages_received.get(),
                    identity: self.me_str.clone(),
                    anonymous: self.cfg.anonymous,
                };
                self.reply(reply, Ok(s));
            }
            Command::Poll(reply) => {
                // Its own poll, not one already running: that one may have asked before
                // what the caller expects arrived.
                let (via, inputs) = (self.mailboxes.clone(), self.inputs.clone());
                let replicas = self.cfg.mailbox_replicas.max(1);
                self.later(move || {
                    tokio::spawn(delivery::poll(via, replicas, inputs, Some(reply), false));
                });
            }
        }
        Ok(())
    }

    pub(super) fn contact_info(&self, peer: &str, c: &Contact) -> ContactInfo {
        ContactInfo {
            peer_id: peer.to_string(),
            name: c.name.clone(),
            session: self.crypto.has_session(peer),
            added_ms: c.added_ms,
            previous_name: None,
        }
    }

    pub(super) fn group_info(&self, id: &MsgId, g: &Group) -> GroupInfo {
        GroupInfo {
            id: hex::encode(id),
            name: g.name.clone(),
            owner: g.owner.clone(),
            epoch: g.epoch,
            members: g
                .members
                .iter()
                .filter_map(|c| {
                    let peer = peer_str(&c.peer)?;
                    let name = self
                        .contacts
                        .get(&peer)
                        .map(|k| k.name.clone())
                        .unwrap_or_else(|| {
                            if peer == self.me_str {
                                self.card.name.clone()
                            } else {
                                c.name.clone()
                            }
                        });
                    Some(GroupMember {
                        peer_id: peer,
                        name,
                    })
                })
                .collect(),
        }
    }

    pub(super) fn add_contact(
        &mut self,
        txn: &mut Txn,
        code: &str,
        name: Option<String>,
    ) -> Result<ContactInfo, MsgError> {
        let (invite, peer) = Invite::from_code(code)?;
        if peer == self.me {
            return Err(MsgError::OwnCode);
        }
        if let Some(n) = &name {
            if n.len() > card::MAX_NAME {
                return Err(card::CardError::NameTooLong.into());
            }
            if n.trim().is_empty() {
                return Err(card::CardError::NameEmpty.into());
            }
        }
        let peer = peer.to_string();
        let previous_name = self.contacts.get(&peer).map(|c| c.name.clone());
        let mut c = self.contacts.remove(&peer).unwrap_or(Contact {
            card: invite.card.clone(),
            name: String::new(),
            added_ms: now_ms(),
            out_seq: 0,
            invite_key: None,
        });
        c.card = invite.card.clone();
        c.name = name.unwrap_or_else(|| invite.card.name.clone());
        if !self.crypto.has_session(&peer) {
            c.invite_key = Some(invite.one_time_key);
        }
        txn.put(store::CONTACTS, &peer, &c)?;
        let info = self.contact_info(&peer, &c);
        self.contacts.insert(peer.clone(), c);
        // Anything waiting for keys to this peer can go now.
        self.encrypt_pending(txn, &peer)?;
        self.emit(MsgEvent::Contact {
            contact: info.clone(),
        });
        Ok(ContactInfo {
            previous_name,
            ..info
        })
    }

    pub(super) fn resolve_contact(&self, who: &str) -> Result<String, MsgError> {
        if self.contacts.contains_key(who) {
            return Ok(who.to_string());
        }
        let matches: Vec<&String> = self
            .contacts
            .iter()
            .filter(|(_, c)| c.name.eq_ignore_ascii_case(who))
            .map(|(p, _)| p)
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(MsgError::NoContact(who.to_string())),
            many => Err(MsgError::Ambiguous(
                who.to_string(),
                many.iter().map(|p| short(p)).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    pub(super) fn resolve_group(&self, which: &str) -> Result<MsgId, MsgError> {
        let which = which.strip_prefix("group:").unwrap_or(which);
        if let Some(id) = parse_id(which)
            && self.group_state.contains_key(&id)
        {
            return Ok(id);
        }
        let matches: Vec<&MsgId> = self
            .group_state
            .iter()
            .filter(|(_, g)| g.name.eq_ignore_ascii_case(which))
            .map(|(id, _)| id)
            .collect();
        match matches.as_slice() {
            [one] => Ok(**one),
            [] => Err(MsgError::NoGroup(which.to_string())),
            many => Err(MsgError::Ambiguous(
                which.to_string(),
                many.iter().map(hex::encode).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    pub(super) fn check_text(text: &str) -> Result<(), MsgError> {
        if text.trim().is_empty() {
            return Err(MsgError::EmptyText);
        }
        if text.len() > MAX_TEXT {
            return Err(MsgError::TextTooLong(text.len()));
        }
        Ok(())
    }

    pub(super) fn send_text(
        &mut self,
        txn: &mut Txn,
        to: &str,
        text: String,
    ) -> Result<Message, MsgError> {
        Self::check_text(&text)?;
        let peer = self.resolve_contact(to)?;
        let seq = self.next_seq(&peer)?;
        let plain = Plain {
            id: wire::new_id(),
            seq,
            sent_ms: now_ms(),
            content: Content::Text(text.clone()),
        };
        let msg = self.outgoing_message(&peer, (&plain.id, seq, plain.sent_ms), text, Vec::new());
        self.store_message(txn, &msg, &plain.id)?;
        // Queued at the end of the batch, with the other texts to this peer.
        self.bundling.entry(peer).or_default().push(plain);
        self.dirty_dispatch = true;
        self.emit(MsgEvent::Message {
            message: msg.clone(),
        });
        Ok(msg)
    }

    /// How a message this node writes to `conversation` is shown and stored.
    pub(super) fn outgoing_message(
        &self,
        conversation: &str,
        (id, seq, sent_ms): (&MsgId, u64, u64),
        text: String,
        files: Vec<crate::types::FileInfo>,
    ) -> Message {
        Message {
            id: hex::encode(id),
            conversation: conversation.to_string(),
            from: self.me_str.clone(),
            from_name: self.card.name.clone(),
            outgoing: true,
            text,
            state: MessageState::Queued,
            seq,
            sent_ms,
            stored_ms: sent_ms,
            seen: true,
            files,
            path: None,
        }
    }

    pub(super) fn send_signal(
        &mut self,
        txn: &mut Txn,
        to: &str,
        app: String,
        body: Vec<u8>,
    ) -> Result<(), MsgError> {
        if app.is_empty() || app.len() > wire::MAX_SIGNAL_APP || body.len() > wire::MAX_SIGNAL {
            return Err(MsgError::SignalTooLarge);
        }
        let peer = self.resolve_contact(to)?;
        let plain = Plain {
            id: wire::new_id(),
            seq: 0,
            sent_ms: now_ms(),
            content: Content::Signal { app, body },
        };
        self.queue_olm(txn, &peer, plain, false)
    }

    pub(super) fn next_seq(&mut self, peer: &str) -> Result<u64, MsgError> {
        let c = self
            .contacts
            .get_mut(peer)
            .ok_or_else(|| MsgError::NoContact(peer.to_string()))?;
        c.out_seq += 1;
        let seq = c.out_seq;
        self.dirty_contacts.insert(peer.to_string());
        Ok(seq)
    }

    pub(super) fn store_message(
        &mut self,
        txn: &mut Txn,
        m: &Message,
        id: &MsgId,
    ) -> Result<(), MsgError> {
        let key = message_key(&m.conversation, m.sent_ms, m.seq, id);
        txn.put(store::MESSAGES, &key, &store::MessageRow::from(m))?;
        txn.put_raw(store::MSG_INDEX, &hex::encode(id), key.as_bytes())?;
        if !m.files.is_empty() {
            txn.put(store::FILES, &key, &files::refs_of(&m.files))?;
        }
        if m.outgoing {
            txn.put(store::MSG_STATE, &key, &m.state)?;
        }
        Ok(())
    }

    /// An outgoing message's state: from `MSG_STATE`, else (a message stored before that
    /// table) from its row. `None` for an incoming or unknown one.
    fn outgoing_state(&self, txn: &mut Txn, key: &str) -> Result<Option<MessageState>, MsgError> {
        if let Some(s) = txn.get::<MessageState>(store::MSG_STATE, key)? {
            return Ok(Some(s));
        }
        Ok(txn
            .get::<store::MessageRow>(store::MESSAGES, key)?
            .filter(|m| m.outgoing)
            .map(|m| m.state))
    }

    /// Gives rows their current state: outgoing ones theirs from [`store::MSG_STATE`],
    /// incoming ones `seen` unless [`store::UNSEEN`] holds them. Neither is written into
    /// the row, which holds the whole text. Files come from [`store::FILES`].
    fn with_states(&self, txn: &mut Txn, rows: &mut [(String, Message)]) -> Result<(), MsgError> {
        for (key, m) in rows.iter_mut() {
            m.files = self.files_of(txn, key, m.outgoing)?;
            if !m.outgoing {
                m.seen = !txn.contains(store::UNSEEN, key)?;
            } else {
                if let Some(s) = txn.get::<MessageState>(store::MSG_STATE, key)? {
                    m.state = s;
                }
                m.path = txn
                    .get::<store::PathRow>(store::MSG_PATH, key)?
                    .map(Into::into);
            }
        }
        Ok(())
    }

    /// Moves an outgoing message forward (never back) and tells the event stream.
    pub(super) fn set_state(
        &mut self,
        txn: &mut Txn,
        id: &MsgId,
        to: &str,
        state: MessageState,
    ) -> Result<(), MsgError> {
        let Some(key) = txn.get_raw_str(store::MSG_INDEX, &hex::encode(id))? else {
            return Ok(());
        };
        match self.outgoing_state(txn, &key)? {
            Some(now) if now < state => {}
            _ => return Ok(()),
        }
        txn.put(store::MSG_STATE, &key, &state)?;
        let conversation = key.split('|').next().unwrap_or_default().to_string();
        let path = txn
            .get::<store::PathRow>(store::MSG_PATH, &key)?
            .map(Into::into);
        self.emit(MsgEvent::State {
            id: hex::encode(id),
            conversation,
            to: to.to_string(),
            state,
            path,
        });
        Ok(())
    }

    /// Records the way an outgoing message went (the last one, if it went twice).
    pub(super) fn set_path(
        &mut self,
        txn: &mut Txn,
        id: &MsgId,
        path: &DeliveryPath,
    ) -> Result<(), MsgError> {
        if let Some(key) = txn.get_raw_str(store::MSG_INDEX, &hex::encode(id))? {
            txn.put(store::MSG_PATH, &key, &store::PathRow::from(path))?;
        }
        Ok(())
    }

    pub(super) fn inbox(&mut self, txn: &mut Txn, all: bool) -> Result<Vec<Message>, MsgError> {
        let mut out: Vec<(String, Message)> = if all {
            self.store
                .scan::<store::MessageRow>(store::MESSAGES, "")?
                .into_iter()
                .filter(|(_, m)| !m.outgoing)
                .map(|(k, m)| (k, m.into()))
                .collect()
        } else {
            let mut rows = Vec::new();
            for (key, _) in self.store.scan::<()>(store::UNSEEN, "")? {
                if let Some(m) = txn.get::<store::MessageRow>(store::MESSAGES, &key)? {
                    rows.push((key, m.into()));
                }
            }
            rows
        };
        out.sort_by_key(|(_, m)| (m.stored_ms, m.sent_ms, m.seq));
        if all && out.len() > 200 {
            out.drain(..out.len() - 200);
        }
        self.with_states(txn, &mut out)?;
        self.mark_seen(txn, &out)?;
        Ok(out.into_iter().map(|(_, m)| m).collect())
    }

    pub(super) fn history(&mut self, txn: &mut Txn, with: &str) -> Result<Vec<Message>, MsgError> {
        let conv = match self.resolve_contact(with) {
            Ok(peer) => peer,
            Err(e) => match self.resolve_group(with) {
                Ok(g) => group_conv(&g),
                Err(_) => return Err(e),
            },
        };
        let mut rows: Vec<(String, Message)> = self
            .store
            .scan::<store::MessageRow>(store::MESSAGES, &format!("{conv}|"))?
            .into_iter()
            .map(|(k, m)| (k, m.into()))
            .collect();
        self.with_states(txn, &mut rows)?;
        self.mark_seen(txn, &rows)?;
        // "Sent" is not written to disk (one write less per message): a queued message
        // on its way to the recipient is shown as sent.
        let on_the_wire: HashSet<String> = self
            .in_flight
            .iter()
            .filter_map(|k| self.outbox.get(k))
            .flat_map(|i| i.message_ids().iter().map(hex::encode))
            .collect();
        Ok(rows
            .into_iter()
            .map(|(_, mut m)| {
                if m.outgoing
                    && m.state == MessageState::Queued
                    && on_the_wire.contains(m.id.as_str())
                {
                    m.state = MessageState::Sent;
                }
                m
            })
            .collect())
    }

    /// Marks incoming messages as shown and sends read receipts to their authors.
    pub(super) fn mark_seen(
        &mut self,
        txn: &mut Txn,
        rows: &[(String, Message)],
    ) -> Result<(), MsgError> {
        let mut receipts: HashMap<String, Vec<MsgId>> = HashMap::new();
        for (key, m) in rows {
            if m.outgoing || m.seen || !txn.remove(store::UNSEEN, key)? {
                continue;
            }
            if !m.conversation.starts_with("group:")
                && let Some(id) = parse_id(&m.id)
            {
                receipts.entry(m.from.clone()).or_default().push(id);
            }
        }
        for (peer, ids) in receipts {
            if self.contacts.contains_key(&peer) {
                // Each receipt well inside one frame.
                for chunk in ids.chunks(1000) {
                    self.queue_receipt(txn, &peer, chunk.to_vec(), true)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn queue_receipt(
        &mut self,
        txn: &mut Txn,
        peer: &str,
        ids: Vec<MsgId>,
        read: bool,
    ) -> Result<(), MsgError> {
        let plain = Plain {
            id: wire::new_id(),
            seq: 0,
            sent_ms: now_ms(),
            content: Content::Receipt { ids, read },
        };
        self.queue_olm(txn, peer, plain, false)
    }
}
