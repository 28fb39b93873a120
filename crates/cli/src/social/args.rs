//! The grammar of `nodus social`.

use clap::Subcommand;

/// The social commands (flattened into the top level).
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Nostr: post and read through this node's relay, which any Nostr client can use
    Social {
        #[command(subcommand)]
        command: SocialCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum SocialCommand {
    /// The relay's address for Nostr clients, this node's public key, events stored
    Status,
    /// Post a note (kind 1) signed with this node's Nostr key
    Post {
        /// The note (several words are joined with spaces)
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Recent notes on this node's relay, newest first
    Feed {
        /// How many
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only this author (64-character hex public key)
        #[arg(long)]
        author: Option<String>,
    },
}
