//! `nodus social ...`: Nostr through the node's API, for people without a Nostr client
//! (who point theirs at the relay address `nodus social status` prints).

mod args;
pub mod bench;
pub mod demo;

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::global::Global;
use crate::ui::{self, enc, rows, s, table};

pub use args::{Commands, KeyCommand, SocialCommand};

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
        SocialCommand::Feed {
            limit,
            author,
            follow,
            count,
        } => {
            if follow {
                let status = api.get("/api/v1/social").await?;
                return live_feed(g, s(&status["relay"]), limit, author, count).await;
            }
            let mut path = format!("/api/v1/social/feed?limit={limit}");
            if let Some(a) = author {
                path.push_str(&format!("&author={}", enc(&a)));
            }
            let v = api.get(&path).await?;
            if g.json {
                ui::json(&v);
            } else {
                table(&["time", "author", "note"], &rows(&v, note_row));
            }
        }
        SocialCommand::Key { command } => {
            let v = match command {
                KeyCommand::Show => api.get("/api/v1/social").await?,
                KeyCommand::New => api.post("/api/v1/social/key", &json!({})).await?,
                KeyCommand::Import => {
                    use std::io::IsTerminal;
                    if std::io::stdin().is_terminal() {
                        eprint!("secret key (nsec1... or hex), then Enter: ");
                    }
                    let mut secret = String::new();
                    std::io::stdin().read_line(&mut secret)?;
                    if secret.trim().is_empty() {
                        bail!("no key on standard input: `nodus social key import < file` with an nsec1... or hex secret key in the file");
                    }
                    api.post("/api/v1/social/key", &json!({ "secret": secret.trim() }))
                        .await?
                }
            };
            if g.json {
                ui::json(&v);
            } else {
                println!("npub     {}", s(&v["npub"]));
                println!("pubkey   {}", s(&v["pubkey"]));
                if let Some(p) = v["previous_key_kept_at"].as_str() {
                    println!("the previous key is kept at {p}");
                }
            }
        }
        SocialCommand::Follow { who } | SocialCommand::Unfollow { who } if who.is_empty() => {
            bail!("name someone: an npub1... or hex public key");
        }
        c @ (SocialCommand::Follow { .. } | SocialCommand::Unfollow { .. }) => {
            let (path, who, verb) = match c {
                SocialCommand::Follow { who } => ("/api/v1/social/follow", who, "following"),
                SocialCommand::Unfollow { who } => ("/api/v1/social/unfollow", who, "no longer following"),
                _ => unreachable!(),
            };
            let mut out = Vec::new();
            for w in who {
                let v = api.post(path, &json!({ "pubkey": w })).await?;
                if !g.json {
                    let note = if v["changed"].as_bool() == Some(true) { "" } else { " (already so)" };
                    println!("{verb} {}{note}", s(&v["pubkey"]));
                }
                out.push(v);
            }
            if g.json {
                ui::json(&Value::Array(out));
            }
        }
        SocialCommand::Follows => {
            let v = api.get("/api/v1/social/follows").await?;
            if g.json {
                ui::json(&v);
            } else {
                table(
                    &["npub", "pubkey"],
                    &rows(&v, |f| vec![s(&f["npub"]), s(&f["pubkey"])]),
                );
            }
        }
        SocialCommand::Profile {
            name,
            display_name,
            about,
            picture,
            website,
            nip05,
        } => {
            let fields = json!({
                "name": name, "display_name": display_name, "about": about,
                "picture": picture, "website": website, "nip05": nip05,
            });
            let given: serde_json::Map<String, Value> = fields
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !given.is_empty() {
                api.post("/api/v1/social/profile", &Value::Object(given)).await?;
            }
            let v = api.get("/api/v1/social/profile").await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("pubkey   {}", s(&v["pubkey"]));
                match v["profile"].as_object() {
                    Some(p) if !p.is_empty() => {
                        for (k, val) in p {
                            println!("{k:<12} {}", val.as_str().map(str::to_string).unwrap_or_else(|| val.to_string()));
                        }
                    }
                    _ => println!("no profile yet: set one with `nodus social profile --name ...`"),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A table row for each item of the JSON array `v`.
fn note_row(e: &Value) -> Vec<String> {
    vec![
        s(&e["created_at"]),
        s(&e["pubkey"]).chars().take(12).collect(),
        s(&e["content"]),
    ]
}

/// `feed --follow`: the relay's notes as a Nostr client sees them, the last `limit`
/// first (oldest to newest), then each new one as it arrives.
async fn live_feed(
    g: &Global,
    relay: String,
    limit: usize,
    author: Option<String>,
    count: Option<usize>,
) -> Result<ExitCode> {
    let mut filter = json!({"kinds": [1], "limit": limit});
    if let Some(a) = author {
        let k = nodus_social::keys::parse_public(&a)?;
        filter["authors"] = json!([hex::encode(k)]);
    }
    let mut c = nodus_social::client::Client::connect(&relay)
        .await
        .with_context(|| format!("connecting to the relay at {relay}"))?;
    c.patience = std::time::Duration::from_secs(365 * 24 * 3600);
    let stored = match c.subscribe("feed", std::slice::from_ref(&filter)).await {
        Err(nodus_social::client::ClientError::SubscriptionClosed { message, .. })
            if message.starts_with("auth-required") =>
        {
            // The relay wants NIP-42: sign in as this node's key, from the data dir.
            let path = g.data_dir()?.root().join("social/key");
            let secret = std::fs::read(&path)
                .with_context(|| format!("the relay asks for authentication; reading {}", path.display()))?;
            let keys = nodus_social::Keys::from_secret(secret.try_into().map_err(|_| anyhow::anyhow!("{} is damaged", path.display()))?)
                .map_err(|_| anyhow::anyhow!("{} is damaged", path.display()))?;
            let (ok, why) = c.auth(&keys).await?;
            if !ok {
                bail!("the relay refused this node's key: {why}");
            }
            c.subscribe("feed", &[filter]).await?
        }
        r => r?,
    };
    let show = |e: &nodus_social::Event| {
        if g.json {
            println!("{}", e.to_json());
        } else {
            let v: Value = serde_json::from_str(&e.to_json()).unwrap_or_default();
            println!("{}", note_row(&v).join("  "));
        }
    };
    stored.iter().rev().for_each(show);
    if !g.json {
        eprintln!("following (Ctrl-C to stop)");
    }
    let mut shown = 0;
    while count.is_none_or(|n| shown < n) {
        let e = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            e = c.next_event("feed") => e?,
        };
        show(&e);
        shown += 1;
    }
    c.close().await;
    Ok(ExitCode::SUCCESS)
}
