//! `nodus onion ...`: the onion service through the node's API.

mod args;
pub mod bench;
pub mod demo;

use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

use crate::global::Global;
use crate::ui::{self, rows, s, table};

pub use args::{Commands, OnionCommand};

pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    let Commands::Onion { command } = c;
    let v = g.api()?.get("/api/v1/onion").await?;
    if g.json {
        ui::json(match command {
            OnionCommand::Status => &v,
            OnionCommand::Circuits => &v["circuits"],
        });
        return Ok(ExitCode::SUCCESS);
    }
    match command {
        OnionCommand::Status => {
            let role = match (v["relay"].as_bool(), v["exit"].as_bool()) {
                (Some(true), Some(true)) => "exit relay",
                (Some(true), _) => "relay",
                _ => "client only ([onion] relay = true to carry circuits for others)",
            };
            println!("socks    {} (curl --socks5-hostname {} ...)", s(&v["socks"]), s(&v["socks"]));
            println!("role     {role}");
            println!("relays   {} known, {} of them exits", s(&v["relays_known"]), s(&v["exits_known"]));
            println!("circuits {}", v["circuits"].as_array().map_or(0, Vec::len));
        }
        OnionCommand::Circuits => {
            let row = |c: &Value| {
                vec![
                    c["hops"]
                        .as_array()
                        .map(|h| h.iter().map(|p| short(&s(p))).collect::<Vec<_>>().join(" > "))
                        .unwrap_or_default(),
                    format!("{} s", s(&c["age_secs"])),
                    if c["isolated"].as_bool() == Some(true) { "by credentials" } else { "shared" }.to_string(),
                ]
            };
            table(&["relays (first hop first)", "age", "used by"], &rows(&v["circuits"], row));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short(peer: &str) -> String {
    peer.get(peer.len().saturating_sub(8)..).unwrap_or(peer).to_string()
}
