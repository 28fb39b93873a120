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

use crate::anchor::{AnchorState, SharedAnchor};
use crate::error::VaultError;
use crate::fhir::validate;
use crate::vault::{GrantInfo, Imported, LogCheck, RecordInfo, Revoked, Vault, open_fetched};
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

/// The log checked, and its anchors against the chain.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    #[serde(flatten)]
    pub log: LogCheck,
    /// Anchors found in blocks with the hash the log holds at their entry.
    pub anchors_confirmed: usize,
    /// Anchors sent, not yet seen in a block.
    pub anchors_pending: usize,
    /// The newest confirmed anchor: entry, block, transaction.
    pub last_anchor: Option<(u64, u64, String)>,
    /// Why there is no anchor to check, when there is none.
    pub note: Option<String>,
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
        let (log, pinned) = self.blocking(|v| v.verify_log()).await?;
        let mut out = Verified {
            log,
            anchors_confirmed: 0,
            anchors_pending: 0,
            last_anchor: None,
            note: None,
        };
        let Some(anchor) = &self.inner.anchor else {
            out.note = Some(
                "not anchored: the chain service is not running on this node ([chain] enabled)"
                    .into(),
            );
            return Ok(out);
        };
        for (seq, hash, row) in pinned {
            let Some(block) = row.block else {
                out.anchors_pending += 1;
                continue;
            };
            let mined = anchor
                .find(row.tx)
                .await
                .map_err(|e| VaultError::Peer(e.to_string()))?;
            match mined {
                Some(m) if crate::log::parse_anchor(&m.payload) == Some((seq, hash)) => {
                    out.anchors_confirmed += 1;
                    out.last_anchor = Some((seq, m.block, hex::encode(row.tx)));
                }
                Some(_) => {
                    return Err(VaultError::LogBroken {
                        entry: seq,
                        why: format!("the anchor in block {block} holds another head"),
                    });
                }
                None => {
                    return Err(VaultError::LogBroken {
                        entry: seq,
                        why: format!(
                            "its anchor (transaction 0x{}, block {block}) is not on the chain",
                            hex::encode(row.tx)
                        ),
                    });
                }
            }
        }
        if out.anchors_confirmed == 0 && out.anchors_pending == 0 {
            out.note = Some(match self.anchor_state().last_error {
                Some(e) => format!("not anchored yet: {e}"),
                None => "not anchored yet".into(),
            });
        }
        Ok(out)
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

/// Accepts provider streams until shutdown, at most `max` at once.
pub(crate) async fn accept(
    handle: VaultHandle,
    mut incoming: libp2p_stream::IncomingStreams,
    max: usize,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
    loop {
        let (peer, stream) = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            s = incoming.next() => match s { Some(s) => s, None => break },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let h = handle.clone();
        tokio::spawn(async move {
            h.serve(peer, stream).await;
            drop(permit);
        });
    }
}
