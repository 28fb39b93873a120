//! Events between nodus relays, live: a node subscribes to the topic of each author it
//! follows (and its operator's, and the operator's mentions), passes on what its
//! clients publish on the topics of the event ([`crate::topics`]), and takes what
//! others pass on after checking it. An invalid event, or one on a topic it does not
//! belong to, counts against the peer that forwarded it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use nodus_net::{GossipMessage, NetworkHandle, Verdict};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::event::Event;
use crate::relay::{Interest, Origin, Refusal, Relay};
use crate::store::Stored;
use crate::topics;

/// The topics `interest` asks for.
pub fn wanted(interest: &Interest) -> HashSet<String> {
    let mut t: HashSet<String> = interest.authors().iter().map(topics::author).collect();
    t.insert(topics::mention(&interest.operator));
    t
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub async fn run(relay: Arc<Relay>, net: NetworkHandle, mut shutdown: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::channel::<GossipMessage>(1024);
    // Forwarders end with this task, also when it is aborted.
    let mut joined: HashMap<String, AbortOnDrop> = HashMap::new();
    let mut interest = relay.interest();
    loop {
        let want = wanted(&interest.borrow_and_update());
        let gone: Vec<String> = joined
            .keys()
            .filter(|t| !want.contains(*t))
            .cloned()
            .collect();
        for t in gone {
            joined.remove(&t);
            net.unsubscribe(&t).await;
        }
        for t in want {
            if joined.contains_key(&t) {
                continue;
            }
            let Ok(mut messages) = net.subscribe_validated(&t).await else {
                return;
            };
            let tx = tx.clone();
            joined.insert(
                t,
                AbortOnDrop(tokio::spawn(async move {
                    while let Some(m) = messages.recv().await {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                })),
            );
        }
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => take(&relay, &net, m).await,
                    None => return,
                },
                changed = interest.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn take(relay: &Relay, net: &NetworkHandle, m: GossipMessage) {
    let verdict = match serde_json::from_slice::<Event>(&m.data) {
        Err(_) => Verdict::Reject,
        Ok(e) if !topics::belongs(&e, &m.topic) => Verdict::Reject,
        Ok(e) => match relay.accept(e, Origin::Overlay).await {
            Ok(Stored::New) => Verdict::Accept,
            Ok(_) => Verdict::Ignore,
            Err(r) if r.is_peer_fault() => Verdict::Reject,
            // Our own policy (blocked, deleted here, full) is not the sender's fault,
            // and not a reason to stop it reaching nodes that carry it.
            Err(Refusal::Blocked | Refusal::Deleted | Refusal::Full) => Verdict::Accept,
            Err(_) => Verdict::Ignore,
        },
    };
    if verdict == Verdict::Reject
        && let Ok(peer) = m.via.parse()
    {
        net.report_misbehaviour(peer, "invalid Nostr event");
    }
    net.validate(&m, verdict);
}
