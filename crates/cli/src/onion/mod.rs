//! `nodus onion ...`: the onion service through the node's API.

mod args;
pub mod bench;
pub mod demo;
mod tor;

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};

use crate::global::Global;
use crate::torrent::bytes;
use crate::ui::{self, rows, s, table};

pub use args::{Commands, OnionCommand, RelayCommand};

pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    let Commands::Onion { command } = c;
    let api = g.api()?;
    match command {
        OnionCommand::Serve { local_port, port } => {
            let v = api
                .post("/api/v1/onion/services", &json!({ "port": local_port, "virtual_port": port }))
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                let at = if port == 80 { String::new() } else { format!(":{port}") };
                println!("{}", s(&v["address"]));
                eprintln!(
                    "serving 127.0.0.1:{local_port} as http://{}{at}/ through the onion network; \
                     reach it with curl --socks5-hostname <proxy> (nodus onion status shows the proxy)",
                    s(&v["address"])
                );
            }
        }
        OnionCommand::Unserve { local_port } => {
            let v = api.delete(&format!("/api/v1/onion/services/{local_port}")).await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("stopped serving port {local_port}; its key is kept, so serving it again gives the same address");
            }
        }
        OnionCommand::Relay { command } => {
            let (on, exit, bandwidth) = match command {
                RelayCommand::On { exit, bandwidth } => (true, exit, bandwidth),
                RelayCommand::Off => (false, false, None),
            };
            let v = api
                .post("/api/v1/onion/relay", &json!({ "on": on, "exit": exit, "bandwidth": bandwidth }))
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                let limit = match v["bandwidth"].as_u64() {
                    Some(0) | None => String::new(),
                    Some(b) => format!(" at most {} KiB/s", b / 1024),
                };
                println!(
                    "{}{}; kept in onion/role.json across restarts, over config.toml's [onion] relay, exit and relay_bandwidth",
                    match (v["relay"].as_bool(), v["exit"].as_bool()) {
                        (Some(true), Some(true)) => "relaying and exiting for others",
                        (Some(true), _) => "relaying for others (not an exit)",
                        _ => "not relaying",
                    },
                    if v["relay"].as_bool() == Some(true) { limit } else { String::new() }
                );
            }
        }
        OnionCommand::Status => show(g, &api.get("/api/v1/onion").await?, false),
        OnionCommand::Circuits => show(g, &api.get("/api/v1/onion").await?, true),
    }
    Ok(ExitCode::SUCCESS)
}

/// `onion status` (or, with `circuits`, `onion circuits`) from `GET /api/v1/onion`.
fn show(g: &Global, v: &Value, circuits: bool) {
    if g.json {
        ui::json(if circuits { &v["circuits"] } else { v });
        return;
    }
    if !circuits {
    let role = match (v["relay"].as_bool(), v["exit"].as_bool()) {
            (Some(true), Some(true)) => "exit relay",
            (Some(true), _) => "relay",
            _ => "client only ([onion] relay = true to carry circuits for others)",
        };
        println!("socks    {} (curl --socks5-hostname {} ...)", s(&v["socks"]), s(&v["socks"]));
        println!("role     {role}");
        if let Some(bw) = v["relay_bandwidth"].as_u64().filter(|b| *b > 0 && v["relay"] == true) {
            println!("limit    {:.2} MB/s passed on for others ([onion] relay_bandwidth)", bw as f64 / 1e6);
        }
        println!("relays   {} known, {} of them exits", s(&v["relays_known"]), s(&v["exits_known"]));
        println!("services {} known", s(&v["services_known"]));
        println!(
        "circuits {}{}",
        v["circuits"].as_array().map_or(0, Vec::len),
        if v["spare"].is_array() { ", and one built ahead for the next new credentials" } else { "" }
    );
    if let Some(n) = v["avoided"].as_array().map(Vec::len).filter(|n| *n > 0) {
        println!("avoided  {n} relays, left out of paths for now (unreachable, or failing circuits)");
    }
    match v["guards"].as_array().map(Vec::len).unwrap_or(0) {
        0 => println!("guards   none yet: no relay known long enough ([onion] guard_min_age_secs)"),
        n => println!("guards   {n}, kept for weeks: circuits enter the network by them"),
    }
    if let Some(ms) = v["build_timeout_ms"].as_u64() {
        println!("timeout  {ms} ms for a circuit build, learned from this node's builds");
    }
    if let Some(n) = v["late"].as_array().map(Vec::len).filter(|n| *n > 0) {
        println!("late     {n} relays, left out until they answer a circuit build");
    }
    if let Some(m) = v["measured"].as_array().filter(|m| !m.is_empty()) {
        let rate = |i: usize| m.get(i).and_then(|r| r["bytes_per_sec"].as_u64()).unwrap_or(0) as f64 / 1e6;
        println!(
            "measured {} relays, {:.1} to {:.1} MB/s: paths weigh relays by it",
            m.len(),
            rate(m.len() - 1),
            rate(0)
        );
    }
        for h in v["services"].as_array().into_iter().flatten() {
            println!(
                "serving  {}:{} -> {} ({} introduction points, {} circuits)",
                s(&h["address"]),
                s(&h["port"]),
                s(&h["target"]),
                h["intro_points"].as_array().map_or(0, Vec::len),
                s(&h["circuits"])
            );
        }
        return;
    }
        let row = |c: &Value| {
            vec![
                c["hops"]
                    .as_array()
                    .map(|h| h.iter().map(|p| short(&s(p))).collect::<Vec<_>>().join(" > "))
                    .unwrap_or_default(),
                format!("{} s", s(&c["age_secs"])),
                if c["isolated"].as_bool() == Some(true) { "by credentials" } else { "shared" }.to_string(),
                match (c["service"].as_str(), c["peer"].as_str()) {
                    (Some(a), _) => a.to_string(),
                    (None, Some(p)) => format!("peer {}", short(p)),
                    (None, None) => "an exit".to_string(),
                },
                bytes(c["sent_bytes"].as_u64().unwrap_or(0)),
                bytes(c["received_bytes"].as_u64().unwrap_or(0)),
                match c["window"]["rtt_us"].as_u64() {
                    Some(rtt) if rtt > 0 => format!(
                        "{} cells, {:.1} ms",
                        s(&c["window"]["window"]),
                        rtt as f64 / 1e3
                    ),
                    _ => "-".to_string(),
                },
            ]
        };
        table(
            &["relays (first hop first)", "age", "used by", "to", "sent", "received", "window, round trip"],
            &rows(&v["circuits"], row),
        );
}

fn short(peer: &str) -> String {
    peer.get(peer.len().saturating_sub(8)..).unwrap_or(peer).to_string()
}
