//! `nodus bench vault`: what protecting a patient costs. Each row times the vault and
//! the same work without protection (the floor, `nodus_vault::floor`: validated the
//! same way, stored as plain JSON, a grant one access-list row, a log without hashes)
//! in the same run, on the same disk:
//! - records imported per second (validate, seal each under its own key, store, log),
//!   from copies of a synthetic carebundle patient with fresh ids, a bundle per commit;
//! - granting and revoking a provider on a patient of 10,000 records (a revoke gives
//!   every record new keys and seals it again);
//! - a provider's fetch of 1,000 records between two nodes on loopback, beside the
//!   same records sent in the clear over the same overlay;
//! - verifying an audit log of 100,000 entries, beside reading them.
//!
//! The aims (issue 22): at least 5,000 records imported a second, a revoke of 10,000
//! records under 2 s, 100,000 audit entries verified under 1 s.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use nodus_testnet::Testnet;
use nodus_vault::VaultHandle;
use nodus_vault::crypto::Keys;
use nodus_vault::floor::PlainStore;
use nodus_vault::vault::{Vault, system_clock};
use serde_json::json;

use nodus_vault::synthetic::copies;
use crate::ui::progress::spinner;
use crate::ui::{self, table};

/// `nodus bench vault` (flattened into `nodus bench`).
#[derive(clap::Subcommand, Debug)]
pub enum Area {
    /// Health records: imports per second, grant and revoke on 10,000 records, a
    /// provider's fetch of 1,000, audit verification of 100,000 entries; each beside
    /// the same work without encryption (the floor)
    Vault {
        /// Records imported (and then granted and revoked)
        #[arg(long, default_value_t = 10_000)]
        records: usize,
        /// Records a provider fetches
        #[arg(long, default_value_t = 1_000)]
        fetched: usize,
        /// Audit log entries verified
        #[arg(long, default_value_t = 100_000)]
        entries: u64,
    },
}

impl Area {
    pub async fn run(self, json: bool) -> Result<ExitCode> {
        let Area::Vault {
            records,
            fetched,
            entries,
        } = self;
        run(records.max(1), fetched.max(1), entries.max(1), json).await
    }
}

struct Row {
    what: String,
    ours: f64,
    floor: f64,
    unit: &'static str,
    higher_is_better: bool,
    aim: String,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

async fn run(records: usize, fetched: usize, entries: u64, json_out: bool) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let bundles = copies(records);
    let mut rows = Vec::new();

    // Imports.
    let pb = spinner(&format!("importing {} bundles", bundles.len()));
    let vault = Arc::new(Vault::open(
        &dir.path().join("vault.redb"),
        Keys::ephemeral(),
        "12D3KooWBenchPatient".into(),
        system_clock(),
    )?);
    let floor = PlainStore::open(&dir.path().join("floor.redb"))?;
    let (ours_t, n) = {
        let (v, b) = (vault.clone(), bundles.clone());
        tokio::task::spawn_blocking(move || -> Result<(Duration, usize)> {
            let t = Instant::now();
            let mut n = 0;
            for bundle in &b {
                n += v.import(bundle, "bench")?.created;
            }
            Ok((t.elapsed(), n))
        })
        .await??
    };
    let floor_t = {
        let t = Instant::now();
        let mut m = 0;
        for bundle in &bundles {
            m += floor.import(bundle)?;
        }
        if m != n {
            bail!("the floor stored {m} records, the vault {n}");
        }
        t.elapsed()
    };
    pb.finish_and_clear();
    rows.push(Row {
        what: format!("records imported /s ({n} in {} bundles)", bundles.len()),
        ours: n as f64 / secs(ours_t),
        floor: n as f64 / secs(floor_t),
        unit: "",
        higher_is_better: true,
        aim: "5,000".into(),
    });

    // Grant and revoke on every record.
    let provider = Keys::ephemeral();
    let pid = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id().to_string();
    let (grant_t, revoke_t, rotated) = {
        let (v, p, pk) = (vault.clone(), pid.clone(), provider.public());
        tokio::task::spawn_blocking(move || -> Result<(Duration, Duration, usize)> {
            let t = Instant::now();
            v.grant(&p, pk, vec![], None, "bench")?;
            let g = t.elapsed();
            let t = Instant::now();
            let r = v.revoke(&p, "bench")?;
            Ok((g, t.elapsed(), r.rotated))
        })
        .await??
    };
    let t = Instant::now();
    floor.grant(&pid, &[])?;
    let floor_grant = t.elapsed();
    let t = Instant::now();
    floor.revoke(&pid)?;
    let floor_revoke = t.elapsed();
    rows.push(Row {
        what: format!("grant, all {n} records"),
        ours: secs(grant_t) * 1000.0,
        floor: secs(floor_grant) * 1000.0,
        unit: " ms",
        higher_is_better: false,
        aim: "-".into(),
    });
    rows.push(Row {
        what: format!("revoke, {rotated} records re-keyed"),
        ours: secs(revoke_t) * 1000.0,
        floor: secs(floor_revoke) * 1000.0,
        unit: " ms",
        higher_is_better: false,
        aim: "under 2,000 ms".into(),
    });

    // A provider's fetch between two nodes.
    let pb = spinner("starting two nodes for the fetch");
    let (fetch_ours, fetch_floor, got) = fetch(dir.path(), fetched).await?;
    pb.finish_and_clear();
    rows.push(Row {
        what: format!("provider fetch, {got} records"),
        ours: fetch_ours * 1000.0,
        floor: fetch_floor * 1000.0,
        unit: " ms",
        higher_is_better: false,
        aim: "-".into(),
    });

    // The audit log.
    let pb = spinner(&format!("writing {entries} audit entries"));
    let (logged, verify_t) = {
        let v = vault.clone();
        tokio::task::spawn_blocking(move || -> Result<(u64, Duration)> {
            let (have, _) = v.head()?;
            v.fill_log(entries.saturating_sub(have), "bench")?;
            let t = Instant::now();
            let (check, _) = v.verify_log()?;
            Ok((check.entries, t.elapsed()))
        })
        .await??
    };
    floor.copy_log(&vault)?;
    let t = Instant::now();
    let read = floor.read_log()?;
    let read_t = t.elapsed();
    pb.finish_and_clear();
    if read != logged {
        bail!("the floor read {read} entries of {logged}");
    }
    rows.push(Row {
        what: format!("audit log of {logged} entries verified"),
        ours: secs(verify_t) * 1000.0,
        floor: secs(read_t) * 1000.0,
        unit: " ms",
        higher_is_better: false,
        aim: "under 1,000 ms".into(),
    });

    if json_out {
        let v: Vec<_> = rows
            .iter()
            .map(|r| json!({"what": r.what, "nodus": r.ours, "floor": r.floor, "unit": r.unit.trim(), "aim": r.aim}))
            .collect();
        ui::json(&json!(v));
    } else {
        println!("nodus bench vault: the vault beside the same work unprotected (the floor), same run, same disk");
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let cost = if r.higher_is_better { r.floor / r.ours } else { r.ours / r.floor };
                vec![
                    r.what.clone(),
                    format!("{:.1}{}", r.ours, r.unit),
                    format!("{:.1}{}", r.floor, r.unit),
                    format!("{cost:.2}x"),
                    r.aim.clone(),
                ]
            })
            .collect();
        table(&["", "nodus vault", "floor (plain)", "cost of protection", "aim"], &table_rows);
    }
    Ok(ExitCode::SUCCESS)
}

const PLAIN_PROTOCOL: nodus_net::StreamProtocol = nodus_net::StreamProtocol::new("/nodus/bench/vault-plain/1");

/// Median seconds of a provider's fetch of about `want` records, and of the same
/// records' plain JSON sent over the same overlay; the records fetched.
async fn fetch(dir: &std::path::Path, want: usize) -> Result<(f64, f64, usize)> {
    let net = Testnet::start(2, &dir.join("net")).await?;
    let node = |k: usize| -> Result<VaultHandle> {
        net.node(k)
            .service::<VaultHandle>()
            .cloned()
            .ok_or_else(|| anyhow!("node {k} runs no vault"))
    };
    let (patient, provider) = (node(0)?, node(1)?);
    for b in copies(want) {
        patient.import(b).await?;
    }
    patient.grant(&provider.id().card, vec![], None).await?;
    let patient_id: nodus_net::PeerId = patient.id().peer.parse()?;

    // The floor: node 0 sends the same resources, in the clear, framed as the vault
    // frames its batches, over the same overlay.
    let plain = serde_json::to_vec(&patient.resources(None).await?)?;
    let mut incoming = net.node(0).net.incoming(PLAIN_PROTOCOL)?;
    let server = tokio::spawn(async move {
        while let Some((_, mut s)) = incoming.next().await {
            let mut ask = [0u8; 1];
            if s.read_exact(&mut ask).await.is_err() {
                continue;
            }
            let _ = s.write_all(&(plain.len() as u32).to_be_bytes()).await;
            let _ = s.write_all(&plain).await;
            let _ = s.close().await;
        }
    });
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    let mut got = 0;
    for _ in 0..5 {
        let t = Instant::now();
        got = provider.fetch(patient_id, vec![]).await?.records.len();
        ours.push(t.elapsed());
        let t = Instant::now();
        let mut s = net.node(1).net.open_stream(patient_id, PLAIN_PROTOCOL).await?;
        s.write_all(&[1]).await?;
        let body = nodus_net::frame::read(&mut s, 1 << 30)
            .await?
            .ok_or_else(|| anyhow!("the plain stream ended"))?;
        let records: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
        floor.push(t.elapsed());
        if records.len() != got {
            bail!("the plain fetch moved {} records, the vault's {got}", records.len());
        }
    }
    server.abort();
    net.shutdown().await;
    ours.sort();
    floor.sort();
    Ok((secs(ours[2]), secs(floor[2]), got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_new_people_that_import() {
        // (The copies come from nodus_vault::synthetic.)
        let b = copies(100);
        assert_eq!(b.len(), 3);
        assert_ne!(b[0], b[1]);
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(&dir.path().join("v.redb"), Keys::ephemeral(), "p".into(), system_clock()).unwrap();
        let per = v.import(&b[0], "t").unwrap().created;
        assert_eq!(v.import(&b[1], "t").unwrap().created, per);
        assert_eq!(v.count().unwrap() as usize, 2 * per);
    }
}
