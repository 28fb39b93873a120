//! The grammar of `nodus open` and `nodus gateway`.

use clap::Subcommand;

/// The content gateway's commands (flattened into the top level).
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Stream a torrent: add it through the gateway and print the URL to play (any
    /// browser or media player; it plays while it downloads and seeks anywhere)
    Open {
        /// A magnet link, a 40-hex infohash, or a .torrent file
        source: String,
        /// The file to play (numbered from 1, as `nodus torrent <id>` lists them);
        /// by default the largest
        #[arg(long)]
        file: Option<usize>,
        /// Print the player page's URL instead of the file's
        #[arg(long)]
        player: bool,
    },
    /// The gateway's address and the torrents it keeps as its cache
    Gateway,
}
