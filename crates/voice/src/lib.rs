//! nodus-voice: calls between contacts, peer to peer. The media path: Opus frames
//! ([`codec`]) carried in RTP (RFC 3550, Opus payload RFC 7587) and protected by SRTP
//! (RFC 3711, AES-128 counter mode with HMAC-SHA1-80, replay window) ([`media`]), with
//! SRTCP receiver reports ([`stats`]) that drive the bitrate ([`adapt`]) and keep
//! standby routes alive; played out through an adaptive jitter buffer that conceals
//! what is lost ([`jitter`]). A call ([`session`]) keeps several routes to the other
//! side (direct candidates after a hole punch, legs through datagram relays
//! ([`relay`], allocated over the overlay by [`alloc`])) and moves to a live one on its
//! own when the route in use dies.
//!
//! Signalling ([`signal`]) rides on messaging's end-to-end encrypted signals between
//! contacts, through the [`signaling::Signaling`] trait the node implements over the
//! messaging service: only contacts can ring, and the SRTP keys are agreed over their
//! Olm session. [`calls`] runs the calls; [`history`] keeps them (redb).
//!
//! Invariants: a datagram that does not open with a call's keys is dropped and counted;
//! a relay forwards only between the two addresses its tokens named and reads nothing;
//! one call at a time per node; every call that rang is in the history, even across a
//! kill.

pub mod adapt;
pub mod alloc;
pub mod bwe;
pub mod calls;
pub mod codec;
pub mod config;
pub mod device;
mod error;
pub mod handle;
pub mod history;
pub mod http;
pub mod jitter;
pub mod loopback;
pub mod measure;
pub mod media;
pub mod pair;
pub mod red;
pub mod relay;
pub mod session;
pub mod signal;
pub mod signaling;
pub mod stats;
pub mod wav;

pub use error::VoiceError;

pub use calls::{Media, VoiceEvent};
pub use config::VoiceConfig;
pub use handle::VoiceHandle;
pub use history::{CallRecord, CallState, Direction, Outcome};
pub use signaling::{Contact, Incoming, SharedSignaling, Signaling, SignalingError};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The voice service, as the node's service list names it.
pub struct VoiceService;

impl nodus_service::Service for VoiceService {
    type Config = VoiceConfig;
    type Handle = VoiceHandle;
    type Error = VoiceError;

    const PANEL: Option<nodus_service::Panel> = Some(nodus_service::Panel {
        title: "Voice calls",
        script: include_str!("../ui/panel.js"),
    });

    fn testnet(config: &mut VoiceConfig, ip: std::net::Ipv4Addr) {
        config.media_ip = ip.to_string();
        config.relay.listen = format!("{ip}:0");
        config.ring_secs = 20;
    }

    fn watcher(config: &mut VoiceConfig) {
        config.relay.enabled = false;
    }

    async fn start(
        ctx: nodus_service::ServiceContext<'_>,
        config: VoiceConfig,
    ) -> Result<nodus_service::Started<VoiceHandle>, VoiceError> {
        let history = history::History::open(&ctx.dir.join("voice.redb"), calls::now_ms())?;
        let metrics = handle::Metrics::default();
        metrics.register(ctx.metrics);
        let (events, _) = tokio::sync::broadcast::channel(256);
        let signaling = ctx.provided.get::<SharedSignaling>();
        let relay = if config.relay.enabled {
            let limits = relay::Limits {
                max_allocations: config.relay.max_calls,
                ..relay::Limits::default()
            };
            let r = relay::Relay::bind(&config.relay.listen, limits)
                .await
                .map_err(|e| {
                    VoiceError::Relay(format!("[voice.relay] listen {}: {e}", config.relay.listen))
                })?;
            let addr = if config.relay.public.is_empty() {
                public_addr(r.addr(), &ctx.net).await
            } else {
                Some(config.relay.public.parse().map_err(|_| {
                    VoiceError::Relay(format!(
                        "[voice.relay] public = {:?} is not an address (IP:port)",
                        config.relay.public
                    ))
                })?)
            };
            addr.map(|a| Arc::new(alloc::Server::new(r, a, config.relay.max_per_peer)))
        } else {
            None
        };
        let rate = codec::SampleRate::new(config.sample_rate)?;
        let calls = Arc::new(calls::Calls {
            config: config.clone(),
            rate,
            net: ctx.net.clone(),
            me: ctx.key.public().to_peer_id(),
            signaling: signaling.clone(),
            history,
            live: Mutex::new(Default::default()),
            events: events.clone(),
            metrics,
            relay: relay.clone(),
            relays_seen: Mutex::new(Vec::new()),
            last_busy: Mutex::new(Default::default()),
        });
        let mut tasks = Vec::new();
        if let Some(s) = &signaling {
            tasks.push(tokio::spawn(calls::listen(
                calls.clone(),
                s.incoming(),
                ctx.shutdown.clone(),
            )));
        }
        let mut endpoints = Vec::new();
        if let Some(server) = relay {
            endpoints.push(("voice_relay".to_string(), server.addr.to_string()));
            let incoming = ctx
                .net
                .incoming(alloc::PROTOCOL)
                .map_err(|e| VoiceError::Relay(e.to_string()))?;
            tasks.push(tokio::spawn(calls::serve_allocations(
                calls.clone(),
                server.clone(),
                incoming,
                ctx.shutdown.clone(),
            )));
            tasks.push(tokio::spawn(forward(server.clone(), ctx.shutdown.clone())));
            tasks.push(tokio::spawn(announce(
                calls.clone(),
                server,
                ctx.shutdown.clone(),
            )));
        }
        let handle = VoiceHandle { calls };
        Ok(nodus_service::Started {
            routes: http::routes(handle.clone()),
            root: vec![],
            endpoints,
            events: Some(nodus_service::EventFeed::broadcast(events)),
            tasks,
            handle,
        })
    }
}

/// The relay's address as others reach it: its socket's, or with the overlay's first
/// own IP when it listens on every interface. None when the node has no address of its
/// own (reachable only through relays itself, it relays nothing).
async fn public_addr(bound: SocketAddr, net: &nodus_net::NetworkHandle) -> Option<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return Some(bound);
    }
    let status = net.status().await.ok()?;
    status.listen_addrs.iter().find_map(|a| {
        let m: libp2p::Multiaddr = a.parse().ok()?;
        if m.iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
        {
            return None;
        }
        m.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Ip4(ip) if !ip.is_unspecified() => {
                Some(SocketAddr::new(ip.into(), bound.port()))
            }
            _ => None,
        })
    })
}

/// The relay's datagram loop, until shutdown.
async fn forward(server: Arc<alloc::Server>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    tokio::select! {
        _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {}
        _ = server.relay.clone().run() => {}
    }
}

/// Tells the DHT this node relays calls, now and every ten minutes, while it has
/// addresses of its own.
async fn announce(
    calls: Arc<calls::Calls>,
    server: Arc<alloc::Server>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    let mut gauge = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
            _ = gauge.tick() => {
                calls.metrics.relay_calls.set(server.relay.allocations() as i64);
            }
            _ = tick.tick() => {
                if let Err(e) = calls.net.provide(alloc::DHT_KEY.to_vec()).await {
                    tracing::debug!(target: "nodus::voice", "announcing the voice relay: {e}");
                }
            }
        }
    }
}
