//! Fetching our own mail from the mailboxes.

use super::*;

impl Actor {
    pub(super) fn start_poll(&mut self) {
        if self.poll.in_progress {
            return;
        }
        self.poll.in_progress = true;
        let (via, inputs) = (self.mailboxes.clone(), self.inputs.clone());
        let replicas = self.cfg.mailbox_replicas.max(1);
        self.later(move || {
            tokio::spawn(delivery::poll(via, replicas, inputs, None, true));
        });
    }

    pub(super) fn on_fetched(
        &mut self,
        txn: &mut Txn,
        mailbox: PeerId,
        mut items: Vec<MailboxItem>,
    ) -> Result<(), MsgError> {
        let full = items.len() >= MAX_FETCH;
        let routing = self.me.to_bytes();
        let mut done = Vec::new();
        let mut envelopes = Vec::new();
        let now = Instant::now();
        self.deleting
            .retain(|_, at| now.duration_since(*at) < DELETE_PENDING);
        let mut taken = Vec::new();
        for item in items.drain(..) {
            // This very item (same sealing: its HPKE key opens it) taken already, its
            // delete still on the way because another poll raced ours: ask again, but
            // it is not news, nor a duplicate anyone sent.
            let tag = seal_tag(&item.sealed);
            if self.deleting.contains_key(&(mailbox, item.id, tag)) {
                done.push(item.id);
                continue;
            }
            taken.push((item.id, tag));
            let env = self
                .crypto
                .seal
                .open(&item.sealed, &routing)
                .and_then(|b| wire::decode::<Envelope>(&b).ok());
            match env {
                Some(e) if e.id == item.id => envelopes.push(e),
                _ => {
                    // Not for us or damaged: nothing will ever open it.
                    self.metrics.garbage("bad_mailbox_item");
                    done.push(item.id);
                }
            }
        }
        // Keys and membership first, so group messages in the same batch can be read.
        envelopes.sort_by_key(|e| matches!(e.body, Body::Group { .. }));
        for env in envelopes {
            let id = env.id;
            match self.receive(txn, Origin::Mailbox, env)? {
                MsgReply::Reject {
                    reason: RejectReason::UnknownGroup | RejectReason::MissingKey,
                    ..
                } => {} // its key may still be on the way: keep it for the next poll
                _ => done.push(id),
            }
        }
        if !done.is_empty() {
            if self.deleting.len() + done.len() > MAX_DELETE_PENDING {
                self.deleting.clear();
            }
            for (id, tag) in taken {
                if done.contains(&id) {
                    self.deleting.insert((mailbox, id, tag), now);
                }
            }
            let via = self.mailboxes.clone();
            self.later(move || {
                tokio::spawn(async move {
                    let delete = || delivery::delete_from(&via, mailbox, done.clone());
                    if let Err(e) = delivery::once_more_on_failure(delete).await {
                        tracing::debug!(target: "nodus::msg", %mailbox, "mailbox delete failed: {e}");
                    }
                });
            });
        }
        if full {
            self.poll.next = Some(Instant::now());
        }
        Ok(())
    }
}

/// The first 32 bytes of a sealed item: its HPKE encapsulated key, fresh for every sealing,
/// so the same message sealed and stored again has another.
fn seal_tag(sealed: &[u8]) -> [u8; 32] {
    let mut tag = [0u8; 32];
    let n = sealed.len().min(32);
    tag[..n].copy_from_slice(&sealed[..n]);
    tag
}
