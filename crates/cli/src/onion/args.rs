//! The grammar of `nodus onion`.

use clap::Subcommand;

/// The onion commands (flattened into the top level).
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Onion routing: the SOCKS5 proxy, the relays known, this node's circuits
    Onion {
        #[command(subcommand)]
        command: OnionCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum OnionCommand {
    /// The proxy's address, whether this node relays or exits, relays known
    Status,
    /// This node's circuits: their relays, first hop first, and age
    Circuits,
}
