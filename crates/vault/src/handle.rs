//! The cloneable API the node's routes, the CLI and tests use. Blocking store work runs
//! on tokio's blocking threads; the provider's side of the protocol (asking for a key,
//! fetching, appending) is here too.

use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use libp2p::identity::Keypair;
use nodus_net::{NetworkHandle, PeerId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

pub use crate::anchor::Verified;
use crate::anchor::{AnchorState, SharedAnchor};
use crate::error::VaultError;
use crate::fhir::validate;
use crate::vault::{GrantInfo, Imported, RecordInfo, Revoked, Vault, open_fetched};
use crate::wire::{self, Refusal, Reply, Request, WireRecord};

/// Largest sum of record bytes one fetch takes from a patient's node.
pub const MAX_FETCH_BYTES: usize = 512 << 20;

/// What the vault tells the node's event stream.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VaultEvent {
    Imported { created: usize, updated: usize },
    Granted { provider: String, records: usize },
    Revoked { provider: String, rotated: usize },
    Served { provider: String, records: usize },
    Refused { provider: String, reason: String },
    Appended { provider: String, record: String },
    Anchored { entry: u64, block: u64 },
    Replicated { replica: String, upto: u64 },
}

#[derive(Clone, Default)]
pub struct Metrics {
    pub records: Gauge,
    pub served: Counter,
    pub refused: Counter,
    pub appended: Counter,
    pub garbage: Counter,
}

impl Metrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register("records", "Records held", self.records.clone());
        r.register(
            "fetches_served",
            "Provider fetches answered",
            self.served.clone(),
        );
        r.register(
            "fetches_refused",
            "Provider requests refused (no grant, expired, other types)",
            self.refused.clone(),
        );
        r.register(
            "appends",
            "Records appended by providers",
            self.appended.clone(),
        );
        r.register(
            "bad_requests",
            "Vault protocol requests that did not decode or broke its limits",
            self.garbage.clone(),
        );
    }
}

pub(crate) struct Inner {
    pub vault: Arc<Vault>,
    pub net: NetworkHandle,
    pub key: Keypair,
    pub anchor: Option<SharedAnchor>,
    pub anchor_state: Mutex<AnchorState>,
    pub events: broadcast::Sender<VaultEvent>,
    pub metrics: Metrics,
    /// Bytes this node holds at most for one patient.
    pub held_budget: u64,
    /// Wakes the replicator after a write.
    pub replicate: tokio::sync::Notify,
    /// The last failure to update each replica, for status.
    pub replica_errors: Mutex<std::collections::HashMap<String, String>>,
}

/// The vault's API. Cloning is cheap.
#[derive(Clone)]
pub struct VaultHandle {
    pub(crate) inner: Arc<Inner>,
}

/// What identifies this node as a provider: its peer id and the X25519 key grants are
/// sealed to. `card` (`<peer id>:<key hex>`) lets a patient grant while this node is
/// offline.
#[derive(Debug, Clone, Serialize)]
pub struct VaultId {
    pub peer: String,
    pub key: String,
    pub card: String,
}

/// Records a provider fetched, decrypted.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    pub patient: String,
    pub records: Vec<Value>,
}

impl VaultHandle {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Vault) -> Result<T, VaultError> + Send + 'static,
    ) -> Result<T, VaultError> {
        let v = self.inner.vault.clone();
        tokio::task::spawn_blocking(move || f(&v))
            .await
            .map_err(|_| VaultError::Stopped)?
    }

    fn me(&self) -> String {
        self.inner.vault.me().to_string()
    }

    fn emit(&self, e: VaultEvent) {
        let _ = self.inner.events.send(e);
        self.inner.replicate.notify_one();
    }

    pub fn events(&self) -> broadcast::Receiver<VaultEvent> {
        self.inner.events.subscribe()
    }

    pub fn id(&self) -> VaultId {
        let key = hex::encode(self.inner.vault.keys().public());
        VaultId {
            card: format!("{}:{key}", self.me()),
            peer: self.me(),
            key,
        }
    }

    pub async fn import(&self, bundle: Vec<u8>) -> Result<Imported, VaultError> {
        let me = self.me();
        let done = self.blocking(move |v| v.import(&bundle, &me)).await?;
        self.refresh_count().await;
        if done.entry.is_some() {
            self.emit(VaultEvent::Imported {
                created: done.created,
                updated: done.updated,
            });
        }
        Ok(done)
    }

    async fn refresh_count(&self) {
        if let Ok(n) = self.blocking(|v| v.count()).await {
            self.inner.metrics.records.set(n as i64);
        }
    }

    pub async fn list(&self, rtype: Option<String>) -> Result<Vec<RecordInfo>, VaultError> {
        self.blocking(move |v| v.list(rtype.as_deref())).await
    }

    pub async fn show(&self, rtype: String, id: String) -> Result<Value, VaultError> {
        self.blocking(move |v| v.show(&rtype, &id)).await
    }

    pub async fn resources(&self, rtype: Option<String>) -> Result<Vec<Value>, VaultError> {
        self.blocking(move |v| v.resources(rtype.as_deref())).await
    }

    pub async fn export(&self) -> Result<Vec<u8>, VaultError> {
        self.blocking(|v| v.export()).await
    }

    /// Grants `provider`: a peer id (its key is asked for over the overlay) or a card
    /// (`<peer id>:<key hex>`, `nodus vault id` on its node).
    pub async fn grant(
        &self,
        provider: &str,
        types: Vec<String>,
        until_ms: Option<u64>,
    ) -> Result<GrantInfo, VaultError> {
        let (peer, public) = match provider.trim().split_once(':') {
            Some((peer, key)) => {
                let peer: PeerId = peer
                    .parse()
                    .map_err(|_| VaultError::BadProvider(provider.into()))?;
                let key: [u8; 32] = hex::decode(key)
                    .ok()
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| VaultError::BadProvider(provider.into()))?;
                (peer, key)
            }
            None => {
                let peer: PeerId = provider
                    .trim()
                    .parse()
                    .map_err(|_| VaultError::BadProvider(provider.into()))?;
                (peer, self.key_of(peer).await?)
            }
        };
        let me = self.me();
        let p = peer.to_string();
        let info = self
            .blocking(move |v| v.grant(&p, public, types, until_ms, &me))
            .await?;
        self.emit(VaultEvent::Granted {
            provider: info.provider.clone(),
            records: info.records,
        });
        Ok(info)
    }

    pub async fn grants(&self) -> Result<Vec<GrantInfo>, VaultError> {
        self.blocking(|v| v.grants()).await
    }

    pub async fn revoke(&self, provider: &str) -> Result<Revoked, VaultError> {
        let me = self.me();
        let p = provider.trim().to_string();
        let done = self.blocking(move |v| v.revoke(&p, &me)).await?;
        self.emit(VaultEvent::Revoked {
            provider: done.provider.clone(),
            rotated: done.rotated,
        });
        Ok(done)
    }

    pub async fn log(&self, from: u64, limit: usize) -> Result<Vec<Value>, VaultError> {
        self.blocking(move |v| v.log(from, limit)).await
    }

    /// The vault's clock, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.inner.vault.now()
    }

    /// The log's length and head hash.
    pub async fn head(&self) -> Result<(u64, [u8; 32]), VaultError> {
        self.blocking(|v| v.head()).await
    }

    /// The account that pays for anchors, when the chain runs on this node.
    pub fn anchor_account(&self) -> Option<String> {
        self.inner.anchor.as_ref().map(|a| a.account())
    }

    pub fn anchor_state(&self) -> AnchorState {
        self.inner
            .anchor_state
            .lock()
            .expect("anchor state")
            .clone()
    }

    /// Checks the chain of hashes, then each confirmed anchor against the chain.
    pub async fn verify(&self) -> Result<Verified, VaultError> {
        crate::anchor::verify(
            &self.inner.vault,
            self.inner.anchor.as_ref(),
            self.anchor_state().last_error,
        )
        .await
    }

    pub async fn status(&self) -> Result<Value, VaultError> {
        let (records, (entries, head), grants) = self
            .blocking(|v| Ok((v.count()?, v.head()?, v.grants()?.len())))
            .await?;
        Ok(serde_json::json!({
            "peer": self.me(),
            "key": hex::encode(self.inner.vault.keys().public()),
            "records": records,
            "grants": grants,
            "log_entries": entries,
            "log_head": hex::encode(head),
            "anchor": AnchorState {
                account: self.anchor_account(),
                ..self.anchor_state()
            },
        }))
    }

    async fn request(&self, peer: PeerId, req: &Request) -> Result<libp2p::Stream, VaultError> {
        let mut s = self
            .inner
            .net
            .open_stream(peer, wire::PROTOCOL)
            .await
            .map_err(|e| VaultError::Peer(format!("cannot reach {peer}: {e}")))?;
        wire::write(&mut s, req)
            .await
            .map_err(|e| VaultError::Peer(format!("{peer}: {e}")))?;
        Ok(s)
    }

    async fn reply(peer: PeerId, s: &mut libp2p::Stream) -> Result<Reply, VaultError> {
        match wire::read::<_, Reply>(s).await {
            Ok(Reply::Refused(r)) => Err(VaultError::Refused(r)),
            Ok(r) => Ok(r),
            Err(e) => Err(VaultError::Peer(format!("{peer}: {e}"))),
        }
    }

    /// A node's X25519 vault key, asked over the overlay.
    pub async fn key_of(&self, peer: PeerId) -> Result<[u8; 32], VaultError> {
        let mut s = self.request(peer, &Request::Key).await?;
        match Self::reply(peer, &mut s).await? {
            Reply::Key { public } => Ok(public),
            other => Err(VaultError::Peer(format!(
                "{peer} answered {other:?} to Key"
            ))),
        }
    }

    /// Fetches and opens what `patient` granted this node (of `types`; all when empty).
    pub async fn fetch(&self, patient: PeerId, types: Vec<String>) -> Result<Fetched, VaultError> {
        let mut s = self.request(patient, &Request::Fetch { types }).await?;
        let (no, enc, sealed, total) = match Self::reply(patient, &mut s).await? {
            Reply::Grant {
                patient: p,
                no,
                enc,
                sealed,
                total,
            } if p == patient.to_string() => (no, enc, sealed, total),
            other => {
                return Err(VaultError::Peer(format!(
                    "{patient} answered {other:?} to Fetch"
                )));
            }
        };
        let mut records: Vec<WireRecord> = Vec::new();
        let mut bytes = 0usize;
        loop {
            match Self::reply(patient, &mut s).await? {
                Reply::Records(batch) => {
                    bytes += batch
                        .iter()
                        .map(|r| r.body.len() + r.wrap.len())
                        .sum::<usize>();
                    records.extend(batch);
                    if records.len() as u64 > total || bytes > MAX_FETCH_BYTES {
                        return Err(VaultError::Peer(format!(
                            "{patient} sent more than it said"
                        )));
                    }
                }
                Reply::Done => break,
                other => {
                    return Err(VaultError::Peer(format!(
                        "{patient} answered {other:?} in a fetch"
                    )));
                }
            }
        }
        let keys = self.inner.vault.clone();
        let me = self.me();
        let p = patient.to_string();
        let opened = tokio::task::spawn_blocking(move || {
            open_fetched(keys.keys(), &me, &p, no, &enc, &sealed, &records)
        })
        .await
        .map_err(|_| VaultError::Stopped)??;
        Ok(Fetched {
            patient: patient.to_string(),
            records: opened,
        })
    }

    /// Appends `resource` (given an id if it has none) to `patient`'s vault, signed by
    /// this node's identity key.
    pub async fn append(
        &self,
        patient: PeerId,
        mut resource: Value,
    ) -> Result<RecordInfo, VaultError> {
        if resource.get("id").is_none()
            && let Some(o) = resource.as_object_mut()
        {
            o.insert("id".into(), Value::String(new_id()));
        }
        let rtype = resource["resourceType"]
            .as_str()
            .unwrap_or("Resource")
            .to_string();
        validate::resource(&resource, &rtype)?;
        let bytes = serde_json::to_vec(&resource).expect("JSON");
        if bytes.len() > wire::MAX_RESOURCE {
            return Err(VaultError::Refused(Refusal::Malformed));
        }
        let signature = self
            .inner
            .key
            .sign(&wire::append_message(&patient.to_string(), &bytes))
            .map_err(|e| VaultError::Peer(e.to_string()))?;
        let req = Request::Append {
            resource: bytes,
            public_key: self.inner.key.public().encode_protobuf(),
            signature,
        };
        let mut s = self.request(patient, &req).await?;
        match Self::reply(patient, &mut s).await? {
            Reply::Appended { rtype, id, version } => Ok(RecordInfo {
                rtype,
                id,
                version,
                author: Some(self.me()),
            }),
            other => Err(VaultError::Peer(format!(
                "{patient} answered {other:?} to Append"
            ))),
        }
    }

    /// Serves one provider's stream (see [`crate::server`]).
    pub(crate) async fn serve(&self, peer: PeerId, stream: libp2p::Stream) {
        crate::server::serve(self, peer, stream).await
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

/// Largest copy a restore takes from a replica.
pub const MAX_RESTORE_BYTES: usize = 1 << 30;

impl VaultHandle {
    /// Keeps this vault on `peer` too (which must agree: `nodus vault hold <me>` there).
    pub async fn add_replica(&self, peer: PeerId) -> Result<bool, VaultError> {
        let p = peer.to_string();
        let new = self.blocking(move |v| v.add_replica(&p)).await?;
        self.inner.replicate.notify_one();
        Ok(new)
    }

    pub async fn remove_replica(&self, peer: PeerId) -> Result<bool, VaultError> {
        let p = peer.to_string();
        self.blocking(move |v| v.remove_replica(&p)).await
    }

    /// The replicas, how far each is, and why one is not when it failed.
    pub async fn replicas(&self) -> Result<Vec<Value>, VaultError> {
        let list = self.blocking(|v| v.replicas()).await?;
        let errors = self
            .inner
            .replica_errors
            .lock()
            .expect("replica errors")
            .clone();
        Ok(list
            .into_iter()
            .map(|r| {
                let mut v = serde_json::to_value(&r).unwrap_or_default();
                if r.behind > 0
                    && let Some(e) = errors.get(&r.peer)
                {
                    v["last_error"] = Value::String(e.clone());
                }
                v
            })
            .collect())
    }

    /// Agrees to hold a copy of `patient`'s vault.
    pub async fn hold(&self, patient: PeerId) -> Result<bool, VaultError> {
        let p = patient.to_string();
        self.blocking(move |v| v.hold_for(&p)).await
    }

    pub async fn holdings(&self) -> Result<Vec<crate::replica::HoldingInfo>, VaultError> {
        self.blocking(|v| v.holdings()).await
    }

    /// Brings `replica` up to date; how far it holds now.
    pub async fn sync_replica(&self, replica: &str) -> Result<u64, VaultError> {
        let peer: PeerId = replica
            .parse()
            .map_err(|_| VaultError::BadProvider(replica.into()))?;
        let acked = self
            .blocking({
                let r = replica.to_string();
                move |v| {
                    Ok(v.replicas()?
                        .into_iter()
                        .find(|x| x.peer == r)
                        .map(|x| x.acked))
                }
            })
            .await?
            .ok_or_else(|| VaultError::Peer(format!("{replica} is not a replica of this vault")))?;
        let (snap, chunks) = self.blocking(move |v| v.changes_since(acked)).await?;
        let upto = snap.upto;
        let mut s = self.request(peer, &Request::Hold(snap)).await?;
        for c in chunks {
            wire::write(&mut s, &Request::HoldMore(c))
                .await
                .map_err(|e| VaultError::Peer(format!("{peer}: {e}")))?;
        }
        wire::write(&mut s, &Request::HoldEnd)
            .await
            .map_err(|e| VaultError::Peer(format!("{peer}: {e}")))?;
        match Self::reply(peer, &mut s).await? {
            Reply::Held { upto: held } if held == upto => {
                let r = replica.to_string();
                self.blocking(move |v| v.set_acked(&r, held)).await?;
                let _ = self.inner.events.send(VaultEvent::Replicated {
                    replica: replica.to_string(),
                    upto: held,
                });
                Ok(held)
            }
            other => Err(VaultError::Peer(format!(
                "{peer} answered {other:?} to Hold"
            ))),
        }
    }

    /// Brings every replica that is behind up to date; failures are kept for status.
    pub async fn sync_replicas(&self) {
        let Ok(list) = self.blocking(|v| v.replicas()).await else {
            return;
        };
        for r in list.into_iter().filter(|r| r.behind > 0) {
            let result = self.sync_replica(&r.peer).await;
            let mut errors = self.inner.replica_errors.lock().expect("replica errors");
            match result {
                Ok(_) => {
                    errors.remove(&r.peer);
                }
                Err(e) => {
                    tracing::debug!(target: "nodus::vault", replica = %r.peer, "replicating: {e}");
                    errors.insert(r.peer.clone(), e.to_string());
                }
            }
        }
    }

    /// Takes this (empty) vault back from `replica`'s copy.
    pub async fn restore(&self, replica: PeerId) -> Result<crate::replica::Restored, VaultError> {
        let mut s = self.request(replica, &Request::Restore).await?;
        let snap = match Self::reply(replica, &mut s).await? {
            Reply::Snapshot(snap) => snap,
            other => {
                return Err(VaultError::Peer(format!(
                    "{replica} answered {other:?} to Restore"
                )));
            }
        };
        let mut chunks = Vec::new();
        let mut bytes = 0;
        loop {
            match Self::reply(replica, &mut s).await? {
                Reply::Chunk(c) => {
                    bytes += c.bytes();
                    if bytes > MAX_RESTORE_BYTES {
                        return Err(VaultError::Peer(format!(
                            "{replica} sent more than {MAX_RESTORE_BYTES} bytes"
                        )));
                    }
                    chunks.push(c);
                }
                Reply::Done => break,
                other => {
                    return Err(VaultError::Peer(format!(
                        "{replica} answered {other:?} in a restore"
                    )));
                }
            }
        }
        let done = self.blocking(move |v| v.restore(snap, chunks)).await?;
        self.refresh_count().await;
        Ok(done)
    }
}

/// Runs the replicator until shutdown: after every write, and every few seconds for
/// replicas that were away.
pub(crate) async fn replicate(
    handle: VaultHandle,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = handle.inner.replicate.notified() => {}
            _ = tick.tick() => {}
        }
        handle.sync_replicas().await;
    }
}

/// A random UUID (version 4) as FHIR ids are often written.
pub fn new_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Accepts provider streams until shutdown, at most `max` at once. The streams being
/// served are this task's: when it is stopped or aborted, so are they.
pub(crate) async fn accept(
    handle: VaultHandle,
    mut incoming: libp2p_stream::IncomingStreams,
    max: usize,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
    let mut serving = tokio::task::JoinSet::new();
    loop {
        let (peer, stream) = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            Some(_) = serving.join_next(), if !serving.is_empty() => continue,
            s = incoming.next() => match s { Some(s) => s, None => break },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let h = handle.clone();
        serving.spawn(async move {
            h.serve(peer, stream).await;
            drop(permit);
        });
    }
}
