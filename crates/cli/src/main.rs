//! The `nodus` binary: argument parsing, output and progress. All logic lives in the
//! library crates; this crate only drives them.
//!
//! One module per service (`node` for the node and its overlay, `msg`, `chain`,
//! `torrent`), each with its commands (`mod.rs`, grammar in `args.rs`), its demo steps
//! (`demo.rs`) and its benchmark (`bench.rs`). What they share is in `ui` (output,
//! progress, signals, percent-encoding) and `global` (the data dir and the node's API),
//! which call nothing back out. `args` lists the services' commands; `demo` runs their
//! steps in order.

mod alloc;
mod args;
mod demo;
mod global;
mod ui;

/// Declares each service's module and builds from the list what every service adds to
/// the binary: its commands in the grammar ([`ServiceCommand`]), its benchmark area
/// ([`BenchArea`]) and its demo steps ([`demo_steps`]). Each module provides `Commands`
/// and `dispatch`, `demo::steps` and `bench::Area` with `run`.
macro_rules! services {
    ($($variant:ident: $module:ident),* $(,)?) => {
        $(mod $module;)*

        /// Every service's commands, flattened into the top-level grammar.
        #[derive(clap::Subcommand, Debug)]
        pub enum ServiceCommand {
            $(#[command(flatten)] $variant($module::Commands),)*
        }

        impl ServiceCommand {
            pub async fn dispatch(self, g: &global::Global) -> anyhow::Result<ExitCode> {
                match self {
                    $(ServiceCommand::$variant(c) => $module::dispatch(g, c).await,)*
                }
            }
        }

        /// `nodus bench <area>`: each service's benchmarks.
        #[derive(clap::Subcommand, Debug)]
        pub enum BenchArea {
            $(#[command(flatten)] $variant($module::bench::Area),)*
        }

        impl BenchArea {
            pub async fn run(self, json: bool) -> anyhow::Result<ExitCode> {
                match self {
                    $(BenchArea::$variant(a) => a.run(json).await,)*
                }
            }
        }

        /// Every service's demo steps, in list order.
        pub async fn demo_steps(net: &mut nodus_testnet::Testnet, steps: &mut ui::progress::Steps) {
            $($module::demo::steps(net, steps).await;)*
        }
    };
}

// The services the binary drives, one line each; `node` (the node and its overlay) first.
services! {
    Node: node,
    Msg: msg,
    Chain: chain,
    Torrent: torrent,
    Social: social,
    Gateway: gateway,
    Vault: vault,
    Voice: voice,
    Compute: compute,
    Onion: onion,
}

use std::process::ExitCode;

use clap::Parser;

/// `println!` into a pipe whose reader has gone (`nodus demo | head`) panics: Rust ignores
/// SIGPIPE, and must here, because a `writev` on a socket the peer closed would otherwise
/// kill the node or the command silently. That one panic ends the command quietly, with
/// the status a shell gives a command stopped by SIGPIPE.
fn end_quietly_when_stdout_closes() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

fn main() -> ExitCode {
    end_quietly_when_stdout_closes();
    let args = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(args.run()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
