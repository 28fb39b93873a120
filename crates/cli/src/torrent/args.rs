//! The grammar of the file-sharing commands.

use std::path::PathBuf;

use clap::Subcommand;

/// The file-sharing commands (flattened into the top level).
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Make a torrent of a file or directory, seed it, and print its magnet link
    Share {
        path: PathBuf,
        /// Tracker announce URL (repeatable); the DHT and peer exchange work without one
        #[arg(long = "tracker")]
        trackers: Vec<String>,
        /// A v1 torrent: the default, which every common client downloads
        #[arg(long, conflicts_with_all = ["v2", "hybrid"])]
        v1: bool,
        /// A v2-only torrent (Transmission 3 and aria2 cannot download it)
        #[arg(long, conflicts_with = "hybrid")]
        v2: bool,
        /// A hybrid v1+v2 torrent (Transmission 3 and aria2 cannot download it)
        #[arg(long)]
        hybrid: bool,
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
