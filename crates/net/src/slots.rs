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
        if inner.open.len() >= self.cap {
            let silent = inner
                .open
                .iter()
                .find(|(_, o)| !o.spoke.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(o) = inner.open.remove(&silent) {
                let _ = o.evict.send(());
            }
        }
        let id = inner.next;
        inner.next += 1;
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
    pub fn held(&self) -> usize {
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
