//! `nodus vault ...`: health records through the node's API.

mod args;
pub mod bench;
pub mod demo;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::global::Global;
use crate::ui::{self, enc, s, table};

pub use args::{Commands, LogCommand, ReplicasCommand, VaultCommand};

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

fn write_out(out: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match out {
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("cannot write {}", p.display())),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(bytes)?;
            Ok(())
        }
    }
}

/// `--until`: a date (through that day, UTC), an RFC 3339 time, or a span from now.
pub fn parse_until(text: &str, now_ms: u64) -> Result<u64> {
    let t = text.trim();
    let ms = if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        ts.as_millisecond()
    } else if let Ok(d) = t.parse::<jiff::civil::Date>() {
        let next = d
            .tomorrow()
            .map_err(|_| anyhow!("{t:?} is past the last date there is"))?;
        next.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp().as_millisecond()
    } else {
        let (n, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: u64 = n
            .parse()
            .map_err(|_| anyhow!("--until {t:?}: give a date (2027-01-31), a time (2027-01-31T12:00:00Z) or a span (12h, 7d, 2w)"))?;
        let secs = match unit {
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => bail!("--until {t:?}: a span ends in m, h, d or w (12h, 7d, 2w)"),
        };
        return Ok(now_ms + n * secs * 1000);
    };
    if ms <= now_ms as i64 {
        bail!("--until {t:?} is in the past");
    }
    Ok(ms as u64)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn when(v: &Value) -> String {
    v.as_u64()
        .map(nodus_vault::fhir::audit::instant)
        .unwrap_or_else(|| "-".into())
}

fn types_text(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a.iter().map(s).collect::<Vec<_>>().join(","),
        _ => "all".into(),
    }
}

pub async fn dispatch(g: &Global, c: Commands) -> Result<ExitCode> {
    let Commands::Vault { command } = c;
    let api = g.api()?;
    match command {
        VaultCommand::Status => {
            let v = api.get("/api/v1/vault").await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("records   {}", s(&v["records"]));
                println!("grants    {}", s(&v["grants"]));
                println!("log       {} entries, head {}", s(&v["log_entries"]), s(&v["log_head"]));
                let a = &v["anchor"];
                match (a["anchored_entry"].as_u64(), a["anchored_block"].as_u64()) {
                    (Some(e), Some(b)) => println!("anchored  entry {e} in block {b}"),
                    _ => println!("anchored  not yet"),
                }
                if let Some(acct) = a["account"].as_str() {
                    println!("anchor account {acct} (pays the gas of anchors)");
                }
                if let Some(e) = a["last_error"].as_str() {
                    println!("anchoring: {e}");
                }
            }
        }
        VaultCommand::Id => {
            let v = api.get("/api/v1/vault/id").await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("{}", s(&v["card"]));
            }
        }
        VaultCommand::Import { file } => {
            let bytes = read_file(&file, "bundle")?;
            let v = api
                .post_bytes("/api/v1/vault/import", "application/fhir+json", bytes)
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                let by: Vec<String> = v["by_type"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, n)| format!("{n} {k}")).collect())
                    .unwrap_or_default();
                println!(
                    "imported {}: {} new, {} updated, {} unchanged{}",
                    file.display(),
                    s(&v["created"]),
                    s(&v["updated"]),
                    s(&v["unchanged"]),
                    if by.is_empty() { String::new() } else { format!(" ({})", by.join(", ")) }
                );
            }
        }
        VaultCommand::List { rtype } => {
            let path = match rtype {
                Some(t) => format!("/api/v1/vault/records?type={}", enc(&t)),
                None => "/api/v1/vault/records".into(),
            };
            let v = api.get(&path).await?;
            ui::list(g.json, &v, &["record", "version", "from"], |r| {
                        vec![
                            format!("{}/{}", s(&r["type"]), s(&r["id"])),
                            s(&r["version"]),
                            r["author"].as_str().unwrap_or("patient").to_string(),
                        ]
                    });
        }
        VaultCommand::Show { record } => {
            let (t, id) = record
                .split_once('/')
                .ok_or_else(|| anyhow!("{record:?}: give Type/id, as `nodus vault list` prints it"))?;
            let v = api
                .get(&format!("/api/v1/vault/records/{}/{}", enc(t), enc(id)))
                .await?;
            ui::json(&v);
        }
        VaultCommand::Export { out } => {
            let bytes = api.get_bytes("/api/v1/vault/export").await?;
            write_out(out.as_deref(), &bytes)?;
            if let Some(p) = out
                && !g.json
            {
                eprintln!("wrote {} ({} bytes)", p.display(), bytes.len());
            }
        }
        VaultCommand::Grant {
            provider,
            types,
            until,
        } => {
            let until_ms = until.map(|u| parse_until(&u, now_ms())).transpose()?;
            let v = api
                .post(
                    "/api/v1/vault/grants",
                    &json!({ "provider": provider, "types": types, "until_ms": until_ms }),
                )
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                println!(
                    "granted {}: {} ({} records) until {}",
                    s(&v["provider"]),
                    types_text(&v["types"]),
                    s(&v["records"]),
                    if v["until_ms"].is_null() { "revoked".into() } else { when(&v["until_ms"]) }
                );
            }
        }
        VaultCommand::Grants => {
            let v = api.get("/api/v1/vault/grants").await?;
            ui::list(g.json, &v, &["provider", "types", "records", "until", "state"], |r| {
                        vec![
                            s(&r["provider"]),
                            types_text(&r["types"]),
                            s(&r["records"]),
                            if r["until_ms"].is_null() { "-".into() } else { when(&r["until_ms"]) },
                            if r["expired"] == true { "expired" } else { "live" }.into(),
                        ]
                    });
        }
        VaultCommand::Revoke { provider } => {
            let v = api
                .delete(&format!("/api/v1/vault/grants/{}", enc(&provider)))
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                println!(
                    "revoked {}: {} records sealed again under new keys",
                    s(&v["provider"]),
                    s(&v["rotated"])
                );
            }
        }
        VaultCommand::Fetch {
            patient,
            types,
            out,
        } => {
            let v = api
                .post("/api/v1/vault/fetch", &json!({ "patient": patient, "types": types }))
                .await?;
            let records: Vec<Value> = v["records"].as_array().cloned().unwrap_or_default();
            if let Some(p) = &out {
                std::fs::write(p, nodus_vault::fhir::bundle::export(&records))
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            if g.json {
                ui::json(&v);
            } else {
                let rows: Vec<Vec<String>> = records
                    .iter()
                    .map(|r| vec![format!("{}/{}", s(&r["resourceType"]), s(&r["id"]))])
                    .collect();
                table(&["record"], &rows);
                println!("{} records from {patient}", records.len());
                if let Some(p) = out {
                    println!("wrote {}", p.display());
                }
            }
        }
        VaultCommand::Append { patient, file } => {
            let resource: Value = serde_json::from_slice(&read_file(&file, "resource")?)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let v = api
                .post("/api/v1/vault/append", &json!({ "patient": patient, "resource": resource }))
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("appended {}/{} (version {})", s(&v["type"]), s(&v["id"]), s(&v["version"]));
            }
        }
        VaultCommand::Replicas { command } => {
            let v = match command {
                Some(ReplicasCommand::Add { peer }) => {
                    api.post("/api/v1/vault/replicas", &json!({ "peer": peer })).await?
                }
                Some(ReplicasCommand::Remove { peer }) => {
                    api.delete(&format!("/api/v1/vault/replicas/{}", enc(&peer)))
                        .await?
                }
                None => api.get("/api/v1/vault/replicas").await?,
            };
            ui::list(
                g.json || !v.is_array(),
                &v,
                &["replica", "holds entries", "state", "last error"],
                |r| {
                    vec![
                        s(&r["peer"]),
                        s(&r["acked"]),
                        if r["behind"] == 0 {
                            "up to date".into()
                        } else {
                            format!("{} entries behind", s(&r["behind"]))
                        },
                        r["last_error"].as_str().unwrap_or("").to_string(),
                    ]
                },
            );
        }
        VaultCommand::Hold { patient } => {
            let v = api
                .post("/api/v1/vault/holding", &json!({ "peer": patient }))
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("holding a copy for {patient} (sealed: this node cannot read it)");
            }
        }
        VaultCommand::Holding => {
            let v = api.get("/api/v1/vault/holding").await?;
            ui::list(g.json, &v, &["patient", "records", "log entries", "bytes"], |r| vec![s(&r["patient"]), s(&r["records"]), s(&r["entries"]), s(&r["bytes"])]);
        }
        VaultCommand::Restore { from } => {
            let v = api
                .post("/api/v1/vault/restore", &json!({ "peer": from }))
                .await?;
            if g.json {
                ui::json(&v);
            } else {
                println!(
                    "restored from {from}: {} records, {} grants, {} log entries (every record opened with this vault's keys)",
                    s(&v["records"]),
                    s(&v["grants"]),
                    s(&v["entries"])
                );
            }
        }
        VaultCommand::Log {
            command: Some(LogCommand::Verify),
            ..
        } => {
            let v = api.get("/api/v1/vault/log/verify").await?;
            if g.json {
                ui::json(&v);
            } else {
                println!("{} entries, hashes chain to head {}", s(&v["entries"]), s(&v["head"]));
                match v["last_anchor"].as_array() {
                    Some(a) => println!(
                        "{} anchors confirmed on the chain, the newest: entry {} in block {} (tx 0x{}){}",
                        s(&v["anchors_confirmed"]),
                        s(&a[0]),
                        s(&a[1]),
                        s(&a[2]),
                        match v["anchors_pending"].as_u64() {
                            Some(n) if n > 0 => format!("; {n} pending"),
                            _ => String::new(),
                        }
                    ),
                    None => println!("{}", v["note"].as_str().unwrap_or("no anchor yet")),
                }
            }
        }
        VaultCommand::Log {
            command: None,
            from,
            limit,
        } => {
            let v = api
                .get(&format!("/api/v1/vault/log?from={from}&limit={limit}"))
                .await?;
            ui::list(g.json, &v, &["#", "recorded", "action", "who", "outcome", "detail"], |e| {
                        vec![
                            s(&e["id"]),
                            s(&e["recorded"]),
                            s(&e["subtype"][0]["code"]),
                            s(&e["agent"][0]["who"]["identifier"]["value"]),
                            if e["outcome"] == "0" { "ok" } else { "refused" }.into(),
                            e["outcomeDesc"].as_str().unwrap_or("").to_string(),
                        ]
                    });
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_dates_times_and_spans() {
        let now = 1_780_000_000_000; // 2026-05-28T20:26:40Z
        assert_eq!(parse_until("7d", now).unwrap(), now + 7 * 86_400_000);
        assert_eq!(
            parse_until("2026-06-01", now).unwrap(),
            "2026-06-02T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
        );
        assert_eq!(
            parse_until("2026-06-01T12:00:00Z", now).unwrap(),
            "2026-06-01T12:00:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
        );
        assert!(parse_until("2020-01-01", now).unwrap_err().to_string().contains("past"));
        assert!(parse_until("soon", now).unwrap_err().to_string().contains("span"));
        assert!(parse_until("3y", now).is_err());
    }
}
