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
    format!(
        "{h:02}:{mi:02}:{se:02}  {group}{who}: {}{state}",
        s(&m["text"])
    )
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
        MsgCommand::Send { contact, text } => {
            let v = api
                .post(
                    "/api/v1/msg/send",
                    &json!({ "to": contact, "text": text.join(" ") }),
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
            _ => {}
        }
    }
}

/// Runs a messaging command against the node on `g`'s data dir.
pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    let Commands::Msg { command } = c;
    run(&g.api()?, command, g.json).await
}
