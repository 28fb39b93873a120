//! The grammar of the node-wide commands.

use std::path::PathBuf;

use clap::Subcommand;

/// Commands of the node itself and its overlay.
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Create the data dir: identity key (mode 0600) and a commented config.toml
    Init,
    /// Run the node in the foreground until Ctrl-C or SIGTERM
    Up {
        /// Initialise the data dir first if it is new
        #[arg(long)]
        init: bool,
        /// Log filter, e.g. `info`, `debug`, `nodus=debug,libp2p=info` (or RUST_LOG)
        #[arg(long, default_value = "info")]
        log: String,
    },
    /// Ask the running node to shut down cleanly
    Stop,
    /// The running node's identity, addresses and counts
    Status,
    /// Peers the node is connected to
    Peers,
    /// Connect to a peer by multiaddr (/ip4/…/tcp/…/p2p/…) or by peer id (found in the DHT)
    Connect { target: String },
    /// Measure round trips to a peer
    Ping {
        peer: String,
        #[arg(short, long, default_value_t = 3)]
        count: usize,
    },
    /// Store and fetch values in the DHT
    Dht {
        #[command(subcommand)]
        command: DhtCommand,
    },
    /// Publish to and follow gossip topics
    Pubsub {
        #[command(subcommand)]
        command: PubsubCommand,
    },
    /// Follow the node's live event stream
    Events,
    /// Print the link that opens the running node's dashboard, logged in
    Ui {
        /// Also open it in the desktop's browser (xdg-open)
        #[arg(long)]
        open: bool,
    },
    /// Run several nodes on loopback in this process
    Testnet {
        #[command(subcommand)]
        command: TestnetCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum DhtCommand {
    /// Store a value under a key
    Put { key: String, value: String },
    /// Fetch the value of a key
    Get { key: String },
}

#[derive(Subcommand, Debug)]
pub enum PubsubCommand {
    /// Publish a message to a topic
    Publish { topic: String, message: String },
    /// Print messages of a topic as they arrive
    Subscribe {
        topic: String,
        /// Exit after this many messages
        #[arg(long)]
        count: Option<usize>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TestnetCommand {
    /// Start N nodes on loopback, data dirs DIR/node0 .. DIR/node{N-1}
    Up {
        nodes: usize,
        #[arg(long)]
        dir: PathBuf,
    },
}
