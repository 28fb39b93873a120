//! Reacting to swarm and behaviour events.

use super::*;

impl Actor {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(target: "nodus::net", %address, "listening");
                if self.config.advertise_listen_addrs && !is_relayed(&address) {
                    self.swarm.add_external_address(address.clone());
                }
                self.emit(NetEvent::ListenAddr {
                    address: address.to_string(),
                });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.emit(NetEvent::ListenAddrExpired {
                    address: address.to_string(),
                });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let addr = match &endpoint {
                    // An inbound circuit's remote address is only `/p2p/<peer>`; say
                    // which relay it came through, as outbound circuits do.
                    ConnectedPoint::Listener { local_addr, .. } if is_relayed(local_addr) => {
                        local_addr
                            .clone()
                            .with(libp2p::multiaddr::Protocol::P2p(peer_id))
                    }
                    _ => endpoint.get_remote_address().clone(),
                };
                let conns = self.connections.entry(peer_id).or_default();
                let first = conns.is_empty();
                conns.push((connection_id, addr.clone()));
                if let ConnectedPoint::Dialer { address, .. } = &endpoint
                    && self
                        .config
                        .bootstrap
                        .iter()
                        .any(|b| peer_of(b) == Some(peer_id))
                {
                    self.try_route(peer_id, address.clone());
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.own_dials.remove(&connection_id);
                for reply in self.peer_dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(peer_id));
                }
                self.lookups_done(peer_id);
                if self
                    .relays
                    .iter()
                    .any(|(a, l)| l.is_none() && peer_of(a) == Some(peer_id))
                {
                    self.ensure_relays();
                }
                if first {
                    self.emit(NetEvent::PeerConnected {
                        peer: peer_id.to_string(),
                        address: addr.to_string(),
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                if let Some(conns) = self.connections.get_mut(&peer_id) {
                    conns.retain(|(id, _)| *id != connection_id);
                    if conns.is_empty() {
                        self.connections.remove(&peer_id);
                        self.rtts.remove(&peer_id);
                        self.agents.remove(&peer_id);
                        self.emit(NetEvent::PeerDisconnected {
                            peer: peer_id.to_string(),
                        });
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let msg = describe(&error);
                let error = Arc::new(error);
                tracing::debug!(target: "nodus::net", ?peer_id, "dial failed: {msg}");
                if let Some(peer) = peer_id {
                    self.emit(NetEvent::DialFailed {
                        peer: peer.to_string(),
                        error: msg,
                    });
                }
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(NetError::Dial(error.clone())));
                }
                if let Some(peer) = self.own_dials.remove(&connection_id)
                    && !self.swarm.is_connected(&peer)
                    && !self.own_dials.values().any(|p| *p == peer)
                {
                    for reply in self.peer_dials.remove(&peer).unwrap_or_default() {
                        let _ = reply.send(Err(NetError::Dial(error.clone())));
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                self.counters.bad_connections.inc();
                tracing::debug!(target: "nodus::net", %send_back_addr, "inbound connection failed: {error}");
                self.emit(NetEvent::BadConnection {
                    address: send_back_addr.to_string(),
                    error: error.to_string(),
                });
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                if let Err(e) = reason {
                    tracing::warn!(target: "nodus::net", ?addresses, "listener closed: {e}");
                }
                // A relay listener dies with its connection; the retry tick renews it.
                for (_, l) in self.relays.iter_mut() {
                    if *l == Some(listener_id) {
                        *l = None;
                    }
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(target: "nodus::net", %address, "external address confirmed");
            }
            _ => {}
        }
    }

    pub(super) fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(ev) => {
                self.metrics.record(&ev);
                if let identify::Event::Received { peer_id, info, .. } = ev {
                    if self.connections.contains_key(&peer_id) {
                        self.agents.insert(peer_id, info.agent_version.clone());
                    }
                    self.swarm
                        .behaviour_mut()
                        .circuits
                        .remember(peer_id, &info.listen_addrs);
                    if info.protocols.contains(&KAD_PROTOCOL) {
                        for addr in info.listen_addrs {
                            self.try_route(peer_id, addr);
                        }
                    }
                }
            }
            BehaviourEvent::Kad(ev) => {
                self.metrics.record(&ev);
                self.on_kad_event(ev);
            }
            BehaviourEvent::Gossipsub(ev) => {
                self.metrics.record(&ev);
                if let gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } = ev
                {
                    self.deliver(propagation_source, message_id, message);
                }
            }
            BehaviourEvent::Ping(ev) => {
                self.metrics.record(&ev);
                if let Ok(rtt) = ev.result {
                    self.rtts.insert(ev.peer, rtt);
                }
            }
            BehaviourEvent::RelayClient(ev) => {
                if let relay::client::Event::ReservationReqAccepted { relay_peer_id, .. } = ev {
                    tracing::info!(target: "nodus::net", relay = %relay_peer_id, "relay reservation accepted");
                    for reply in self.reservations.remove(&relay_peer_id).unwrap_or_default() {
                        let _ = reply.send(Ok(()));
                    }
                    self.emit(NetEvent::RelayReservation {
                        relay: relay_peer_id.to_string(),
                    });
                }
            }
            BehaviourEvent::Relay(ev) => self.metrics.record(&ev),
            BehaviourEvent::Dcutr(ev) => {
                self.metrics.record(&ev);
                self.emit(NetEvent::HolePunch {
                    peer: ev.remote_peer_id.to_string(),
                    ok: ev.result.is_ok(),
                });
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                self.nat = match &new {
                    autonat::NatStatus::Public(a) => format!("public {a}"),
                    autonat::NatStatus::Private => "private".into(),
                    autonat::NatStatus::Unknown => "unknown".into(),
                };
                self.emit(NetEvent::NatStatus {
                    status: self.nat.clone(),
                });
            }
            BehaviourEvent::Autonat(_) => {}
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if !self.swarm.is_connected(&peer) {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            BehaviourEvent::Mdns(_) => {}
            BehaviourEvent::Stream(()) => {}
            BehaviourEvent::Limits(v) | BehaviourEvent::Memory(v) | BehaviourEvent::Blocked(v) => {
                match v {}
            }
        }
    }

    pub(super) fn deliver(
        &mut self,
        via: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let validated = self.validated_topics.contains(&message.topic);
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        let Some((topic, senders)) = self.subscriptions.get_mut(&message.topic) else {
            let _ = gossip.report_message_validation_result(
                &id,
                &via,
                gossipsub::MessageAcceptance::Ignore,
            );
            return;
        };
        if !validated {
            // Nobody here checks this topic: forward as gossipsub would by itself.
            let _ = gossip.report_message_validation_result(
                &id,
                &via,
                gossipsub::MessageAcceptance::Accept,
            );
        }
        let msg = GossipMessage {
            topic: topic.clone(),
            source: message.source.map(|p| p.to_string()),
            via: via.to_string(),
            data: message.data,
            id: id.to_string(),
            raw_id: id.0.clone(),
        };
        let mut delivered = false;
        senders.retain(|tx| match tx.try_send(msg.clone()) {
            Ok(()) => {
                delivered = true;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.gossip_dropped.inc();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if validated && !delivered {
            // The validator cannot take it: do not hold it for a verdict that never comes.
            let _ = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &via, gossipsub::MessageAcceptance::Ignore);
        }
        if senders.is_empty() {
            let t = gossipsub::IdentTopic::new(topic.clone());
            self.subscriptions.remove(&message.topic);
            self.validated_topics.remove(&message.topic);
            self.swarm.behaviour_mut().gossipsub.unsubscribe(&t);
        }
    }
}
