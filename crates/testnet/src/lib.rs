//! nodus-testnet: N real nodes on loopback in one process, each with its own data dir,
//! P2P listeners and HTTP API. Used by the integration tests, `nodus testnet up` and
//! `nodus demo`.
//!
//! Node k listens on 127.0.(k+1).1, so every node sits in its own /24 the way peers on
//! the Internet do, and the routing table's IP-diversity limits apply to a testnet as
//! they would to the real network. All nodes join through node 0.
//!
//! [`impair`] adds delay and loss between nodes in user space (proxies), since the
//! kernel here has no netem.

pub mod browser;
pub mod impair;
pub mod media;
pub mod watch;

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nodus_core::{Config, DataDir};
use nodus_node::{Node, NodeError, RunningNode, StartOptions};

#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Core(#[from] nodus_core::CoreError),
    #[error("node {0} is not running")]
    NotRunning(usize),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("at most {MAX_NODES} nodes fit the 127.0.x.1 address plan")]
    TooMany,
    #[error("setting up: {0}")]
    Setup(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub const MAX_NODES: usize = 199;

/// A TCP port on 127.0.0.1 free now, for a program that takes a port rather than a
/// listener (another process may take it before that program binds it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The loopback address node `k` listens on.
pub fn node_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (k + 1) as u8, 1)
}

/// The memory limit of every testnet node ([`node_config`]): the process's budget.
pub const TESTNET_PROCESS_MEMORY_MIB: usize = 16 * 1024;

/// A testnet node's config: TCP and QUIC on its own loopback address, no mDNS, API on a
/// free port, 127.0.0.1 exempt from gossipsub's colocation penalty (outbound TCP on
/// loopback always comes from 127.0.0.1), the memory limit raised to the process's
/// budget, and each service set up by its own `Service::testnet`.
pub fn node_config(ip: Ipv4Addr, bootstrap: &[String]) -> Config {
    let mut c = Config::default();
    c.p2p.listen = vec![
        format!("/ip4/{ip}/tcp/0"),
        format!("/ip4/{ip}/udp/0/quic-v1"),
    ];
    c.p2p.bootstrap = bootstrap.to_vec();
    c.p2p.mdns = false;
    c.p2p.advertise_listen_addrs = true;
    c.p2p.autonat_private_addrs = true;
    c.p2p.gossip_ip_whitelist = vec!["127.0.0.1".into()];
    c.p2p.limits.exempt_ips = vec!["127.0.0.1".into()];
    // The memory limit is measured on the whole process, and a testnet runs all its
    // nodes (and whatever the test or bench does besides) in one: at one node's 2 GiB,
    // every node refuses every new connection once the process holds more, and a
    // network cannot form ("waiting for every node to have N peers"). The budget here
    // is the process's, for all of them.
    c.p2p.limits.max_memory_mib = TESTNET_PROCESS_MEMORY_MIB;
    c.api.listen = "127.0.0.1:0".into();
    // Each service's own idea of a loopback node: free ports, no Internet bootstrap.
    for service in nodus_node::services::all() {
        service
            .testnet(&mut c, ip)
            .expect("a default section always parses");
    }
    c
}

/// A node with no listener of its own: reachable only through `relays` (multiaddrs of
/// relay nodes), which it holds reservations on. It joins through the first relay.
pub fn hidden_node_config(k: usize, relays: &[String]) -> Config {
    let mut c = node_config(node_ip(k), &relays[..relays.len().min(1)]);
    c.p2p.listen.clear();
    c.p2p.relays = relays.to_vec();
    c
}

/// Where the watcher node ([`Testnet::start_watcher`]) listens: outside the nodes' plan.
pub const WATCHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 250, 1);

pub struct Testnet {
    dir: PathBuf,
    nodes: Vec<Option<RunningNode>>,
    configs: Vec<Config>,
    watcher: Option<RunningNode>,
    known: watch::Known,
    /// Per node, the task summing its events up into the watcher's narration.
    mirrors: Vec<Option<tokio::task::JoinHandle<()>>>,
}

impl Testnet {
    /// Starts `n` nodes under `dir` (`dir/node0` ..), each joining through node 0.
    pub async fn start(n: usize, dir: &Path) -> Result<Testnet, TestnetError> {
        if n > MAX_NODES {
            return Err(TestnetError::TooMany);
        }
        let mut net = Testnet {
            dir: dir.to_path_buf(),
            nodes: Vec::new(),
            configs: Vec::new(),
            watcher: None,
            known: Default::default(),
            mirrors: Vec::new(),
        };
        for _ in 0..n {
            let bootstrap = net.bootstrap_addrs();
            let k = net.nodes.len();
            net.add_node(node_config(node_ip(k), &bootstrap)).await?;
        }
        Ok(net)
    }

    /// The TCP address a new node joins through: the first running node's (node 0's
    /// until it is killed; empty while no node runs).
    pub fn bootstrap_addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flatten()
            .find_map(|n| n.p2p_addr("tcp"))
            .map(|a| vec![a.to_string()])
            .unwrap_or_default()
    }

    pub fn data_dir(&self, k: usize) -> DataDir {
        DataDir::new(self.dir.join(format!("node{k}")))
    }

    /// Adds a node with the given config; returns its index.
    pub async fn add_node(&mut self, config: Config) -> Result<usize, TestnetError> {
        let k = self.nodes.len();
        if k >= MAX_NODES {
            return Err(TestnetError::TooMany);
        }
        let dir = self.data_dir(k);
        nodus_node::init(&dir)?;
        nodus_core::fsutil::write_atomic(&dir.config_path(), config.to_toml().as_bytes(), 0o644)?;
        let node = Node::start(StartOptions {
            data_dir: dir,
            config: Some(config.clone()),
        })
        .await?;
        self.nodes.push(Some(node));
        self.configs.push(config);
        self.started(k);
        Ok(k)
    }

    /// Starts the watcher: a node outside the list (no step picks, stops or counts
    /// it) that joins through the first running node, and on whose dashboard every
    /// node's events are narrated from now on, with each node started or stopped. It
    /// offers the others nothing they could rely on (no circuit relay, and each
    /// service's `Service::watcher` settings: no voice relay, no mailbox).
    pub async fn start_watcher(&mut self) -> Result<&RunningNode, TestnetError> {
        if self.watcher.is_none() {
            let dir = DataDir::new(self.dir.join("watcher"));
            nodus_node::init(&dir)?;
            let mut config = node_config(WATCHER_IP, &self.bootstrap_addrs());
            config.p2p.relay.enabled = false;
            for service in nodus_node::services::all() {
                service
                    .watcher(&mut config)
                    .expect("a section just written parses");
            }
            let node = Node::start(StartOptions {
                data_dir: dir,
                config: Some(config),
            })
            .await?;
            self.watcher = Some(node);
            for k in self.running() {
                self.started(k);
            }
        }
        Ok(self.watcher.as_ref().expect("just started"))
    }

    /// The watcher node, once started.
    pub fn watcher(&self) -> Option<&RunningNode> {
        self.watcher.as_ref()
    }

    fn started(&mut self, k: usize) {
        let (Some(w), Some(node)) = (&self.watcher, self.nodes.get(k).and_then(Option::as_ref))
        else {
            return;
        };
        let peer = node.peer_id().to_string();
        w.narration().node(k, &peer, true);
        if let Ok(mut known) = self.known.write() {
            known.retain(|(_, i)| *i != k);
            known.push((peer, k));
        }
        let task = watch::mirror(w.narration().clone(), k, node.events(), self.known.clone());
        if self.mirrors.len() <= k {
            self.mirrors.resize_with(k + 1, || None);
        }
        if let Some(old) = self.mirrors[k].replace(task) {
            old.abort();
        }
    }

    fn stopped(&mut self, k: usize, peer: &str) {
        if let Some(task) = self.mirrors.get_mut(k).and_then(Option::take) {
            task.abort();
        }
        if let Some(w) = &self.watcher {
            w.narration().node(k, peer, false);
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, k: usize) -> &RunningNode {
        self.try_node(k).expect("node index is running")
    }

    pub fn try_node(&self, k: usize) -> Option<&RunningNode> {
        self.nodes.get(k).and_then(|n| n.as_ref())
    }

    /// Indices of the nodes that are running.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|k| self.nodes[*k].is_some())
            .collect()
    }

    /// Stops node `k` abruptly, as a crash: no goodbye to its peers.
    pub async fn kill(&mut self, k: usize) -> Result<(), TestnetError> {
        let node = self
            .nodes
            .get_mut(k)
            .and_then(|n| n.take())
            .ok_or(TestnetError::NotRunning(k))?;
        self.stopped(k, &node.peer_id().to_string());
        node.kill().await;
        Ok(())
    }

    /// Stops node `k` cleanly, as `nodus stop` does: services finish and close their
    /// files. A [`Testnet::kill`] aborts the tasks the node holds, as a crash would, but
    /// tasks a service spawns for its own work and does not hand the node (a torrent's,
    /// its peer connections') keep running in this process and keep that service's
    /// database open: a node killed while it had torrents cannot start again here.
    pub async fn stop(&mut self, k: usize) -> Result<(), TestnetError> {
        let node = self
            .nodes
            .get_mut(k)
            .and_then(|n| n.take())
            .ok_or(TestnetError::NotRunning(k))?;
        self.stopped(k, &node.peer_id().to_string());
        node.shutdown().await;
        Ok(())
    }

    /// Starts node `k` again from its data dir (same identity, new ports), joining
    /// through a running node.
    pub async fn restart(&mut self, k: usize) -> Result<(), TestnetError> {
        self.restart_with(k, true).await
    }

    /// Starts node `k` again on new ports with no bootstrap peer: nobody knows where it
    /// is, so it is cut off until it dials someone (a network partition).
    pub async fn restart_isolated(&mut self, k: usize) -> Result<(), TestnetError> {
        self.restart_with(k, false).await
    }

    async fn restart_with(&mut self, k: usize, join: bool) -> Result<(), TestnetError> {
        if self.try_node(k).is_some() {
            self.kill(k).await?;
        }
        let mut config = self.configs[k].clone();
        let boot: Vec<String> = self
            .running()
            .into_iter()
            .filter_map(|i| self.node(i).p2p_addr("tcp"))
            .map(|a| a.to_string())
            .take(1)
            .collect();
        if !join {
            config.p2p.bootstrap.clear();
        } else if !boot.is_empty() {
            config.p2p.bootstrap = boot;
        }
        let node = Node::start(StartOptions {
            data_dir: self.data_dir(k),
            config: Some(config),
        })
        .await?;
        self.nodes[k] = Some(node);
        self.started(k);
        Ok(())
    }

    /// Waits until every running node has at least `min` connected peers.
    pub async fn wait_connected(&self, min: usize, timeout: Duration) -> Result<(), TestnetError> {
        wait_until(
            timeout,
            &format!("every node to have {min} peers"),
            || async {
                for k in self.running() {
                    match self.node(k).net.status().await {
                        Ok(s) if s.connected_peers >= min => {}
                        _ => return false,
                    }
                }
                true
            },
        )
        .await
    }

    /// Waits until node `k` holds at least `n` relay reservations.
    pub async fn wait_circuits(
        &self,
        k: usize,
        n: usize,
        timeout: Duration,
    ) -> Result<(), TestnetError> {
        wait_until(timeout, "relay reservations", || async {
            self.node(k).net.status().await.is_ok_and(|s| {
                s.listen_addrs
                    .iter()
                    .filter(|a| a.contains("p2p-circuit"))
                    .count()
                    >= n
            })
        })
        .await
    }

    /// The peer id of the relay that node `k`'s connection to `peer` runs through, if
    /// that connection is a relay circuit.
    pub async fn relay_in_use(&self, k: usize, peer: &str) -> Option<String> {
        let peers = self.node(k).net.peers().await.ok()?;
        peers.iter().find(|p| p.peer_id == peer)?.relay()
    }

    /// The sum of node `k`'s samples of metric `name` (every label set), from its
    /// `/metrics`; 0 when it has none or the API does not answer.
    pub async fn metric(&self, k: usize, name: &str) -> f64 {
        let token = std::fs::read_to_string(self.data_dir(k).cookie_path()).unwrap_or_default();
        let text = match reqwest::Client::new()
            .get(format!("{}/metrics", self.node(k).api_url()))
            .bearer_auth(token.trim())
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return 0.0,
        };
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The index of the running node with this peer id.
    pub fn index_of(&self, peer: &str) -> Option<usize> {
        self.running()
            .into_iter()
            .find(|k| self.node(*k).peer_id().to_string() == peer)
    }

    /// Waits until every running node sees at least `min` peers subscribed to `topic`.
    pub async fn wait_topic_mesh(
        &self,
        topic: &str,
        min: usize,
        timeout: Duration,
    ) -> Result<(), TestnetError> {
        // Both ways: each node knows `min` subscribed peers, and `min` peers know it is
        // subscribed. One side alone is not enough: a node's own SUBSCRIBE may still be
        // on its way to its peers, and a message published then passes it by (the demo
        // once lost one that way under CI load).
        wait_until(timeout, &format!("peers subscribed to {topic}"), || async {
            let mut known_by: std::collections::HashMap<libp2p::PeerId, usize> = Default::default();
            for k in self.running() {
                match self.node(k).net.topic_peers(topic).await {
                    Ok(p) if p.len() >= min => {
                        for peer in p {
                            *known_by.entry(peer).or_default() += 1;
                        }
                    }
                    _ => return false,
                }
            }
            self.running().into_iter().all(|k| {
                known_by
                    .get(&self.node(k).peer_id())
                    .is_some_and(|n| *n >= min)
            })
        })
        .await
    }

    /// Waits until node `from` knows each of `subscribers` is subscribed to `topic`, so
    /// what it publishes there reaches them (directly, through gossipsub's fanout).
    pub async fn wait_topic_known(
        &self,
        topic: &str,
        from: usize,
        subscribers: &[usize],
        timeout: Duration,
    ) -> Result<(), TestnetError> {
        let wanted: Vec<libp2p::PeerId> = subscribers
            .iter()
            .map(|k| self.node(*k).peer_id())
            .collect();
        wait_until(
            timeout,
            &format!("node {from} to know who is subscribed to {topic}"),
            || async {
                self.node(from)
                    .net
                    .topic_peers(topic)
                    .await
                    .is_ok_and(|p| wanted.iter().all(|w| p.contains(w)))
            },
        )
        .await
    }

    pub async fn shutdown(mut self) {
        for task in self.mirrors.iter_mut().filter_map(Option::take) {
            task.abort();
        }
        for n in self.nodes.iter_mut() {
            if let Some(node) = n.take() {
                node.shutdown().await;
            }
        }
        if let Some(w) = self.watcher.take() {
            w.shutdown().await;
        }
    }
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
pub async fn wait_until<F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
) -> Result<(), TestnetError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TestnetError::Timeout(timeout, what.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Messaging helpers shared by the tests, the demo and the benchmark.
pub mod msg {
    use std::time::{Duration, Instant};

    use nodus_msg::{FileState, Message, MsgError, MsgEvent, MsgHandle, NewFile};

    /// Why a file sent with [`send_file`] did not arrive.
    #[derive(Debug, thiserror::Error)]
    pub enum FileError {
        #[error(transparent)]
        Msg(#[from] MsgError),
        #[error("the file did not arrive within {0:?}")]
        Timeout(Duration),
        #[error("the recipient's download failed: {0}")]
        Failed(String),
        #[error("the recipient's event stream: {0}")]
        Events(#[from] tokio::sync::broadcast::error::RecvError),
    }

    /// A file that arrived: the message as sent, the synced progress the recipient
    /// showed on the way (bytes), and the time from the send call to the file complete.
    #[derive(Debug)]
    pub struct Arrival {
        pub message: Message,
        pub progress: Vec<u64>,
        pub took: Duration,
    }

    /// Takes `bytes` into `a`'s file store, sends them as `name` to the contact `to`
    /// (`b`), and waits until `b` has fetched and checked them whole.
    pub async fn send_file(
        a: &MsgHandle,
        b: &MsgHandle,
        to: &str,
        (bytes, name): (&[u8], &str),
        timeout: Duration,
    ) -> Result<Arrival, FileError> {
        let pieces: Vec<Result<&[u8], std::convert::Infallible>> =
            bytes.chunks(1 << 20).map(Ok).collect();
        let (hash, _) = a.import_file(futures::stream::iter(pieces)).await?;
        let mut events = b.events();
        let t = Instant::now();
        let file = NewFile {
            hash,
            name: name.into(),
            mime: None,
        };
        let message = a.send_files(to, "", vec![file]).await?;
        let mut progress = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ev = tokio::time::timeout_at(deadline, events.recv())
                .await
                .map_err(|_| FileError::Timeout(timeout))??;
            match ev {
                // Bytes the recipient had already: done on arrival; or refused on arrival.
                MsgEvent::Message { message: m } if m.id == message.id => {
                    match m.files.first().map(|f| (f.state, f.error.clone())) {
                        Some((FileState::Done, _)) => break,
                        Some((FileState::Failed, error)) => {
                            return Err(FileError::Failed(error.unwrap_or_default()));
                        }
                        _ => {}
                    }
                }
                MsgEvent::File {
                    message: id, file, ..
                } if id == message.id => {
                    // The last synced progress and the end both say the whole size.
                    if progress.last() != Some(&file.received) {
                        progress.push(file.received);
                    }
                    match file.state {
                        FileState::Done => break,
                        FileState::Failed => {
                            return Err(FileError::Failed(file.error.unwrap_or_default()));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(Arrival {
            message,
            progress,
            took: t.elapsed(),
        })
    }

    /// Makes `a` and `b` contacts of each other by exchanging invite codes, under the
    /// names `a_name` (as `b` calls `a`) and `b_name`.
    pub async fn introduce(
        a: &MsgHandle,
        b: &MsgHandle,
        a_name: &str,
        b_name: &str,
    ) -> Result<(), MsgError> {
        let code_a = a.invite().await?;
        let code_b = b.invite().await?;
        b.add_contact(&code_a, Some(a_name)).await?;
        a.add_contact(&code_b, Some(b_name)).await?;
        Ok(())
    }

    /// The texts `h` received in its conversation `with`, in order (none while `with`
    /// is not a contact yet).
    pub async fn incoming_texts(h: &MsgHandle, with: &str) -> Vec<String> {
        h.history(with)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|m| !m.outgoing)
            .map(|m| m.text)
            .collect()
    }
}

/// Test logs, when `NODUS_TEST_LOG` holds a filter (`nodus::chain=debug`, say), written
/// through the test harness's capture. Call it first in a test; later calls do nothing.
pub fn test_logs() {
    if let Ok(filter) = std::env::var("NODUS_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Onion routing helpers shared by the tests, the demo and the benchmark.
pub mod onion {
    use std::time::Duration;

    use nodus_onion::{OnionConfig, OnionHandle};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::{Testnet, TestnetError, node_config, node_ip, wait_until};

    /// Adds a relay (an exit if `exit`, reaching loopback as testnets need) joining
    /// through the running nodes; returns its index.
    pub async fn add_relay(net: &mut Testnet, exit: bool) -> Result<usize, TestnetError> {
        add_onion_node(net, |o| {
            o.relay = true;
            o.exit = exit;
        })
        .await
    }

    /// Adds a node whose `[onion]` section `edit` changes, joining through the running
    /// nodes; returns its index.
    pub async fn add_onion_node(
        net: &mut Testnet,
        edit: impl FnOnce(&mut OnionConfig),
    ) -> Result<usize, TestnetError> {
        let k = net.len();
        let mut config = node_config(node_ip(k), &net.bootstrap_addrs());
        config
            .edit::<OnionConfig>(edit)
            .map_err(TestnetError::from)?;
        net.add_node(config).await
    }

    /// Adds a node that messages anonymously (`[msg] anonymous = true`), joining
    /// through the running nodes; returns its index.
    pub async fn add_anonymous_messenger(net: &mut Testnet) -> Result<usize, TestnetError> {
        let k = net.len();
        let mut config = node_config(node_ip(k), &net.bootstrap_addrs());
        config
            .edit::<nodus_msg::MsgConfig>(|m| m.anonymous = true)
            .map_err(TestnetError::from)?;
        net.add_node(config).await
    }

    pub fn handle(net: &Testnet, k: usize) -> &OnionHandle {
        net.node(k).service::<OnionHandle>().expect("onion runs")
    }

    /// Waits until node `k` knows `relays` relays of which `exits` are exits.
    pub async fn wait_relays(
        net: &Testnet,
        k: usize,
        relays: usize,
        exits: usize,
        timeout: Duration,
    ) -> Result<(), TestnetError> {
        let h = handle(net, k).clone();
        wait_until(timeout, "the relay list", move || {
            let h = h.clone();
            async move {
                let s = h.status().await;
                s.relays_known >= relays && s.exits_known >= exits
            }
        })
        .await
    }

    /// The peers a relay's views named since the last call, circuit by circuit.
    pub fn peers_by_circuit(
        rx: &mut tokio::sync::broadcast::Receiver<nodus_onion::relay::Seen>,
    ) -> std::collections::HashMap<u64, Vec<libp2p::PeerId>> {
        let mut peers: std::collections::HashMap<u64, Vec<libp2p::PeerId>> = Default::default();
        while let Ok(s) = rx.try_recv() {
            peers.entry(s.circuit).or_default().extend(s.view.peers());
        }
        peers
    }

    /// Waits until node `k` holds a descriptor of the onion service at `address`
    /// published after `after_ms` (milliseconds since the epoch).
    pub async fn wait_service(
        net: &Testnet,
        k: usize,
        address: &str,
        after_ms: u64,
        timeout: Duration,
    ) -> Result<(), TestnetError> {
        let (h, address) = (handle(net, k).clone(), address.to_string());
        wait_until(timeout, "the onion service's descriptor", move || {
            let published = h.service_published_ms(&address);
            async move { published.is_some_and(|p| p > after_ms) }
        })
        .await
    }

    /// Opens `target` (`host:port`) through a SOCKS5 proxy, with `user:pass` if given
    /// (which picks the circuit). The smallest client RFC 1928 allows, as a program
    /// would: no-auth or username/password, CONNECT to a domain name.
    pub async fn socks_connect(
        proxy: &str,
        target: &str,
        credentials: Option<(&str, &str)>,
    ) -> std::io::Result<TcpStream> {
        let bad = |what: &str| std::io::Error::other(format!("SOCKS5: {what}"));
        let (host, port) = target.rsplit_once(':').ok_or_else(|| bad("target"))?;
        let port: u16 = port.parse().map_err(|_| bad("port"))?;
        let mut s = TcpStream::connect(proxy).await?;
        let method = if credentials.is_some() { 2 } else { 0 };
        s.write_all(&[5, 1, method]).await?;
        let mut chosen = [0u8; 2];
        s.read_exact(&mut chosen).await?;
        if chosen != [5, method] {
            return Err(bad("method refused"));
        }
        if let Some((user, pass)) = credentials {
            let mut auth = vec![1, user.len() as u8];
            auth.extend_from_slice(user.as_bytes());
            auth.push(pass.len() as u8);
            auth.extend_from_slice(pass.as_bytes());
            s.write_all(&auth).await?;
            let mut ok = [0u8; 2];
            s.read_exact(&mut ok).await?;
        }
        let mut req = vec![5, 1, 0, 3, host.len() as u8];
        req.extend_from_slice(host.as_bytes());
        req.extend_from_slice(&port.to_be_bytes());
        s.write_all(&req).await?;
        let mut reply = [0u8; 10];
        s.read_exact(&mut reply).await?;
        if reply[1] != 0 {
            return Err(bad(&format!("refused with reply code {}", reply[1])));
        }
        Ok(s)
    }

    /// An HTTP/1.0 GET through the proxy: the body.
    pub async fn socks_get(proxy: &str, target: &str, path: &str) -> std::io::Result<Vec<u8>> {
        let mut s = socks_connect(proxy, target, None).await?;
        http_get_on(&mut s, target, path).await
    }

    /// The body of an HTTP/1.0 GET of `path` from `target`, over a connection already
    /// open to it (a SOCKS5 one, a circuit's stream), read until it closes.
    pub async fn http_get_on<S>(s: &mut S, target: &str, path: &str) -> std::io::Result<Vec<u8>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {target}\r\n\r\n").as_bytes())
            .await?;
        let mut all = Vec::new();
        s.read_to_end(&mut all).await?;
        let at = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
        Ok(all.split_off(at + 4))
    }

    /// Reads an HTTP answer's head, then up to `want` bytes of its body (all of it if the
    /// stream ends first); the body read (empty if no head came).
    pub async fn read_http_body(s: &mut tokio::net::TcpStream, want: usize) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut body_at = None;
        loop {
            if let Some(at) = body_at
                && all.len() - at >= want
            {
                break;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
            if body_at.is_none() {
                body_at = all.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
            }
        }
        match body_at {
            Some(at) => all.split_off(at),
            None => Vec::new(),
        }
    }

    /// What is left on `s` until it ends (or breaks).
    pub async fn read_until_closed(s: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut rest = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n @ 1..) = s.read(&mut buf).await {
            rest.extend_from_slice(&buf[..n]);
        }
        rest
    }

    /// What [`kill_the_middle_mid_download`] saw.
    #[derive(Debug)]
    pub struct Resumed {
        /// The relay killed: the middle of the client's circuit.
        pub killed: libp2p::PeerId,
        /// Bytes that came before the kill, and in all on the broken stream.
        pub before: usize,
        pub broken_at: usize,
        /// The relays of the circuit the request went on to.
        pub new_hops: Vec<String>,
        /// Whether the parts put together are the page.
        pub whole: bool,
    }

    /// Downloads `size` bytes through node `client`'s proxy from a server that stops
    /// halfway; there kills the middle relay of the circuit the download is on, then
    /// asks again for the rest (an HTTP range), as a program that retries would.
    pub async fn kill_the_middle_mid_download(
        net: &mut Testnet,
        client: usize,
        size: usize,
    ) -> std::io::Result<Resumed> {
        let page: Vec<u8> = (0..size).map(|i| (i % 249) as u8).collect();
        let go = std::sync::Arc::new(tokio::sync::Notify::new());
        let port = pausing_http_server(page.clone(), go.clone()).await?;
        let (proxy, target) = (
            handle(net, client).socks_addr().to_string(),
            format!("localhost:{port}"),
        );
        let get = |from: Option<usize>| {
            let range = from.map_or(String::new(), |n| format!("Range: bytes={n}-\r\n"));
            format!("GET /big HTTP/1.0\r\nHost: {target}\r\n{range}\r\n")
        };
        let mut s = socks_connect(&proxy, &target, None).await?;
        s.write_all(get(None).as_bytes()).await?;
        let half = read_http_body(&mut s, size / 2).await;
        // The shared circuit out of an exit (not one to an onion service, nor one picked
        // by credentials) carries the download.
        let shared = |c: &&nodus_onion::paths::CircuitInfo| c.service.is_none() && !c.isolated;
        let circuits = handle(net, client).status().await.circuits;
        let middle = circuits
            .iter()
            .find(shared)
            .and_then(|c| c.hops.get(1))
            .and_then(|p| p.parse::<libp2p::PeerId>().ok())
            .ok_or_else(|| std::io::Error::other("no circuit of three"))?;
        let k = net
            .index_of(&middle.to_string())
            .ok_or_else(|| std::io::Error::other("the middle relay is not one of ours"))?;
        net.kill(k).await.map_err(std::io::Error::other)?;
        go.notify_one();
        let rest = read_until_closed(&mut s).await;
        let broken_at = half.len() + rest.len();
        let mut again = socks_connect(&proxy, &target, None).await?;
        again.write_all(get(Some(broken_at)).as_bytes()).await?;
        let tail = read_http_body(&mut again, size).await;
        let new_hops = handle(net, client)
            .status()
            .await
            .circuits
            .iter()
            .find(shared)
            .map(|c| c.hops.clone())
            .unwrap_or_default();
        Ok(Resumed {
            killed: middle,
            before: half.len(),
            broken_at,
            new_hops,
            whole: [half, rest, tail].concat() == page,
        })
    }

    /// An HTTP server on 127.0.0.1 for `body` that stops halfway through each full answer
    /// until `go` is notified (so a test can break a circuit mid-download, with no race),
    /// and answers `Range: bytes=N-` (N inside the body) with the rest from N at once
    /// (so the download can resume); its port.
    pub async fn pausing_http_server(
        body: Vec<u8>,
        go: std::sync::Arc<tokio::sync::Notify>,
    ) -> std::io::Result<u16> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = l.local_addr()?.port();
        let body = std::sync::Arc::new(body);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (body, go) = (body.clone(), go.clone());
                tokio::spawn(async move {
                    let head = read_head(&mut s).await;
                    let from = range_of(&head, body.len()).map(|r| r.start);
                    let (status, start) = match from {
                        Some(n) => ("206 Partial Content", n),
                        None => ("200 OK", 0),
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len() - start
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                    if from.is_none() {
                        let half = body.len() / 2;
                        let _ = s.write_all(&body[..half]).await;
                        go.notified().await;
                        let _ = s.write_all(&body[half..]).await;
                    } else {
                        let _ = s.write_all(&body[start..]).await;
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        Ok(port)
    }

    async fn read_head(s: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read_exact(&mut b).await.is_ok() {
            head.push(b[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// The bytes a request's `Range: bytes=A-` or `bytes=A-B` asks of a body of `len`
    /// bytes, if it asks for some inside it.
    fn range_of(head: &str, len: usize) -> Option<std::ops::Range<usize>> {
        let r = head.lines().find_map(|l| l.strip_prefix("Range: bytes="))?;
        let (a, b) = r.split_once('-')?;
        let start: usize = a.trim().parse().ok()?;
        let end = match b.trim() {
            "" => len,
            b => b.parse::<usize>().ok()?.saturating_add(1).min(len),
        };
        (start < end).then_some(start..end)
    }

    /// An HTTP server on 127.0.0.1 that answers every GET with `body` (the part a
    /// `Range` header asks for, if it does); its port.
    pub async fn http_server(body: Vec<u8>) -> std::io::Result<u16> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = l.local_addr()?.port();
        let body = std::sync::Arc::new(body);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let head = read_head(&mut s).await;
                    let (status, part) = match range_of(&head, body.len()) {
                        Some(r) => ("206 Partial Content", r),
                        None => ("200 OK", 0..body.len()),
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        part.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.write_all(&body[part]).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Ok(port)
    }
}

/// Three relays in a line whose links are delayed in user space ([`impair`]), built
/// from bare overlay nodes speaking QUIC (no node service, no relay list): what the
/// circuit tests and `nodus bench onion` use to give circuits a long round trip.
pub mod delayed {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use libp2p::Multiaddr;
    use libp2p::identity::Keypair;
    use libp2p::multiaddr::Protocol;
    use nodus_core::config::P2pConfig;
    use nodus_net::{NetConfig, NetworkHandle};
    use nodus_onion::client::Hop;
    use nodus_onion::exit::ExitPolicy;
    use nodus_onion::ntor::OnionKey;
    use nodus_onion::relay::{self, Relay};
    use prometheus_client::registry::Registry;

    use crate::TestnetError;
    use crate::impair::{Proxy, udp_impair};

    /// A client, a guard, a middle and an exit (reaching loopback), each link delayed.
    pub struct Line {
        pub client: NetworkHandle,
        /// Guard, middle, exit.
        pub path: Vec<Hop>,
        pub exit: Arc<Relay>,
        _proxies: Vec<Proxy>,
        _stops: Vec<tokio::sync::watch::Sender<bool>>,
    }

    /// A line on `127.0.{net}.2-5` whose three links each delay `one_way` each way;
    /// the exit's circuits send within a fixed window of `fixed_window` cells if given.
    pub async fn line(
        net: u8,
        one_way: Duration,
        fixed_window: Option<u32>,
    ) -> Result<Line, TestnetError> {
        let ip = |k: u8| format!("127.0.{net}.{k}");
        let (client, _) = quic_node(&ip(2)).await?;
        let (mut nodes, mut path, mut relays, mut stops) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in 3..=5 {
            let (node, addr) = quic_node(&ip(k)).await?;
            let key = OnionKey::generate();
            let hop = Hop {
                peer: node.local_peer_id(),
                onion_key: key.public(),
            };
            let exit = (k == 5).then_some(ExitPolicy {
                allow_private: true,
                reject_ports: Vec::new(),
            });
            let mut r = Relay::new(&hop.peer, key, exit);
            if k == 5 {
                r.fixed_window = fixed_window;
            }
            let r = Arc::new(r);
            let (stop, stopped) = tokio::sync::watch::channel(false);
            relay::spawn(node.clone(), r.clone(), stopped)
                .map_err(|e| TestnetError::Setup(e.to_string()))?;
            nodes.push((node, addr));
            path.push(hop);
            relays.push(r);
            stops.push(stop);
        }
        let mut proxies = Vec::new();
        let mut from = client.clone();
        for (node, addr) in &nodes {
            proxies.push(dial_delayed(&from, node.local_peer_id(), addr, one_way).await?);
            from = node.clone();
        }
        Ok(Line {
            client,
            path,
            exit: relays.pop().expect("three relays"),
            _proxies: proxies,
            _stops: stops,
        })
    }

    /// A bare overlay node on `ip` speaking QUIC only, and the socket it listens on.
    async fn quic_node(ip: &str) -> Result<(NetworkHandle, SocketAddr), TestnetError> {
        let mut p2p = P2pConfig {
            listen: vec![format!("/ip4/{ip}/udp/0/quic-v1")],
            mdns: false,
            ..P2pConfig::default()
        };
        p2p.limits.exempt_ips = vec!["127.0.0.1".into()];
        let config =
            NetConfig::from_config(&p2p).map_err(|e| TestnetError::Setup(e.to_string()))?;
        let (net, _) = nodus_net::spawn(
            Keypair::generate_ed25519(),
            config,
            &mut Registry::default(),
        )
        .map_err(|e| TestnetError::Setup(e.to_string()))?;
        for _ in 0..200 {
            let status = net
                .status()
                .await
                .map_err(|e| TestnetError::Setup(e.to_string()))?;
            let first = status.listen_addrs.first().and_then(|a| a.parse().ok());
            if let Some(addr) = first.as_ref().and_then(nodus_net::addr::socket_addr) {
                return Ok((net, addr));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(TestnetError::Setup(format!(
            "the node on {ip} never listened"
        )))
    }

    /// Connects `from` to `peer` at `target` through a proxy delaying `one_way`.
    async fn dial_delayed(
        from: &NetworkHandle,
        peer: libp2p::PeerId,
        target: &SocketAddr,
        one_way: Duration,
    ) -> Result<Proxy, TestnetError> {
        let listen = SocketAddr::new(target.ip(), 0);
        let proxy = udp_impair(listen, *target, one_way, Duration::ZERO, 0.0).await?;
        let via = Multiaddr::from(proxy.addr.ip())
            .with(Protocol::Udp(proxy.addr.port()))
            .with(Protocol::QuicV1)
            .with(Protocol::P2p(peer));
        from.dial(via)
            .await
            .map_err(|e| TestnetError::Setup(e.to_string()))?;
        Ok(proxy)
    }
}
