//! Whether this node relays circuits for others, and whether it exits: `[onion] relay`
//! and `exit` at start, changed at run time by `nodus onion relay on|off [--exit]` and
//! then kept in `onion/role.json`, which wins over the config file from the next start
//! on (the command says so).
//!
//! Turning the relay off stops taking circuits at once and ends those it carries; its
//! descriptor stays in other nodes' lists until it expires, and their paths leave it out
//! after the first circuit that fails on it ([`crate::health`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::identity::Keypair;
use nodus_net::NetworkHandle;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::OnionError;
use crate::config::OnionConfig;
use crate::exit::ExitPolicy;
use crate::ntor::OnionKey;
use crate::relay::{self, Relay};
use crate::{lock, state};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub relay: bool,
    pub exit: bool,
    /// Bytes a second passed on for others (0: no limit); `None`: `[onion]
    /// relay_bandwidth`. Shown as the limit in force.
    #[serde(default)]
    pub bandwidth: Option<u64>,
}

impl Role {
    /// `onion/role.json` if a command set the role, else the config file's.
    pub fn load(dir: &Path, config: &OnionConfig) -> Result<Role, OnionError> {
        let set = state::read(
            &dir.join("role.json"),
            "remove it to take [onion] relay and exit from config.toml",
        )?;
        Ok(set.unwrap_or(Role {
            relay: config.relay,
            exit: config.relay && config.exit,
            bandwidth: None,
        }))
    }
}

/// What a relay needs to run, and the one running.
pub struct Relaying {
    net: NetworkHandle,
    key: Keypair,
    onion_key: OnionKey,
    allow_private: bool,
    reject_ports: Vec<u16>,
    publish_every: Duration,
    /// Where listed relays said they listen, for extending to them.
    addrs_of: crate::relay::AddrsOf,
    /// The admission cost this relay pays each day.
    admission_bits: u8,
    /// `[onion] relay_bandwidth`: bytes a second passed on for others (0: no limit),
    /// unless the role sets its own.
    config_bandwidth: u64,
    overlay_protocols: Vec<String>,
    /// The limit of the relay running now.
    bandwidth: std::sync::atomic::AtomicU64,
    shutdown: watch::Receiver<bool>,
    dir: PathBuf,
    running: Mutex<Option<Running>>,
    /// One change at a time.
    changing: tokio::sync::Mutex<()>,
}

struct Running {
    relay: Arc<Relay>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Relaying {
    pub fn new(
        net: NetworkHandle,
        key: Keypair,
        onion_key: OnionKey,
        config: &OnionConfig,
        (dir, addrs_of): (&Path, crate::relay::AddrsOf),
        shutdown: watch::Receiver<bool>,
    ) -> Relaying {
        Relaying {
            addrs_of,
            net,
            key,
            onion_key,
            allow_private: config.exit_allow_private,
            reject_ports: config.exit_reject_ports.clone(),
            publish_every: Duration::from_secs(config.publish_secs.max(1)),
            admission_bits: config.admission_bits,
            config_bandwidth: config.relay_bandwidth,
            overlay_protocols: config.relay_overlay_protocols.clone(),
            bandwidth: std::sync::atomic::AtomicU64::new(config.relay_bandwidth),
            shutdown,
            dir: dir.to_path_buf(),
            running: Mutex::default(),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn relay(&self) -> Option<Arc<Relay>> {
        lock(&self.running).as_ref().map(|r| r.relay.clone())
    }

    /// Bytes a second passed on for others at most (0: no limit).
    pub fn bandwidth(&self) -> u64 {
        self.bandwidth.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn role(&self) -> Role {
        match self.relay() {
            Some(r) => Role {
                relay: true,
                exit: r.exit.is_some(),
                bandwidth: Some(self.bandwidth()),
            },
            None => Role {
                relay: false,
                exit: false,
                bandwidth: None,
            },
        }
    }

    /// Runs as `role` says, stopping what ran before; `save` keeps it in role.json.
    pub async fn set(&self, role: Role, save: bool) -> Result<(), OnionError> {
        let _one = self.changing.lock().await;
        let old = lock(&self.running).take();
        if let Some(mut old) = old {
            // The accept loop must be gone before the protocol is taken again.
            let tasks = std::mem::take(&mut old.tasks);
            for t in &tasks {
                t.abort();
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        if role.relay {
            let exit = role.exit.then(|| ExitPolicy {
                allow_private: self.allow_private,
                reject_ports: self.reject_ports.clone(),
            });
            let me = self.net.local_peer_id();
            let rate = role.bandwidth.unwrap_or(self.config_bandwidth);
            self.bandwidth
                .store(rate, std::sync::atomic::Ordering::Relaxed);
            let relay = Arc::new(
                Relay::new(&me, self.onion_key.clone(), exit)
                    .with_rate(rate)
                    .with_addresses(self.addrs_of.clone())
                    .with_overlay(self.overlay_protocols.clone()),
            );
            let tasks = vec![
                relay::spawn(self.net.clone(), relay.clone(), self.shutdown.clone())?,
                tokio::spawn(crate::service::publish(
                    self.net.clone(),
                    self.key.clone(),
                    self.onion_key.public(),
                    role.exit,
                    self.publish_every,
                    (self.admission_bits, self.dir.clone()),
                    self.shutdown.clone(),
                )),
            ];
            *lock(&self.running) = Some(Running { relay, tasks });
        }
        if save {
            state::write(&self.dir.join("role.json"), &role)?;
        }
        Ok(())
    }
}
