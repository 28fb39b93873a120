//! [`ChainHandle`]: the cloneable way in to the chain service, for the HTTP API, the
//! JSON-RPC server and the CLI.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::{Address, B256, U256};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::call::{Budget, CallSnapshot};
use crate::chain::Chain;
use crate::error::{ChainError, TxError};
use crate::mempool::Mempool;

/// What a read closure sees.
pub struct Ctx<'a> {
    pub chain: &'a Chain,
    pub pool: &'a Mempool,
    pub now: u64,
}

impl Ctx<'_> {
    /// The account's nonce at the head.
    pub fn nonce(&self, a: &Address) -> u64 {
        self.chain.state().nonce(a)
    }

    /// The next nonce for `a`, counting its queued transactions.
    pub fn pending_nonce(&self, a: &Address) -> u64 {
        self.pool.pending_nonce(a, self.nonce(a))
    }
}

pub(crate) type ReadFn = Box<dyn FnOnce(&Ctx<'_>) + Send>;

/// The peer something came from. `accountable` when that peer made it or served it
/// to us itself (a gossip author, a sync response); an honest peer that only relayed
/// gossip is not penalized for it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin {
    pub peer: libp2p::PeerId,
    pub accountable: bool,
}

pub(crate) enum Input {
    Read(ReadFn),
    /// A transaction, decoded and its sender recovered by whoever sends it here (so that
    /// signature recovery runs on many threads, not on the actor's).
    Submit {
        raw: Vec<u8>,
        tx: Result<crate::tx::RecoveredTx, TxError>,
        from: Option<Origin>,
        reply: Option<oneshot::Sender<Result<B256, TxError>>>,
    },
    Block {
        raw: Vec<u8>,
        from: Option<Origin>,
        reply: Option<oneshot::Sender<Result<BlockOutcome, ChainError>>>,
    },
    Mined(Box<crate::chain::Sealed>),
    Template {
        coinbase: Address,
        reply: oneshot::Sender<Option<crate::chain::Template>>,
    },
    Shutdown,
}

/// What happened to a block given to the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    Known,
    Side,
    Head {
        number: u64,
        reorged: usize,
    },
    /// Its parent is unknown: the chain must sync from the peer that sent it.
    Orphan,
}

/// Events on the chain, for the API's event stream and for waiting in tests.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChainEvent {
    /// Sync brought blocks from peers (bodies spread over every peer ahead of us).
    Synced {
        blocks: usize,
        peers: Vec<String>,
    },
    NewHead {
        number: u64,
        hash: String,
        txs: usize,
    },
    Reorg {
        depth: usize,
        old_head: String,
        new_head: String,
        returned_txs: usize,
    },
    PendingTx {
        hash: String,
    },
}

/// Mining settings, changeable at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MiningState {
    pub enabled: bool,
    pub threads: usize,
    pub coinbase: Address,
    pub max_hashes_per_sec: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChainStatus {
    pub chain_id: u64,
    pub height: u64,
    pub head: String,
    pub difficulty: String,
    pub total_work: String,
    pub base_fee: u64,
    pub hash_rate: u64,
    pub mempool: usize,
    pub peers: usize,
    pub mining: MiningState,
    pub json_rpc: Option<String>,
}

#[derive(Clone)]
pub struct ChainHandle {
    pub(crate) tx: mpsc::Sender<Input>,
    pub(crate) events: broadcast::Sender<ChainEvent>,
    pub(crate) mining: Arc<watch::Sender<MiningState>>,
    pub(crate) hash_rate: Arc<AtomicU64>,
    /// True while the miner is stopped and has handed over any block it found.
    pub(crate) miner_idle: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) peers: Arc<AtomicU64>,
    pub(crate) rpc_url: Arc<std::sync::Mutex<Option<String>>>,
    pub(crate) block_topic: String,
    pub chain_id: u64,
    pub(crate) calls: Arc<Calls>,
    /// JSON-RPC's polling filters.
    pub(crate) filters: Arc<crate::rpc::filters::Filters>,
}

/// Where eth_call and eth_estimateGas run: on blocking threads, a few at a time (one
/// core is left to the chain's thread), each within `timeout`.
pub struct Calls {
    workers: Arc<tokio::sync::Semaphore>,
    max_workers: usize,
    pub timeout: std::time::Duration,
    abandoned: Counter,
}

impl Calls {
    pub fn new(timeout: std::time::Duration, registry: &mut Registry) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let abandoned = Counter::default();
        registry.register(
            "calls_abandoned",
            "eth_call and eth_estimateGas calls whose caller went away before the answer (their runs stop)",
            abandoned.clone(),
        );
        let max_workers = cores.saturating_sub(1).max(1);
        Calls {
            workers: Arc::new(tokio::sync::Semaphore::new(max_workers)),
            max_workers,
            timeout,
            abandoned,
        }
    }
}

/// Tells a call that its caller went away and counts it, unless disarmed. It is armed
/// from the moment the call holds a worker, so a caller that leaves while the snapshot
/// is still being taken is counted too.
struct CancelOnDrop {
    flag: Option<Arc<std::sync::atomic::AtomicBool>>,
    abandoned: Counter,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = self.flag.take() {
            flag.store(true, Ordering::Relaxed);
            self.abandoned.inc();
        }
    }
}

impl ChainHandle {
    /// The budget of one JSON-RPC request, a batch included: twice one call's.
    pub fn request_budget(&self) -> Budget {
        Budget::new(self.calls.timeout * 2)
    }

    /// Calls running now on a snapshot.
    pub fn calls_running(&self) -> usize {
        self.calls.max_workers - self.calls.workers.available_permits()
    }

    /// Calls whose caller went away before the answer, since start; their runs stop.
    pub fn calls_abandoned(&self) -> u64 {
        self.calls.abandoned.get()
    }

    /// Runs `f` on a snapshot of the head on a worker thread, within one call's time
    /// and what is left of `request`; dropping this future tells the call to stop.
    pub async fn on_snapshot<T: Send + 'static>(
        &self,
        request: &Budget,
        at: crate::chain::StateRef,
        f: impl FnOnce(&CallSnapshot, &Budget) -> T + Send + 'static,
    ) -> Result<T, ChainError> {
        let permit = self
            .calls
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ChainError::Stopped)?;
        let mut cancel = CancelOnDrop {
            flag: Some(request.cancelled.clone()),
            abandoned: self.calls.abandoned.clone(),
        };
        let snapshot = self
            .read(move |c| c.chain.call_snapshot_at(at, c.now))
            .await??;
        let own = std::time::Instant::now() + self.calls.timeout;
        let budget = if own < request.deadline {
            Budget {
                deadline: own,
                allowed: self.calls.timeout,
                cancelled: request.cancelled.clone(),
            }
        } else {
            request.clone()
        };
        let done = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&snapshot, &budget)
        })
        .await;
        cancel.flag = None;
        done.map_err(|_| ChainError::Stopped)
    }

    /// Runs `f` on the chain's state in the actor and returns its result.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ctx<'_>) -> T + Send + 'static,
    ) -> Result<T, ChainError> {
        let (reply, rx) = oneshot::channel();
        let job: ReadFn = Box::new(move |ctx| {
            let _ = reply.send(f(ctx));
        });
        self.tx
            .send(Input::Read(job))
            .await
            .map_err(|_| ChainError::Stopped)?;
        rx.await.map_err(|_| ChainError::Stopped)
    }

    /// Submits a signed transaction (EIP-2718 bytes) from this node's user: checked,
    /// added to the pool, kept across restarts, and gossiped.
    pub async fn submit_raw(&self, raw: Vec<u8>) -> Result<B256, ChainError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Submit {
                tx: crate::tx::RecoveredTx::decode(&raw),
                raw,
                from: None,
                reply: Some(reply),
            })
            .await
            .map_err(|_| ChainError::Stopped)?;
        Ok(rx.await.map_err(|_| ChainError::Stopped)??)
    }

    /// Gives the chain a block (RLP), as a peer would.
    pub async fn submit_block(&self, raw: Vec<u8>) -> Result<BlockOutcome, ChainError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Block {
                raw,
                from: None,
                reply: Some(reply),
            })
            .await
            .map_err(|_| ChainError::Stopped)?;
        rx.await.map_err(|_| ChainError::Stopped)?
    }

    pub fn events(&self) -> broadcast::Receiver<ChainEvent> {
        self.events.subscribe()
    }

    pub fn mining(&self) -> MiningState {
        self.mining.borrow().clone()
    }

    /// Turns mining on or off, optionally changing threads and reward address.
    pub fn set_mining(
        &self,
        enabled: bool,
        threads: Option<usize>,
        coinbase: Option<Address>,
    ) -> MiningState {
        self.mining.send_modify(|m| {
            m.enabled = enabled;
            if let Some(t) = threads {
                m.threads = t.max(1);
            }
            if let Some(c) = coinbase {
                m.coinbase = c;
            }
        });
        self.mining()
    }

    /// Stops mining and returns once the miner is idle and any block it sealed meanwhile
    /// has been taken by the chain: after this, the head moves only by blocks of others.
    pub async fn stop_mining(&self) -> Result<(), ChainError> {
        self.set_mining(false, None, None);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.miner_idle.load(Ordering::Acquire) {
            if tokio::time::Instant::now() > deadline {
                return Err(ChainError::MinerStuck(std::time::Duration::from_secs(10)));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The actor takes inputs in order: once this read is answered, a block the
        // miner handed over before going idle has been imported.
        self.read(|_| ()).await
    }

    /// Caps hashing at `rate` hashes per second (0: no cap).
    pub fn set_hash_rate_cap(&self, rate: u64) {
        self.mining.send_modify(|m| m.max_hashes_per_sec = rate);
    }

    /// The gossip topic blocks travel on (named after this chain's genesis).
    pub fn block_topic(&self) -> &str {
        &self.block_topic
    }

    pub fn json_rpc_url(&self) -> Option<String> {
        self.rpc_url.lock().ok().and_then(|u| u.clone())
    }

    pub async fn status(&self) -> Result<ChainStatus, ChainError> {
        let mining = self.mining();
        let hash_rate = self.hash_rate.load(Ordering::Relaxed);
        let peers = self.peers.load(Ordering::Relaxed) as usize;
        let json_rpc = self.json_rpc_url();
        let chain_id = self.chain_id;
        self.read(move |c| {
            let head = c.chain.head();
            ChainStatus {
                chain_id,
                height: head.number,
                head: c.chain.head_hash().to_string(),
                difficulty: head.difficulty.to_string(),
                total_work: c.chain.total_work().to_string(),
                base_fee: c.chain.child_base_fee(head),
                hash_rate,
                mempool: c.pool.len(),
                peers,
                mining,
                json_rpc,
            }
        })
        .await
    }

    pub async fn balance(&self, a: Address) -> Result<U256, ChainError> {
        self.read(move |c| {
            c.chain
                .state()
                .account_or_log(&a)
                .map(|r| r.balance)
                .unwrap_or_default()
        })
        .await
    }

    /// The next nonce for `a`, counting its pending transactions.
    pub async fn pending_nonce(&self, a: Address) -> Result<u64, ChainError> {
        self.read(move |c| c.pending_nonce(&a)).await
    }

    /// Waits until the head reaches `number`; returns the height, or an error once
    /// `timeout` has passed.
    pub async fn wait_for_height(
        &self,
        number: u64,
        timeout: std::time::Duration,
    ) -> Result<u64, ChainError> {
        let mut events = self.events();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let h = self.read(|c| c.chain.head_number()).await?;
            if h >= number {
                return Ok(h);
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => {
                    return Err(ChainError::HeightTimeout {
                        height: h,
                        wanted: number,
                        waited: timeout,
                    });
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(ChainError::Stopped),
                Ok(_) => {}
            }
        }
    }
}
