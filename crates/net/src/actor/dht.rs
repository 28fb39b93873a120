//! The routing-table gate and Kademlia events and queries.

use super::*;

impl Actor {
    /// The single gate into the Kademlia routing table.
    pub(super) fn try_route(&mut self, peer: PeerId, addr: Multiaddr) -> bool {
        if peer == *self.swarm.local_peer_id() {
            return false;
        }
        let limits = Limits {
            per_bucket: self.config.routing.max_per_subnet_per_bucket,
            per_table: self.config.routing.max_per_subnet_per_table,
        };
        let kad = &mut self.swarm.behaviour_mut().kad;
        let bucket = kad.kbucket(peer).map(|b| b.range());
        let mut already = false;
        let mut table: Vec<(bool, Vec<Subnet>)> = Vec::new();
        for b in kad.kbuckets() {
            let same = Some(b.range()) == bucket;
            for e in b.iter() {
                if *e.node.key.preimage() == peer {
                    already = true;
                    continue;
                }
                let subnets = e.node.value.iter().filter_map(Subnet::of_addr).collect();
                table.push((same, subnets));
            }
        }
        if !already {
            let view = table.iter().map(|(s, v)| (*s, v.as_slice()));
            if let Err(refusal) = diversity::admit(limits, &addr, view) {
                self.counters.routing_rejected.inc();
                tracing::debug!(target: "nodus::net", %peer, %addr, "routing refused: {refusal}");
                self.emit(NetEvent::RoutingRejected {
                    peer: peer.to_string(),
                    address: addr.to_string(),
                    reason: refusal.to_string(),
                });
                return false;
            }
        }
        let addr = match peer_of(&addr) {
            Some(_) => {
                let mut a = addr;
                a.pop();
                a
            }
            None => addr,
        };
        let routed = !matches!(
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone()),
            kad::RoutingUpdate::Failed
        );
        if routed {
            self.known_ips.add(&addr);
        }
        routed
    }

    pub(super) fn on_kad_event(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::RoutablePeer { peer, address }
            | kad::Event::PendingRoutablePeer { peer, address } => {
                self.try_route(peer, address);
            }
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => match self.config.validators.validate(&record) {
                Ok(()) => {
                    if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(record) {
                        tracing::debug!(target: "nodus::net", %source, "record not stored: {e:?}");
                    }
                }
                Err(reason) => {
                    self.counters.records_rejected.inc();
                    tracing::debug!(target: "nodus::net", %source, "record refused: {reason}");
                    self.strike(source, "sent invalid DHT records");
                }
            },
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(record),
                    },
            } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .add_provider(record);
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => self.on_query_progress(id, result, step.last),
            _ => {}
        }
    }

    /// A lookup that `dial_peer` started for `peer` is over once we are connected to it,
    /// whether the lookup's own request reached it or it came to us: answered at once,
    /// and the query stopped. Waiting for the query to end instead cost up to QUIC's
    /// 3 s handshake timeout whenever a dead peer was among those asked (the demo's
    /// messaging step took 3 s in about half its runs).
    pub(super) fn lookups_done(&mut self, peer: PeerId) {
        let done: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, q)| matches!(q, PendingQuery::Lookup(p, _) if *p == peer))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(PendingQuery::Lookup(_, reply)) = self.queries.remove(&id) {
                let _ = reply.send(Ok(peer));
            }
            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
        }
    }

    pub(super) fn on_query_progress(&mut self, id: QueryId, result: QueryResult, last: bool) {
        let Some(pending) = self.queries.remove(&id) else {
            return;
        };
        match (pending, result) {
            (PendingQuery::Put(reply), QueryResult::PutRecord(r)) => {
                // The record is in the local store either way; what varies is whether
                // any other peer took a copy.
                let replicated = match r {
                    Ok(_) => true,
                    Err(kad::PutRecordError::QuorumFailed { success, .. })
                    | Err(kad::PutRecordError::Timeout { success, .. }) => !success.is_empty(),
                };
                let _ = reply.send(Ok(replicated));
            }
            (PendingQuery::Get(reply), QueryResult::GetRecord(r)) => match r {
                Ok(GetRecordOk::FoundRecord(found)) => {
                    match self.config.validators.validate(&found.record) {
                        Ok(()) => {
                            let _ = reply.send(Ok(found.record.value));
                            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                                q.finish();
                            }
                        }
                        Err(_) => {
                            self.counters.records_rejected.inc();
                            if last {
                                let _ = reply.send(Err(NetError::NotFound));
                            } else {
                                self.queries.insert(id, PendingQuery::Get(reply));
                            }
                        }
                    }
                }
                Ok(GetRecordOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => {
                    let _ = reply.send(Err(NetError::NotFound));
                }
            },
            (PendingQuery::Provide(reply), QueryResult::StartProviding(r)) => {
                let _ = reply.send(r.map(|_| ()).map_err(NetError::from));
            }
            (PendingQuery::Providers(reply, mut found), QueryResult::GetProviders(r)) => match r {
                Ok(GetProvidersOk::FoundProviders { providers, .. }) => {
                    found.extend(providers);
                    if last {
                        let _ = reply.send(Ok(found.into_iter().collect()));
                    } else {
                        self.queries
                            .insert(id, PendingQuery::Providers(reply, found));
                    }
                }
                Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => {
                    let _ = reply.send(Ok(found.into_iter().collect()));
                }
            },
            (PendingQuery::Closest(reply), QueryResult::GetClosestPeers(r)) => {
                let peers = match r {
                    Ok(GetClosestPeersOk { peers, .. }) => peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                let _ = reply.send(Ok(peers.into_iter().map(|p| p.peer_id).collect()));
            }
            (PendingQuery::Bootstrap(reply), QueryResult::Bootstrap(_)) => {
                if last {
                    let _ = reply.send(Ok(self.routing_table_size()));
                } else {
                    self.queries.insert(id, PendingQuery::Bootstrap(reply));
                }
            }
            (PendingQuery::Lookup(target, reply), QueryResult::GetClosestPeers(r)) => {
                let peers = match r {
                    Ok(GetClosestPeersOk { peers, .. }) => peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                for p in peers.into_iter().filter(|p| p.peer_id == target) {
                    for a in p.addrs {
                        self.swarm.add_peer_address(target, a);
                    }
                }
                self.dial_peer(target, Vec::new(), reply, false);
            }
            (pending, other) => {
                tracing::debug!(target: "nodus::net", ?other, "query result of unexpected kind");
                if !last {
                    self.queries.insert(id, pending);
                }
            }
        }
    }
}
