//! The grammar of `nodus onion`.

use clap::Subcommand;

/// The onion commands (flattened into the top level).
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Onion routing: the SOCKS5 proxy, relays known, circuits, onion services
    Onion {
        #[command(subcommand)]
        command: OnionCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum OnionCommand {
    /// The proxy's address, whether this node relays or exits, relays known, services run
    Status,
    /// This node's circuits: their relays, first hop first, and age
    Circuits,
    /// Serve a local port as an onion service; prints its address (<56 chars>.nodus),
    /// which stays the same across restarts
    Serve {
        /// The port on 127.0.0.1 that clients' streams reach
        local_port: u16,
        /// The port clients ask for (http://<address>/ is 80)
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
    /// Carry circuits for others from now on, or stop (kept across restarts, over
    /// config.toml's [onion] relay and exit)
    Relay {
        #[command(subcommand)]
        command: RelayCommand,
    },
    /// Stop serving a local port (its key is kept: serving it again gives the same address)
    Unserve {
        /// The local port given to `nodus onion serve`
        local_port: u16,
    },
}

#[derive(Subcommand, Debug)]
pub enum RelayCommand {
    /// Relay circuits for others (published to the network as a relay)
    On {
        /// Also connect out to the Internet for them (an exit), within [onion]'s exit policy
        #[arg(long)]
        exit: bool,
        /// Bytes a second passed on for others, all circuits together (0: no limit);
        /// without it, [onion] relay_bandwidth
        #[arg(long, value_name = "BYTES_PER_SEC")]
        bandwidth: Option<u64>,
    },
    /// Stop relaying: circuits through this node end now
    Off,
}
