//! The voice service's handle: what its routes, the CLI's in-process commands and tests
//! call.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::VoiceError;
use crate::calls::{self, Calls, Media, VoiceEvent};
use crate::history::CallRecord;

#[derive(Clone)]
pub struct VoiceHandle {
    pub(crate) calls: Arc<Calls>,
}

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub placed: Counter,
    pub received: Counter,
    pub answered: Counter,
    pub active: Gauge,
    pub media_dropped: Counter,
    pub bad_signals: Counter,
    pub bad_requests: Counter,
    pub relay_calls: Gauge,
}

impl Metrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "calls_placed",
            "Calls this node placed",
            self.placed.clone(),
        );
        r.register(
            "calls_received",
            "Calls that rang here",
            self.received.clone(),
        );
        r.register(
            "calls_answered",
            "Calls that were answered, either way",
            self.answered.clone(),
        );
        r.register(
            "calls_active",
            "Calls with media running",
            self.active.clone(),
        );
        r.register(
            "media_dropped",
            "Datagrams on a call's socket that did not open with its keys (ended calls)",
            self.media_dropped.clone(),
        );
        r.register(
            "bad_signals",
            "Call signals from contacts that did not decode or broke a limit",
            self.bad_signals.clone(),
        );
        r.register(
            "bad_requests",
            "Relay allocation requests that did not decode",
            self.bad_requests.clone(),
        );
        r.register(
            "relay_calls",
            "Calls this node relays now",
            self.relay_calls.clone(),
        );
    }
}

/// This node as a voice relay.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    pub enabled: bool,
    pub addr: Option<String>,
    pub calls: usize,
    pub forwarded: u64,
    pub garbage: u64,
    pub limited: u64,
}

impl VoiceHandle {
    /// Calls a contact (name or peer id). Returns once the offer is sent; the call rings
    /// and is answered (or not) as events tell.
    pub async fn call(&self, who: &str, media: Media) -> Result<CallRecord, VoiceError> {
        calls::place(&self.calls, who, media).await
    }

    /// Answers the call `id` names, or the only one ringing.
    pub async fn answer(&self, id: Option<&str>, media: Media) -> Result<CallRecord, VoiceError> {
        calls::answer(&self.calls, id, media).await
    }

    pub async fn reject(&self, id: Option<&str>) -> Result<CallRecord, VoiceError> {
        calls::reject(&self.calls, id).await
    }

    pub async fn hangup(&self, id: Option<&str>) -> Result<CallRecord, VoiceError> {
        calls::hangup(&self.calls, id).await
    }

    /// Calls in progress (ringing or on).
    pub fn list(&self) -> Vec<CallRecord> {
        self.calls.list()
    }

    /// A call in progress or in the history.
    pub fn get(&self, id: &str) -> Result<CallRecord, VoiceError> {
        self.calls
            .get(id)
            .ok_or_else(|| VoiceError::NoSuchCall(id.to_string()))
    }

    /// Past calls, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<CallRecord>, VoiceError> {
        let mut all = self.calls.history.all()?;
        all.retain(|c| c.state == crate::history::CallState::Ended);
        all.truncate(limit);
        Ok(all)
    }

    pub fn relay(&self) -> RelayStatus {
        use std::sync::atomic::Ordering::Relaxed;
        match &self.calls.relay {
            Some(s) => RelayStatus {
                enabled: true,
                addr: Some(s.addr.to_string()),
                calls: s.relay.allocations(),
                forwarded: s.relay.counters.forwarded.load(Relaxed),
                garbage: s.relay.counters.garbage.load(Relaxed),
                limited: s.relay.counters.limited.load(Relaxed),
            },
            None => RelayStatus {
                enabled: false,
                addr: None,
                calls: 0,
                forwarded: 0,
                garbage: 0,
                limited: 0,
            },
        }
    }

    pub fn events(&self) -> broadcast::Receiver<VoiceEvent> {
        self.calls.events.subscribe()
    }
}
