//! nodus-social: a Nostr relay on every node, and relays that replicate each other.
//!
//! Any Nostr client talks to the relay at the `nostr` address in endpoints.json
//! (NIP-01 EVENT, REQ, CLOSE; NIP-09 deletion, NIP-11 information document, NIP-40
//! expiration, NIP-45 COUNT, NIP-50 search). What a node's clients publish goes to the
//! other nodus nodes over the overlay, so a person reaches readers of every node, not
//! only of the relays their client knows.
//!
//! Invariants:
//! - An event the relay answered OK to is committed to `<data dir>/social/social.redb`.
//! - Every event is checked (id, signature, shape, clock) before it is stored, told to
//!   subscribers or passed on; an invalid one from the overlay counts against the peer
//!   that forwarded it.
//! - Moderation (`blocked_*` in `[social]`) decides what this node stores and serves,
//!   never what other nodes do: blocked events still pass through to them.
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
pub mod message;
pub mod relay;
pub mod store;
mod ws;

use std::net::SocketAddr;

use std::path::Path;
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
    keys: Arc<Keys>,
    addr: SocketAddr,
}

impl SocialHandle {
    /// `ws://host:port` of the relay.
    pub fn relay_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// This node's Nostr public key (x-only, as Nostr writes it).
    pub fn public_key(&self) -> [u8; 32] {
        self.keys.public()
    }

    /// Signs an event as this node's key and takes it as if a client had sent it.
    pub async fn post(&self, kind: u16, content: &str) -> Result<Event, Refusal> {
        let e = self.keys.sign(relay::now(), kind, vec![], content);
        self.relay.accept(e.clone(), Origin::Client).await?;
        Ok(e)
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

/// The node's Nostr key, `<dir>/key` (32 secret bytes, mode 0600), made on first start.
fn load_keys(dir: &Path) -> Result<Keys, SocialError> {
    let path = dir.join("key");
    let fresh = Keys::generate();
    nodus_core::fsutil::write_new(&path, &fresh.secret(), 0o600)?;
    let bytes = std::fs::read(&path).map_err(|source| SocialError::Io {
        what: "reading the social key",
        source,
    })?;
    let secret: [u8; 32] = bytes
        .try_into()
        .map_err(|_| SocialError::BadKey(path.clone()))?;
    Keys::from_secret(secret).map_err(|_| SocialError::BadKey(path))
}

/// Social, as the node's service list names it.
pub struct SocialService;

impl nodus_service::Service for SocialService {
    type Config = SocialConfig;
    type Handle = SocialHandle;
    type Error = SocialError;

    fn testnet(config: &mut SocialConfig, ip: std::net::Ipv4Addr) {
        config.listen = format!("{ip}:0");
    }

    async fn start(
        ctx: nodus_service::ServiceContext<'_>,
        config: SocialConfig,
    ) -> Result<nodus_service::Started<SocialHandle>, SocialError> {
        let keys = Arc::new(load_keys(&ctx.dir)?);
        let store = Store::open(&ctx.dir.join("social.redb"))?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| SocialError::Listen {
                addr: config.listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SocialError::Io {
            what: "the relay's address",
            source,
        })?;
        let (relay, writer) = Relay::new(config, store, ctx.net.clone(), ctx.metrics)?;
        let relay = Arc::new(relay);
        let writer = tokio::spawn(writer.run(ctx.shutdown.clone()));
        let messages = ctx
            .net
            .subscribe_validated(relay::TOPIC)
            .await
            .map_err(|_| SocialError::Stopped)?;
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
            messages,
            ctx.shutdown.clone(),
        ));
        let handle = SocialHandle {
            relay: relay.clone(),
            keys,
            addr,
        };
        tracing::info!(target: "nodus::social", "Nostr relay on ws://{addr}");
        Ok(nodus_service::Started {
            routes: http::routes(handle.clone()),
            endpoints: vec![("nostr".to_string(), handle.relay_url())],
            events: Some(nodus_service::EventFeed::broadcast(relay.events.clone())),
            tasks: vec![server, gossip, writer],
            handle,
        })
    }
}
