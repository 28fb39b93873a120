//! A fixed number of slots for connections, where a newcomer at the cap takes the slot of
//! the oldest connection that has not yet "spoken" (sent a request head, finished a
//! handshake: whatever proves it more than an open socket). Idle or half-open
//! connections then cost an attacker slots that anyone new can take from them, while
//! connections doing work keep theirs.
//!
//! Invariants: at most `cap` slots are held; a slot is freed when its [`Slot`] drops;
//! an evicted connection's [`Admitted::evicted`] fires (its owner then drops it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

#[derive(Clone)]
pub struct Slots {
    inner: Arc<Mutex<Inner>>,
    cap: usize,
}

#[derive(Default)]
struct Inner {
    next: u64,
    open: BTreeMap<u64, Open>,
}

struct Open {
    spoke: Arc<AtomicBool>,
    evict: oneshot::Sender<()>,
}

/// A connection let in.
pub struct Admitted {
    pub slot: Slot,
    /// Set by the owner once the connection has spoken; it then keeps its slot.
    pub spoke: Arc<AtomicBool>,
    /// Fires when a newcomer took the slot: the owner must drop the connection.
    pub evicted: oneshot::Receiver<()>,
}

impl Slots {
    pub fn new(cap: usize) -> Self {
        Slots {
            inner: Arc::default(),
            cap: cap.max(1),
        }
    }

    /// A slot for a new connection, taken from the oldest silent one at the cap; None
    /// when every open connection has spoken.
    pub fn admit(&self) -> Option<Admitted> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = inner.next;
        self.admit_locked(&mut inner, id)
    }

    /// [`Slots::admit`] for a connection that arrived as the `arrival`-th (counted by
    /// the caller), which may be later than it asks for its slot: age is by arrival.
    /// At the cap, a newcomer older than every silent connection is the one left out.
    /// Use one way of admitting per `Slots`.
    pub fn admit_arrived(&self, arrival: u64) -> Option<Admitted> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.admit_locked(&mut inner, arrival)
    }

    fn admit_locked(&self, inner: &mut Inner, id: u64) -> Option<Admitted> {
        if inner.open.len() >= self.cap {
            let silent = inner
                .open
                .iter()
                .find(|(_, o)| !o.spoke.load(Ordering::Relaxed))
                .map(|(id, _)| *id)
                .filter(|oldest| *oldest < id)?;
            if let Some(o) = inner.open.remove(&silent) {
                let _ = o.evict.send(());
            }
        }
        inner.next = inner.next.max(id + 1);
        let spoke = Arc::new(AtomicBool::new(false));
        let (evict, evicted) = oneshot::channel();
        inner.open.insert(
            id,
            Open {
                spoke: spoke.clone(),
                evict,
            },
        );
        Some(Admitted {
            slot: Slot {
                inner: self.inner.clone(),
                id,
            },
            spoke,
            evicted,
        })
    }

    /// Slots held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .len()
    }
}

/// Frees its slot when dropped.
pub struct Slot {
    inner: Arc<Mutex<Inner>>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_is_by_arrival_when_slots_are_asked_for_out_of_order() {
        let slots = Slots::new(2);
        let mut third = slots.admit_arrived(3).unwrap();
        let _second = slots.admit_arrived(2).unwrap();
        // The first to arrive asks last: it is the oldest, so it is the one left out.
        assert!(slots.admit_arrived(1).is_none());
        let _fourth = slots.admit_arrived(4).unwrap();
        // Of those held, the second arrived first, and goes.
        assert!(third.evicted.try_recv().is_err());
        assert_eq!(slots.held(), 2);
    }

    #[test]
    fn a_newcomer_takes_the_oldest_silent_slot_and_never_a_speakers() {
        let slots = Slots::new(2);
        let mut a = slots.admit().unwrap();
        let b = slots.admit().unwrap();
        b.spoke.store(true, Ordering::Relaxed);
        let c = slots.admit().unwrap();
        assert!(a.evicted.try_recv().is_ok(), "the oldest silent one goes");
        drop(a);
        assert_eq!(slots.held(), 2);
        c.spoke.store(true, Ordering::Relaxed);
        assert!(
            slots.admit().is_none(),
            "all have spoken: the newcomer waits"
        );
        drop(b);
        assert!(
            slots.admit().is_some(),
            "a closed connection frees its slot"
        );
    }
}
