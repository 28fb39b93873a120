//! Polling filters, as geth keeps them: `eth_newBlockFilter`, `eth_newFilter`,
//! `eth_newPendingTransactionFilter`, then `eth_getFilterChanges` (what is new since the
//! last poll), `eth_getFilterLogs` and `eth_uninstallFilter`.
//!
//! Filters live in memory on the node that made them (as in geth), each answering what
//! happened since its last poll. Anyone reaching the JSON-RPC port may install them, so
//! they are bounded: at most [`MAX_FILTERS`], each dropped after [`IDLE`] without a
//! poll, ids drawn at random (a filter is not found by guessing), and pending
//! transactions kept for the last [`MAX_PENDING`] only.
//!
//! A block filter that sees a reorganisation reports the new branch's blocks from the
//! common ancestor. A log filter reports the logs of blocks it had not scanned; logs of
//! blocks a reorganisation dropped are not reported again as removed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use serde_json::{Map, Value};

/// Filters installed at once, at most.
pub const MAX_FILTERS: usize = 1024;
/// A filter not polled for this long is dropped (geth's deadline).
pub const IDLE: Duration = Duration::from_secs(300);
/// Pending transaction hashes kept for pending filters.
pub const MAX_PENDING: usize = 4096;

#[derive(Debug, Clone)]
pub enum Kind {
    /// The last head reported.
    Blocks { number: u64, hash: B256 },
    /// `criteria` without its block range (and `filter`, its addresses and topics); the
    /// first block of the range, the last if one was given, and the last block scanned.
    Logs {
        criteria: Map<String, Value>,
        filter: super::follow::LogFilter,
        from: u64,
        to: Option<u64>,
        number: u64,
        hash: B256,
    },
    /// The sequence number of the next pending transaction to report.
    Pending { seq: u64 },
}

struct Installed {
    kind: Kind,
    polled: Instant,
}

#[derive(Default)]
struct Table {
    installed: HashMap<u128, Installed>,
    pending: VecDeque<B256>,
    /// Pending transactions seen since start: the sequence number of the next one.
    pending_seq: u64,
}

#[derive(Default)]
pub struct Filters {
    table: Mutex<Table>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter not found")]
    NotFound,
    #[error("too many filters ({MAX_FILTERS}); uninstall some with eth_uninstallFilter")]
    TooMany,
}

impl Filters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs a filter; its id.
    pub fn install(&self, kind: Kind, now: Instant) -> Result<u128, FilterError> {
        let mut t = self.lock();
        t.installed
            .retain(|_, f| now.duration_since(f.polled) < IDLE);
        if t.installed.len() >= MAX_FILTERS {
            return Err(FilterError::TooMany);
        }
        let kind = match kind {
            Kind::Pending { .. } => Kind::Pending { seq: t.pending_seq },
            k => k,
        };
        let id = loop {
            let id = rand::random::<u128>();
            if id != 0 && !t.installed.contains_key(&id) {
                break id;
            }
        };
        t.installed.insert(id, Installed { kind, polled: now });
        Ok(id)
    }

    /// A filter's state, as of its last poll; the poll is counted.
    pub fn get(&self, id: u128, now: Instant) -> Result<Kind, FilterError> {
        let mut t = self.lock();
        let f = t
            .installed
            .get_mut(&id)
            .filter(|f| now.duration_since(f.polled) < IDLE)
            .ok_or(FilterError::NotFound)?;
        f.polled = now;
        Ok(f.kind.clone())
    }

    /// Moves a filter on to `kind` (if it is still installed).
    pub fn advance(&self, id: u128, kind: Kind) {
        if let Some(f) = self.lock().installed.get_mut(&id) {
            f.kind = kind;
        }
    }

    pub fn uninstall(&self, id: u128) -> bool {
        self.lock().installed.remove(&id).is_some()
    }

    /// Remembers a transaction that entered the pool.
    pub fn pending(&self, hash: B256) {
        let mut t = self.lock();
        if t.pending.len() == MAX_PENDING {
            t.pending.pop_front();
        }
        t.pending.push_back(hash);
        t.pending_seq += 1;
    }

    /// Pending transactions from sequence number `seq` on (those still kept), and the
    /// number to ask from next.
    pub fn pending_since(&self, seq: u64) -> (Vec<B256>, u64) {
        let t = self.lock();
        let first = t.pending_seq - t.pending.len() as u64;
        let skip = seq.saturating_sub(first) as usize;
        (
            t.pending.iter().skip(skip).copied().collect(),
            t.pending_seq,
        )
    }
}

/// Follows the chain's events into `filters` until they end or the node stops.
pub async fn collect(
    filters: std::sync::Arc<Filters>,
    mut events: tokio::sync::broadcast::Receiver<crate::ChainEvent>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match event {
            Ok(crate::ChainEvent::PendingTx { hash }) => {
                if let Ok(h) = hash.parse() {
                    filters.pending(h);
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_bounded_and_expire() {
        let f = Filters::default();
        let t0 = Instant::now();
        let blocks = Kind::Blocks {
            number: 0,
            hash: B256::ZERO,
        };
        let ids: Vec<u128> = (0..MAX_FILTERS)
            .map(|_| f.install(blocks.clone(), t0).unwrap())
            .collect();
        assert_eq!(f.install(blocks.clone(), t0), Err(FilterError::TooMany));
        assert!(f.uninstall(ids[0]));
        assert!(!f.uninstall(ids[0]));
        let kept = f.install(blocks.clone(), t0).unwrap();
        // Polled just before the deadline: kept; the others expire.
        let later = t0 + IDLE - Duration::from_secs(1);
        assert!(f.get(kept, later).is_ok());
        let after = t0 + IDLE + Duration::from_secs(1);
        assert_eq!(f.get(ids[1], after).unwrap_err(), FilterError::NotFound);
        assert!(f.get(kept, after).is_ok());
        // Installing drops the expired ones, so there is room again.
        assert!(f.install(blocks, after).is_ok());
    }

    #[test]
    fn pending_hashes_come_once_and_only_the_newest_are_kept() {
        let f = Filters::default();
        let t0 = Instant::now();
        f.pending(B256::repeat_byte(1));
        let id = f.install(Kind::Pending { seq: 0 }, t0).unwrap();
        let Kind::Pending { seq } = f.get(id, t0).unwrap() else {
            panic!()
        };
        f.pending(B256::repeat_byte(2));
        let (got, next) = f.pending_since(seq);
        assert_eq!(
            got,
            vec![B256::repeat_byte(2)],
            "only what came after install"
        );
        assert!(f.pending_since(next).0.is_empty());
        for i in 0..MAX_PENDING + 10 {
            f.pending(B256::with_last_byte(i as u8));
        }
        let (got, _) = f.pending_since(next);
        assert_eq!(got.len(), MAX_PENDING);
    }
}
