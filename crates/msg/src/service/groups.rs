//! Group membership and Megolm keys: create, add, remove (with rotation), send.

use super::*;

impl Actor {
    pub(super) fn save_group(&mut self, txn: &mut Txn, id: &MsgId) -> Result<(), MsgError> {
        if let Some(g) = self.group_state.get(id) {
            txn.put(store::GROUPS, &hex::encode(id), g)?;
        }
        if let Some(p) = self.groups.outbound_pickle(id) {
            txn.put(store::GROUP_OUT, &hex::encode(id), &json(&p))?;
        }
        Ok(())
    }

    pub(super) fn group_create(
        &mut self,
        txn: &mut Txn,
        name: String,
    ) -> Result<GroupInfo, MsgError> {
        if name.trim().is_empty() || name.len() > card::MAX_NAME {
            return Err(MsgError::NoGroup(format!(
                "{name} (a group name needs 1 to {} bytes)",
                card::MAX_NAME
            )));
        }
        let id = wire::new_id();
        let g = Group {
            name,
            owner: self.me_str.clone(),
            epoch: 1,
            members: vec![self.card.clone()],
            out_seq: 0,
        };
        self.groups.rotate(id);
        self.group_state.insert(id, g);
        self.save_group(txn, &id)?;
        let g = &self.group_state[&id];
        Ok(self.group_info(&id, g))
    }

    pub(super) fn group_change(
        &mut self,
        txn: &mut Txn,
        group: &str,
        contact: &str,
        add: bool,
    ) -> Result<GroupInfo, MsgError> {
        let id = self.resolve_group(group)?;
        let peer = self.resolve_contact(contact)?;
        let g = self
            .group_state
            .get(&id)
            .ok_or_else(|| MsgError::NoGroup(group.into()))?;
        if g.owner != self.me_str {
            return Err(MsgError::NotOwner(g.owner.clone()));
        }
        let is_member = g
            .members
            .iter()
            .any(|c| peer_str(&c.peer).as_deref() == Some(&peer));
        let mut members = g.members.clone();
        if add {
            if is_member {
                return Err(MsgError::AlreadyMember(peer));
            }
            let card = self
                .card_of(&peer)
                .ok_or_else(|| MsgError::NoContact(peer.clone()))?;
            members.push(card);
        } else {
            if !is_member {
                return Err(MsgError::NotMember(peer));
            }
            members.retain(|c| peer_str(&c.peer).as_deref() != Some(&peer));
        }
        let (name, epoch) = (g.name.clone(), g.epoch + 1);
        // The removed member is told too, so it knows it is out.
        let mut tell: Vec<String> = members.iter().filter_map(|c| peer_str(&c.peer)).collect();
        if !add {
            tell.push(peer.clone());
        }
        let previous = g.members.clone();
        self.apply_group_state(txn, id, name.clone(), epoch, members.clone(), &previous)?;
        for p in tell {
            if p == self.me_str {
                continue;
            }
            let plain = Plain {
                id: wire::new_id(),
                seq: 0,
                sent_ms: now_ms(),
                content: Content::GroupState {
                    group: id,
                    name: name.clone(),
                    epoch,
                    members: members.clone(),
                },
            };
            self.queue_olm(txn, &p, plain, false)?;
        }
        let g = &self.group_state[&id];
        Ok(self.group_info(&id, g))
    }

    /// Takes a new membership list: members added get our key; if anyone was removed,
    /// our session is replaced and the new key goes to the remaining members only.
    pub(super) fn apply_group_state(
        &mut self,
        txn: &mut Txn,
        id: MsgId,
        name: String,
        epoch: u64,
        members: Vec<ContactCard>,
        previous: &[ContactCard],
    ) -> Result<(), MsgError> {
        let peers = |list: &[ContactCard]| -> HashSet<String> {
            list.iter().filter_map(|c| peer_str(&c.peer)).collect()
        };
        let now: HashSet<String> = peers(&members);
        let before: HashSet<String> = peers(previous);
        let removed = before.iter().any(|p| !now.contains(p));
        let joined_now = !before.contains(&self.me_str);
        let owner = self
            .group_state
            .get(&id)
            .map(|g| g.owner.clone())
            .unwrap_or_default();
        let out_seq = self.group_state.get(&id).map(|g| g.out_seq).unwrap_or(0);
        // Members we do not know yet become contacts, so keys can reach them.
        for c in &members {
            let Some(p) = peer_str(&c.peer) else { continue };
            if p == self.me_str || self.contacts.contains_key(&p) || c.verify().is_err() {
                continue;
            }
            let contact = Contact {
                card: c.clone(),
                name: c.name.clone(),
                added_ms: now_ms(),
                out_seq: 0,
                invite_key: None,
            };
            txn.put(store::CONTACTS, &p, &contact)?;
            self.contacts.insert(p, contact);
        }
        self.group_state.insert(
            id,
            Group {
                name,
                owner,
                epoch,
                members,
                out_seq,
            },
        );
        let key = if removed {
            self.groups.rotate(id)
        } else {
            self.groups.current_key(id)
        };
        self.save_group(txn, &id)?;
        let recipients: Vec<String> = now
            .iter()
            .filter(|p| **p != self.me_str && (removed || joined_now || !before.contains(*p)))
            .cloned()
            .collect();
        for p in recipients {
            let plain = Plain {
                id: wire::new_id(),
                seq: 0,
                sent_ms: now_ms(),
                content: Content::GroupKey {
                    group: id,
                    session_key: key.clone(),
                },
            };
            self.queue_olm(txn, &p, plain, false)?;
        }
        Ok(())
    }

    pub(super) fn on_group_state(
        &mut self,
        txn: &mut Txn,
        sender: &str,
        id: MsgId,
        name: String,
        epoch: u64,
        members: Vec<ContactCard>,
    ) -> Result<(), MsgError> {
        let previous = match self.group_state.get(&id) {
            Some(g) if g.owner != sender || epoch <= g.epoch => return Ok(()),
            Some(g) => g.members.clone(),
            None => Vec::new(),
        };
        let in_it = members.iter().any(|c| c.peer == self.me.to_bytes());
        if !in_it {
            // Removed: forget the group and its keys.
            self.group_state.remove(&id);
            self.groups.forget(&id);
            txn.remove(store::GROUPS, &hex::encode(id))?;
            txn.remove(store::GROUP_OUT, &hex::encode(id))?;
            return Ok(());
        }
        if name.len() > card::MAX_NAME || members.iter().any(|c| c.verify().is_err()) {
            return Ok(());
        }
        if previous.is_empty() {
            self.group_state.insert(
                id,
                Group {
                    name: name.clone(),
                    owner: sender.to_string(),
                    epoch: 0,
                    members: Vec::new(),
                    out_seq: 0,
                },
            );
        }
        self.apply_group_state(txn, id, name, epoch, members, &previous)
    }

    pub(super) fn group_send(
        &mut self,
        txn: &mut Txn,
        group: &str,
        text: String,
    ) -> Result<Message, MsgError> {
        Self::check_text(&text)?;
        let id = self.resolve_group(group)?;
        let g = self
            .group_state
            .get_mut(&id)
            .ok_or_else(|| MsgError::NoGroup(group.into()))?;
        g.out_seq += 1;
        let plain = GroupPlain {
            id: wire::new_id(),
            seq: g.out_seq,
            sent_ms: now_ms(),
            text: text.clone(),
        };
        let recipients: Vec<String> = g
            .members
            .iter()
            .filter_map(|c| peer_str(&c.peer))
            .filter(|p| *p != self.me_str)
            .collect();
        let (session, ciphertext) = self.groups.encrypt(id, &wire::encode(&plain));
        self.save_group(txn, &id)?;
        let envelope = wire::encode(&Envelope {
            id: plain.id,
            sender: self.me.to_bytes(),
            body: Body::Group {
                group: id,
                session,
                ciphertext,
            },
        });
        for p in recipients {
            self.order += 1;
            let item = OutItem {
                id: plain.id,
                to: p,
                envelope: Some(envelope.clone()),
                pending: None,
                prekey_plain: None,
                mailboxes: Vec::new(),
                user: true,
                stored: false,
                attempts: 0,
                created_ms: now_ms(),
                order: self.order,
                members: Vec::new(),
            };
            self.outbox_put(txn, item)?;
        }
        self.dirty_dispatch = true;
        let m = self.outgoing_message(
            &group_conv(&id),
            (&plain.id, plain.seq, plain.sent_ms),
            text,
            Vec::new(),
        );
        self.store_message(txn, &m, &plain.id)?;
        self.emit(MsgEvent::Message { message: m.clone() });
        Ok(m)
    }
}
