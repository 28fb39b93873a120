//! `nodus social ...`: Nostr through the node's API, for people without a Nostr client
//! (who point theirs at the relay address `nodus social status` prints).

mod args;
pub mod bench;
pub mod demo;

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};

use crate::global::Global;
use crate::ui::{self, enc, s, table};

pub use args::{Commands, SocialCommand};

pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    let Commands::Social { command } = c;
    let api = g.api()?;
    match command {
        SocialCommand::Status => {
            let v = api.get("/api/v1/social").await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("relay    {}", s(&v["relay"]));
                println!("pubkey   {}", s(&v["pubkey"]));
                println!("stored   {} events", s(&v["stored"]));
            }
        }
        SocialCommand::Post { text } => {
            let v = api
                .post("/api/v1/social/post", &json!({ "content": text.join(" ") }))
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("posted {}", s(&v["id"]));
            }
        }
        SocialCommand::Feed { limit, author } => {
            let mut path = format!("/api/v1/social/feed?limit={limit}");
            if let Some(a) = author {
                path.push_str(&format!("&author={}", enc(&a)));
            }
            let v = api.get(&path).await?;
            if g.json {
                ui::json(&v);
            } else {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|e: &Value| {
                        vec![
                            s(&e["created_at"]),
                            s(&e["pubkey"]).chars().take(12).collect(),
                            s(&e["content"]),
                        ]
                    })
                    .collect();
                table(&["time", "author", "note"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
