//! The onion services this node runs, started again after a restart: their list is
//! `services.json`, each one's keys `services/<port>.key` (0600), so an address stays
//! the same for as long as its key file is kept, including across `unserve`. Services
//! whose identity another part of the node owns ([`Hosting::serve_as`]) are in neither:
//! their owner registers them at each start.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::OnionError;
use crate::hs::address::ServiceKeys;
use crate::hs::host::{self, HostStatus, Hosted, Publish};
use crate::paths::DirectoryPaths;
use crate::{lock, state};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// The local port streams reach (on 127.0.0.1).
    port: u16,
    /// The port clients ask for.
    virtual_port: u16,
}

struct Running {
    entry: Entry,
    /// Listed in services.json and started again after a restart; a service another
    /// part of the node registers at each start ([`Hosting::serve_as`]) is not.
    kept: bool,
    status: Arc<Mutex<HostStatus>>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Hosting {
    dir: PathBuf,
    paths: Arc<DirectoryPaths>,
    publish_every: Duration,
    publish: Publish,
    running: Mutex<BTreeMap<u16, Running>>,
}

impl Hosting {
    /// Starts every service `dir/services.json` lists.
    pub fn start(
        dir: PathBuf,
        paths: Arc<DirectoryPaths>,
        publish_every: Duration,
        publish: Publish,
    ) -> Result<Hosting, OnionError> {
        let entries: Vec<Entry> = state::read(
            &dir.join("services.json"),
            "fix or remove it (the keys in services/ keep the addresses)",
        )?
        .unwrap_or_default();
        let h = Hosting {
            dir,
            paths,
            publish_every,
            publish,
            running: Mutex::default(),
        };
        for e in entries {
            h.run(e, None)?;
        }
        Ok(h)
    }

    /// Serves local `port` as an onion service at `virtual_port`; its status (with the
    /// address). Serving a port again changes only its virtual port.
    pub fn serve(&self, port: u16, virtual_port: u16) -> Result<HostStatus, OnionError> {
        if port == 0 || virtual_port == 0 {
            return Err(OnionError::BadRequest(
                "ports are 1 to 65535: the local port to serve, and the port clients ask for"
                    .into(),
            ));
        }
        let status = self.run(Entry { port, virtual_port }, None)?;
        self.save()?;
        Ok(status)
    }

    /// Serves local `port` at `virtual_port` under `keys` another part of the node
    /// owns (so the address is theirs, whatever the port). Not kept in services.json:
    /// the owner registers it again at each start, with the port it listens on then.
    pub fn serve_as(
        &self,
        keys: ServiceKeys,
        port: u16,
        virtual_port: u16,
    ) -> Result<HostStatus, OnionError> {
        if port == 0 || virtual_port == 0 {
            return Err(OnionError::BadRequest("ports are 1 to 65535".into()));
        }
        self.run(Entry { port, virtual_port }, Some(keys))
    }

    /// Stops serving `port`; `false` if it was not served. The key stays.
    pub fn unserve(&self, port: u16) -> Result<bool, OnionError> {
        let was = lock(&self.running).remove(&port).is_some();
        self.save()?;
        Ok(was)
    }

    pub fn status(&self) -> Vec<HostStatus> {
        lock(&self.running)
            .values()
            .map(|r| lock(&r.status).clone())
            .collect()
    }

    fn run(&self, entry: Entry, owned: Option<ServiceKeys>) -> Result<HostStatus, OnionError> {
        let mut running = lock(&self.running);
        let kept = owned.is_none();
        if let Some(r) = running.get(&entry.port)
            && r.entry == entry
            && r.kept == kept
            && owned
                .as_ref()
                .is_none_or(|k| lock(&r.status).address == k.address())
        {
            return Ok(lock(&r.status).clone());
        }
        let keys = match owned {
            Some(keys) => keys,
            None => {
                ServiceKeys::load_or_create(&self.dir.join(format!("services/{}.key", entry.port)))?
            }
        };
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, entry.port));
        let status = Arc::new(Mutex::new(HostStatus {
            address: keys.address(),
            port: entry.virtual_port,
            target: target.to_string(),
            ..HostStatus::default()
        }));
        let hosted = Hosted {
            keys,
            port: entry.virtual_port,
            target,
        };
        let task = tokio::spawn(host::run(
            self.paths.clone(),
            hosted,
            self.publish_every,
            self.publish.clone(),
            status.clone(),
        ));
        let shown = lock(&status).clone();
        tracing::info!(target: "nodus::onion", "onion service {} on port {} to {target}", shown.address, entry.virtual_port);
        running.insert(
            entry.port,
            Running {
                entry,
                kept,
                status,
                task,
            },
        );
        Ok(shown)
    }

    fn save(&self) -> Result<(), OnionError> {
        let entries: Vec<Entry> = lock(&self.running)
            .values()
            .filter(|r| r.kept)
            .map(|r| r.entry)
            .collect();
        state::write(&self.dir.join("services.json"), &entries)
    }
}
