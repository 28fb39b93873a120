//! The vault on real nodes over the overlay: a provider reads only what a live grant
//! covers (no grant, an expired grant, other types: refused), a revoke stops the next
//! read, a provider appends its own signed record, every one of these is in the
//! patient's audit log; garbage on the vault protocol drops that peer only; the log's
//! head is anchored on the chain and verifies against it.

use std::time::Duration;

use futures::AsyncWriteExt;
use nodus_testnet::{Testnet, wait_until};
use nodus_vault::wire::Refusal;
use nodus_vault::{VaultError, VaultHandle};
use serde_json::json;

use nodus_vault::synthetic::{PATIENT, count};
const T: Duration = Duration::from_secs(60);

fn vault(net: &Testnet, k: usize) -> VaultHandle {
    net.node(k).service::<VaultHandle>().unwrap().clone()
}

fn peer(net: &Testnet, k: usize) -> nodus_net::PeerId {
    net.node(k).peer_id()
}

fn refusal(r: Result<nodus_vault::Fetched, VaultError>) -> Refusal {
    match r {
        Err(VaultError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_read_what_a_live_grant_covers_and_nothing_else() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, tmp.path()).await.unwrap();
    let (patient, clinic, stranger) = (vault(&net, 0), vault(&net, 1), vault(&net, 2));
    let p = peer(&net, 0);
    patient.import(PATIENT.to_vec()).await.unwrap();

    // No grant.
    assert_eq!(refusal(clinic.fetch(p, vec![]).await), Refusal::NoGrant);
    // A grant by peer id: the patient's node asks the clinic's for its key.
    let week = patient.now_ms() + 7 * 24 * 3600 * 1000;
    let g = patient
        .grant(
            &peer(&net, 1).to_string(),
            vec!["Observation".into()],
            Some(week),
        )
        .await
        .unwrap();
    assert_eq!(g.records, count(Some("Observation")));
    let got = clinic.fetch(p, vec![]).await.unwrap();
    assert_eq!(got.records.len(), count(Some("Observation")));
    assert!(
        got.records
            .iter()
            .all(|r| r["resourceType"] == "Observation")
    );
    // What the clinic read is what the patient holds.
    let first = &got.records[0];
    let held = patient
        .show("Observation".into(), first["id"].as_str().unwrap().into())
        .await
        .unwrap();
    assert_eq!(&held, first);
    // Other types, and a stranger.
    assert_eq!(
        refusal(clinic.fetch(p, vec!["Condition".into()]).await),
        Refusal::NotCovered {
            types: vec!["Condition".into()]
        }
    );
    assert_eq!(refusal(stranger.fetch(p, vec![]).await), Refusal::NoGrant);
    // An expired grant (given with an end already past, through the card form).
    let past = patient.now_ms() - 1;
    patient
        .grant(&stranger.id().card, vec![], Some(past))
        .await
        .unwrap();
    assert_eq!(
        refusal(stranger.fetch(p, vec![]).await),
        Refusal::Expired { until_ms: past }
    );

    // The clinic appends its own Observation, signed; it is the patient's now.
    let patient_id = patient.list(Some("Patient".into())).await.unwrap()[0]
        .id
        .clone();
    let obs = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "valueString": "128/82"
    });
    let added = clinic.append(p, obs).await.unwrap();
    let stored = patient.list(Some("Observation".into())).await.unwrap();
    let mine = stored.iter().find(|r| r.id == added.id).unwrap();
    assert_eq!(
        mine.author.as_deref(),
        Some(peer(&net, 1).to_string().as_str())
    );
    assert_eq!(
        clinic.fetch(p, vec![]).await.unwrap().records.len(),
        count(Some("Observation")) + 1
    );

    // Revoked: the next read is refused.
    let r = patient.revoke(&peer(&net, 1).to_string()).await.unwrap();
    assert_eq!(r.rotated, count(Some("Observation")) + 1);
    assert_eq!(refusal(clinic.fetch(p, vec![]).await), Refusal::NoGrant);

    // Every step is in the patient's log, with who did it, and the log verifies.
    let log = patient.log(0, 100).await.unwrap();
    let steps: Vec<(String, String, String)> = log
        .iter()
        .map(|e| {
            (
                e["subtype"][0]["code"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
                e["agent"][0]["who"]["identifier"]["value"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let (me, c, s) = (
        p.to_string(),
        peer(&net, 1).to_string(),
        peer(&net, 2).to_string(),
    );
    let want: Vec<(&str, &str, &str)> = vec![
        ("import", "0", &me),
        ("fetch", "4", &c),
        ("grant", "0", &me),
        ("fetch", "0", &c),
        ("fetch", "4", &c),
        ("fetch", "4", &s),
        ("grant", "0", &me),
        ("fetch", "4", &s),
        ("append", "0", &c),
        ("fetch", "0", &c),
        ("revoke", "0", &me),
        ("fetch", "4", &c),
    ];
    let got: Vec<(&str, &str, &str)> = steps
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        patient.verify().await.unwrap().log.entries,
        want.len() as u64
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_vault_protocol_drops_that_peer_only() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(3, tmp.path()).await.unwrap();
    let (patient, clinic) = (vault(&net, 0), vault(&net, 1));
    let p = peer(&net, 0);
    patient.import(PATIENT.to_vec()).await.unwrap();
    patient
        .grant(&clinic.id().card, vec![], None)
        .await
        .unwrap();
    // Node 2 sends frames that do not decode, and one that claims 1 GiB. A stream can
    // land on a connection that is being closed (CI once saw "connection is closed" on
    // the second, node 2 and node 0 having dialled each other): such a frame never
    // arrived, and is sent again on a new stream.
    for frame in [
        vec![0, 0, 0, 3, 0xff, 0xff, 0xff],
        (1u32 << 30).to_be_bytes().to_vec(),
    ] {
        let mut sent = Err(std::io::Error::other("not sent"));
        for _ in 0..3 {
            let mut s = net
                .node(2)
                .net
                .open_stream(p, nodus_vault::wire::PROTOCOL)
                .await
                .unwrap();
            sent = async {
                s.write_all(&frame).await?;
                s.flush().await
            }
            .await;
            let _ = s.close().await;
            if sent.is_ok() {
                break;
            }
        }
        sent.unwrap();
    }
    wait_until(T, "both bad requests to be counted", || async {
        net.metric(0, "nodus_vault_bad_requests_total").await == 2.0
    })
    .await
    .unwrap();
    // The clinic is served as before.
    assert_eq!(
        clinic.fetch(p, vec![]).await.unwrap().records.len(),
        patient.list(None).await.unwrap().len()
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_head_is_anchored_on_the_chain_and_verifies() {
    nodus_testnet::test_logs();
    let tmp = tempfile::tempdir().unwrap();
    let net = Testnet::start(1, tmp.path()).await.unwrap();
    let patient = vault(&net, 0);
    patient.import(PATIENT.to_vec()).await.unwrap();
    // Without funds the anchor waits, and says why.
    wait_until(
        T,
        "the vault to say its anchor account has no funds",
        || async {
            patient
                .anchor_state()
                .last_error
                .is_some_and(|e| e.contains("no funds"))
        },
    )
    .await
    .unwrap();
    let v = patient.verify().await.unwrap();
    assert_eq!(v.anchors_confirmed, 0);
    assert!(v.note.unwrap().contains("no funds"));

    let chain = net
        .node(0)
        .service::<nodus_chain::ChainHandle>()
        .unwrap()
        .clone();
    let account: nodus_chain::primitives::Address =
        patient.anchor_account().unwrap().parse().unwrap();
    let ether = nodus_chain::primitives::U256::from(10u128.pow(18));
    let tx = nodus_chain::spec::dev_transfer(6, 0, account, ether);
    chain.submit_raw(tx).await.unwrap();
    chain.set_mining(true, None, None);
    wait_until(T, "the log's head to be anchored in a block", || async {
        patient.anchor_state().anchored_entry == Some(0)
    })
    .await
    .unwrap();
    let v = patient.verify().await.unwrap();
    assert_eq!(v.anchors_confirmed, 1);
    let (entry, block, _) = v.last_anchor.unwrap();
    assert_eq!(entry, 0);
    assert!(block >= 1);
    net.shutdown().await;
}
