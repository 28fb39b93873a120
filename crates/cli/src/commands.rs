//! One function per command. Commands other than init/up/testnet/demo/bench talk to
//! the running node through its HTTP API, found through the data dir.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use nodus_core::DataDir;
use nodus_node::{ApiClient, Node, StartOptions};
use serde_json::{Value, json};

use crate::args::{BenchArea, Cli, Command, DhtCommand, Global, PubsubCommand, TestnetCommand};
use crate::output::{self, s, table};

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Init => init(&g),
        Command::Up { init, log } => up(&g, init, &log).await,
        Command::Testnet {
            command: TestnetCommand::Up { nodes, dir },
        } => crate::demo::testnet_up(nodes, &dir, g.json).await,
        Command::Demo => crate::demo::run().await,
        Command::Tracker { listen } => crate::torrent::tracker(&listen).await,
        Command::Wallet { command } if crate::chain::is_local(&command) => {
            crate::chain::wallet_local(&data_dir(&g)?, command, g.json)
        }
        Command::Bench {
            area:
                BenchArea::Net {
                    mib,
                    round_trips,
                    repeat,
                },
        } => {
            let sizes = crate::bench::net::Sizes {
                mib,
                trips: round_trips,
                repeat,
            };
            crate::bench::net::run(sizes, g.json).await
        }
        Command::Bench {
            area:
                BenchArea::Msg {
                    small,
                    large,
                    round_trips,
                },
        } => crate::bench::msg::run(small, large, round_trips, g.json).await,
        Command::Bench {
            area:
                BenchArea::Chain {
                    calls,
                    txs,
                    import,
                    accounts,
                    nodes,
                },
        } => {
            let o = crate::bench::chain::Options {
                calls,
                txs,
                import,
                accounts,
                nodes,
            };
            crate::bench::chain::run(o, g.json).await
        }
        Command::Bench {
            area:
                BenchArea::Torrent {
                    size_mib,
                    seeders,
                    limit_secs,
                    only,
                },
        } => {
            let o = crate::bench::torrent::Options {
                size_mib,
                seeders,
                limit_secs,
                only,
            };
            crate::bench::torrent::run(o, g.json).await
        }
        Command::Bench {
            area: BenchArea::NetServe { ip },
        } => crate::bench::net::serve_process(&ip).await,
        other => api_command(&g, other).await,
    }
}

fn data_dir(g: &Global) -> Result<DataDir> {
    Ok(DataDir::resolve(g.data_dir.as_deref())?)
}

fn init(g: &Global) -> Result<ExitCode> {
    let dir = data_dir(g)?;
    let report = nodus_node::init(&dir)?;
    if g.json {
        output::json(&serde_json::to_value(&report)?);
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

pub(crate) fn init_logging(filter: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn up(g: &Global, init: bool, log: &str) -> Result<ExitCode> {
    init_logging(log);
    let dir = data_dir(g)?;
    if init && !dir.is_initialised() {
        nodus_node::init(&dir)?;
    }
    let node = Node::start(StartOptions {
        data_dir: dir.clone(),
        config: None,
    })
    .await?;
    if g.json {
        output::json(&serde_json::to_value(&node.endpoints)?);
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
        r = stop_signal() => r?,
        _ = stop.wait_for(|s| *s) => {}
    }
    tracing::info!(target: "nodus::cli", "shutting down");
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

/// Percent-encodes a path or query component.
pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn api_command(g: &Global, cmd: Command) -> Result<ExitCode> {
    let dir = data_dir(g)?;
    let api = ApiClient::from_data_dir(&dir)?;
    match cmd {
        Command::Status => {
            let v = api.get("/api/v1/status").await?;
            if g.json {
                output::json(&v);
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
        Command::Stop => {
            let v = api.post("/api/v1/shutdown", &json!({})).await?;
            if g.json {
                output::json(&v);
            } else {
                println!("node is stopping");
            }
        }
        Command::Peers => {
            let v = api.get("/api/v1/peers").await?;
            if g.json {
                output::json(&v);
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
        Command::Connect { target } => {
            let v = api
                .post("/api/v1/connect", &json!({ "addr": target }))
                .await?;
            if g.json {
                output::json(&v);
            } else {
                println!("connected to {}", s(&v["peer_id"]));
            }
        }
        Command::Ping { peer, count } => {
            let v = api
                .post("/api/v1/ping", &json!({ "peer": peer, "count": count }))
                .await?;
            if g.json {
                output::json(&v);
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
        Command::Dht { command } => match command {
            DhtCommand::Put { key, value } => {
                let v = api
                    .put(
                        &format!("/api/v1/dht/{}", enc(&key)),
                        &json!({ "value": value }),
                    )
                    .await?;
                if g.json {
                    output::json(&v);
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
                    output::json(&v);
                } else {
                    println!("{}", s(&v["value"]));
                }
            }
        },
        Command::Pubsub { command } => match command {
            PubsubCommand::Publish { topic, message } => {
                let v = api
                    .post(
                        "/api/v1/pubsub/publish",
                        &json!({ "topic": topic, "data": message }),
                    )
                    .await?;
                if g.json {
                    output::json(&v);
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
        Command::Msg { command } => return crate::msg::run(&api, command, g.json).await,
        Command::Wallet { command } => {
            return crate::chain::wallet_balance(&api, &data_dir(g)?, command, g.json).await;
        }
        Command::Send {
            to,
            amount,
            from,
            password,
            legacy,
            no_wait,
        } => {
            let opts = crate::chain::SendOptions {
                to,
                amount,
                from,
                password,
                legacy,
                wait: !no_wait,
            };
            return crate::chain::send(&api, &data_dir(g)?, opts, g.json).await;
        }
        Command::Mine { threads, to, stop } => {
            return crate::chain::mine(&api, threads, to, stop, g.json).await;
        }
        Command::Chain => return crate::chain::status(&api, g.json).await,
        Command::Share {
            path,
            trackers,
            v1,
            v2,
            piece_length,
        } => {
            let version = if v1 {
                "v1"
            } else if v2 {
                "v2"
            } else {
                "hybrid"
            };
            return crate::torrent::share(&api, &path, trackers, version, piece_length, g.json)
                .await;
        }
        Command::Get {
            source,
            out,
            files,
            sequential,
            peers,
            detach,
        } => {
            let opts = crate::torrent::GetOptions {
                out,
                files,
                sequential,
                peers,
                detach,
            };
            return crate::torrent::get(&api, &source, opts, g.json).await;
        }
        Command::Torrents => return crate::torrent::list(&api, g.json).await,
        Command::Torrent { command } => {
            return crate::torrent::control(&api, command, g.json).await;
        }
        Command::Block { id } => return crate::chain::block(&api, &id, g.json).await,
        Command::Tx { hash } => return crate::chain::tx(&api, &hash, g.json).await,
        Command::Events => {
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
        Command::Init
        | Command::Up { .. }
        | Command::Testnet { .. }
        | Command::Tracker { .. }
        | Command::Demo
        | Command::Bench { .. } => bail!("internal: not an API command"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints events of an SSE stream until it ends, `count` events were shown, or Ctrl-C.
pub(crate) async fn follow(
    stream: impl futures::Stream<Item = Result<nodus_node::client::SseEvent, nodus_node::ClientError>>,
    json: bool,
    count: Option<usize>,
    text: impl Fn(&Value) -> String,
) -> Result<()> {
    let mut stream = std::pin::pin!(stream);
    let mut shown = 0;
    loop {
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            n = stream.next() => n,
        };
        let Some(ev) = next else {
            bail!("the node closed the stream (did it stop?)");
        };
        let ev = ev?;
        if ev.event == "ready" {
            if json {
                println!("{}", ev.data);
            } else {
                eprintln!("following (Ctrl-C to stop)");
            }
            continue;
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::String(ev.data.clone()));
        if json {
            println!("{}", serde_json::to_string(&v)?);
        } else {
            println!("{}", text(&v));
        }
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
    }
}
