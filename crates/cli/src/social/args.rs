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
    /// Recent notes on this node's relay, newest first; --follow keeps printing new ones
    Feed {
        /// How many
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only this author (npub or 64-character hex public key)
        #[arg(long)]
        author: Option<String>,
        /// Keep printing notes as they arrive (Ctrl-C to stop)
        #[arg(long, short = 'f')]
        follow: bool,
        /// With --follow: stop after this many new notes
        #[arg(long, requires = "follow")]
        count: Option<usize>,
    },
    /// This node's Nostr key: show it, make a new one, or import one
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Follow people: this node stores and replicates their notes (a new contact list, kind 3)
    Follow {
        /// npub or hex public keys
        #[arg(required = true, num_args = 1..)]
        who: Vec<String>,
    },
    /// Stop following people
    Unfollow {
        #[arg(required = true, num_args = 1..)]
        who: Vec<String>,
    },
    /// The people this node's key follows
    Follows,
    /// Show this node's Nostr profile (kind 0), or set fields of it (the others are kept)
    Profile {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        about: Option<String>,
        /// URL of a picture
        #[arg(long)]
        picture: Option<String>,
        #[arg(long)]
        website: Option<String>,
        /// NIP-05 identifier (name@domain)
        #[arg(long)]
        nip05: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// The public key (npub and hex)
    Show,
    /// Make a new key; the old one is kept beside it in the data dir
    New,
    /// Use an existing key (nsec or hex), read from standard input so it stays out of
    /// the shell's history: `nodus social key import < my.nsec`
    Import,
}
