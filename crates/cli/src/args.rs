//! The command line: options every command takes, every service's commands (each
//! service's grammar lives in its module; the list is `services!` in main.rs), the demo
//! and the benchmarks.

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
    Service(crate::ServiceCommand),
    /// Start a local network and show every capability working
    Demo {
        /// Print (and open, if the desktop can) node 0's dashboard first, and keep the
        /// network up at the end until Ctrl-C
        #[arg(long)]
        open: bool,
    },
    /// Benchmarks that print nodus beside reference tools
    Bench {
        #[command(subcommand)]
        area: crate::BenchArea,
    },
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<std::process::ExitCode> {
        match self.command {
            Command::Service(c) => c.dispatch(&self.global).await,
            Command::Demo { open } => crate::demo::run(open).await,
            Command::Bench { area } => area.run(self.global.json).await,
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
