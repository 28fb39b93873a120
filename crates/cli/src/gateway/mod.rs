//! `nodus open` and `nodus gateway`: streaming torrents over HTTP through the node's
//! content gateway.

mod args;
pub mod bench;
pub mod demo;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::global::Global;
use crate::ui::{self, s};

pub use args::Commands;

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

pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    let api = g.api()?;
    match c {
        Commands::Open {
            source,
            file,
            player,
        } => {
            let mut body = json!({ "file": file });
            let local = Path::new(&source);
            if !source.starts_with("magnet:") && local.is_file() {
                let bytes = nodus_torrent::read_torrent_file(local)?;
                body["torrent_base64"] = json!(data_encoding::BASE64.encode(&bytes));
            } else {
                body["source"] = json!(source);
            }
            let v = api.post("/api/v1/gateway/open", &body).await?;
            if g.json {
                ui::json(&v);
            } else {
                let url = s(&v["url"]);
                if player {
                    println!("{}", url.replacen("/content/", "/play/", 1));
                } else {
                    println!("{url}");
                }
                eprintln!(
                    "file {} of torrent {}: {}; it plays while it downloads",
                    s(&v["file"]),
                    s(&v["id"]),
                    s(&v["path"])
                );
            }
        }
        Commands::Gateway => {
            let v = api.get("/api/v1/gateway").await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("gateway  {}", s(&v["url"]));
                let cached: Vec<String> = v["cached"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect())
                    .unwrap_or_default();
                println!("cached   {} torrents (least recently watched first)", cached.len());
                for id in cached {
                    println!("  {id}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
