//! Where one service reads another: the node implements each consumer's trait over the
//! provider's handle (see docs/architecture.md, "Services that need each other").

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use nodus_chain::ChainHandle;
use nodus_compute::pay::{Address as PayAddress, PayError, Payer, SharedPayer, Signed};
use nodus_gateway::{AddSource, Content, Reader, SourceError, TorrentView};
use nodus_msg::anonymous::{Anonymity, AnonymityError, SharedAnonymity};
use nodus_msg::{MsgError, MsgHandle};
use nodus_onion::OnionHandle;
use nodus_torrent::{AddRequest, FileReader, TorrentError, TorrentHandle, TorrentInfo};
use nodus_vault::{Anchor, AnchorError, Mined, SharedAnchor};
use nodus_voice::{Contact, Incoming, SharedSignaling, Signaling, SignalingError};
use serde_json::{Value, json};

/// The gateway's view of the torrent service.
pub struct TorrentContent(pub TorrentHandle);

fn source_error(e: TorrentError) -> SourceError {
    let msg = e.to_string();
    match e {
        TorrentError::NotFound(_) | TorrentError::NoSuchFile { .. } => SourceError::NotFound(msg),
        TorrentError::Metainfo(_)
        | TorrentError::Magnet(_)
        | TorrentError::BadSource(_)
        | TorrentError::NotAFile(_)
        | TorrentError::TorrentFileTooLarge { .. } => SourceError::BadRequest(msg),
        TorrentError::NotYet { .. } | TorrentError::NoMetadata(_) => SourceError::NotYet(msg),
        TorrentError::Paused(_) | TorrentError::Stopped => SourceError::Unavailable(msg),
        _ => SourceError::Other(msg),
    }
}

fn view(t: TorrentInfo) -> TorrentView {
    TorrentView {
        has_metadata: t.pieces_total > 0,
        id: t.id,
        name: t.name,
        files: t.files,
        size: t.size,
        done: t.done,
    }
}

impl Content for TorrentContent {
    fn torrent(&self, id: &str) -> Result<TorrentView, SourceError> {
        self.0.get(id).map(view).map_err(source_error)
    }

    fn list(&self) -> Vec<TorrentView> {
        self.0.list().into_iter().map(view).collect()
    }

    fn add(&self, source: AddSource) -> BoxFuture<'_, Result<(String, bool), SourceError>> {
        async move {
            let req = match source {
                AddSource::Link(link) => AddRequest {
                    source: link,
                    ..Default::default()
                },
                AddSource::Torrent(bytes) => AddRequest {
                    torrent_base64: Some(data_encoding::BASE64.encode(&bytes)),
                    ..Default::default()
                },
            };
            match self.0.add(req).await {
                Ok(info) => Ok((info.id, true)),
                Err(TorrentError::Duplicate(id)) => Ok((id, false)),
                Err(e) => Err(source_error(e)),
            }
        }
        .boxed()
    }

    fn wait_metadata(
        &self,
        id: &str,
        wait: Duration,
    ) -> BoxFuture<'_, Result<TorrentView, SourceError>> {
        let id = id.to_string();
        async move {
            self.0
                .wait_metadata(&id, wait)
                .await
                .map(view)
                .map_err(source_error)
        }
        .boxed()
    }

    fn open(&self, id: &str, file: usize) -> Result<Box<dyn Reader>, SourceError> {
        let r = self.0.open_file(id, file).map_err(source_error)?;
        Ok(Box::new(TorrentReader(r)))
    }

    fn remove(&self, id: &str) -> BoxFuture<'_, Result<(), SourceError>> {
        let id = id.to_string();
        async move { self.0.remove(&id, true).await.map_err(source_error) }.boxed()
    }
}

struct TorrentReader(FileReader);

impl Reader for TorrentReader {
    fn read(
        &mut self,
        pos: u64,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Bytes, SourceError>> {
        async move { self.0.read(pos, max, wait).await.map_err(source_error) }.boxed()
    }
}

/// An account of this node on the chain whose key is derived from the node's identity
/// (HKDF, libp2p's `derive_secret`) for one use: stable across restarts, no extra file.
struct ChainAccount {
    chain: ChainHandle,
    key: nodus_chain::wallet::Key,
    /// One signer at a time, so two transactions never take the same nonce.
    signing: tokio::sync::Mutex<()>,
}

/// Tip offered per gas (1 gwei), as the CLI's `send`.
const TIP: u128 = 1_000_000_000;
/// Gas for 21,000 plus a 44-byte payload (at most 16 per byte).
const ANCHOR_GAS: u64 = 30_000;
/// Gas of a plain transfer.
const TRANSFER_GAS: u64 = 21_000;

impl ChainAccount {
    fn derive(
        chain: ChainHandle,
        identity: &libp2p::identity::Keypair,
        purpose: &[u8],
    ) -> Option<ChainAccount> {
        let secret = identity.derive_secret(purpose)?;
        let key = nodus_chain::wallet::Key::from_bytes(secret).ok()?;
        Some(ChainAccount {
            chain,
            key,
            signing: tokio::sync::Mutex::new(()),
        })
    }

    async fn rpc(&self, method: &str, params: Vec<Value>) -> Result<Value, AccountError> {
        nodus_chain::rpc::call_method(&self.chain, method, params)
            .await
            .map_err(|e| AccountError::Rpc {
                method: method.to_string(),
                message: e.message,
            })
    }

    /// The chain id and the fee cap to offer: twice the base fee, plus the tip.
    async fn terms(&self) -> Result<(u64, u128), AccountError> {
        let price = quantity(&self.rpc("eth_gasPrice", vec![]).await?)?;
        let chain_id = quantity(&self.rpc("eth_chainId", vec![]).await?)? as u64;
        Ok((chain_id, price.saturating_sub(TIP) * 2 + TIP))
    }

    async fn balance(&self, who: nodus_chain::primitives::Address) -> Result<u128, AccountError> {
        let b = self.chain.balance(who).await?;
        Ok(u128::try_from(b).unwrap_or(u128::MAX))
    }

    /// The block that holds transaction `tx`, if one does, and the transaction.
    async fn mined(&self, tx: [u8; 32]) -> Result<Option<(u64, Value)>, AccountError> {
        let hash = json!(format!("0x{}", hex::encode(tx)));
        let receipt = self
            .rpc("eth_getTransactionReceipt", vec![hash.clone()])
            .await?;
        if receipt.is_null() {
            return Ok(None);
        }
        let t = self.rpc("eth_getTransactionByHash", vec![hash]).await?;
        Ok(Some((quantity(&receipt["blockNumber"])? as u64, t)))
    }
}

/// Why a read or write of a [`ChainAccount`] failed.
#[derive(Debug, thiserror::Error)]
enum AccountError {
    #[error("{method}: {message}")]
    Rpc { method: String, message: String },
    #[error("{0} is not a quantity")]
    NotAQuantity(Value),
    #[error(transparent)]
    Chain(#[from] nodus_chain::ChainError),
}

impl From<AccountError> for AnchorError {
    fn from(e: AccountError) -> Self {
        AnchorError::Chain(e.to_string())
    }
}

impl From<AccountError> for PayError {
    fn from(e: AccountError) -> Self {
        PayError::Chain(e.to_string())
    }
}

fn quantity(v: &Value) -> Result<u128, AccountError> {
    v.as_str()
        .and_then(|t| u128::from_str_radix(t.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| AccountError::NotAQuantity(v.clone()))
}

/// The vault's anchors, as transactions of the chain service from an account of its own.
pub struct ChainAnchor(ChainAccount);

impl ChainAnchor {
    pub fn new(chain: ChainHandle, identity: &libp2p::identity::Keypair) -> Option<ChainAnchor> {
        ChainAccount::derive(chain, identity, b"nodus vault anchor account").map(ChainAnchor)
    }
}

impl Anchor for ChainAnchor {
    fn send(&self, payload: Vec<u8>) -> BoxFuture<'_, Result<[u8; 32], AnchorError>> {
        async move {
            let a = &self.0;
            let _one = a.signing.lock().await;
            let from = a.key.address;
            let (chain_id, max_fee) = a.terms().await?;
            let balance = a.balance(from).await?;
            if balance < max_fee * ANCHOR_GAS as u128 {
                return Err(AnchorError::NoFunds {
                    account: self.account(),
                });
            }
            let nonce = a
                .chain
                .pending_nonce(from)
                .await
                .map_err(AccountError::from)?;
            let tx = nodus_chain::wallet::eip1559(
                chain_id,
                nonce,
                Some(from),
                Default::default(),
                payload.into(),
                ANCHOR_GAS,
                max_fee,
                TIP,
            );
            let hash = a
                .chain
                .submit_raw(a.key.sign_raw(tx))
                .await
                .map_err(AccountError::from)?;
            Ok(hash.0)
        }
        .boxed()
    }

    fn find(&self, tx: [u8; 32]) -> BoxFuture<'_, Result<Option<Mined>, AnchorError>> {
        async move {
            let Some((block, t)) = self.0.mined(tx).await? else {
                return Ok(None);
            };
            let payload = t["input"]
                .as_str()
                .and_then(|i| hex::decode(i.trim_start_matches("0x")).ok())
                .ok_or_else(|| AnchorError::Chain(format!("transaction without input: {t}")))?;
            Ok(Some(Mined {
                payload,
                block,
                from: t["from"].as_str().unwrap_or_default().to_string(),
            }))
        }
        .boxed()
    }

    fn account(&self) -> String {
        self.0.key.address.to_checksum(None)
    }
}

/// Compute's payouts and payments, as transfers of the chain service from the node's
/// compute account (one account: volunteers are paid to it, projects pay from it).
pub struct ChainPayer(ChainAccount);

impl ChainPayer {
    pub fn new(chain: ChainHandle, identity: &libp2p::identity::Keypair) -> Option<ChainPayer> {
        ChainAccount::derive(chain, identity, b"nodus compute account").map(ChainPayer)
    }
}

impl Payer for ChainPayer {
    fn address(&self) -> PayAddress {
        self.0.key.address.into_array()
    }

    fn sign(
        &self,
        transfers: Vec<(PayAddress, u128)>,
        after: Option<u64>,
        reserved: u128,
    ) -> BoxFuture<'_, Result<Vec<Signed>, PayError>> {
        async move {
            let a = &self.0;
            let _one = a.signing.lock().await;
            let from = a.key.address;
            let (chain_id, max_fee) = a.terms().await?;
            let balance = a.balance(from).await?;
            let next = a
                .chain
                .pending_nonce(from)
                .await
                .map_err(AccountError::from)?;
            let first = after.map_or(next, |n| next.max(n + 1));
            let mut spent = reserved;
            let mut out = Vec::new();
            for (nonce, (to, wei)) in (first..).zip(transfers) {
                let cost = wei.saturating_add(max_fee * TRANSFER_GAS as u128);
                if spent.saturating_add(cost) > balance {
                    break;
                }
                spent += cost;
                let tx = nodus_chain::wallet::eip1559(
                    chain_id,
                    nonce,
                    Some(to.into()),
                    nodus_chain::primitives::U256::from(wei),
                    Default::default(),
                    TRANSFER_GAS,
                    max_fee,
                    TIP,
                );
                let raw = a.key.sign_raw(tx);
                out.push(Signed {
                    hash: nodus_chain::primitives::keccak256(&raw).0,
                    nonce,
                    cost,
                    raw,
                });
            }
            if out.is_empty() {
                return Err(PayError::NoFunds {
                    account: from.to_checksum(None),
                    balance,
                });
            }
            Ok(out)
        }
        .boxed()
    }

    fn send(&self, raw: Vec<u8>) -> BoxFuture<'_, Result<(), PayError>> {
        async move {
            use nodus_chain::{ChainError, TxError};
            match self.0.chain.submit_raw(raw).await {
                Ok(_) => Ok(()),
                Err(ChainError::Tx(TxError::AlreadyKnown)) => Err(PayError::Known),
                Err(ChainError::Tx(TxError::NonceTooLow { .. })) => Err(PayError::NonceUsed),
                Err(e) => Err(PayError::Chain(e.to_string())),
            }
        }
        .boxed()
    }

    fn mined(&self, tx: [u8; 32]) -> BoxFuture<'_, Result<Option<u64>, PayError>> {
        async move {
            let m = self.0.mined(tx).await?;
            Ok(m.map(|(block, _)| block))
        }
        .boxed()
    }

    fn balance(&self, who: PayAddress) -> BoxFuture<'_, Result<u128, PayError>> {
        async move { Ok(self.0.balance(who.into()).await?) }.boxed()
    }
}

/// Offers what the service whose handle is `handle` provides to the services after it.
pub fn provide(
    handle: &(dyn std::any::Any + Send + Sync),
    identity: &libp2p::identity::Keypair,
    provided: &mut nodus_service::Provided,
) {
    if let Some(t) = handle.downcast_ref::<TorrentHandle>() {
        provided.insert::<nodus_gateway::SharedContent>(Arc::new(TorrentContent(t.clone())));
    }
    if let Some(o) = handle.downcast_ref::<OnionHandle>() {
        provided.insert::<SharedAnonymity>(Arc::new(OnionAnonymity(o.clone())));
    }
    if let Some(m) = handle.downcast_ref::<MsgHandle>() {
        provided.insert::<SharedSignaling>(Arc::new(MsgSignaling(m.clone())));
    }
    if let Some(c) = handle.downcast_ref::<ChainHandle>() {
        if let Some(a) = ChainAnchor::new(c.clone(), identity) {
            provided.insert::<SharedAnchor>(Arc::new(a));
        }
        if let Some(p) = ChainPayer::new(c.clone(), identity) {
            provided.insert::<SharedPayer>(Arc::new(p));
        }
    }
}

/// Messaging's view of the onion service: its anonymous identity's onion service, and
/// circuits to its contacts'.
pub struct OnionAnonymity(pub OnionHandle);

/// Messaging's circuits are its own: no SOCKS client shares them.
const MSG_ISOLATION: &[u8] = b"nodus-msg";

impl Anonymity for OnionAnonymity {
    fn serve(
        &self,
        identity: libp2p::identity::Keypair,
        port: u16,
    ) -> Result<String, AnonymityError> {
        self.0
            .serve_as(identity, port, nodus_msg::anonymous::VIRTUAL_PORT)
            .map(|s| s.address)
            .map_err(|e| AnonymityError::Onion(e.to_string()))
    }

    fn connect(
        &self,
        peer: libp2p::PeerId,
    ) -> BoxFuture<'_, Result<tokio::io::DuplexStream, AnonymityError>> {
        async move {
            let address = onion_address_of(&peer).ok_or(AnonymityError::NotAService(peer))?;
            let target = format!("{address}:{}", nodus_msg::anonymous::VIRTUAL_PORT);
            self.0
                .connect(Some((MSG_ISOLATION.to_vec(), Vec::new())), &target)
                .await
                .map_err(|e| AnonymityError::Onion(e.to_string()))
        }
        .boxed()
    }

    fn connect_peer<'a>(
        &'a self,
        peer: libp2p::PeerId,
        protocol: &'a str,
    ) -> BoxFuture<'a, Result<tokio::io::DuplexStream, AnonymityError>> {
        async move {
            self.0
                .connect_peer(Some((MSG_ISOLATION.to_vec(), Vec::new())), peer, protocol)
                .await
                .map_err(|e| AnonymityError::Onion(e.to_string()))
        }
        .boxed()
    }
}

/// The onion service address of an ed25519 peer id: its key's.
fn onion_address_of(peer: &libp2p::PeerId) -> Option<String> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest())
        .ok()?
        .try_into_ed25519()
        .ok()?;
    Some(nodus_onion::hs::address::encode(&key.to_bytes()))
}

/// Voice's view of messaging: contacts and call signals between them.
pub struct MsgSignaling(pub MsgHandle);

fn signaling_error(who: &str, e: MsgError) -> SignalingError {
    match e {
        MsgError::NoContact(_) => SignalingError::NotAContact(who.to_string()),
        e => SignalingError::Failed(e.to_string()),
    }
}

impl Signaling for MsgSignaling {
    fn contact<'a>(&'a self, who: &'a str) -> BoxFuture<'a, Result<Contact, SignalingError>> {
        async move {
            let contacts = self
                .0
                .contacts()
                .await
                .map_err(|e| signaling_error(who, e))?;
            contacts
                .into_iter()
                .find(|c| c.name == who || c.peer_id == who)
                .map(|c| Contact {
                    peer_id: c.peer_id,
                    name: c.name,
                })
                .ok_or_else(|| SignalingError::NotAContact(who.to_string()))
        }
        .boxed()
    }

    fn send<'a>(&'a self, to: &'a str, body: Vec<u8>) -> BoxFuture<'a, Result<(), SignalingError>> {
        async move {
            self.0
                .send_signal(to, nodus_voice::signal::APP, body)
                .await
                .map_err(|e| signaling_error(to, e))
        }
        .boxed()
    }

    fn incoming(&self) -> BoxStream<'static, Incoming> {
        let rx = self.0.signals();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(s) if s.app == nodus_voice::signal::APP => {
                        let from = Contact {
                            peer_id: s.from,
                            name: s.from_name,
                        };
                        return Some((Incoming { from, body: s.body }, rx));
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }
}
