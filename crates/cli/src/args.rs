//! The command line: options every command takes, then one line per service's commands
//! (each service's grammar lives in its module), the demo and the benchmarks.

use clap::{Parser, Subcommand};

use crate::global::Global;

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

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Node(crate::node::NodeCommand),
    #[command(flatten)]
    Msg(crate::msg::MsgCommands),
    #[command(flatten)]
    Chain(crate::chain::ChainCommand),
    #[command(flatten)]
    Torrent(crate::torrent::TorrentCommands),
    /// Start a local network and show every capability working
    Demo,
    /// Benchmarks that print nodus beside reference tools
    Bench {
        #[command(subcommand)]
        area: BenchArea,
    },
}

/// `nodus bench <area>`: each service's benchmarks.
#[derive(Subcommand, Debug)]
pub enum BenchArea {
    #[command(flatten)]
    Net(crate::node::bench::Area),
    #[command(flatten)]
    Msg(crate::msg::bench::Area),
    #[command(flatten)]
    Chain(crate::chain::bench::Area),
    #[command(flatten)]
    Torrent(crate::torrent::bench::Area),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<std::process::ExitCode> {
        let g = self.global;
        match self.command {
            Command::Node(c) => crate::node::dispatch(&g, c).await,
            Command::Msg(c) => crate::msg::dispatch(&g, c).await,
            Command::Chain(c) => crate::chain::dispatch(&g, c).await,
            Command::Torrent(c) => crate::torrent::dispatch(&g, c).await,
            Command::Demo => crate::demo::run().await,
            Command::Bench { area } => match area {
                BenchArea::Net(a) => a.run(g.json).await,
                BenchArea::Msg(a) => a.run(g.json).await,
                BenchArea::Chain(a) => a.run(g.json).await,
                BenchArea::Torrent(a) => a.run(g.json).await,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
