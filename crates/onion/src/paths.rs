//! Circuits for the proxy from the relay list: a fresh path from the directory for each
//! isolation key, kept while it works, replaced once closed. A path that fails to build
//! is followed by another (three tries).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::BoxFuture;
use libp2p::PeerId;
use nodus_net::NetworkHandle;

use crate::OnionError;
use crate::client::Circuit;
use crate::directory::Directory;
use crate::proxy::{Circuits, Isolation};

const TRIES: usize = 3;
/// Circuits held at once, one per isolation key: local programs choose the keys.
pub const MAX_CIRCUITS: usize = 64;

pub struct DirectoryPaths {
    net: NetworkHandle,
    me: PeerId,
    hops: usize,
    subnet_bits: u8,
    directory: Arc<Mutex<Directory>>,
    built: tokio::sync::Mutex<HashMap<Isolation, (Arc<Circuit>, Instant)>>,
}

/// A circuit as `nodus onion circuits` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CircuitInfo {
    pub hops: Vec<String>,
    pub age_secs: u64,
    pub isolated: bool,
}

impl DirectoryPaths {
    pub fn new(
        net: NetworkHandle,
        hops: usize,
        subnet_bits: u8,
        directory: Arc<Mutex<Directory>>,
    ) -> DirectoryPaths {
        DirectoryPaths {
            me: net.local_peer_id(),
            net,
            hops: hops.max(1),
            subnet_bits,
            directory,
            built: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub async fn circuits(&self) -> Vec<CircuitInfo> {
        self.built
            .lock()
            .await
            .iter()
            .filter(|(_, (c, _))| !c.is_closed())
            .map(|(iso, (c, at))| CircuitInfo {
                hops: c.hops().iter().map(|p| p.to_string()).collect(),
                age_secs: at.elapsed().as_secs(),
                isolated: iso.is_some(),
            })
            .collect()
    }

    async fn build(&self) -> Result<Circuit, OnionError> {
        let mut last = OnionError::NoPath("no relay known yet");
        for _ in 0..TRIES {
            let path = {
                let dir = self.directory.lock().unwrap_or_else(|p| p.into_inner());
                dir.pick_path(&self.me, self.hops, self.subnet_bits, &mut rand::rng())?
            };
            match Circuit::build(&self.net, &path).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(target: "nodus::onion", "a circuit did not build: {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

impl Circuits for DirectoryPaths {
    fn circuit(&self, isolation: Isolation) -> BoxFuture<'_, Result<Arc<Circuit>, OnionError>> {
        Box::pin(async move {
            let mut built = self.built.lock().await;
            if let Some((c, _)) = built.get(&isolation).filter(|(c, _)| !c.is_closed()) {
                return Ok(c.clone());
            }
            built.retain(|_, (c, _)| !c.is_closed());
            if built.len() >= MAX_CIRCUITS && !built.contains_key(&isolation) {
                return Err(OnionError::NoPath(
                    "64 circuits (one per set of SOCKS credentials) are open",
                ));
            }
            let c = Arc::new(self.build().await?);
            built.insert(isolation, (c.clone(), Instant::now()));
            Ok(c)
        })
    }
}
