//! `nodus msg ...`: messaging over the node's HTTP API.

mod args;
pub mod bench;
pub mod demo;

use std::process::ExitCode;

use anyhow::Result;
use futures::StreamExt;
use nodus_node::ApiClient;
use serde_json::{Value, json};

use crate::global::Global;
use crate::ui::{self, enc, s, table};

pub use args::{GroupCommand, MsgCommand, Commands};

/// One line for a message: `12:04:05  alice: hello  [delivered]`.
pub fn message_line(m: &Value) -> String {
    let secs = m["sent_ms"].as_u64().unwrap_or(0) / 1000;
    let (h, mi, se) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let who = if m["outgoing"] == true {
        "me".to_string()
    } else {
        s(&m["from_name"])
    };
    let state = match s(&m["state"]).as_str() {
        "received" => String::new(),
        "stored" => "  [stored for later]".into(),
        other => format!("  [{other}]"),
    };
    let conv = s(&m["conversation"]);
    let group = if conv.starts_with("group:") {
        format!("({}) ", &conv[6..conv.len().min(14)])
    } else {
        String::new()
    };
    let mut line = format!(
        "{h:02}:{mi:02}:{se:02}  {group}{who}: {}{state}",
        s(&m["text"])
    );
    for f in m["files"].as_array().into_iter().flatten() {
        line.push_str(&format!("\n          file {}", file_line(f)));
    }
    line
}

/// `photo.jpg (10.0 MiB, image/jpeg) downloading 45%  <hash>`.
pub fn file_line(f: &Value) -> String {
    let size = f["size"].as_u64().unwrap_or(0);
    let received = f["received"].as_u64().unwrap_or(0);
    let state = match s(&f["state"]).as_str() {
        "downloading" if f["error"].is_string() => format!(
            "downloading {}% ({})",
            received * 100 / size.max(1),
            s(&f["error"])
        ),
        "downloading" => format!("downloading {}%", received * 100 / size.max(1)),
        "failed" => format!("failed: {}", s(&f["error"])),
        other => other.to_string(),
    };
    format!(
        "{} ({:.1} MiB, {}) {state}  {}",
        s(&f["name"]),
        size as f64 / (1 << 20) as f64,
        s(&f["mime"]),
        s(&f["hash"])
    )
}

/// A media type for a file name, for the recipient's viewer; unknown ones are bytes.
fn mime_of(path: &std::path::Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" | "opus" => "audio/ogg",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// Uploads each file to the node's file store: what `send` names them by.
async fn upload_files(api: &ApiClient, files: &[std::path::PathBuf]) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow::anyhow!("{}: not a file name", path.display()))?;
        if !path.is_file() {
            anyhow::bail!("{}: no such file", path.display());
        }
        let v = api.post_file("/api/v1/msg/files", path).await?;
        out.push(json!({ "hash": v["hash"], "name": name, "mime": mime_of(path) }));
    }
    Ok(out)
}

/// Waits for a file (showing its progress) and writes it to `output`.
async fn save_file(
    api: &ApiClient,
    hash: &str,
    output: Option<std::path::PathBuf>,
    json: bool,
) -> Result<()> {
    let info_path = format!("/api/v1/msg/files/{}/info", enc(hash));
    let mut info = api.get(&info_path).await?;
    let size = info["size"].as_u64().unwrap_or(0);
    let pb = indicatif::ProgressBar::new(size);
    if json {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_message(s(&info["name"]));
    loop {
        match s(&info["state"]).as_str() {
            "done" | "offered" => break,
            "failed" => anyhow::bail!("{} failed: {}", s(&info["name"]), s(&info["error"])),
            _ => {}
        }
        pb.set_position(info["received"].as_u64().unwrap_or(0));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        info = api.get(&info_path).await?;
    }
    pb.finish_and_clear();
    let name = s(&info["name"]);
    // Only the last part of the name the sender chose: never a path of theirs.
    let safe = std::path::Path::new(&name)
        .file_name()
        .map(|n| n.to_os_string())
        .filter(|n| n != "." && n != "..")
        .unwrap_or_else(|| hash.into());
    let dest = output.unwrap_or_else(|| std::path::PathBuf::from(safe));
    if dest.exists() {
        anyhow::bail!(
            "{} exists already: choose another place with --output",
            dest.display()
        );
    }
    let n = api
        .get_to_file(&format!("/api/v1/msg/files/{}", enc(hash)), &dest)
        .await?;
    if json {
        ui::json(&json!({ "path": dest, "bytes": n, "hash": hash }));
    } else {
        println!("saved {} ({n} bytes)", dest.display());
    }
    Ok(())
}

fn print_messages(v: &Value, json: bool) {
    if json {
        ui::json(v);
        return;
    }
    for m in v.as_array().into_iter().flatten() {
        println!("{}", message_line(m));
    }
}

fn print_group(v: &Value) {
    println!(
        "group {} ({}), epoch {}",
        s(&v["name"]),
        s(&v["id"]),
        s(&v["epoch"])
    );
    for m in v["members"].as_array().into_iter().flatten() {
        let owner = if m["peer_id"] == v["owner"] {
            "  (owner)"
        } else {
            ""
        };
        println!("  {}  {}{owner}", s(&m["name"]), s(&m["peer_id"]));
    }
}

pub async fn run(api: &ApiClient, cmd: MsgCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        MsgCommand::Invite => {
            let v = api.post("/api/v1/msg/invite", &json!({})).await?;
            if json {
                ui::json(&v);
            } else {
                println!("{}", s(&v["code"]));
                eprintln!("give this code to a contact; they add you with `nodus msg add <code>`");
            }
        }
        MsgCommand::Add { code, name } => {
            let v = api
                .post(
                    "/api/v1/msg/contacts",
                    &json!({ "code": code, "name": name }),
                )
                .await?;
            if json {
                ui::json(&v);
            } else {
                let (name, peer) = (s(&v["name"]), s(&v["peer_id"]));
                match v["previous_name"].as_str() {
                    None => println!("added {name} ({peer})"),
                    Some(old) if old == name => {
                        println!("{name} ({peer}) was already a contact: card updated")
                    }
                    Some(old) => println!("renamed {old} to {name} ({peer}): card updated"),
                }
            }
        }
        MsgCommand::Contacts => {
            let v = api.get("/api/v1/msg/contacts").await?;
            if json {
                ui::json(&v);
            } else {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        vec![
                            s(&c["name"]),
                            s(&c["peer_id"]),
                            if c["session"] == true {
                                "yes"
                            } else {
                                "not yet"
                            }
                            .into(),
                        ]
                    })
                    .collect();
                table(&["name", "peer id", "session"], &rows);
            }
        }
        MsgCommand::Save { hash, output } => save_file(api, &hash, output, json).await?,
        MsgCommand::Send {
            contact,
            text,
            files,
        } => {
            let files = upload_files(api, &files).await?;
            let v = api
                .post(
                    "/api/v1/msg/send",
                    &json!({ "to": contact, "text": text.join(" "), "files": files }),
                )
                .await?;
            if json {
                ui::json(&v);
            } else {
                println!("{}", message_line(&v));
            }
        }
        MsgCommand::Inbox { follow, all } => {
            let path = if all {
                "/api/v1/msg/inbox?all=true"
            } else {
                "/api/v1/msg/inbox"
            };
            // Subscribe first, so nothing arriving between the two calls is missed.
            let stream = if follow {
                Some(api.sse("/api/v1/events").await?)
            } else {
                None
            };
            let v = api.get(path).await?;
            print_messages(&v, json);
            if !json && v.as_array().is_some_and(|a| a.is_empty()) && !follow {
                eprintln!("no new messages");
            }
            if let Some(stream) = stream {
                // A call ringing now shows too (its event came before we listened).
                let mut rung = std::collections::HashSet::new();
                if let Ok(calls) = api.get("/api/v1/voice/calls").await {
                    for c in calls.as_array().into_iter().flatten() {
                        if c["direction"] == "incoming" && c["state"] == "ringing" {
                            let e = json!({"type": "incoming", "call": c["id"], "from": c["peer"], "name": c["name"]});
                            print_call_event(&e, json, &mut rung)?;
                        }
                    }
                }
                follow_messages(api, stream, json, rung).await?;
            }
        }
        MsgCommand::History { with } => {
            let v = api
                .get(&format!("/api/v1/msg/history/{}", enc(&with)))
                .await?;
            print_messages(&v, json);
        }
        MsgCommand::Groups => {
            let v = api.get("/api/v1/msg/groups").await?;
            if json {
                ui::json(&v);
            } else if v.as_array().is_some_and(|a| a.is_empty()) {
                eprintln!("no groups: `nodus msg group create <name>` makes one");
            } else {
                for g in v.as_array().into_iter().flatten() {
                    print_group(g);
                }
            }
        }
        MsgCommand::Group { command } => {
            let v = match command {
                GroupCommand::Create { name } => {
                    api.post("/api/v1/msg/groups", &json!({ "name": name }))
                        .await?
                }
                GroupCommand::Add { group, contact } => {
                    api.post(
                        &format!("/api/v1/msg/groups/{}/members", enc(&group)),
                        &json!({ "contact": contact }),
                    )
                    .await?
                }
                GroupCommand::Remove { group, contact } => {
                    api.delete(&format!(
                        "/api/v1/msg/groups/{}/members/{}",
                        enc(&group),
                        enc(&contact)
                    ))
                    .await?
                }
                GroupCommand::Send { group, text } => {
                    let v = api
                        .post(
                            &format!("/api/v1/msg/groups/{}/send", enc(&group)),
                            &json!({ "text": text.join(" ") }),
                        )
                        .await?;
                    if json {
                        ui::json(&v);
                    } else {
                        println!("{}", message_line(&v));
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            };
            if json {
                ui::json(&v);
            } else {
                print_group(&v);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Calls ring in the inbox too: an incoming call (once each) and how calls that rang
/// here ended.
fn print_call_event(v: &Value, json: bool, rung: &mut std::collections::HashSet<String>) -> Result<()> {
    let call = s(&v["call"]);
    match (s(&v["type"]).as_str(), json) {
        ("incoming", _) if !rung.insert(call.clone()) => {}
        ("incoming", false) => println!(
            "          {} is calling: `nodus call answer` or `nodus call reject` (call {call})",
            s(&v["name"]),
        ),
        ("ended", _) if !rung.contains(&call) => {}
        ("ended", false) => println!(
            "          call {}… ended: {}",
            &call[..8.min(call.len())],
            s(&v["outcome"])
        ),
        ("incoming" | "ended", true) => println!("{}", serde_json::to_string(v)?),
        _ => {}
    }
    Ok(())
}

/// Prints incoming messages and state changes as they happen; marks what it shows read.
async fn follow_messages(
    api: &ApiClient,
    stream: impl futures::Stream<Item = Result<nodus_node::client::SseEvent, nodus_node::ClientError>>,
    json: bool,
    mut rung: std::collections::HashSet<String>,
) -> Result<()> {
    let mut stream = std::pin::pin!(stream);
    loop {
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            n = stream.next() => n,
        };
        let Some(ev) = next else {
            anyhow::bail!("the node closed the stream (did it stop?)");
        };
        let ev = ev?;
        let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        if ev.event == "voice" {
            print_call_event(&v, json, &mut rung)?;
            continue;
        }
        if ev.event != "msg" {
            continue;
        }
        match s(&v["type"]).as_str() {
            "message" if v["message"]["outgoing"] != true => {
                if json {
                    println!("{}", serde_json::to_string(&v["message"])?);
                } else {
                    println!("{}", message_line(&v["message"]));
                }
                // Shown: mark it read (which tells the sender).
                let _ = api.get("/api/v1/msg/inbox").await?;
            }
            "state" if !json => {
                println!(
                    "          message {}… is {}",
                    &s(&v["id"])[..8.min(s(&v["id"]).len())],
                    s(&v["state"])
                );
            }
            "state" => println!("{}", serde_json::to_string(&v)?),
            // A file's end (done or failed); its progress is `nodus msg save`'s to show.
            "file" if matches!(s(&v["file"]["state"]).as_str(), "done" | "failed") => {
                if json {
                    println!("{}", serde_json::to_string(&v)?);
                } else if v["file"]["state"] == "done" {
                    println!(
                        "          file {} arrived: `nodus msg save {}` writes it",
                        s(&v["file"]["name"]),
                        s(&v["file"]["hash"])
                    );
                } else {
                    println!("          file {}", file_line(&v["file"]));
                }
            }
            _ => {}
        }
    }
}

/// Runs a messaging command against the node on `g`'s data dir.
pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    let Commands::Msg { command } = c;
    run(&g.api()?, command, g.json).await
}
