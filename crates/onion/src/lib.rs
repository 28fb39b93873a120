//! nodus onion routing: traffic through three volunteer relays, each of which peels one
//! layer and learns only the hop before it and the hop after it.
//!
//! This crate is being built in steps (issue 18). What is here so far is the circuit
//! protocol's core, written down below as its specification, with test vectors:
//! the handshake ([`ntor`]), cells ([`cell`]) and the layered encryption with per-hop
//! integrity ([`layers`]); relays and exits ([`relay`], [`exit`]), client circuits
//! ([`client`]) and a SOCKS5 proxy onto them ([`socks`], [`proxy`]); signed relay
//! descriptors ([`descriptor`]), each paying a daily admission cost ([`admission`]), and
//! the relay list with path selection ([`directory`]);
//! which relays to leave out of paths ([`health`]) and which to enter by ([`guards`]);
//! the lists handed to a node that joins ([`lists`]);
//! onion services ([`hs`], whose own docs give their protocol); the service on a node
//! ([`service`], [`paths`], [`hosting`]), which also runs other services' onion services
//! under identities they own (`OnionHandle::serve_as`, anonymous messaging); relays'
//! bandwidth as this node measures it, which weighs path choice ([`bandwidth`]);
//! congestion control of each circuit ([`congestion`]) and flow control of each stream
//! ([`stream`]).
//!
//! # The circuit protocol, version 1
//!
//! **Links.** Two adjacent hops of a circuit talk over the overlay's authenticated
//! connection between their peer ids (TLS or Noise), on a stream of protocol
//! `/nodus/onion/1` of their own: one stream per circuit per link, so a circuit needs
//! no id on the wire. Everything on that stream is whole cells of 4,096 bytes
//! ([`cell::CELL_LEN`]).
//!
//! **Building.** The client opens a stream to its first hop and sends CREATE with an
//! ntor handshake addressed to that relay's identity and onion key, both from the relay's
//! signed descriptor; the relay answers CREATED, and both hold that hop's keys. To
//! extend, the client sends the last hop a relay message EXTEND (the next relay's peer id
//! and a CREATE body for it); that hop opens a stream to the next relay, sends the
//! CREATE, and returns the CREATED body to the client in EXTENDED. A relay extends only
//! to a peer id, over the overlay's authenticated connection, so a hop cannot be swapped
//! for another; and the handshake proves the onion key's holder to the client.
//!
//! **Relaying.** Cells toward the exit have one layer per hop put on by the client and
//! taken off by each relay ([`layers`]); cells toward the client the other way round. A
//! hop reads a cell that its layer leaves recognized (zero `recognized`, matching
//! running digest) and passes on any other; a cell nobody recognizes ends the circuit.
//!
//! **Streams.** Inside a circuit, BEGIN `host:port` to the exit opens stream `n`
//! (chosen by the client, nonzero); the exit checks its policy, connects, and answers
//! CONNECTED or END with a reason; DATA carries bytes both ways; END closes.
//! BEGIN_OVERLAY (peer id, stream protocol) to any last hop opens a stream to that peer
//! of the overlay instead, if the relay opens that protocol for circuits
//! (`[onion] relay_overlay_protocols`), and is answered the same way.
//!
//! **Congestion and flow control.** Each end of a circuit (the client; the exit or
//! the onion service) may have at most its congestion window of DATA cells in flight
//! toward the other, on all its streams together. The other end sends SENDME on stream
//! 0 for every 32 DATA cells it receives, on whatever stream; the sender times each
//! one's round trip and moves its window by TCP Vegas's rule (Tor's proposal 324):
//! 128 cells at first, 64 at the least, 2,048 at the most ([`congestion`]). A SENDME
//! for cells not sent ends the circuit. A stream whose reader falls behind is paused
//! alone: XOFF on that stream once 32 cells wait at the receiver, XON once they are down
//! to 16 (Tor's proposal 344); a receiver holding more than a stream or a circuit may
//! make it hold ([`stream::STREAM_BUFFER`], [`stream::CIRCUIT_BUFFER`]) ends the
//! circuit.
//!
//! **Ending.** DESTROY on a link ends the circuit there, and each hop passes it on
//! along the circuit; so does a closed stream between hops.
//!
//! # Invariants
//! - Every cell is [`cell::CELL_LEN`] bytes; a relay message's length is checked
//!   against the room in one cell before anything is copied.
//! - Keys come only from completed handshakes; a CREATED whose AUTH does not match is
//!   refused; all-zero Diffie-Hellman results are refused.
//! - No home-made primitives: X25519 (x25519-dalek), HMAC and HKDF over SHA-256,
//!   AES-256-CTR (RustCrypto).

pub mod admission;
pub mod bandwidth;
pub mod build_timeout;
pub mod cell;
pub mod client;
pub mod config;
pub mod congestion;
pub mod descriptor;
pub mod directory;
pub mod exit;
pub mod guards;
pub mod health;
pub mod hosting;
pub mod hs;
pub mod http;
pub mod layers;
pub mod link;
pub mod lists;
pub mod ntor;
pub mod paths;
pub mod proxy;
pub mod relay;
pub mod role;
pub mod service;
pub mod socks;
mod state;
pub mod stream;

pub use config::OnionConfig;
pub use service::{OnionHandle, Status};

/// What goes wrong in the circuit protocol. A peer's mistake ends its circuit, never
/// the node.
#[derive(Debug, thiserror::Error)]
pub enum OnionError {
    #[error("handshake failed: {0}")]
    Handshake(&'static str),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("a cell was changed on its way (no hop recognized it); the circuit is closed")]
    Tampered,
    #[error("this circuit's keystream is spent; build a new circuit")]
    KeystreamSpent,
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("the overlay: {0}")]
    Net(String),
    #[error("the circuit is closed")]
    CircuitClosed,
    #[error("the relay before {0} could not extend the circuit to it")]
    ExtendFailed(libp2p::PeerId),
    #[error("relay {0} did not answer in time while the circuit was built")]
    NoAnswer(libp2p::PeerId),
    #[error("the exit refused the stream: {0:?}")]
    StreamRefused(cell::EndReason),
    #[error("nobody answered the stream's BEGIN in time: a relay of the circuit dropped it")]
    StreamUnanswered,
    #[error("cannot listen on {addr} ([onion] socks_listen): {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("onion key: {0}")]
    Key(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("no path: {0}")]
    NoPath(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A mutex's guard, also after a panic elsewhere poisoned it (what it guards is kept
/// consistent between statements, never across a panic point).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Onion routing, as the node's service list names it.
pub struct OnionService;

impl nodus_service::Service for OnionService {
    type Config = OnionConfig;
    type Handle = OnionHandle;
    type Error = OnionError;

    const PANEL: Option<nodus_service::Panel> = Some(nodus_service::Panel {
        title: "Onion routing",
        script: include_str!("../ui/panel.js"),
    });

    fn testnet(config: &mut OnionConfig, ip: std::net::Ipv4Addr) {
        config.socks_listen = format!("{ip}:0");
        // Relays in a loopback network reach loopback servers, and publish often so a
        // node that joins late hears of them soon.
        config.exit_allow_private = true;
        config.publish_secs = 2;
        // Every testnet node is in 127.0/16, each in its own 127.0.k/24.
        config.path_subnet_bits = 24;
        // Relays start by the dozen in tests: a token cost, still checked.
        config.admission_bits = 2;
        // Relays measured within seconds of being heard of.
        config.bandwidth_probe_secs = 1;
    }

    async fn start(
        ctx: nodus_service::ServiceContext<'_>,
        config: OnionConfig,
    ) -> Result<nodus_service::Started<OnionHandle>, OnionError> {
        let metrics = service::Metrics::register(ctx.metrics);
        let (handle, tasks) = service::start(
            config,
            &ctx.dir,
            ctx.key.clone(),
            ctx.net.clone(),
            metrics,
            ctx.shutdown.clone(),
        )
        .await?;
        Ok(nodus_service::Started {
            root: vec![],
            routes: http::routes(handle.clone()),
            endpoints: vec![("onion_socks".to_string(), handle.socks_addr().to_string())],
            events: None,
            tasks,
            handle,
        })
    }
}
