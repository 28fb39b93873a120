//! Serving the commands of `NetworkHandle`s.

use super::*;
use crate::Verdict;

impl Actor {
    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Shutdown => {}
            Command::Status(reply) => {
                let _ = reply.send(Ok(self.status()));
            }
            Command::Peers(reply) => {
                let _ = reply.send(Ok(self.peer_infos()));
            }
            Command::Dial { addr, reply } => {
                let opts = DialOpts::unknown_peer_id().address(addr).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial(Arc::new(e))));
                    }
                }
            }
            Command::DialPeer { peer, addrs, reply } => self.dial_peer(peer, addrs, reply, true),
            Command::Disconnect { peer, reply } => {
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(Ok(()));
            }
            Command::Misbehaved { peer, reason } => self.strike(peer, &reason),
            Command::ListenViaRelay { relay, reply } => {
                let Some(relay_peer) = peer_of(&relay) else {
                    let _ = reply.send(Err(NetError::BadAddr {
                        addr: relay.to_string(),
                        reason: "a relay address must end in /p2p/<relay peer id>".into(),
                    }));
                    return;
                };
                self.reservations.entry(relay_peer).or_default().push(reply);
                if !self.relays.iter().any(|(a, _)| *a == relay) {
                    self.relays.push((relay, None));
                }
                self.ensure_relays();
            }
            Command::Validate {
                raw_id,
                via,
                verdict,
            } => {
                let acceptance = match verdict {
                    Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                    Verdict::Reject => gossipsub::MessageAcceptance::Reject,
                    Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                };
                let id = gossipsub::MessageId::new(&raw_id);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &via, acceptance);
            }
            Command::Unsubscribe { topic } => {
                let t = gossipsub::IdentTopic::new(topic);
                self.subscriptions.remove(&t.hash());
                self.validated_topics.remove(&t.hash());
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&t);
            }
            Command::Subscribe {
                topic,
                validated,
                reply,
            } => {
                let t = gossipsub::IdentTopic::new(topic.clone());
                if validated {
                    self.validated_topics.insert(t.hash());
                }
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&t) {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
                self.subscriptions
                    .entry(t.hash())
                    .or_insert_with(|| (topic, Vec::new()))
                    .1
                    .push(tx);
                let _ = reply.send(Ok(rx));
            }
            Command::Publish { topic, data, reply } => {
                let t = gossipsub::IdentTopic::new(topic);
                let hash = t.hash();
                // What gossipsub would answer, without signing a message first: with
                // no peer subscribed there is nobody to send it to.
                let anyone = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .any(|(_, topics)| topics.contains(&&hash));
                if !anyone {
                    let _ = reply.send(Err(NetError::NoTopicPeers));
                    return;
                }
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(t, data)
                    .map(|id| id.to_string())
                    .map_err(NetError::from);
                let _ = reply.send(r);
            }
            Command::TopicPeers { topic, reply } => {
                let hash = gossipsub::IdentTopic::new(topic).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .collect();
                let _ = reply.send(Ok(peers));
            }
            Command::PutRecord { key, value, reply } => {
                let record = kad::Record::new(kad::RecordKey::new(&key), value);
                if let Err(reason) = self.config.validators.validate(&record) {
                    let _ = reply.send(Err(NetError::RecordRefused(reason)));
                    return;
                }
                let started = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One);
                self.track(started, reply, PendingQuery::Put);
            }
            Command::GetRecord { key, reply } => {
                let q = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(kad::RecordKey::new(&key));
                self.queries.insert(q, PendingQuery::Get(reply));
            }
            Command::Provide { key, reply } => {
                let started = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(kad::RecordKey::new(&key));
                self.track(started, reply, PendingQuery::Provide);
            }
            Command::Providers { key, reply } => {
                let q = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                self.queries
                    .insert(q, PendingQuery::Providers(reply, HashSet::new()));
            }
            Command::ClosestPeers { key, reply } => {
                let q = self.swarm.behaviour_mut().kad.get_closest_peers(key);
                self.queries.insert(q, PendingQuery::Closest(reply));
            }
            Command::Bootstrap(reply) => {
                let started = self.swarm.behaviour_mut().kad.bootstrap();
                self.track(started, reply, PendingQuery::Bootstrap);
            }
            Command::GossipScore { peer, reply } => {
                let _ = reply.send(Ok(self.swarm.behaviour().gossipsub.peer_score(&peer)));
            }
            Command::LocalClosest { key, count, reply } => {
                let target = libp2p::kad::KBucketKey::new(key);
                let peers = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_closest_local_peers(&target)
                    .take(count)
                    .map(|k| *k.preimage())
                    .collect();
                let _ = reply.send(Ok(peers));
            }
            Command::RoutingTable { reply } => {
                let mut out = Vec::new();
                for b in self.swarm.behaviour_mut().kad.kbuckets() {
                    for e in b.iter() {
                        out.push((
                            *e.node.key.preimage(),
                            e.node.value.iter().cloned().collect(),
                        ));
                    }
                }
                let _ = reply.send(Ok(out));
            }
        }
    }

    pub(super) fn dial_peer(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: Reply<PeerId>,
        may_lookup: bool,
    ) {
        if self.swarm.is_connected(&peer) || peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Ok(peer));
            return;
        }
        if self.own_dials.values().any(|p| *p == peer) {
            self.peer_dials.entry(peer).or_default().push(reply);
            return;
        }
        // `Disconnected`, not `DisconnectedAndNotDialing`: a dial someone else started
        // (a hole punch) may be stuck on dead addresses; ours also tries the circuits.
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::Disconnected)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .build();
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.own_dials.insert(id, peer);
                self.peer_dials.entry(peer).or_default().push(reply);
            }
            Err(DialError::DialPeerConditionFalse(_)) => {
                let _ = reply.send(Ok(peer));
            }
            Err(DialError::NoAddresses) if may_lookup => {
                let q = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                self.queries.insert(q, PendingQuery::Lookup(peer, reply));
            }
            Err(DialError::NoAddresses) => {
                let _ = reply.send(Err(NetError::PeerNotFound(peer.to_string())));
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Dial(Arc::new(e))));
            }
        }
    }

    pub(super) fn status(&mut self) -> Status {
        let routing_table_size = self.routing_table_size();
        Status {
            peer_id: self.swarm.local_peer_id().to_string(),
            listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
            external_addrs: self
                .swarm
                .external_addresses()
                .map(|a| a.to_string())
                .collect(),
            connected_peers: self.swarm.connected_peers().count(),
            routing_table_size,
            dht_queries: self.swarm.behaviour_mut().kad.iter_queries().count(),
            nat: self.nat.clone(),
            topics: self
                .subscriptions
                .values()
                .map(|(t, _)| t.clone())
                .collect(),
        }
    }

    pub(super) fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = self
            .connections
            .iter()
            .map(|(peer, conns)| PeerInfo {
                peer_id: peer.to_string(),
                addresses: conns.iter().map(|(_, a)| a.to_string()).collect(),
                agent: self.agents.get(peer).cloned(),
                rtt_ms: self.rtts.get(peer).map(|d| d.as_secs_f64() * 1000.0),
                relayed: conns.iter().all(|(_, a)| is_relayed(a)),
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    pub(super) fn routing_table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum()
    }

    /// Keeps the reply of a query that started, or answers at once with why it did not.
    fn track<T, E: Into<NetError>>(
        &mut self,
        started: Result<QueryId, E>,
        reply: Reply<T>,
        pending: impl FnOnce(Reply<T>) -> PendingQuery,
    ) {
        match started {
            Ok(q) => {
                self.queries.insert(q, pending(reply));
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }
}
