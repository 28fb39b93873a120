//! nodus-vault: patient-held health records.
//!
//! A patient imports FHIR R4 bundles into their node's vault; each resource becomes a
//! record sealed under its own data key. The patient grants a provider (a peer) the
//! records of some types until a date; the provider's node fetches them over
//! `/nodus/vault/1` ([`wire`]) and opens them with the grant key sealed to it by HPKE
//! ([`crypto`]), and may append records of its own, signed. Revoking rotates the data
//! keys of everything the grant covered. Every import, grant, revoke, fetch (refusals
//! included) and append is an AuditEvent in a hash-chained log ([`log`]) whose head is
//! anchored on the chain ([`anchor`]). FHIR tooling reads the vault through a FHIR read
//! API ([`fhir_api`]).
//!
//! Invariants:
//! - What is stored of a record is ciphertext; its data key is stored only wrapped
//!   (under the node's master key and under the grant keys of the grants that cover
//!   it). Keys live in `<data dir>/vault/vault.key`, mode 0600, never in logs.
//! - An import is validated whole before anything is written, and written in one
//!   transaction with its audit entry: `kill -9` leaves all of a bundle or none.
//! - A provider reads only what a live grant covers; after a revoke, nothing written
//!   under the new keys opens with anything the provider ever held.
//! - Nothing is served that could not be logged.
//! - A peer's request that does not decode or breaks a limit is dropped, counted and
//!   reported to the overlay; nothing a peer claims is allocated before it is sent.

pub mod anchor;
pub mod config;
pub mod crypto;
mod error;
pub mod fhir;
pub mod fhir_api;
pub mod floor;
pub mod handle;
pub mod http;
pub mod log;
pub mod replica;
mod server;
pub mod store;
pub mod synthetic;
pub mod vault;
pub mod wire;

use std::sync::{Arc, Mutex};

pub use anchor::{Anchor, AnchorError, Mined, SharedAnchor};
pub use config::VaultConfig;
pub use error::VaultError;
pub use handle::{Fetched, VaultEvent, VaultHandle, VaultId, Verified};

/// The vault, as the node's service list names it.
pub struct VaultService;

impl nodus_service::Service for VaultService {
    type Config = VaultConfig;
    type Handle = VaultHandle;
    type Error = VaultError;

    const PANEL: Option<nodus_service::Panel> = Some(nodus_service::Panel {
        title: "Health records",
        script: include_str!("../ui/panel.js"),
    });

    fn testnet(config: &mut VaultConfig, _ip: std::net::Ipv4Addr) {
        config.anchor_interval_secs = 1;
    }

    async fn start(
        ctx: nodus_service::ServiceContext<'_>,
        config: VaultConfig,
    ) -> Result<nodus_service::Started<VaultHandle>, VaultError> {
        let keys = crypto::Keys::load_or_create(&ctx.dir.join("vault.key"))?;
        let me = ctx.key.public().to_peer_id().to_string();
        let vault =
            vault::Vault::open(&ctx.dir.join("vault.redb"), keys, me, vault::system_clock())?;
        let metrics = handle::Metrics::default();
        metrics.register(ctx.metrics);
        metrics.records.set(vault.count()? as i64);
        let (events, _) = tokio::sync::broadcast::channel(256);
        let anchor = ctx.provided.get::<SharedAnchor>();
        let handle = VaultHandle {
            inner: Arc::new(handle::Inner {
                vault: Arc::new(vault),
                net: ctx.net.clone(),
                key: ctx.key.clone(),
                anchor: anchor.clone(),
                anchor_state: Mutex::new(anchor::AnchorState::default()),
                events: events.clone(),
                metrics,
                held_budget: config.max_held_mb.saturating_mul(1 << 20),
                replicate: tokio::sync::Notify::new(),
                replica_errors: Mutex::new(Default::default()),
            }),
        };
        let incoming = ctx
            .net
            .incoming(wire::PROTOCOL)
            .map_err(|e| VaultError::Peer(e.to_string()))?;
        let mut tasks = vec![tokio::spawn(handle::accept(
            handle.clone(),
            incoming,
            config.max_serving,
            ctx.shutdown.clone(),
        ))];
        tasks.push(tokio::spawn(handle::replicate(
            handle.clone(),
            ctx.shutdown.clone(),
        )));
        if let Some(anchor) = anchor
            && config.anchor_interval_secs > 0
        {
            let h = handle.clone();
            let mut stop = ctx.shutdown.clone();
            let every = std::time::Duration::from_secs(config.anchor_interval_secs);
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        _ = tick.tick() => {}
                    }
                    let before = h.anchor_state().anchored_entry;
                    anchor::round(&h.inner.vault, &anchor, &h.inner.anchor_state).await;
                    let now = h.anchor_state();
                    if now.anchored_entry != before
                        && let (Some(entry), Some(block)) = (now.anchored_entry, now.anchored_block)
                    {
                        let _ = h.inner.events.send(VaultEvent::Anchored { entry, block });
                    }
                }
            }));
        }
        tracing::info!(target: "nodus::vault", "vault open, {} records", handle.inner.metrics.records.get());
        Ok(nodus_service::Started {
            routes: http::routes(handle.clone()),
            // FHIR clients expect `[base]/metadata` and friends; `/fhir` is the base most
            // of them are pointed at. The same API is under `/api/v1/vault/fhir` too.
            root: vec![(
                "/fhir",
                fhir_api::routes("/fhir").with_state(handle.clone()),
            )],
            endpoints: vec![],
            events: Some(nodus_service::EventFeed::broadcast(events)),
            tasks,
            handle,
        })
    }
}
