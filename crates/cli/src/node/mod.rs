//! The node's own commands: `init`, `up`, `stop`, `status`, the overlay (`peers`,
//! `connect`, `ping`, `dht`, `pubsub`), `events`, `ui` and `testnet`. All but init, up and
//! testnet talk to the running node through its HTTP API, found through the data dir.

use std::process::ExitCode;

use anyhow::{Result, bail};
use nodus_node::{Node, StartOptions};
use serde_json::json;

use crate::global::Global;
use crate::ui::follow::follow;
use crate::ui::{self, enc, s, table};

mod args;
pub mod bench;
pub mod demo;

pub use args::Commands;
use args::{DhtCommand, PubsubCommand, TestnetCommand};

/// Runs a command of the node itself.
pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    match c {
        Commands::Init => init(g),
        Commands::Up { init, log } => up(g, init, &log).await,
        Commands::Testnet {
            command: TestnetCommand::Up { nodes, dir },
        } => demo::testnet_up(nodes, &dir, g.json).await,
        other => api_command(g, other).await,
    }
}

fn init(g: &Global) -> Result<ExitCode> {
    let dir = g.data_dir()?;
    let report = nodus_node::init(&dir)?;
    if g.json {
        ui::json(&serde_json::to_value(&report)?);
    } else {
        let what = if report.created_identity {
            "created a new identity"
        } else {
            "kept the existing identity"
        };
        println!("{} ({what})", report.data_dir);
        println!("peer id  {}", report.peer_id);
        println!(
            "config   {}{}",
            dir.config_path().display(),
            if report.created_config { " (new)" } else { "" }
        );
        println!("next: nodus up --data-dir {}", report.data_dir);
    }
    Ok(ExitCode::SUCCESS)
}

async fn up(g: &Global, init: bool, log: &str) -> Result<ExitCode> {
    ui::process::init_logging(log);
    let dir = g.data_dir()?;
    if init && !dir.is_initialised() {
        nodus_node::init(&dir)?;
    }
    let node = Node::start(StartOptions {
        data_dir: dir.clone(),
        config: None,
    })
    .await?;
    if g.json {
        ui::json(&serde_json::to_value(&node.endpoints)?);
    } else {
        println!("nodus node {}", node.endpoints.peer_id);
        println!("api       {}", node.endpoints.api);
        for a in &node.endpoints.p2p {
            println!("p2p       {a}");
        }
        println!("data dir  {}", dir.root().display());
    }
    let mut stop = node.stop_requested();
    tokio::select! {
        r = ui::process::stop_signal() => r?,
        _ = stop.wait_for(|s| *s) => {}
    }
    tracing::info!(target: "nodus::cli", "shutting down");
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Hands `url` to the desktop's opener. The token is in the URL's fragment, which the
/// browser keeps to itself.
pub(crate) fn open_in_browser(url: &str) -> Result<()> {
    match std::process::Command::new("xdg-open")
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("xdg-open failed ({s}): open the link above in a browser yourself"),
        Err(e) => bail!("could not run xdg-open ({e}): open the link above in a browser yourself"),
    }
}

async fn api_command(g: &Global, cmd: Commands) -> Result<ExitCode> {
    let api = g.api()?;
    match cmd {
        Commands::Status => {
            let v = api.get("/api/v1/status").await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("peer id        {}", s(&v["peer_id"]));
                println!("version        {}", s(&v["version"]));
                println!("data dir       {}", s(&v["data_dir"]));
                println!("peers          {}", s(&v["connected_peers"]));
                println!("routing table  {}", s(&v["routing_table_size"]));
                println!("dht queries    {}", s(&v["dht_queries"]));
                println!("nat            {}", s(&v["nat"]));
                for a in v["listen_addrs"].as_array().into_iter().flatten() {
                    println!("listen         {}", s(a));
                }
                for a in v["external_addrs"].as_array().into_iter().flatten() {
                    println!("external       {}", s(a));
                }
            }
        }
        Commands::Stop => {
            let v = api.post("/api/v1/shutdown", &json!({})).await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("node is stopping");
            }
        }
        Commands::Peers => {
            let v = api.get("/api/v1/peers").await?;
            if g.json {
                ui::json(&v);
            } else {
                let rows: Vec<Vec<String>> = v["peers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        vec![
                            s(&p["peer_id"]),
                            p["addresses"]
                                .as_array()
                                .and_then(|a| a.first())
                                .map(s)
                                .unwrap_or_default(),
                            p["rtt_ms"]
                                .as_f64()
                                .map(|r| format!("{r:.2}"))
                                .unwrap_or("-".into()),
                            if p["relayed"].as_bool() == Some(true) {
                                "relay"
                            } else {
                                "direct"
                            }
                            .into(),
                            s(&p["agent"]),
                        ]
                    })
                    .collect();
                table(&["peer", "address", "rtt ms", "path", "agent"], &rows);
            }
        }
        Commands::Connect { target } => {
            let v = api
                .post("/api/v1/connect", &json!({ "addr": target }))
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("connected to {}", s(&v["peer_id"]));
            }
        }
        Commands::Ping { peer, count } => {
            let v = api
                .post("/api/v1/ping", &json!({ "peer": peer, "count": count }))
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                for (i, r) in v["rtt_ms"].as_array().into_iter().flatten().enumerate() {
                    println!(
                        "ping {} seq={} time={:.3} ms",
                        s(&v["peer"]),
                        i + 1,
                        r.as_f64().unwrap_or(0.0)
                    );
                }
            }
        }
        Commands::Dht { command } => match command {
            DhtCommand::Put { key, value } => {
                let v = api
                    .put(
                        &format!("/api/v1/dht/{}", enc(&key)),
                        &json!({ "value": value }),
                    )
                    .await?;
                if g.json {
                    ui::json(&v);
                } else if v["replicated"] == true {
                    println!("stored {key} on this node and its closest peers");
                } else {
                    println!(
                        "stored {key} on this node only: no other peer is known yet (`nodus connect` one); it is offered again every hour"
                    );
                }
            }
            DhtCommand::Get { key } => {
                let v = api.get(&format!("/api/v1/dht/{}", enc(&key))).await?;
                if g.json {
                    ui::json(&v);
                } else {
                    println!("{}", s(&v["value"]));
                }
            }
        },
        Commands::Pubsub { command } => match command {
            PubsubCommand::Publish { topic, message } => {
                let v = api
                    .post(
                        "/api/v1/pubsub/publish",
                        &json!({ "topic": topic, "data": message }),
                    )
                    .await?;
                if g.json {
                    ui::json(&v);
                } else {
                    println!("published {}", s(&v["id"]));
                }
            }
            PubsubCommand::Subscribe { topic, count } => {
                let stream = api
                    .sse(&format!("/api/v1/pubsub/subscribe?topic={}", enc(&topic)))
                    .await?;
                follow(stream, g.json, count, |v| {
                    format!(
                        "[{}] {}: {}",
                        s(&v["topic"]),
                        s(&v["source"]),
                        s(&v["data"])
                    )
                })
                .await?;
            }
        },
        Commands::Events => {
            let stream = api.sse("/api/v1/events").await?;
            follow(stream, g.json, None, |v| {
                let kind = s(&v["type"]);
                let mut rest = v.clone();
                if let Some(o) = rest.as_object_mut() {
                    o.remove("type");
                }
                format!("{kind} {rest}")
            })
            .await?;
        }
        Commands::Ui { open } => {
            // Asked first, so a link is printed only for a node that answers to it.
            api.get("/api/v1/status").await?;
            let url = api.dashboard_url();
            if g.json {
                ui::json(&json!({ "url": url }));
            } else {
                println!("{url}");
                eprintln!("the link holds this node's API token: share it with nobody");
            }
            if open {
                open_in_browser(&url)?;
            }
        }
        Commands::Init | Commands::Up { .. } | Commands::Testnet { .. } => {
            bail!("internal: not an API command")
        }
    }
    Ok(ExitCode::SUCCESS)
}
