//! nodus-social: a Nostr relay on every node, and relays that replicate each other.
//!
//! Any Nostr client talks to the relay at the `nostr` address in endpoints.json
//! (NIP-01 EVENT, REQ, CLOSE; NIP-09 deletion, NIP-11 information document, NIP-40
//! expiration, NIP-42 authentication, NIP-45 COUNT, NIP-50 search, NIP-77 negentropy).
//! What a node's clients publish goes to the other nodus nodes over the overlay, on a
//! topic per author, so a person reaches their followers on every node, not only the
//! readers of the relays their client knows; after a partition or a restart, nodes
//! reconcile what they missed with negentropy ([`sync`]).
//!
//! Invariants:
//! - An event the relay answered OK to is committed to `<data dir>/social/social.redb`.
//! - Every event is checked (id, signature, shape, clock) before it is stored, told to
//!   subscribers or passed on; an invalid one from the overlay counts against the peer
//!   that forwarded it.
//! - Moderation (`blocked_*` in `[social]`) decides what this node stores and serves,
//!   never what other nodes do: blocked events still pass through to them.
//! - A node stores what its clients publish and the events of the people its operator
//!   follows (the operator key's contact list, kind 3), within `max_store_mb`; events
//!   from other nodes make room first, its clients' never are pushed out.
//! - What a client may make the relay hold is bounded: message size, subscriptions per
//!   connection, filters per subscription, values per filter, frames queued per
//!   connection (a client that does not read is disconnected).

pub mod client;
pub mod config;
mod error;
pub mod event;
pub mod filter;
mod gossip;
pub mod http;
pub mod keys;
pub mod message;
pub mod relay;
pub mod store;
pub mod sync;
pub mod topics;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::SocialConfig;
pub use error::SocialError;
pub use event::{Event, Keys};
pub use relay::{Origin, Refusal, SocialEvent};

use relay::Relay;
use store::Store;

/// The handle the node and its routes use. Cloning is cheap.
#[derive(Clone)]
pub struct SocialHandle {
    relay: Arc<Relay>,
    net: nodus_net::NetworkHandle,
    addr: SocketAddr,
}

impl SocialHandle {
    /// `ws://host:port` of the relay.
    pub fn relay_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// This node's Nostr public key (x-only, as Nostr writes it).
    pub fn public_key(&self) -> [u8; 32] {
        self.relay.keys().public()
    }

    /// Signs an event as this node's key and takes it as if a client had sent it.
    pub async fn post(&self, kind: u16, content: &str) -> Result<Event, Refusal> {
        self.relay.sign_and_take(kind, vec![], content, None).await
    }

    /// Follows (or unfollows) `who`: a new contact list signed by this node's key.
    /// Whether it changed anything.
    pub async fn set_follow(&self, who: [u8; 32], follow: bool) -> Result<bool, Refusal> {
        self.relay.set_follow(who, follow).await
    }

    /// The people this node's key follows.
    pub fn follows(&self) -> Vec<[u8; 32]> {
        self.relay
            .interest()
            .borrow()
            .follows
            .iter()
            .copied()
            .collect()
    }

    /// The newest kind 0 (profile) of this node's key held here.
    pub async fn profile(&self) -> Result<Option<Event>, Refusal> {
        self.relay.own_latest(0).await
    }

    /// Sets profile fields (kind 0 JSON), keeping the ones not given.
    pub async fn set_profile(
        &self,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Event, Refusal> {
        let _edit = self.relay.own_edits.lock().await;
        let last = self.relay.own_latest(0).await?;
        let mut profile: serde_json::Map<String, serde_json::Value> = last
            .as_ref()
            .and_then(|e| serde_json::from_str(&e.content).ok())
            .unwrap_or_default();
        profile.extend(fields);
        let content = serde_json::Value::Object(profile).to_string();
        self.relay
            .sign_and_take(0, vec![], &content, last.map(|e| e.created_at))
            .await
    }

    /// Makes `keys` this node's Nostr key; the path where the old one was kept.
    pub async fn set_keys(&self, keys: Keys) -> Result<Option<std::path::PathBuf>, SocialError> {
        self.relay.set_keys(keys).await
    }

    /// Syncs with `peer` now for the people followed (and the operator); what it fetched.
    pub async fn sync_with(
        &self,
        peer: nodus_net::PeerId,
    ) -> Result<sync::Fetched, sync::SyncError> {
        let authors = self.relay.interest().borrow().authors();
        sync::with_peer(&self.relay, &self.net, peer, authors).await
    }

    /// What this service tells the node's event stream, as it happens.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<SocialEvent> {
        self.relay.events.subscribe()
    }

    /// Bytes of the disk budget in use.
    pub fn stored_bytes(&self) -> u64 {
        self.relay.stored_bytes()
    }

    pub async fn query(&self, filters: Vec<filter::Filter>) -> Result<Vec<String>, Refusal> {
        self.relay.query(filters).await
    }

    /// Events stored.
    pub fn stored(&self) -> u64 {
        self.relay.stored()
    }

    /// Connections closed because their client did not read.
    pub fn slow_readers(&self) -> u64 {
        self.relay.metrics.slow_readers.get()
    }

    /// Events taken and refused since start (refusals include this node's blocks).
    pub fn counts(&self) -> (u64, u64) {
        let m = &self.relay.metrics;
        (m.accepted.get(), m.refused.get())
    }
}

/// Social, as the node's service list names it.
pub struct SocialService;

impl nodus_service::Service for SocialService {
    type Config = SocialConfig;
    type Handle = SocialHandle;
    type Error = SocialError;

    const PANEL: Option<nodus_service::Panel> = Some(nodus_service::Panel {
        title: "Social",
        script: include_str!("../ui/panel.js"),
    });

    fn testnet(config: &mut SocialConfig, ip: std::net::Ipv4Addr) {
        config.listen = format!("{ip}:0");
    }

    async fn start(
        ctx: nodus_service::ServiceContext<'_>,
        config: SocialConfig,
    ) -> Result<nodus_service::Started<SocialHandle>, SocialError> {
        let store = Store::open(
            &ctx.dir.join("social.redb"),
            config.max_store_mb.saturating_mul(1024 * 1024),
        )?;
        let (listener, addr) =
            nodus_service::server::bind(&config.listen)
                .await
                .map_err(|source| SocialError::Listen {
                    addr: config.listen.clone(),
                    source,
                })?;
        let (relay, writer, outbound) =
            Relay::new(config, store, ctx.net.clone(), ctx.metrics, ctx.dir.clone())?;
        let relay = Arc::new(relay);
        let writer = tokio::spawn(writer.run(ctx.shutdown.clone()));
        let outbound = tokio::spawn(outbound.run(ctx.shutdown.clone()));
        let server = tokio::spawn(nodus_service::server::serve(
            "nostr",
            listener,
            ws::router(relay.clone()),
            nodus_service::server::Limits {
                max_connections: relay.config.max_connections,
                ..Default::default()
            },
            ctx.shutdown.clone(),
        ));
        let gossip = tokio::spawn(gossip::run(
            relay.clone(),
            ctx.net.clone(),
            ctx.shutdown.clone(),
        ));
        let sync = tokio::spawn(sync::run(
            relay.clone(),
            ctx.net.clone(),
            ctx.shutdown.clone(),
        ));
        let handle = SocialHandle {
            relay: relay.clone(),
            net: ctx.net.clone(),
            addr,
        };
        tracing::info!(target: "nodus::social", "Nostr relay on ws://{addr}");
        Ok(nodus_service::Started {
            root: vec![],
            routes: http::routes(handle.clone()),
            endpoints: vec![("nostr".to_string(), handle.relay_url())],
            events: Some(nodus_service::EventFeed::broadcast(relay.events.clone())),
            tasks: vec![server, gossip, sync, writer, outbound],
            handle,
        })
    }
}
