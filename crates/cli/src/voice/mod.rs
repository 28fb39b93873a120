//! `nodus call ...`: voice calls through the node's API.

mod args;
pub mod bench;
pub mod demo;
mod speech;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use nodus_node::ApiClient;
use serde_json::{Value, json};

use crate::global::Global;
use crate::ui::{self, s};

pub use args::{CallCommand, Commands, FollowArgs, MediaArgs};

/// The media as the node reads it: absolute paths (the node's working directory is not
/// the caller's), the input checked here first for a clearer error.
fn media_body(m: &MediaArgs) -> Result<Value> {
    let abs = |p: &Path| -> Result<PathBuf> {
        Ok(if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()?.join(p)
        })
    };
    let input = match &m.input {
        Some(p) => {
            let a = abs(p)?;
            if !a.is_file() {
                bail!("--input {}: no such file (a 16 kHz mono WAV)", p.display());
            }
            Some(a)
        }
        None => None,
    };
    let record = m.record.as_deref().map(abs).transpose()?;
    Ok(json!({ "input": input, "record": record, "device": m.device }))
}

/// One line about a call: `alice  incoming  completed  12.3 s  direct 127.0.0.1:4000`.
pub fn quality_line(c: &Value) -> String {
    let q = &c["quality"];
    if q.is_null() {
        return String::new();
    }
    let expected = q["received"].as_f64().unwrap_or(0.0) + q["lost"].as_f64().unwrap_or(0.0);
    let loss = if expected > 0.0 {
        100.0 * q["lost"].as_f64().unwrap_or(0.0) / expected
    } else {
        0.0
    };
    format!(
        "loss {loss:.1}%, jitter {:.1} ms, longest gap {} ms, {} kbps",
        q["jitter_ms"].as_f64().unwrap_or(0.0),
        q["longest_gap_ms"].as_u64().unwrap_or(0),
        q["bitrate"].as_i64().unwrap_or(0) / 1000
    )
}

fn secs(ms: &Value) -> String {
    format!("{:.1} s", ms.as_u64().unwrap_or(0) as f64 / 1000.0)
}

fn row(c: &Value) -> Vec<String> {
    vec![
        s(&c["id"])[..8.min(s(&c["id"]).len())].to_string(),
        s(&c["name"]),
        s(&c["direction"]),
        match s(&c["outcome"]).as_str() {
            "" => s(&c["state"]),
            o => o.to_string(),
        },
        secs(&c["duration_ms"]),
        s(&c["route"]),
        quality_line(c),
    ]
}

const HEADER: &[&str] = &["call", "with", "way", "state", "length", "route", "quality"];

/// Prints a call's events until it ends (Ctrl-C hangs up); `--for` hangs up after that
/// long answered. Exit status 0 when the call was answered and ended well.
async fn follow(
    api: &ApiClient,
    stream: impl futures::Stream<Item = Result<nodus_node::client::SseEvent, nodus_node::ClientError>>,
    id: &str,
    answered: bool,
    f: &FollowArgs,
    json: bool,
) -> Result<ExitCode> {
    let mut stream = std::pin::pin!(stream);
    let hangup_after = f.duration.map(std::time::Duration::from_secs_f64);
    let mut deadline = match (answered, hangup_after) {
        (true, Some(d)) => Some(tokio::time::Instant::now() + d),
        _ => None,
    };
    loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                eprintln!("hanging up");
                api.post("/api/v1/voice/hangup", &json!({ "call": id })).await?;
                deadline = None;
                continue;
            }
            _ = timer => {
                api.post("/api/v1/voice/hangup", &json!({ "call": id })).await?;
                deadline = None;
                continue;
            }
            n = stream.next() => n,
        };
        let Some(ev) = next else {
            bail!("the node closed the stream (did it stop?)");
        };
        let ev = ev?;
        if ev.event != "voice" {
            continue;
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        if s(&v["call"]) != id {
            continue;
        }
        if json {
            println!("{}", serde_json::to_string(&v)?);
        }
        match s(&v["type"]).as_str() {
            "ringing" if !json => eprintln!("ringing"),
            "answered" => {
                if !json {
                    eprintln!("answered");
                }
                if let Some(d) = hangup_after {
                    deadline = Some(tokio::time::Instant::now() + d);
                }
            }
            "route" if !json => eprintln!("route: {}", s(&v["route"])),
            "ended" => {
                let outcome = s(&v["outcome"]);
                if !json {
                    let call = api.get(&format!("/api/v1/voice/calls/{id}")).await?;
                    eprintln!(
                        "ended: {outcome} after {}{}",
                        secs(&v["duration_ms"]),
                        match quality_line(&call).as_str() {
                            "" => String::new(),
                            q => format!("; {q}"),
                        }
                    );
                }
                return Ok(if outcome == "completed" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            _ => {}
        }
    }
}

/// Runs a voice command against the node on `g`'s data dir.
pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    let Commands::Call {
        action,
        contact,
        media,
        follow: f,
    } = c;
    let api = g.api()?;
    let json = g.json;
    match action {
        None => {
            let contact = contact.context("who to call: `nodus call <contact>`")?;
            let mut body = media_body(&media)?;
            body["to"] = json!(contact);
            // Subscribe first, so no event of the call is missed.
            let stream = api.sse("/api/v1/events").await?;
            let v = api.post("/api/v1/voice/calls", &body).await?;
            let id = s(&v["id"]);
            if f.detach {
                if json {
                    ui::json(&v);
                } else {
                    println!("{id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                eprintln!("calling {} (call {id}; Ctrl-C hangs up)", s(&v["name"]));
            }
            follow(&api, stream, &id, false, &f, json).await
        }
        Some(CallCommand::Answer {
            call,
            media,
            follow: f,
        }) => {
            let mut body = media_body(&media)?;
            body["call"] = json!(call);
            let stream = api.sse("/api/v1/events").await?;
            let v = api.post("/api/v1/voice/answer", &body).await?;
            let id = s(&v["id"]);
            if f.detach {
                if json {
                    ui::json(&v);
                } else {
                    println!("{id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                eprintln!("answered {} (call {id}; Ctrl-C hangs up)", s(&v["name"]));
            }
            follow(&api, stream, &id, true, &f, json).await
        }
        Some(CallCommand::Reject { call }) => {
            let v = api.post("/api/v1/voice/reject", &json!({ "call": call })).await?;
            if json {
                ui::json(&v);
            } else {
                println!("rejected the call from {}", s(&v["name"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(CallCommand::Hangup { call }) => {
            let v = api.post("/api/v1/voice/hangup", &json!({ "call": call })).await?;
            if json {
                ui::json(&v);
            } else {
                println!("hung up on {} after {}", s(&v["name"]), secs(&v["duration_ms"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(CallCommand::List) => {
            let v = api.get("/api/v1/voice/calls").await?;
            if !json && v.as_array().is_some_and(|a| a.is_empty()) {
                eprintln!("no calls: `nodus call <contact>` places one");
            } else {
                ui::list(json, &v, HEADER, row);
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(CallCommand::History { limit }) => {
            let v = api.get(&format!("/api/v1/voice/history?limit={limit}")).await?;
            if !json && v.as_array().is_some_and(|a| a.is_empty()) {
                eprintln!("no calls yet");
            } else {
                ui::list(json, &v, HEADER, row);
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(CallCommand::Relay) => {
            let v = api.get("/api/v1/voice").await?;
            let r = &v["relay"];
            if json {
                ui::json(r);
            } else if r["enabled"] != true {
                println!("not a voice relay ([voice.relay] enabled = false, or no address of its own)");
            } else {
                println!(
                    "voice relay at {}: {} calls, {} datagrams forwarded, {} dropped as garbage, {} over a side's rate",
                    s(&r["addr"]),
                    r["calls"],
                    r["forwarded"],
                    r["garbage"],
                    r["limited"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
