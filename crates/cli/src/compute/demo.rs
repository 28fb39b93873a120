//! The demo's compute part: a project of 200 units (counting primes) coordinated by one
//! node and run by five volunteers, one of which returns wrong results and one of which
//! is killed halfway; the quorum rejects the wrong results, the dead volunteer's units
//! go to others after their deadline, and the accepted outputs add up to a direct count.
//! The project pays for valid results on the chain: each volunteer's account ends up
//! holding exactly its credit's worth, the cheat's nothing.

use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use nodus_chain::ChainHandle;
use nodus_chain::primitives::U256;
use nodus_compute::config::ComputeConfig;
use nodus_compute::examples;
use nodus_compute::{ComputeHandle, Inputs, Submission};
use nodus_testnet::{Testnet, node_config, node_ip, wait_until};

use crate::ui::progress::{STEP_TIMEOUT, Steps, step};

/// Units in the demo's project, and the integers each one covers.
const UNITS: u64 = 200;
const SPAN: u64 = 20_000;
/// What the project pays: wei per billion fuel of credit (0.01 ETH).
const RATE: u128 = 10_000_000_000_000_000;

/// What the pay step checks, from the step that ran the project.
struct Paying {
    coordinator: usize,
    project: String,
    cheat: String,
}

fn compute(net: &Testnet, k: usize) -> Result<ComputeHandle> {
    net.try_node(k)
        .and_then(|n| n.service::<ComputeHandle>().cloned())
        .ok_or_else(|| anyhow!("node {k} runs no compute service"))
}

pub async fn steps(net: &mut Testnet, steps: &mut Steps) {
    if net.running().len() < 5 {
        return;
    }
    let mut paying = None;
    step(
        steps,
        "200 work units on five volunteers: a cheat caught by the quorum, a killed volunteer's units reissued, the sum checked",
        quorum_and_reissue(net, &mut paying),
    )
    .await;
    if let Some(p) = paying {
        step(
            steps,
            "credit paid on the chain: each volunteer holds its credit's worth, the cheat nothing",
            paid(net, p),
        )
        .await;
    }
}

fn chain(net: &Testnet, k: usize) -> Result<ChainHandle> {
    net.try_node(k)
        .and_then(|n| n.service::<ChainHandle>().cloned())
        .ok_or_else(|| anyhow!("node {k} runs no chain"))
}

async fn quorum_and_reissue(net: &mut Testnet, paying: &mut Option<Paying>) -> Result<String> {
    let running = net.running();
    let coordinator = running[0];
    let mut volunteers: Vec<usize> = running[1..].iter().copied().take(4).collect();
    let k = net.len();
    let mut config = node_config(node_ip(k), &net.bootstrap_addrs());
    let mut faulty: ComputeConfig = config.section()?;
    faulty.faulty = true;
    config.set_section(&faulty);
    let cheat = net.add_node(config).await?;
    volunteers.push(cheat);
    let c = compute(net, coordinator)?;
    for &v in &volunteers {
        compute(net, v)?.set_volunteer(true, Some(1), None, None)?;
    }
    // The project is announced on gossip: wait until the coordinator knows every
    // volunteer is on the topic (the newest one has just joined).
    let peers: Vec<_> = volunteers.iter().map(|&v| net.node(v).peer_id()).collect();
    let overlay = net.node(coordinator).net.clone();
    wait_until(STEP_TIMEOUT, "the volunteers on the projects topic", || {
        let (overlay, peers) = (overlay.clone(), peers.clone());
        async move {
            let on = overlay
                .topic_peers(nodus_compute::wire::TOPIC)
                .await
                .unwrap_or_default();
            peers.iter().all(|p| on.contains(p))
        }
    })
    .await?;
    // The project pays from the coordinator's compute account, funded and mined here.
    let ledger = chain(net, coordinator)?;
    crate::chain::demo::fund(&ledger, &c.payroll().account).await?;
    ledger.set_mining(true, None, None);
    let t = Instant::now();
    let id = c
        .submit(Submission {
            name: "primes".into(),
            module: hex::encode(examples::primes()),
            inputs: Inputs::Range { from: 0, to: UNITS },
            args: vec![SPAN.to_string()],
            quorum: 2,
            deadline_secs: 3,
            fuel: 10_000_000_000,
            memory_mb: 16,
            output_bytes: 1024,
            adaptive: true,
            canonical_nans: false,
            pay_wei_per_gfuel: Some(RATE.to_string()),
        })
        .await?;
    // Kill an honest volunteer once it has done some of the work, while units handed to
    // it are still queued there: it stops taking units from its queue, lets the one it
    // runs finish, and dies with the rest (or, should it have emptied its queue before
    // it stopped, goes on until it holds queued units again and tries again).
    let victim = volunteers[0];
    let victim_peer = net.node(victim).peer_id().to_string();
    let victim_bytes = net.node(victim).peer_id().to_bytes();
    let v = compute(net, victim)?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if Instant::now() > deadline {
            bail!("the volunteer to kill never held queued units");
        }
        let s = c.status(&id)?;
        let worked = s.volunteers.iter().any(|x| x.peer == victim_peer && x.valid > 0);
        let queued = v.volunteer_status().map_or(0, |s| s.queued);
        if s.done < (UNITS as u32) / 4 || !worked || queued < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        v.set_volunteer(false, None, None, None)?;
        wait_until(STEP_TIMEOUT, "its running unit to end", || {
            let v = v.clone();
            async move { v.volunteer_status().is_ok_and(|s| s.running.is_empty()) }
        })
        .await?;
        let held = (0..UNITS as u32)
            .filter_map(|u| c.unit(&id, u).ok())
            .filter(|u| {
                u.replicas.iter().any(|r| {
                    r.host == victim_bytes
                        && r.state == nodus_compute::unit::ReplicaState::InProgress
                })
            })
            .count();
        if held > 0 {
            break;
        }
        v.set_volunteer(true, Some(1), None, None)?;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(v);
    net.kill(victim).await?;
    let s = c.wait_finished(&id, STEP_TIMEOUT).await?;
    let took = t.elapsed();
    if s.done != UNITS as u32 || s.failed != 0 {
        bail!("{} of {UNITS} units accepted, {} failed", s.done, s.failed);
    }
    let cheat_peer = net.node(cheat).peer_id().to_string();
    let caught = s
        .volunteers
        .iter()
        .find(|v| v.peer == cheat_peer)
        .map_or(0, |v| v.invalid);
    if caught == 0 {
        bail!("the faulty volunteer's results were never rejected");
    }
    if s.volunteers.iter().any(|v| v.peer != cheat_peer && v.invalid > 0) {
        bail!("an honest volunteer's result was rejected");
    }
    if s.volunteers.iter().any(|v| v.peer == cheat_peer && v.credit > 0) {
        bail!("the faulty volunteer earned credit");
    }
    let late = s
        .volunteers
        .iter()
        .find(|v| v.peer == victim_peer)
        .map_or(0, |v| v.late);
    if late == 0 {
        bail!("the killed volunteer had no unit in progress to reissue");
    }
    let (results, _) = c.results(&id, 0, UNITS as usize).await?;
    let sum = examples::sum_counts(results.iter().map(|r| r.output.stdout.as_slice()))
        .ok_or_else(|| anyhow!("an accepted output is not `N count`"))?;
    let direct = examples::primes_below(UNITS * SPAN);
    if sum != direct {
        bail!("the units counted {sum} primes below {}; a sieve counts {direct}", UNITS * SPAN);
    }
    let credits: Vec<String> = s
        .volunteers
        .iter()
        .map(|v| {
            let who = if v.peer == cheat_peer {
                "cheat"
            } else if v.peer == victim_peer {
                "killed"
            } else {
                "ok"
            };
            format!("{who} {:.1}", v.credit as f64 / 1e9)
        })
        .collect();
    // Nothing should be left running for the next steps.
    for &v in &volunteers[1..] {
        let _ = compute(net, v)?.set_volunteer(false, None, None, None);
    }
    *paying = Some(Paying {
        coordinator,
        project: id.clone(),
        cheat: cheat_peer.clone(),
    });
    Ok(format!(
        "{UNITS}/{UNITS} accepted in {:.1} s; {caught} wrong results rejected; {late} units of the killed volunteer reissued; {sum} primes below {}, as a sieve counts; credit (Gfuel): {}",
        took.as_secs_f64(),
        UNITS * SPAN,
        credits.join(", ")
    ))
}

async fn paid(net: &Testnet, p: Paying) -> Result<String> {
    let c = compute(net, p.coordinator)?;
    let ledger = chain(net, p.coordinator)?;
    let settled = wait_until(STEP_TIMEOUT, "every credit paid and mined", || async {
        c.status(&p.project)
            .ok()
            .and_then(|s| s.pay)
            .is_some_and(|pay| pay.owed == "0" && pay.sending == "0")
    })
    .await;
    ledger.stop_mining().await?;
    if let Err(e) = settled {
        let why = c.payroll().last_error.unwrap_or_default();
        bail!("{e} {why}");
    }
    let s = c.status(&p.project)?;
    let mut total = 0u128;
    for v in &s.volunteers {
        let earned = nodus_compute::pay::earned(v.credit, RATE);
        let paid: u128 = v.paid.as_deref().unwrap_or("0").parse()?;
        let payout = v
            .payout
            .as_deref()
            .ok_or_else(|| anyhow!("volunteer {} gave no payout address", v.peer))?;
        let held = ledger.balance(payout.parse()?).await?;
        if paid != earned || held != U256::from(earned) {
            bail!("volunteer {} earned {earned} wei, was paid {paid}, holds {held}", v.peer);
        }
        if v.peer == p.cheat && earned != 0 {
            bail!("the cheat was paid {earned} wei");
        }
        total += earned;
    }
    let payroll = c.payroll();
    Ok(format!(
        "{} ETH in {} transfers at {} ETH per Gfuel, each volunteer's balance exactly its credit's worth; the cheat's 0",
        crate::chain::format_ether(U256::from(total)),
        payroll.payments_mined,
        crate::chain::format_ether(U256::from(RATE))
    ))
}
