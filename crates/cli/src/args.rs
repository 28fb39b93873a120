//! Command-line grammar.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "nodus",
    version,
    about = "A full peer-to-peer node: client and server at once, no central server anywhere."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The node's data directory [default: $XDG_DATA_HOME/nodus]
    #[arg(long, global = true, env = "NODUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    /// End-to-end encrypted messages to contacts and groups
    Msg {
        #[command(subcommand)]
        command: MsgCommand,
    },
    /// Ethereum accounts, kept as keystore v3 files in the data dir
    Wallet {
        #[command(subcommand)]
        command: WalletCommand,
    },
    /// Send ether from a wallet account (amount in ether, e.g. 1.5, or in wei with `wei`)
    Send {
        to: String,
        amount: String,
        /// The wallet account to pay from (needed when there are several)
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
        /// A legacy (type 0) transaction instead of EIP-1559
        #[arg(long)]
        legacy: bool,
        /// Return once the node has accepted it, without waiting for the receipt
        #[arg(long)]
        no_wait: bool,
    },
    /// Mine on the running node (or stop)
    Mine {
        /// Hashing threads
        #[arg(long)]
        threads: Option<usize>,
        /// Address paid for mined blocks
        #[arg(long)]
        to: Option<String>,
        /// Stop mining
        #[arg(long)]
        stop: bool,
    },
    /// The chain: height, tip, difficulty, hash rate, peers, mempool
    Chain,
    /// A block by number, hash, or `latest`
    Block { id: String },
    /// A transaction and its receipt
    Tx { hash: String },
    /// Make a torrent of a file or directory, seed it, and print its magnet link
    Share {
        path: PathBuf,
        /// Tracker announce URL (repeatable); the DHT and peer exchange work without one
        #[arg(long = "tracker")]
        trackers: Vec<String>,
        /// A v1-only torrent (default: hybrid v1+v2)
        #[arg(long, conflicts_with = "v2")]
        v1: bool,
        /// A v2-only torrent (default: hybrid v1+v2)
        #[arg(long)]
        v2: bool,
        /// Piece length in bytes, a power of two of at least 16384 (default: by size)
        #[arg(long)]
        piece_length: Option<u64>,
    },
    /// Download a torrent (magnet link, .torrent file or infohash), then seed it
    Get {
        source: String,
        /// Directory to download into (default: the node's downloads directory)
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Only these files, numbered from 1 as `nodus torrent files` shows, e.g. 1,3
        #[arg(long, value_delimiter = ',')]
        files: Option<Vec<usize>>,
        /// Fetch pieces in order (for playing while downloading)
        #[arg(long)]
        sequential: bool,
        /// Peer to connect to (ip:port, repeatable), besides those found
        #[arg(long = "peer")]
        peers: Vec<String>,
        /// Return at once instead of showing progress until complete
        #[arg(long)]
        detach: bool,
    },
    /// Torrents on the node: state, progress, rates, ratio, peers
    Torrents,
    /// Run an open BitTorrent tracker (HTTP announce and scrape) in the foreground
    Tracker {
        #[arg(long, default_value = "127.0.0.1:6969")]
        listen: String,
    },
    /// Pause, resume, remove or inspect one torrent
    Torrent {
        #[command(subcommand)]
        command: TorrentCommand,
    },
    /// Follow the node's live event stream
    Events,
    /// Run several nodes on loopback in this process
    Testnet {
        #[command(subcommand)]
        command: TestnetCommand,
    },
    /// Start a local network and show every capability working
    Demo,
    /// Benchmarks that print nodus beside reference tools
    Bench {
        #[command(subcommand)]
        area: BenchArea,
    },
}

#[derive(Args, Debug, Clone)]
pub struct PasswordArgs {
    /// File whose first line is the wallet password [or NODUS_WALLET_PASSWORD]
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum WalletCommand {
    /// Create an account (a new random key)
    New {
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Import a private key (hex) or another tool's keystore v3 file
    Import {
        key_or_file: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// The accounts in the wallet
    List,
    /// Balance and nonce of an account (default: every wallet account)
    Balance { address: Option<String> },
}

#[derive(Subcommand, Debug)]
pub enum TorrentCommand {
    /// Stop downloading and seeding (peers are disconnected)
    Pause { id: String },
    /// Start again
    Resume { id: String },
    /// Forget the torrent (its files stay unless --delete-files)
    Remove {
        id: String,
        #[arg(long)]
        delete_files: bool,
    },
    /// Everything about one torrent: files, peers, pieces per peer
    Show { id: String },
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
pub enum MsgCommand {
    /// Print a contact code to give to someone (peer id, keys, a one-time key, your name)
    Invite,
    /// Add a contact from the code they gave you
    Add {
        code: String,
        /// What to call them (default: the name in their code)
        #[arg(long)]
        name: Option<String>,
    },
    /// List contacts
    Contacts,
    /// Send a message to a contact (by name or peer id)
    Send {
        contact: String,
        /// The message (several words are joined with spaces)
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Show messages not read yet, and mark them read
    Inbox {
        /// Keep printing new messages as they arrive
        #[arg(long)]
        follow: bool,
        /// Show recent messages already read too
        #[arg(long)]
        all: bool,
    },
    /// Show a conversation with a contact or group, oldest first
    History { with: String },
    /// List groups
    Groups,
    /// Create and manage group chats
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a group with you as owner
    Create { name: String },
    /// Add a contact to a group you own
    Add { group: String, contact: String },
    /// Remove a member; they cannot read what is sent after
    Remove { group: String, contact: String },
    /// Send a message to everyone in the group
    Send {
        group: String,
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
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

#[derive(Subcommand, Debug)]
pub enum BenchArea {
    /// The far end of `bench net` in its own process (used by `bench net` itself)
    #[command(hide = true)]
    NetServe {
        #[arg(long)]
        ip: String,
    },
    /// JSON-RPC reads, transaction intake and block execution, beside Hardhat's node
    Chain {
        /// Requests per read test
        #[arg(long, default_value_t = 5000)]
        calls: usize,
        /// Transactions for the intake and block tests (10 to 500)
        #[arg(long, default_value_t = 500)]
        txs: usize,
        /// Value transfers per import-throughput run (ERC-20 runs take half as many)
        #[arg(long, default_value_t = 10000)]
        import: usize,
        /// State sizes (accounts) of the import-throughput runs
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        accounts: Vec<usize>,
        /// Nodes of the block-propagation run
        #[arg(long, default_value_t = 20)]
        nodes: usize,
    },
    /// Messages per second and latency, direct and through a relay; reroute and
    /// offline-delivery times
    Msg {
        /// Small (100-byte) messages per throughput run
        #[arg(long, default_value_t = 20000)]
        small: usize,
        /// 64 KiB messages per throughput run
        #[arg(long, default_value_t = 500)]
        large: usize,
        /// Messages timed one by one per latency run
        #[arg(long, default_value_t = 300)]
        round_trips: usize,
    },
    /// A loopback swarm: nodus, libtorrent, aria2 and Transmission each download the
    /// same file from the same seeders; MB/s, ratio to nodus, peak RSS; hash-check speed
    Torrent {
        /// Size of the file, in MiB
        #[arg(long, default_value_t = 2048)]
        size_mib: u64,
        /// libtorrent seeders
        #[arg(long, default_value_t = 3)]
        seeders: usize,
        /// Seconds a leecher is given before it is reported as not finished
        #[arg(long, default_value_t = 300)]
        limit_secs: u64,
        /// Only these leechers, e.g. nodus,aria2 (default: all four)
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Stream throughput and round-trip latency over TCP and QUIC, beside iperf3
    Net {
        /// MiB sent per throughput run
        #[arg(long, default_value_t = 1024)]
        mib: usize,
        /// Round trips per latency run
        #[arg(long, default_value_t = 2000)]
        round_trips: usize,
        /// Transfers per throughput figure (the median is printed, and the range)
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}
