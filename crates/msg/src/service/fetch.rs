//! Fetching our own mail from the mailboxes.

use super::*;

impl Actor {
    pub(super) fn start_poll(&mut self) {
        if self.poll.in_progress {
            return;
        }
        self.poll.in_progress = true;
        let (net, inputs) = (self.net.clone(), self.inputs.clone());
        let replicas = self.cfg.mailbox_replicas.max(1);
        self.later(move || {
            tokio::spawn(delivery::poll(net, replicas, inputs, None, true));
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
        for item in items.drain(..) {
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
            match self.receive(txn, None, env)? {
                MsgReply::Reject {
                    reason: RejectReason::UnknownGroup | RejectReason::MissingKey,
                    ..
                } => {} // its key may still be on the way: keep it for the next poll
                _ => done.push(id),
            }
        }
        if !done.is_empty() {
            let net = self.net.clone();
            self.later(move || {
                tokio::spawn(async move {
                    if let Err(e) = delivery::delete_from(&net, mailbox, done).await {
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
