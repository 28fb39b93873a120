//! Events between nodus relays: each node passes on what its clients publish, on one
//! overlay topic, and takes what others pass on after checking it. An invalid event
//! counts against the peer that forwarded it.

use std::sync::Arc;

use nodus_net::{GossipMessage, NetworkHandle, Verdict};
use tokio::sync::{mpsc, watch};

use crate::event::Event;
use crate::relay::{Origin, Refusal, Relay};
use crate::store::Stored;

pub async fn run(
    relay: Arc<Relay>,
    net: NetworkHandle,
    mut messages: mpsc::Receiver<GossipMessage>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let m = tokio::select! {
            m = messages.recv() => match m {
                Some(m) => m,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        let verdict = match serde_json::from_slice::<Event>(&m.data) {
            Err(_) => Verdict::Reject,
            Ok(e) => match relay.accept(e, Origin::Overlay).await {
                Ok(Stored::New) => Verdict::Accept,
                Ok(_) => Verdict::Ignore,
                Err(r) if r.is_peer_fault() => Verdict::Reject,
                // Our own policy (blocked, deleted here) is not the sender's fault, and
                // not a reason to stop it reaching nodes that carry it.
                Err(Refusal::Blocked | Refusal::Deleted) => Verdict::Accept,
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
}
