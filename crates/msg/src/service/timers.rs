//! Timers: retries, key fetches, polls, key publication, pruning.

use super::*;

impl Actor {
    pub(super) fn housekeeping(&mut self) {
        let now = Instant::now();
        // Items whose retry time came.
        if self
            .retry_at
            .iter()
            .any(|(k, t)| *t <= now && !self.in_flight.contains(k))
        {
            self.dirty_dispatch = true;
        }
        // Peers whose keys we still need.
        let waiting: HashSet<String> = self
            .outbox
            .values()
            .filter(|i| i.pending.is_some())
            .map(|i| i.to.clone())
            .collect();
        for p in waiting {
            self.want_keys(&p);
        }
        if !self.poll.in_progress && self.poll.next.is_none_or(|t| t <= now) {
            self.start_poll();
        }
        let republish = self
            .publish
            .last
            .is_none_or(|t| now.duration_since(t) >= REPUBLISH);
        // An anonymous identity does not publish its keys in the DHT: that would tie it
        // to this node's peer id.
        if !self.cfg.anonymous
            && !self.publish.in_progress
            && (self.publish.dirty || republish)
            && self.publish.next_try.is_none_or(|t| t <= now)
        {
            self.start_publish();
        }
        if now.duration_since(self.last_prune) >= PRUNE_EVERY {
            self.last_prune = now;
            if let Err(e) = self.prune() {
                tracing::warn!(target: "nodus::msg", "pruning the message store: {e}");
            }
        }
        // Spawns queued by the steps above run now.
        for f in self.after.drain(..) {
            f();
        }
    }

    /// Forgets ids accepted long ago and mailbox items past their time to live.
    pub(super) fn prune(&mut self) -> Result<(), MsgError> {
        // Rate windows of senders quiet for a minute (one entry per peer that ever
        // stored here would otherwise grow without bound).
        self.rate
            .retain(|_, (start, _)| start.elapsed() < Duration::from_secs(60));
        self.workers.retain(|_, tx| !tx.is_closed());
        let now = now_ms();
        let old: Vec<String> = self
            .store
            .scan::<u64>(store::SEEN, "")?
            .into_iter()
            .filter(|(_, at)| at + SEEN_FOR_MS < now)
            .map(|(k, _)| k)
            .collect();
        let expired: Vec<(String, MailItem)> = self
            .store
            .scan::<MailItem>(store::MAILBOX, "")?
            .into_iter()
            .filter(|(_, i)| i.expires_ms <= now)
            .collect();
        if old.is_empty() && expired.is_empty() {
            return Ok(());
        }
        let w = self.store.write()?;
        let mut txn = w.txn();
        for k in old {
            txn.remove(store::SEEN, &k)?;
        }
        for (k, item) in expired {
            self.mailbox_remove(&mut txn, &k, &item)?;
        }
        drop(txn);
        w.commit()
    }

    pub(super) fn start_publish(&mut self) {
        let missing = BUNDLE_KEYS.saturating_sub(self.crypto.published.len());
        let mut fresh = Vec::new();
        if missing > 0 {
            fresh = self.crypto.new_one_time_keys(missing);
        }
        let mut published = self.crypto.published.clone();
        published.extend(fresh.iter().copied());
        // The account must be on disk before its keys are public.
        let saved = (|| -> Result<(), MsgError> {
            let w = self.store.write()?;
            let mut txn = w.txn();
            self.crypto.published = published.clone();
            save_account(&mut txn, &self.crypto)?;
            drop(txn);
            w.commit()
        })();
        if let Err(e) = saved {
            tracing::warn!(target: "nodus::msg", "cannot save new one-time keys: {e}");
            return;
        }
        let bundle = match KeyBundle::new(
            &self.key,
            self.card.clone(),
            published,
            self.crypto.fallback_key(),
            now_ms(),
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(target: "nodus::msg", "cannot sign key bundle: {e}");
                return;
            }
        };
        self.publish.in_progress = true;
        self.publish.dirty = false;
        let (net, inputs) = (self.net.clone(), self.inputs.clone());
        let key = card::bundle_key(&self.me);
        tokio::spawn(async move {
            let r = match net.put_record(key, wire::encode(&bundle)).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(DeliveryError::NotReplicated),
                Err(e) => Err(e.into()),
            };
            let _ = inputs.send(Input::Published(r)).await;
        });
    }
}
