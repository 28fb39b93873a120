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
