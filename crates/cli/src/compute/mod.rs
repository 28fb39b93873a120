//! `nodus compute ...`: volunteer computing through the node's API.

mod args;
pub mod bench;
pub mod demo;

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nodus_compute::Inputs;
use serde_json::{Value, json};

use crate::chain::{format_ether, parse_amount};
use crate::global::Global;
use crate::ui::{self, enc, s, table};

pub use args::{Commands, ComputeCommand, VolunteerCommand};

/// `--deadline`: seconds, or a number ending in s, m, h or d.
pub fn parse_span(text: &str) -> Result<u64> {
    let t = text.trim();
    let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| anyhow!("{t:?}: give a span such as 90s, 10m, 2h or 1d"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("{t:?}: a span ends in s, m, h or d (90s, 10m, 2h, 1d)"),
    };
    Ok(n * secs)
}

/// `--inputs`: a directory (a unit per file), a file (a unit per line) or a range.
pub fn read_inputs(spec: &str) -> Result<Inputs> {
    let path = Path::new(spec);
    if path.is_dir() {
        let mut files = Vec::new();
        for e in std::fs::read_dir(path).with_context(|| format!("cannot list {spec}"))? {
            let e = e?;
            if e.file_type()?.is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                let data = std::fs::read(e.path())
                    .with_context(|| format!("cannot read {}", e.path().display()))?;
                files.push((name, data));
            }
        }
        files.sort();
        if files.is_empty() {
            bail!("{spec} has no files: each file becomes one work unit");
        }
        return Ok(Inputs::Files(files));
    }
    if path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {spec}"))?;
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if lines.is_empty() {
            bail!("{spec} has no lines: each line becomes one work unit");
        }
        return Ok(Inputs::Lines(lines));
    }
    if spec.contains("..") {
        return Inputs::range(spec).map_err(|e| anyhow!("--inputs {e}"));
    }
    bail!("--inputs {spec}: no such file or directory, and not a range A..B (as 0..200)")
}

/// A file name a unit wrote, as a path under `dir`: nothing may climb out of it.
fn inside(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(dir.join(rel))
}

/// A wei amount the API gives as a decimal string, in ether.
fn ether(wei: &Value) -> String {
    let wei = wei.as_str().and_then(|w| w.parse().ok()).unwrap_or_default();
    format_ether(wei)
}

fn credit(fuel: &Value) -> String {
    let f = fuel.as_u64().unwrap_or(0) as f64;
    format!("{:.2}", f / 1e9)
}

fn progress_line(v: &Value) -> String {
    format!(
        "{} valid, {} invalid, {} errors, {} late, {} running, {} volunteers",
        s(&v["valid"]),
        s(&v["invalid"]),
        s(&v["errors"]),
        s(&v["late"]),
        s(&v["in_progress"]),
        v["volunteers"].as_array().map_or(0, |a| a.len())
    )
}

fn print_status(v: &Value) {
    println!("project    {} ({})", s(&v["id"]), s(&v["name"]));
    println!("state      {}", s(&v["state"]).to_lowercase());
    println!(
        "units      {} of {} accepted, {} failed",
        s(&v["done"]),
        s(&v["units"]),
        s(&v["failed"])
    );
    println!("results    {}", progress_line(v));
    println!(
        "quorum     {} (deadline {} s)",
        s(&v["policy"]["min_quorum"]),
        v["policy"]["delay_bound_ms"].as_u64().unwrap_or(0) / 1000
    );
    let pay = &v["pay"];
    if pay.is_object() {
        println!(
            "pay        {} ETH per Gfuel from {}: {} ETH paid, {} ETH on its way, {} ETH owed",
            ether(&pay["wei_per_gfuel"]),
            s(&pay["account"]),
            ether(&pay["paid"]),
            ether(&pay["sending"]),
            ether(&pay["owed"])
        );
        if pay["note"].is_string() {
            println!("           {}", s(&pay["note"]));
        }
    }
    let rows: Vec<Vec<String>> = ui::rows(&v["volunteers"], |r| {
        let mut row = vec![
            s(&r["peer"]),
            s(&r["valid"]),
            s(&r["invalid"]),
            s(&r["errors"]),
            s(&r["late"]),
            credit(&r["credit"]),
            if r["trusted"].as_bool() == Some(true) { "yes".into() } else { "no".into() },
        ];
        if pay.is_object() {
            row.push(ether(&r["paid"]));
        }
        row
    });
    if !rows.is_empty() {
        println!();
        let mut head = vec!["volunteer", "valid", "invalid", "errors", "late", "credit (Gfuel)", "trusted"];
        if pay.is_object() {
            head.push("paid (ETH)");
        }
        table(&head, &rows);
    }
}

pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    let Commands::Compute { command } = c;
    let api = g.api()?;
    match command {
        ComputeCommand::Volunteer { command } => {
            let v = match command {
                VolunteerCommand::On {
                    cores,
                    max_memory,
                    idle_only,
                } => {
                    api.post(
                        "/api/v1/compute/volunteer",
                        &json!({ "on": true, "cores": cores, "max_memory_mb": max_memory, "idle_only": idle_only }),
                    )
                    .await?
                }
                VolunteerCommand::Off => {
                    api.post("/api/v1/compute/volunteer", &json!({ "on": false }))
                        .await?
                }
                VolunteerCommand::Status => api.get("/api/v1/compute/volunteer").await?,
            };
            let balance = match v["payout"].as_str() {
                Some(a) => crate::chain::rpc(&api, "eth_getBalance", json!([a, "latest"]))
                    .await
                    .ok()
                    .and_then(|b| crate::chain::quantity(&b).ok()),
                None => None,
            };
            if g.json {
                let mut v = v;
                v["payout_balance"] = json!(balance.map(|b| b.to_string()));
                ui::json(&v);
                return Ok(ExitCode::SUCCESS);
            }
            let cores = match v["cores"].as_u64() {
                Some(0) | None => "all cores".to_string(),
                Some(n) => format!("{n} cores"),
            };
            if v["on"].as_bool() == Some(true) {
                println!(
                    "volunteering: {cores}, {} MiB per unit{}{}",
                    s(&v["max_memory_mb"]),
                    if v["idle_only"].as_bool() == Some(true) { ", only while idle" } else { "" },
                    if v["paused"].as_bool() == Some(true) { " (paused: the machine is busy)" } else { "" }
                );
            } else {
                println!("not volunteering (`nodus compute volunteer on` to donate cores)");
            }
            println!(
                "units run {}, queued {}, not yet reported {}",
                s(&v["units_run"]),
                s(&v["queued"]),
                s(&v["unreported"])
            );
            if let Some(a) = v["payout"].as_str() {
                let held = balance.map_or("unknown".into(), |b| {
                    format_ether(nodus_chain::primitives::U256::from(b))
                });
                println!("paid to {a} (projects that pay); it holds {held} ETH");
            }
            let running = ui::rows(&v["running"], |r| {
                vec![s(&r["name"]), s(&r["unit"]), format!("{:.1} s", r["secs"].as_f64().unwrap_or(0.0))]
            });
            if !running.is_empty() {
                println!();
                table(&["running", "unit", "for"], &running);
            }
            let projects = ui::rows(&v["projects"], |r| {
                vec![
                    s(&r["name"]),
                    s(&r["project"]).chars().take(12).collect(),
                    s(&r["reported"]),
                    credit(&r["credit"]),
                    if r["finished"].as_bool() == Some(true) { "finished".into() } else { "active".into() },
                ]
            });
            if !projects.is_empty() {
                println!();
                table(&["project", "id", "results", "credit (Gfuel)", "state"], &projects);
            }
        }
        ComputeCommand::Submit {
            module,
            inputs,
            args,
            quorum,
            deadline,
            name,
            fuel,
            max_memory,
            no_adaptive,
            canonical_nans,
            pay,
        } => {
            let pay = match pay {
                Some(p) => Some(
                    (parse_amount(&p).context("--pay takes ether per billion fuel, as 0.01")?)
                        .to_string(),
                ),
                None => None,
            };
            let wasm = std::fs::read(&module)
                .with_context(|| format!("cannot read the module {}", module.display()))?;
            let inputs = read_inputs(&inputs)?;
            let name = name.unwrap_or_else(|| {
                module
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "project".into())
            });
            let units = inputs.len();
            let v = api
                .post(
                    "/api/v1/compute/projects",
                    &json!({
                        "name": name,
                        "module": hex::encode(&wasm),
                        "inputs": inputs,
                        "args": args,
                        "quorum": quorum,
                        "deadline_secs": parse_span(&deadline)?,
                        "fuel": fuel,
                        "memory_mb": max_memory,
                        "adaptive": !no_adaptive,
                        "canonical_nans": canonical_nans,
                        "pay_wei_per_gfuel": pay,
                    }),
                )
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("{}", s(&v["project"]));
                eprintln!(
                    "project {name}: {units} units, quorum {quorum}; `nodus compute status {} --follow` shows it",
                    s(&v["project"]).chars().take(12).collect::<String>()
                );
            }
        }
        ComputeCommand::List => {
            let v = api.get("/api/v1/compute/projects").await?;
            ui::list(
                g.json,
                &v,
                &["project", "name", "state", "accepted", "units", "volunteers"],
                |r| {
                    vec![
                        s(&r["id"]),
                        s(&r["name"]),
                        s(&r["state"]).to_lowercase(),
                        s(&r["done"]),
                        s(&r["units"]),
                        r["volunteers"].as_array().map_or(0, |a| a.len()).to_string(),
                    ]
                },
            );
        }
        ComputeCommand::Status { project, follow } => {
            let path = format!("/api/v1/compute/projects/{}", enc(&project));
            let mut v = api.get(&path).await?;
            if follow && v["state"] == "Active" {
                let pb = indicatif::ProgressBar::new(v["units"].as_u64().unwrap_or(0));
                pb.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} units ({percent}%) {msg} [{elapsed}]",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                loop {
                    pb.set_position(
                        v["done"].as_u64().unwrap_or(0) + v["failed"].as_u64().unwrap_or(0),
                    );
                    pb.set_message(progress_line(&v));
                    if v["state"] != "Active" {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    v = api.get(&path).await?;
                }
                pb.finish_and_clear();
            }
            if g.json {
                ui::json(&v);
            } else {
                print_status(&v);
            }
        }
        ComputeCommand::Results { project, out } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot make {}", out.display()))?;
            let status = api
                .get(&format!("/api/v1/compute/projects/{}", enc(&project)))
                .await?;
            let width = status["units"]
                .as_u64()
                .unwrap_or(1)
                .saturating_sub(1)
                .max(1)
                .to_string()
                .len();
            let mut from = 0u64;
            let mut written = 0usize;
            loop {
                let page = api
                    .get(&format!(
                        "/api/v1/compute/projects/{}/results?from={from}",
                        enc(&project)
                    ))
                    .await?;
                for r in page["results"].as_array().into_iter().flatten() {
                    let unit = r["unit"].as_u64().unwrap_or(0);
                    let o: nodus_compute::sandbox::Output =
                        serde_json::from_value(r["output"].clone())?;
                    let stem = format!("{unit:0width$}");
                    std::fs::write(out.join(format!("{stem}.out")), &o.stdout)?;
                    for (name, data) in &o.files {
                        let Some(p) = inside(&out.join(&stem), name) else {
                            eprintln!("unit {unit}: skipped a file named {name:?}");
                            continue;
                        };
                        if let Some(parent) = p.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        std::fs::write(&p, data)?;
                    }
                    written += 1;
                }
                match page["next"].as_u64() {
                    Some(n) => from = n,
                    None => break,
                }
            }
            if g.json {
                ui::json(&json!({ "written": written, "dir": out }));
            } else {
                println!(
                    "wrote {written} accepted units of {} to {}{}",
                    s(&status["units"]),
                    out.display(),
                    if status["state"] == "Active" { " (the project is still running)" } else { "" }
                );
            }
        }
        ComputeCommand::Cancel { project } => {
            let v = api
                .post(
                    &format!("/api/v1/compute/projects/{}/cancel", enc(&project)),
                    &json!({}),
                )
                .await?;
            if g.json {
                ui::json(&v);
            } else if v["cancelled"].as_bool() == Some(true) {
                println!("cancelled; accepted outputs stay (`nodus compute results`)");
            } else {
                println!("the project had already ended");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_paths() {
        assert_eq!(parse_span("90s").unwrap(), 90);
        assert_eq!(parse_span("10m").unwrap(), 600);
        assert_eq!(parse_span("45").unwrap(), 45);
        assert!(parse_span("10x").is_err());
        let d = Path::new("/tmp/out");
        assert_eq!(inside(d, "a/b.txt"), Some(d.join("a/b.txt")));
        assert_eq!(inside(d, "../x"), None);
        assert_eq!(inside(d, "/etc/passwd"), None);
        assert!(read_inputs("0..10").is_ok());
        assert!(read_inputs("nothing-here").is_err());
    }
}
