//! The chain actor: one thread owns the [`Chain`] and the [`Mempool`] and applies every
//! input in order (transactions, blocks from gossip, sync and the miner, reads). Async
//! tasks around it carry gossip, serve and run sync, mine, and serve JSON-RPC.

mod gossip;
mod mining;
mod sync;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::config::ChainConfig;
use alloy_primitives::{Address, B256};
use libp2p::PeerId;
use nodus_net::NetworkHandle;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::chain::{Chain, HeadChange, Imported};
use crate::error::{ChainError, TxError};
use crate::handle::{BlockOutcome, ChainEvent, ChainHandle, Ctx, Input, MiningState, Origin};
use crate::mempool::{AccountView, Mempool};
use crate::spec::{ChainSpec, DEV_KEYS};
use crate::store::ChainBlock;
use crate::tx::RecoveredTx;
use crate::wire;

const INPUT_CAPACITY: usize = 1024;
/// Transactions accepted per commit at most.
const TX_BATCH: usize = 256;
const EVENT_CAPACITY: usize = 1024;

#[derive(Clone, Default)]
struct Metrics {
    blocks_imported: Counter,
    blocks_invalid: Counter,
    reorgs: Counter,
    txs_accepted: Counter,
    txs_rejected: Counter,
    gossip_dropped: Counter,
}

impl Metrics {
    fn register(r: &mut Registry) -> Self {
        let m = Metrics::default();
        r.register(
            "blocks_imported",
            "Blocks that became canonical",
            m.blocks_imported.clone(),
        );
        r.register(
            "blocks_invalid",
            "Blocks refused as invalid",
            m.blocks_invalid.clone(),
        );
        r.register(
            "reorgs",
            "Changes of head to another branch",
            m.reorgs.clone(),
        );
        r.register(
            "txs_accepted",
            "Transactions accepted into the pool",
            m.txs_accepted.clone(),
        );
        r.register(
            "txs_rejected",
            "Transactions refused",
            m.txs_rejected.clone(),
        );
        r.register(
            "gossip_dropped",
            "Gossip messages not sent because the queue to the overlay was full",
            m.gossip_dropped.clone(),
        );
        m
    }
}

/// Gossip topics of one chain, named by its genesis so different chains never mix.
#[derive(Clone)]
pub(crate) struct Topics {
    pub tx: String,
    pub block: String,
}

impl Topics {
    fn new(genesis: B256) -> Self {
        let id = hex::encode(&genesis[..8]);
        Topics {
            tx: format!("nodus/chain/{id}/txs/2"),
            block: format!("nodus/chain/{id}/block/1"),
        }
    }
}

/// Something to gossip, handed from the actor to the async publisher.
pub(crate) struct Publish {
    topic: String,
    data: Vec<u8>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The chain service, as the node's service list names it.
pub struct ChainService;

impl nodus_service::Service for ChainService {
    type Config = ChainConfig;
    type Handle = ChainHandle;
    type Error = ChainError;

    const PANEL: Option<nodus_service::Panel> = Some(nodus_service::Panel {
        title: "Chain",
        script: include_str!("../../ui/panel.js"),
    });

    const LEGACY_FILES: &'static [(&'static str, &'static str)] =
        &[("chain.redb", "chain.redb"), ("keystore", "keystore")];

    fn testnet(config: &mut ChainConfig, _ip: std::net::Ipv4Addr) {
        // JSON-RPC on a free port, one-second blocks from an easy start, and a cap on
        // hashing so several miners leave the machine's cores to everything else.
        config.rpc_listen = "127.0.0.1:0".into();
        config.genesis.block_time_secs = 1;
        config.genesis.initial_difficulty = 50_000;
        config.mining.max_hashes_per_sec = 200_000;
    }

    async fn start(
        ctx: nodus_service::ServiceContext<'_>,
        config: ChainConfig,
    ) -> Result<nodus_service::Started<ChainHandle>, ChainError> {
        let (handle, tasks) = spawn(
            config,
            ctx.net,
            &ctx.dir.join("chain.redb"),
            ctx.metrics,
            ctx.shutdown,
        )
        .await?;
        Ok(nodus_service::Started {
            root: vec![],
            routes: crate::http::routes(handle.clone()),
            events: Some(nodus_service::EventFeed::broadcast(handle.events.clone())),
            endpoints: handle
                .json_rpc_url()
                .map(|u| {
                    let ws = u.replacen("http://", "ws://", 1);
                    [("json_rpc".to_string(), u), ("json_rpc_ws".to_string(), ws)]
                })
                .into_iter()
                .flatten()
                .collect(),
            tasks,
            handle,
        })
    }
}

/// Starts the chain service: the actor thread, gossip, sync, the miner and (when
/// `rpc_listen` is set) the JSON-RPC server.
pub async fn spawn(
    config: ChainConfig,
    net: NetworkHandle,
    path: &Path,
    registry: &mut Registry,
    shutdown: watch::Receiver<bool>,
) -> Result<(ChainHandle, Vec<JoinHandle<()>>), ChainError> {
    let spec = ChainSpec::from_config(&config.genesis)?;
    let coinbase = if config.mining.coinbase.is_empty() {
        crate::wallet::address_of_hex(DEV_KEYS[0])?
    } else {
        config.mining.coinbase.parse::<Address>().map_err(|_| {
            ChainError::Config(format!(
                "chain.mining.coinbase `{}` is not a 0x-prefixed 20-byte address",
                config.mining.coinbase
            ))
        })?
    };
    let path = path.to_path_buf();
    let options = crate::chain::StateOptions {
        archive: config.archive,
    };
    let mut chain = tokio::task::spawn_blocking(move || {
        Chain::open_with(spec, &path, options, &mut std::iter::empty())
    })
    .await
    .map_err(|e| ChainError::Io {
        what: "opening the chain store",
        source: e.into(),
    })??;
    let topics = Topics::new(chain.genesis_hash());
    let metrics = Metrics::register(registry);
    let (tx, rx) = mpsc::channel(INPUT_CAPACITY);
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let mining = Arc::new(watch::Sender::new(MiningState {
        enabled: config.mining.enabled,
        threads: config.mining.threads.max(1),
        coinbase,
        max_hashes_per_sec: config.mining.max_hashes_per_sec,
    }));
    let handle = ChainHandle {
        tx: tx.clone(),
        events: events.clone(),
        mining: mining.clone(),
        hash_rate: Arc::new(AtomicU64::new(0)),
        miner_idle: Arc::new(AtomicBool::new(true)),
        peers: Arc::new(AtomicU64::new(0)),
        rpc_url: Arc::new(std::sync::Mutex::new(None)),
        block_topic: topics.block.clone(),
        chain_id: chain.spec.chain_id,
        calls: Arc::new(crate::handle::Calls::new(
            std::time::Duration::from_millis(config.rpc_call_timeout_ms),
            registry,
        )),
        filters: Default::default(),
    };
    let (publish_tx, publish_rx) = mpsc::channel(INPUT_CAPACITY);
    let (sync_tx, sync_rx) = mpsc::channel(64);
    let stop_mining = Arc::new(AtomicBool::new(false));
    let stored = chain.take_stored_mempool();
    let mut actor = Actor {
        chain,
        pool: Mempool::new(config.mempool_max, config.mempool_max_per_sender),
        net: net.clone(),
        events: events.clone(),
        publish: publish_tx,
        sync: sync_tx.clone(),
        topics: topics.clone(),
        metrics,
        stop_mining: stop_mining.clone(),
    };
    actor.restore_pool(stored);
    let actor_stop = Arc::new(AtomicBool::new(false));
    let stop_seen = actor_stop.clone();
    let actor_thread = std::thread::Builder::new()
        .name("nodus-chain".into())
        .spawn(move || actor.run(rx, &stop_seen))
        .map_err(|source| ChainError::Io {
            what: "starting the chain's thread",
            source,
        })?;
    let stop_flag = actor_stop.clone();
    let mut tasks = Vec::new();
    tasks.extend(
        gossip::spawn(
            net.clone(),
            handle.clone(),
            topics.clone(),
            publish_rx,
            shutdown.clone(),
        )
        .await?,
    );
    tasks.push(sync::spawn(
        net.clone(),
        handle.clone(),
        topics,
        sync_rx,
        shutdown.clone(),
    )?);
    tasks.push(mining::spawn(handle.clone(), stop_mining, shutdown.clone()));
    tasks.push(tokio::spawn(crate::rpc::filters::collect(
        handle.filters.clone(),
        handle.events(),
        shutdown.clone(),
    )));
    if !config.rpc_listen.is_empty() {
        tasks.push(
            crate::rpc::serve(
                &config.rpc_listen,
                crate::rpc::Gate {
                    hosts: config.rpc_hosts.clone(),
                    origins: config.rpc_origins.clone(),
                },
                handle.clone(),
                shutdown.clone(),
            )
            .await?,
        );
    }
    let mut stop = shutdown;
    // Owns the actor thread: on shutdown, or when this task is aborted (a node killed in
    // a test harness), the actor stops and is joined, so chain.redb is closed after.
    let guard = ActorGuard {
        tx,
        stop: stop_flag,
        thread: Some(actor_thread),
    };
    tasks.push(tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        drop(guard);
    }));
    Ok((handle, tasks))
}

/// Stops and joins the actor thread when dropped.
struct ActorGuard {
    tx: mpsc::Sender<Input>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ActorGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes an idle actor; a busy one sees the flag after its current input.
        let _ = self.tx.try_send(Input::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Actor {
    chain: Chain,
    pool: Mempool,
    net: NetworkHandle,
    events: broadcast::Sender<ChainEvent>,
    publish: mpsc::Sender<Publish>,
    sync: mpsc::Sender<PeerId>,
    topics: Topics,
    metrics: Metrics,
    /// Set to make the miner drop its template (the head changed).
    stop_mining: Arc<AtomicBool>,
}

impl Actor {
    fn run(mut self, mut rx: mpsc::Receiver<Input>, stop: &AtomicBool) {
        let mut next: Option<Input> = None;
        loop {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let input = match next.take() {
                Some(i) => i,
                None => match rx.blocking_recv() {
                    Some(i) => i,
                    None => break,
                },
            };
            match input {
                Input::Shutdown => break,
                Input::Read(f) => {
                    let ctx = Ctx {
                        chain: &self.chain,
                        pool: &self.pool,
                        now: unix_now(),
                    };
                    f(&ctx);
                }
                first @ Input::Submit { .. } => {
                    // Transactions that arrive together are taken together: one commit
                    // makes all of them durable before any is answered.
                    let mut batch = vec![first];
                    while batch.len() < TX_BATCH {
                        match rx.try_recv() {
                            Ok(i @ Input::Submit { .. }) => batch.push(i),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.accept_batch(batch);
                }
                Input::Block { raw, from, reply } => {
                    let r = match wire::decode_block(&raw) {
                        Ok(b) => self.import(b, from),
                        Err(e) => {
                            self.blame(from, &format!("undecodable block: {e}"));
                            Err(e.into())
                        }
                    };
                    if let Some(reply) = reply {
                        let _ = reply.send(r);
                    }
                }
                Input::Mined(sealed) => {
                    let raw = crate::store::encode_block(&sealed.block);
                    let (number, parent) =
                        (sealed.block.header.number, sealed.block.header.parent_hash);
                    let r = self.chain.commit_own(*sealed, unix_now());
                    if let Ok(BlockOutcome::Head { .. }) =
                        self.after_import(number, parent, r, None)
                    {
                        let _ = self.publish.try_send(Publish {
                            topic: self.topics.block.clone(),
                            data: raw,
                        });
                    }
                }
                Input::Template { coinbase, reply } => {
                    let now = unix_now();
                    let base_fee = self.chain.child_base_fee(self.chain.head());
                    let state = self.chain.state();
                    let txs = self.pool.select(base_fee, |a| state.nonce(a), 4096);
                    self.stop_mining.store(false, Ordering::Relaxed);
                    let t = self.chain.template(coinbase, txs, now);
                    if let Err(e) = &t {
                        tracing::warn!(target: "nodus::chain", "cannot build a block: {e}");
                    }
                    let _ = reply.send(t.ok());
                }
            }
        }
    }

    fn account_view(&self, a: &Address) -> AccountView {
        let rec = self.chain.state().account_or_log(a);
        AccountView {
            nonce: rec.as_ref().map(|r| r.nonce).unwrap_or_default(),
            balance: rec.map(|r| r.balance).unwrap_or_default(),
        }
    }

    /// Checks and pools a batch of transactions, persists the accepted ones in one
    /// commit, then answers, announces and gossips them.
    fn accept_batch(&mut self, batch: Vec<Input>) {
        let mut add = Vec::new();
        let mut remove = Vec::new();
        let mut done = Vec::new();
        for input in batch {
            let Input::Submit {
                raw,
                tx,
                from,
                reply,
            } = input
            else {
                continue;
            };
            let r = tx.and_then(|tx| self.try_accept(tx, &mut remove));
            match &r {
                Ok(hash) => add.push((*hash, raw.clone())),
                Err(e) => self.rejected(e, from),
            }
            done.push((r, raw, from, reply));
        }
        if (!add.is_empty() || !remove.is_empty())
            && let Err(e) = self.chain.store_mempool(add, remove)
        {
            tracing::error!(target: "nodus::chain", "cannot persist the mempool: {e}");
        }
        let mut ours = Vec::new();
        for (r, raw, from, reply) in done {
            if let Ok(hash) = &r {
                self.metrics.txs_accepted.inc();
                let _ = self.events.send(ChainEvent::PendingTx {
                    hash: hash.to_string(),
                });
                if from.is_none() {
                    ours.push(raw);
                }
            }
            if let Some(reply) = reply {
                let _ = reply.send(r);
            }
        }
        self.gossip_txs(&ours);
    }

    /// Gossips transactions taken together in as few messages as fit
    /// ([`wire::tx_messages`]). With one message per transaction, a miner missed some
    /// of 4,000 sent to another node at once (`bench chain`), and then could not mine
    /// past their nonce gaps.
    fn gossip_txs(&self, raws: &[Vec<u8>]) {
        for data in wire::tx_messages(raws) {
            if self
                .publish
                .try_send(Publish {
                    topic: self.topics.tx.clone(),
                    data,
                })
                .is_err()
            {
                self.metrics.gossip_dropped.inc();
                tracing::warn!(target: "nodus::chain", "gossip queue full: transactions not announced");
            }
        }
    }

    fn rejected(&self, e: &TxError, from: Option<Origin>) {
        self.metrics.txs_rejected.inc();
        // Garbage (not a race such as a nonce already used) costs the peer.
        if matches!(
            e,
            TxError::Decode(_)
                | TxError::Signature(_)
                | TxError::ChainId { .. }
                | TxError::Unprotected
                | TxError::Oversized(_)
        ) {
            self.blame(from, &format!("invalid transaction: {e}"));
        }
    }

    /// Pools one transaction; what it replaces is added to `removed`.
    fn try_accept(&mut self, tx: RecoveredTx, removed: &mut Vec<B256>) -> Result<B256, TxError> {
        if self.pool.contains(&tx.hash) || self.chain.tx_location(&tx.hash).ok().flatten().is_some()
        {
            return Err(TxError::AlreadyKnown);
        }
        tx.check_static(self.chain.spec.chain_id, self.chain.spec.gas_limit)?;
        let base_fee = self.chain.child_base_fee(self.chain.head());
        if tx.tip_at(base_fee).is_none() {
            return Err(TxError::FeeCapTooLow {
                max_fee: alloy_consensus::Transaction::max_fee_per_gas(tx.tx.as_ref()),
                base_fee,
            });
        }
        let view = self.account_view(&tx.sender);
        let hash = tx.hash;
        removed.extend(self.pool.add(tx, &view)?);
        Ok(hash)
    }

    fn restore_pool(&mut self, stored: Vec<Vec<u8>>) {
        let mut gone = Vec::new();
        for raw in stored {
            match RecoveredTx::decode(&raw) {
                Ok(tx) => {
                    let hash = tx.hash;
                    let view = self.account_view(&tx.sender);
                    if self.pool.add(tx, &view).is_err() {
                        gone.push(hash);
                    }
                }
                Err(_) => gone.push(alloy_primitives::keccak256(&raw)),
            }
        }
        if !gone.is_empty() {
            let _ = self.chain.store_mempool(vec![], gone);
        }
    }

    /// Counts a misbehaviour against the peer, if it is accountable for the input.
    fn blame(&self, from: Option<Origin>, why: &str) {
        if let Some(o) = from
            && o.accountable
        {
            self.net.report_misbehaviour(o.peer, why.to_string());
        }
    }

    fn import(
        &mut self,
        block: ChainBlock,
        from: Option<Origin>,
    ) -> Result<BlockOutcome, ChainError> {
        let number = block.header.number;
        let parent = block.header.parent_hash;
        let r = self.chain.import(block, unix_now());
        self.after_import(number, parent, r, from)
    }

    /// Events, pool updates and blame after an import of block `number` on `parent`.
    fn after_import(
        &mut self,
        number: u64,
        parent: B256,
        r: Result<Imported, ChainError>,
        from: Option<Origin>,
    ) -> Result<BlockOutcome, ChainError> {
        match r {
            Ok(Imported::Known) => Ok(BlockOutcome::Known),
            Ok(Imported::Side) => Ok(BlockOutcome::Side),
            Ok(Imported::Head(change)) => {
                let reorged = change.removed.len();
                self.on_head_change(change);
                Ok(BlockOutcome::Head { number, reorged })
            }
            Err(ChainError::UnknownBlock(_)) if !self.chain.knows(&parent) => {
                if let Some(o) = from {
                    let _ = self.sync.try_send(o.peer);
                }
                Ok(BlockOutcome::Orphan)
            }
            Err(e) => {
                self.metrics.blocks_invalid.inc();
                if matches!(e, ChainError::Block { .. }) {
                    self.blame(from, &e.to_string());
                }
                tracing::debug!(target: "nodus::chain", "block refused: {e}");
                Err(e)
            }
        }
    }

    fn on_head_change(&mut self, change: HeadChange) {
        self.stop_mining.store(true, Ordering::Relaxed);
        self.metrics
            .blocks_imported
            .inc_by(change.added.len() as u64);
        let mut removed_from_pool = Vec::new();
        for h in &change.included {
            if self.pool.remove(h).is_some() {
                removed_from_pool.push(*h);
            }
        }
        let mut readded = Vec::new();
        for raw in &change.returned {
            if let Ok(tx) = RecoveredTx::decode(raw) {
                let view = self.account_view(&tx.sender);
                let hash = tx.hash;
                if self.pool.add(tx, &view).is_ok() {
                    readded.push((hash, raw.clone()));
                }
            }
        }
        // Peers on the winning branch may never have seen them.
        let returned: Vec<Vec<u8>> = readded.iter().map(|(_, raw)| raw.clone()).collect();
        self.gossip_txs(&returned);
        let state = self.chain.state();
        let pruned = self.pool.prune(|a| state.nonce(a));
        removed_from_pool.extend(pruned);
        if let Err(e) = self.chain.store_mempool(readded.clone(), removed_from_pool) {
            tracing::error!(target: "nodus::chain", "cannot persist the mempool: {e}");
        }
        let head = self.chain.head_hash();
        if !change.removed.is_empty() {
            self.metrics.reorgs.inc();
            tracing::info!(target: "nodus::chain", depth = change.removed.len(), returned = readded.len(), "reorg to {head}");
            let _ = self.events.send(ChainEvent::Reorg {
                depth: change.removed.len(),
                old_head: change
                    .removed
                    .first()
                    .map(|h| h.to_string())
                    .unwrap_or_default(),
                new_head: head.to_string(),
                returned_txs: readded.len(),
            });
        }
        for h in &change.added {
            if let Some(header) = self.chain.header(h) {
                let txs = self
                    .chain
                    .block(h)
                    .ok()
                    .flatten()
                    .map(|b| b.body.transactions.len())
                    .unwrap_or(0);
                let _ = self.events.send(ChainEvent::NewHead {
                    number: header.number,
                    hash: h.to_string(),
                    txs,
                });
            }
        }
    }
}

/// Resolves once shutdown is signalled (without holding the watch's lock across awaits).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
