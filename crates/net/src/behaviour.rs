//! The composed libp2p behaviour and the swarm that runs it.

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::core::{Transport, upgrade};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, allow_block_list, autonat, connection_limits, dcutr, gossipsub,
    identify, kad, mdns, memory_connection_limits, noise, ping, relay, tcp,
};
use prometheus_client::registry::Registry;

use crate::store::PersistentStore;
use crate::transport::ReuseWithFallback;
use crate::{NetConfig, NetError};

pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/nodus/kad/1.0.0");
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/nodus/0.1.0";
/// Largest gossip message accepted or sent.
pub const MAX_GOSSIP_BYTES: usize = 256 * 1024;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub per_ip: crate::ip_limits::Behaviour,
    pub memory: memory_connection_limits::Behaviour,
    /// Before the other address sources: a dial offers these first.
    pub circuits: crate::circuits::Behaviour,
    pub relay_client: relay::client::Behaviour,
    pub relay: Toggle<relay::Behaviour>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<PersistentStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub dcutr: dcutr::Behaviour,
    pub autonat: autonat::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub stream: libp2p_stream::Behaviour,
}

/// Longest a connection may take to secure and multiplex itself (TCP).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn build_swarm(
    key: Keypair,
    config: &NetConfig,
    known: crate::pending::KnownIps,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, NetError> {
    let yamux_config = || crate::muxer::Config::new(512);
    // QUIC gets the same TLS configurations as TCP (AES-GCM first, ring's VAES code):
    // with libp2p-tls's, ChaCha20-Poly1305 took about a fifth of a bulk QUIC transfer's
    // CPU. Datagrams stay at quinn's sizes (MTU discovery up to 1452): on loopback,
    // 64 KiB datagrams made a 64 KiB message wait 50-170 ms (the congestion window and
    // pacer count whole datagrams) and were no faster in bulk (docs/architecture.md).
    let (quic_client, quic_server) = crate::tls::Config::new(&key)
        .map_err(NetError::setup("QUIC TLS"))?
        .rustls();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        // A QUIC peer that vanishes sends no FIN: it is noticed only when the idle timer
        // runs out (10 s by default, keep-alive every 5 s). Relay circuits ride on these
        // connections, and messaging reroutes around a dead relay only once it is noticed,
        // so both timers are shorter here (a keep-alive is one small packet per idle second).
        .with_quic_config(|mut c| {
            c.keep_alive_interval = Duration::from_secs(1);
            c.max_idle_timeout = 3_000;
            match c.clone().with_tls(quic_client, quic_server) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(target: "nodus::net", "QUIC keeps libp2p-tls's ciphers: {e}");
                    c
                }
            }
        })
        .with_other_transport(
            |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                let tcp = ReuseWithFallback(tcp::tokio::Transport::new(
                    tcp::Config::default().nodelay(true),
                ));
                let evicted = prometheus_client::metrics::counter::Counter::default();
                registry.sub_registry_with_prefix("nodus_net").register(
                    "pending_evicted",
                    "Inbound connections dropped mid-handshake to make room for a newer one",
                    evicted.clone(),
                );
                let upgraded = tcp
                    .upgrade(upgrade::Version::V1Lazy)
                    .authenticate(crate::security::Security::new(key, registry)?)
                    .multiplex(yamux_config())
                    .timeout(HANDSHAKE_TIMEOUT)
                    .map_err(std::io::Error::other);
                Ok(crate::pending::CapPending::new(
                    upgraded,
                    config.limits.max_pending as usize,
                    known,
                    evicted,
                ))
            },
        )
        .map_err(NetError::setup("transport"))?
        .with_dns()
        .map_err(NetError::setup("transport"))?
        .with_relay_client(noise::Config::new, yamux_config)
        .map_err(NetError::setup("transport"))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| {
            make_behaviour(key, relay_client, config, registry)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(NetError::setup("transport"))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(config.limits.idle_timeout_secs))
        })
        .build();
    Ok(swarm)
}

fn make_behaviour(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    config: &NetConfig,
    registry: &mut Registry,
) -> Result<Behaviour, NetError> {
    let local = key.public().to_peer_id();
    let lim = &config.limits;

    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(lim.max_established))
            .with_max_established_per_peer(Some(lim.max_established_per_peer))
            // Pending inbound TCP connections are held to max_pending by the transport,
            // which drops the oldest instead of refusing the newest (pending.rs). This
            // counts connections before their first poll too, so it is only a backstop,
            // with room for a burst that arrives before the transport has seen it.
            .with_max_pending_incoming(Some(lim.max_pending.saturating_mul(8)))
            .with_max_pending_outgoing(Some(lim.max_pending)),
    );
    let per_ip = crate::ip_limits::Behaviour::new(
        lim.max_inbound_per_ip,
        config.limit_exempt_ips.clone(),
        registry,
    );
    let memory =
        memory_connection_limits::Behaviour::with_max_bytes(lim.max_memory_mib * 1024 * 1024);

    // A node reachable only through relays has nothing to offer as a relay itself.
    let serve_relay = config.relay.enabled && !config.listen.is_empty();
    let relay = serve_relay.then(|| {
        let r = &config.relay;
        let mut server = relay::Behaviour::new(
            local,
            relay::Config {
                max_reservations: r.max_reservations,
                max_circuits: r.max_circuits,
                max_circuits_per_peer: r.max_circuits_per_peer,
                max_circuit_duration: Duration::from_secs(r.max_circuit_duration_secs),
                max_circuit_bytes: r.max_circuit_bytes,
                ..relay::Config::default()
            },
        );
        // A fixed status, not the automatic one: libp2p-relay 0.22 re-announces an
        // automatic status change to every connection, relayed ones included, whose
        // handler cannot take it (a panic in libp2p-swarm's either.rs, rust-libp2p #5412).
        server.set_status(Some(relay::Status::Enable));
        server
    });

    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), key.public())
            .with_agent_version(config.agent.clone())
            .with_push_listen_addr_updates(true),
    );

    let ping = ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15)));

    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config
        .disjoint_query_paths(true)
        .set_kbucket_inserts(kad::BucketInserts::Manual)
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_query_timeout(Duration::from_secs(30))
        .set_periodic_bootstrap_interval(Some(Duration::from_secs(300)))
        .set_replication_factor(NonZeroUsize::new(20).expect("20 > 0"));
    let store = PersistentStore::open(
        local,
        kad::store::MemoryStoreConfig {
            max_records: 16 * 1024,
            max_value_bytes: crate::records::MAX_VALUE,
            ..Default::default()
        },
        config.record_store.as_deref(),
        &config.validators,
    )?;
    let mut kad = kad::Behaviour::with_config(local, store, kad_config);
    if !config.listen.is_empty() || !config.relays.is_empty() {
        kad.set_mode(Some(kad::Mode::Server));
    }

    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        // Messages are forwarded only once accepted: services check theirs
        // (subscribe_validated), every other topic is accepted on arrival.
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .heartbeat_interval(Duration::from_millis(700))
        .build()
        .map_err(NetError::setup("gossipsub config"))?;
    let score_params = gossipsub::PeerScoreParams {
        ip_colocation_factor_whitelist: config.gossip_ip_whitelist.iter().copied().collect(),
        ..Default::default()
    };
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )
    .map_err(NetError::setup("gossipsub"))?
    .with_metrics(
        registry.sub_registry_with_prefix("libp2p_gossipsub"),
        Default::default(),
    );
    let mut gossipsub = gossipsub;
    gossipsub
        .with_peer_score(score_params, gossipsub::PeerScoreThresholds::default())
        .map_err(NetError::setup("gossipsub scoring"))?;

    let autonat = autonat::Behaviour::new(
        local,
        autonat::Config {
            only_global_ips: !config.autonat_private_addrs,
            ..Default::default()
        },
    );

    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), local)
                .map_err(NetError::setup("mdns"))?,
        )
    } else {
        None
    };

    Ok(Behaviour {
        blocked: Default::default(),
        limits,
        per_ip,
        memory,
        circuits: Default::default(),
        relay_client,
        relay: relay.into(),
        identify,
        ping,
        kad,
        gossipsub,
        dcutr: dcutr::Behaviour::new(local),
        autonat,
        mdns: mdns.into(),
        stream: libp2p_stream::Behaviour::new(),
    })
}
