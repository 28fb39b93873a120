//! `nodus share`, `get`, `torrents`, `torrent ...`: file sharing over the node's API.

mod args;
pub mod bench;
pub mod demo;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nodus_node::ApiClient;
use serde_json::{Value, json};

use crate::global::Global;
use crate::ui::{self, enc, s, table};

pub use args::{TorrentCommand, Commands};

/// Has `t` seed a copy of `data` named `name`, in a directory of its own under `root`
/// (as a person shares a file with the default settings); returns the torrent's v1
/// infohash and where the node takes BitTorrent peers. Seeding the same file on several
/// nodes gives them one infohash.
pub async fn seed_copy(
    t: &nodus_torrent::TorrentHandle,
    root: &Path,
    name: &str,
    data: &[u8],
) -> Result<(String, std::net::SocketAddr)> {
    std::fs::create_dir_all(root)?;
    let path = root.join(name);
    std::fs::write(&path, data)?;
    let shared = t
        .share(nodus_torrent::ShareRequest {
            path: path.display().to_string(),
            version: None,
            trackers: vec![],
            web_seeds: vec![],
            piece_length: None,
        })
        .await?;
    let infohash = shared
        .infohash_v1
        .ok_or_else(|| anyhow::anyhow!("the shared torrent has no v1 infohash"))?;
    let addr = t
        .listen_addr()
        .ok_or_else(|| anyhow::anyhow!("the node has no BitTorrent listener"))?;
    Ok((infohash, addr))
}

/// Bytes as "12.3 MB" (decimal units, as download tools show).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.2} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n} B"),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

pub async fn share(
    api: &ApiClient,
    path: &Path,
    trackers: Vec<String>,
    version: Option<&str>,
    piece_length: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let path = absolute(path)?;
    if !path.exists() {
        bail!(
            "{} does not exist: give a file or directory to share",
            path.display()
        );
    }
    let v = api
        .post(
            "/api/v1/torrent/share",
            &json!({
                "path": path.display().to_string(),
                "version": version,
                "trackers": trackers,
                "piece_length": piece_length,
            }),
        )
        .await?;
    if json {
        ui::json(&v);
    } else {
        println!(
            "seeding {} ({}, {} pieces)",
            s(&v["name"]),
            bytes(v["size"].as_u64().unwrap_or(0)),
            s(&v["pieces"])
        );
        println!("torrent file: {}", s(&v["torrent_path"]));
        if let Some(h) = v["infohash_v1"].as_str() {
            println!("infohash v1:  {h}");
        }
        if let Some(h) = v["infohash_v2"].as_str() {
            println!("infohash v2:  {h}");
        }
        println!("{}", s(&v["magnet"]));
        if let Some(note) = v["leaves_out"].as_str() {
            eprintln!("note: {note}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub struct GetOptions {
    pub out: Option<PathBuf>,
    pub files: Option<Vec<usize>>,
    pub sequential: bool,
    pub peers: Vec<String>,
    pub detach: bool,
}

pub async fn get(api: &ApiClient, source: &str, o: GetOptions, json: bool) -> Result<ExitCode> {
    let mut body = json!({
        "sequential": o.sequential,
        "peers": o.peers,
        "files": o.files,
    });
    if let Some(out) = &o.out {
        body["out_dir"] = json!(absolute(out)?.display().to_string());
    }
    let local = Path::new(source);
    if !source.starts_with("magnet:") && local.is_file() {
        let bytes = nodus_torrent::read_torrent_file(local)?;
        body["torrent_base64"] = json!(data_encoding::BASE64.encode(&bytes));
    } else {
        body["source"] = json!(source);
    }
    let id = match api.post("/api/v1/torrent", &body).await {
        Ok(v) => s(&v["id"]),
        Err(e) => {
            // Already added: follow the one there is.
            let msg = e.to_string();
            match msg
                .split_whitespace()
                .find(|w| w.len() == 40 && w.chars().all(|c| c.is_ascii_hexdigit()))
            {
                Some(id) if msg.contains("already added") => id.to_string(),
                _ => return Err(e.into()),
            }
        }
    };
    if o.detach {
        let v = api.get(&format!("/api/v1/torrent/{id}")).await?;
        if json {
            ui::json(&v);
        } else {
            println!(
                "added {} ({id}); `nodus torrents` shows its progress",
                s(&v["name"])
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let bar = (!json).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {percent:>3}% {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    loop {
        let v = api.get(&format!("/api/v1/torrent/{}", enc(&id))).await?;
        let state = s(&v["state"]);
        if let Some(b) = &bar {
            b.set_prefix(s(&v["name"]));
            b.set_length(v["size"].as_u64().unwrap_or(0).max(1));
            b.set_position(v["done"].as_u64().unwrap_or(0));
            let eta = v["eta_secs"]
                .as_u64()
                .map(|e| format!(", ETA {e}s"))
                .unwrap_or_default();
            let peers = v["peers"].as_array().map(|p| p.len()).unwrap_or(0);
            let what = if state == "fetching_metadata" {
                "fetching metadata, "
            } else {
                ""
            };
            b.set_message(format!(
                "{what}{}/s, {peers} peers{eta}",
                bytes(v["download_rate"].as_u64().unwrap_or(0))
            ));
        }
        match state.as_str() {
            "seeding" => {
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                if json {
                    ui::json(&v);
                } else {
                    println!(
                        "downloaded {} ({}) to {}; every piece verified, now seeding",
                        s(&v["name"]),
                        bytes(v["size"].as_u64().unwrap_or(0)),
                        s(&v["save_dir"])
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            "error" => bail!("{}: {}", s(&v["name"]), s(&v["error"])),
            "paused" => bail!(
                "{} is paused; `nodus torrent resume {id}` starts it again",
                s(&v["name"])
            ),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The shortest prefix of each id, at least 12 characters, that no other id shares (as
/// git shortens hashes): ids alike in their first 12 characters stay apart.
fn short_ids(ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            let shared = ids
                .iter()
                .filter(|other| *other != id)
                .map(|other| id.bytes().zip(other.bytes()).take_while(|(a, b)| a == b).count())
                .max()
                .unwrap_or(0);
            id.chars().take((shared + 1).max(12)).collect()
        })
        .collect()
}

fn row(v: &Value, id: String) -> Vec<String> {
    vec![
        id,
        s(&v["name"]),
        s(&v["state"]),
        format!("{:.1}%", v["progress"].as_f64().unwrap_or(0.0) * 100.0),
        bytes(v["size"].as_u64().unwrap_or(0)),
        format!("{}/s", bytes(v["download_rate"].as_u64().unwrap_or(0))),
        format!("{}/s", bytes(v["upload_rate"].as_u64().unwrap_or(0))),
        format!("{:.2}", v["ratio"].as_f64().unwrap_or(0.0)),
        v["peers"]
            .as_array()
            .map(|p| p.len())
            .unwrap_or(0)
            .to_string(),
    ]
}

pub async fn list(api: &ApiClient, json: bool) -> Result<ExitCode> {
    let v = api.get("/api/v1/torrent").await?;
    if json {
        ui::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let all: Vec<&Value> = v.as_array().into_iter().flatten().collect();
    let ids = short_ids(&all.iter().map(|t| s(&t["id"])).collect::<Vec<_>>());
    let rows: Vec<Vec<String>> = all.into_iter().zip(ids).map(|(t, id)| row(t, id)).collect();
    if rows.is_empty() {
        println!("no torrents: `nodus share <path>` seeds one, `nodus get <magnet>` downloads one");
    } else {
        table(
            &[
                "id", "name", "state", "done", "size", "down", "up", "ratio", "peers",
            ],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn control(api: &ApiClient, cmd: TorrentCommand, json: bool) -> Result<ExitCode> {
    let v = match &cmd {
        TorrentCommand::Pause { id } => {
            api.post(&format!("/api/v1/torrent/{}/pause", enc(id)), &json!({}))
                .await?
        }
        TorrentCommand::Resume { id } => {
            api.post(&format!("/api/v1/torrent/{}/resume", enc(id)), &json!({}))
                .await?
        }
        TorrentCommand::Remove { id, delete_files } => {
            api.delete(&format!(
                "/api/v1/torrent/{}?delete_files={delete_files}",
                enc(id)
            ))
            .await?
        }
        TorrentCommand::Show { id } => api.get(&format!("/api/v1/torrent/{}", enc(id))).await?,
    };
    if json {
        ui::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    match cmd {
        TorrentCommand::Remove { id, .. } => println!("removed {id}"),
        TorrentCommand::Show { .. } => {
            table(
                &[
                    "id", "name", "state", "done", "size", "down", "up", "ratio", "peers",
                ],
                &[row(&v, s(&v["id"]))],
            );
            if let Some(m) = v["magnet"].as_str() {
                println!("\n{m}");
            }
            println!("\nfiles:");
            for (i, f) in v["files"].as_array().into_iter().flatten().enumerate() {
                println!(
                    "  {:>3}  {}  ({})",
                    i + 1,
                    s(&f[0]),
                    bytes(f[1].as_u64().unwrap_or(0))
                );
            }
            let peers: Vec<Vec<String>> = v["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let rc4 = if p["encrypted"] == true { "+rc4" } else { "" };
                    vec![
                        s(&p["addr"]),
                        s(&p["client"]),
                        format!("{}{rc4}", s(&p["transport"])),
                        bytes(p["downloaded"].as_u64().unwrap_or(0)),
                        bytes(p["uploaded"].as_u64().unwrap_or(0)),
                        s(&p["pieces"]),
                        match (p["latency_ms"].as_f64(), p["slow"] == true) {
                            (Some(l), true) => format!("{l:.0} ms, slow"),
                            (Some(l), false) => format!("{l:.0} ms"),
                            (None, _) => "-".into(),
                        },
                    ]
                })
                .collect();
            if !peers.is_empty() {
                println!();
                table(
                    &["peer", "client", "link", "from it", "to it", "pieces", "latency"],
                    &peers,
                );
            }
        }
        _ => table(
            &[
                "id", "name", "state", "done", "size", "down", "up", "ratio", "peers",
            ],
            &[row(&v, s(&v["id"]))],
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `nodus tracker`: an open tracker, HTTP and UDP on the same port, until Ctrl-C or SIGTERM.
pub async fn tracker(listen: &str) -> Result<ExitCode> {
    let l = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; pick another with --listen"))?;
    let addr = l.local_addr()?;
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .with_context(|| format!("cannot listen on udp {addr}; pick another with --listen"))?;
    println!("tracker: http://{addr}/announce and udp://{addr} (Ctrl-C stops it)");
    tokio::select! {
        _ = nodus_torrent::tracker_server::serve_with(l, Some(udp)) => {}
        r = crate::ui::process::stop_signal() => r?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a file-sharing command: the tracker in this process, the rest against the node
/// on `g`'s data dir.
pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    match c {
        Commands::Tracker { listen } => tracker(&listen).await,
        Commands::Share {
            path,
            trackers,
            v1,
            v2,
            hybrid,
            piece_length,
        } => {
            // No flag: the node's default (v1), exactly as an API caller gets it.
            let version = match (v1, v2, hybrid) {
                (_, true, _) => Some("v2"),
                (_, _, true) => Some("hybrid"),
                (true, _, _) => Some("v1"),
                _ => None,
            };
            share(&g.api()?, &path, trackers, version, piece_length, g.json).await
        }
        Commands::Get {
            source,
            out,
            files,
            sequential,
            peers,
            detach,
        } => {
            let opts = GetOptions {
                out,
                files,
                sequential,
                peers,
                detach,
            };
            get(&g.api()?, &source, opts, g.json).await
        }
        Commands::Torrents => list(&g.api()?, g.json).await,
        Commands::Torrent { command } => control(&g.api()?, command, g.json).await,
    }
}

#[cfg(test)]
mod tests {
    use super::short_ids;

    #[test]
    fn short_ids_stay_apart() {
        let ids: Vec<String> = ["0000000000000001", "0000000000000002", "abcdef0123456789"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            short_ids(&ids),
            ["0000000000000001", "0000000000000002", "abcdef012345"]
        );
        let same_start: Vec<String> = ["00000000000000a1", "00000000000000b2"].map(String::from).to_vec();
        assert_eq!(short_ids(&same_start), ["00000000000000a", "00000000000000b"]);
    }
}
