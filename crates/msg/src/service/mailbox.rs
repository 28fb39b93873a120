//! Serving as a mailbox for others, within per-sender limits.

use super::*;

impl Actor {
    pub(super) fn mailbox_request(
        &mut self,
        txn: &mut Txn,
        from: PeerId,
        request: MailboxRequest,
    ) -> Result<MailboxReply, MsgError> {
        let from_s = from.to_string();
        Ok(match request {
            MailboxRequest::Store {
                to,
                id,
                order,
                ttl_secs,
                sealed,
            } => match self.mailbox_store(txn, &from_s, &to, id, order, ttl_secs, sealed)? {
                Ok(()) => MailboxReply::Stored,
                Err(why) => {
                    self.metrics.refused(why);
                    MailboxReply::Refused(why.to_string())
                }
            },
            MailboxRequest::Fetch { max } => {
                let now = now_ms();
                let mut items = Vec::new();
                let mut bytes = 0;
                let mut expired = Vec::new();
                for (k, item) in self
                    .store
                    .scan::<MailItem>(store::MAILBOX, &format!("{from_s}|"))?
                {
                    if item.expires_ms <= now {
                        expired.push((k, item));
                        continue;
                    }
                    let Some(id) = k.rsplit('|').next().and_then(parse_id) else {
                        continue;
                    };
                    if items.len() >= (max as usize).min(MAX_FETCH)
                        || bytes + item.sealed.len() + 64 > MAX_FRAME
                    {
                        break;
                    }
                    bytes += item.sealed.len() + 64;
                    items.push(MailboxItem {
                        id,
                        sealed: item.sealed,
                    });
                }
                for (k, item) in expired {
                    self.mailbox_remove(txn, &k, &item)?;
                }
                MailboxReply::Items(items)
            }
            MailboxRequest::Retract { to, ids } => {
                let mut n = 0;
                if let Some(to) = peer_str(&to) {
                    for id in ids.iter().take(MAX_FETCH) {
                        if let Some((k, item)) = self.mailbox_get(txn, &to, id)?
                            && item.from == from_s
                        {
                            self.mailbox_remove(txn, &k, &item)?;
                            n += 1;
                        }
                    }
                }
                MailboxReply::Deleted(n)
            }
            MailboxRequest::Delete { ids } => {
                let mut n = 0;
                for id in ids.iter().take(MAX_FETCH) {
                    if let Some((k, item)) = self.mailbox_get(txn, &from_s, id)? {
                        self.mailbox_remove(txn, &k, &item)?;
                        n += 1;
                    }
                }
                MailboxReply::Deleted(n)
            }
            // Answered by the stream itself (crate::inbound).
            MailboxRequest::Challenge | MailboxRequest::Prove { .. } => {
                MailboxReply::Refused("out of turn".into())
            }
        })
    }

    /// The item held for `to` under this id, with its key.
    pub(super) fn mailbox_get(
        &mut self,
        txn: &mut Txn,
        to: &str,
        id: &MsgId,
    ) -> Result<Option<(String, MailItem)>, MsgError> {
        let id_key = format!("{to}|{}", hex::encode(id));
        let Some(key) = txn.get_raw_str(store::MAILBOX_IDS, &id_key)? else {
            return Ok(None);
        };
        Ok(txn.get::<MailItem>(store::MAILBOX, &key)?.map(|i| (key, i)))
    }

    pub(super) fn mailbox_remove(
        &mut self,
        txn: &mut Txn,
        key: &str,
        item: &MailItem,
    ) -> Result<(), MsgError> {
        if let (Some(to), Some(id)) = (key.split('|').next(), key.rsplit('|').next()) {
            txn.remove(store::MAILBOX_IDS, &format!("{to}|{id}"))?;
        }
        if txn.remove(store::MAILBOX, key)? {
            self.mailbox_total = self.mailbox_total.saturating_sub(1);
            if let Some(u) = self.usage.get_mut(&item.from) {
                u.0 = u.0.saturating_sub(1);
                u.1 = u.1.saturating_sub(item.sealed.len() as u64);
                if u.0 == 0 {
                    self.usage.remove(&item.from);
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn mailbox_store(
        &mut self,
        txn: &mut Txn,
        from: &str,
        to: &[u8],
        id: MsgId,
        order: u64,
        ttl_secs: u32,
        sealed: Vec<u8>,
    ) -> Result<Result<(), &'static str>, MsgError> {
        if !self.cfg.mailbox_serve {
            return Ok(Err("not serving as a mailbox"));
        }
        let Some(to) = peer_str(to) else {
            return Ok(Err("bad recipient"));
        };
        let id_key = format!("{to}|{}", hex::encode(id));
        if txn.contains(store::MAILBOX_IDS, &id_key)? {
            return Ok(Ok(()));
        }
        let key = format!("{to}|{from}|{order:020}|{}", hex::encode(id));
        let now = Instant::now();
        let window = self.rate.entry(from.to_string()).or_insert((now, 0));
        if now.duration_since(window.0) >= Duration::from_secs(60) {
            *window = (now, 0);
        }
        if window.1 >= self.cfg.mailbox_max_per_minute {
            return Ok(Err("rate limit"));
        }
        window.1 += 1;
        let (items, bytes) = self.usage.get(from).copied().unwrap_or((0, 0));
        if items >= self.cfg.mailbox_max_items_per_sender {
            return Ok(Err("item limit for this sender"));
        }
        if bytes + sealed.len() as u64 > self.cfg.mailbox_max_bytes_per_sender {
            return Ok(Err("byte limit for this sender"));
        }
        if self.mailbox_total >= MAILBOX_TOTAL {
            return Ok(Err("mailbox full"));
        }
        let ttl = (ttl_secs as u64).min(self.cfg.mailbox_ttl_secs);
        let item = MailItem {
            from: from.to_string(),
            expires_ms: now_ms() + ttl * 1000,
            sealed,
        };
        txn.put(store::MAILBOX, &key, &item)?;
        txn.put_raw(store::MAILBOX_IDS, &id_key, key.as_bytes())?;
        let u = self.usage.entry(from.to_string()).or_default();
        u.0 += 1;
        u.1 += item.sealed.len() as u64;
        self.mailbox_total += 1;
        self.metrics.mailbox_stored.inc();
        Ok(Ok(()))
    }
}
