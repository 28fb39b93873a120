//! The demo's vault part: a patient imports a synthetic record (carebundle 0.5, no real
//! data), grants a clinic its Observations for a week; the clinic reads them over the
//! overlay and not a Condition; the grant is revoked and the clinic's next read fails;
//! the audit log's head is anchored on the chain and the log verifies against it.

use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use nodus_chain::ChainHandle;
use nodus_testnet::{Testnet, node_config, node_ip, wait_until};
use nodus_vault::VaultHandle;
use nodus_vault::synthetic::PATIENT;
use nodus_vault::wire::Refusal;

use crate::ui::progress::{STEP_TIMEOUT, Steps, ms, step};

const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;

fn vault(net: &Testnet, k: usize) -> Result<VaultHandle> {
    net.try_node(k)
        .and_then(|n| n.service::<VaultHandle>().cloned())
        .ok_or_else(|| anyhow!("node {k} runs no vault"))
}

fn peer(net: &Testnet, k: usize) -> Result<nodus_net::PeerId> {
    Ok(vault(net, k)?.id().peer.parse()?)
}

pub async fn steps(net: &mut Testnet, steps: &mut Steps) {
    let running = net.running();
    let (Some(&patient), Some(&clinic)) = (running.first(), running.get(1)) else {
        return;
    };
    step(
        steps,
        "a patient's FHIR record is imported; a clinic granted Observations for a week reads them and adds one",
        read_by_grant(net, patient, clinic),
    )
    .await;
    step(
        steps,
        "revoking re-keys what the grant covered; the clinic's next read is refused",
        revoke(net, patient, clinic),
    )
    .await;
    step(
        steps,
        "a replica holds the vault sealed; killed while records come in, it catches up, nothing lost",
        replicated(net, patient),
    )
    .await;
    step(
        steps,
        "the audit log's head is anchored on the chain, and the log verifies against it",
        anchored(net, patient),
    )
    .await;
}

async fn read_by_grant(net: &Testnet, patient: usize, clinic: usize) -> Result<String> {
    let (p, c) = (vault(net, patient)?, vault(net, clinic)?);
    let imported = p.import(PATIENT.to_vec()).await?;
    let observations = imported.by_type.get("Observation").copied().unwrap_or(0);
    let until = p.now_ms() + WEEK_MS;
    p.grant(&c.id().card, vec!["Observation".into()], Some(until))
        .await?;
    let t = Instant::now();
    let got = c.fetch(peer(net, patient)?, vec![]).await?;
    let took = t.elapsed();
    if got.records.len() != observations
        || got.records.iter().any(|r| r["resourceType"] != "Observation")
    {
        bail!(
            "the clinic read {} records, expected the {observations} Observations",
            got.records.len()
        );
    }
    match c.fetch(peer(net, patient)?, vec!["Condition".into()]).await {
        Err(nodus_vault::VaultError::Refused(Refusal::NotCovered { .. })) => {}
        other => bail!("a Condition read was not refused: {other:?}"),
    }
    let subject = got.records[0]["subject"].clone();
    let reading = serde_json::json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": subject,
        "valueString": "128/82 mmHg"
    });
    let added = c.append(peer(net, patient)?, reading).await?;
    let signed_by = p
        .list(Some("Observation".into()))
        .await?
        .into_iter()
        .find(|r| r.id == added.id)
        .and_then(|r| r.author);
    if signed_by.as_deref() != Some(c.id().peer.as_str()) {
        bail!("the clinic's Observation is not in the patient's vault as the clinic's");
    }
    Ok(format!(
        "{} records imported; node {clinic} read {} Observations in {} (decrypted there), a Condition refused; its own Observation taken, signed",
        imported.created,
        got.records.len(),
        ms(took)
    ))
}

async fn revoke(net: &Testnet, patient: usize, clinic: usize) -> Result<String> {
    let (p, c) = (vault(net, patient)?, vault(net, clinic)?);
    let t = Instant::now();
    let r = p.revoke(&c.id().peer).await?;
    let took = t.elapsed();
    match c.fetch(peer(net, patient)?, vec![]).await {
        Err(nodus_vault::VaultError::Refused(Refusal::NoGrant)) => {}
        other => bail!("the clinic's read after the revoke was not refused: {other:?}"),
    }
    Ok(format!(
        "{} records re-keyed in {}; the clinic's read refused",
        r.rotated,
        ms(took)
    ))
}

async fn replicated(net: &mut Testnet, patient: usize) -> Result<String> {
    let p = vault(net, patient)?;
    // A node of its own: a harness node that had torrents cannot start again in this
    // process after a kill (see `Testnet::stop`).
    let boot = net
        .node(patient)
        .p2p_addr("tcp")
        .ok_or_else(|| anyhow!("node {patient} has no TCP address"))?
        .to_string();
    let k = net.len();
    let replica = net.add_node(node_config(node_ip(k), &[boot])).await?;
    vault(net, replica)?.hold(peer(net, patient)?).await?;
    p.add_replica(peer(net, replica)?).await?;
    let up_to_date = |p: VaultHandle| async move {
        p.replicas()
            .await
            .is_ok_and(|r| !r.is_empty() && r.iter().all(|x| x["behind"] == 0))
    };
    wait_until(STEP_TIMEOUT, "the replica to hold the vault", || up_to_date(p.clone())).await?;
    net.kill(replica).await?;
    let more = nodus_vault::synthetic::copies(2 * nodus_vault::synthetic::count(None));
    let added = p.import(more[1].clone()).await?.created;
    net.restart(replica).await?;
    let t = Instant::now();
    wait_until(STEP_TIMEOUT, "the restarted replica to catch up", || up_to_date(p.clone())).await?;
    let took = t.elapsed();
    let held = vault(net, replica)?.holdings().await?;
    let holds = held.first().map_or(0, |h| h.records);
    let count = p.list(None).await?.len() as u64;
    if holds != count {
        bail!("the replica holds {holds} records, the patient {count}");
    }
    Ok(format!(
        "node {replica} killed, {added} records imported meanwhile; back up, it held all {count} {} later",
        ms(took)
    ))
}

async fn anchored(net: &Testnet, patient: usize) -> Result<String> {
    let p = vault(net, patient)?;
    let chain = net
        .node(patient)
        .service::<ChainHandle>()
        .cloned()
        .ok_or_else(|| anyhow!("node {patient} runs no chain"))?;
    let account = p
        .anchor_account()
        .ok_or_else(|| anyhow!("node {patient}'s vault has no chain to anchor on"))?;
    let t = Instant::now();
    crate::chain::demo::fund(&chain, &account).await?;
    chain.set_mining(true, None, None);
    let (entries, _) = p.head().await?;
    wait_until(STEP_TIMEOUT, "the log's head to be anchored in a block", || async {
        p.anchor_state().anchored_entry == Some(entries - 1)
    })
    .await?;
    let took = t.elapsed();
    let v = p.verify().await?;
    let Some((entry, block, _)) = v.last_anchor else {
        bail!("the log verified with no anchor confirmed: {:?}", v.note);
    };
    Ok(format!(
        "{} entries; entry {entry} anchored in block {block} ({} from funding the account), verified",
        v.log.entries,
        ms(took)
    ))
}
