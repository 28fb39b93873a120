//! The vault on one node's files: imports, grants, revokes, fetches and appends as the
//! patient's and a provider's sides see them, on real redb files. A synthetic patient
//! from carebundle 0.5 (`fixtures/hypertension.json`); no real patient data anywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nodus_vault::crypto::Keys;
use nodus_vault::vault::{Clock, Vault, open_fetched};
use nodus_vault::wire::{Refusal, append_message};
use nodus_vault::{VaultError, store};
use redb::{ReadableDatabase, ReadableTable};
use serde_json::{Value, json};

use nodus_vault::synthetic::{PATIENT, count};
const DAY: u64 = 24 * 3600 * 1000;

struct Setup {
    _dir: tempfile::TempDir,
    vault: Vault,
    now: Arc<AtomicU64>,
    provider: Keys,
    provider_id: libp2p::identity::Keypair,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(1_780_000_000_000));
        let n = now.clone();
        let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
        let vault = Vault::open(
            &dir.path().join("vault.redb"),
            Keys::ephemeral(),
            "12D3KooWPatient".into(),
            clock,
        )
        .unwrap();
        let provider_id = libp2p::identity::Keypair::generate_ed25519();
        Setup {
            _dir: dir,
            vault,
            now,
            provider: Keys::ephemeral(),
            provider_id,
        }
    }

    fn pid(&self) -> String {
        self.provider_id.public().to_peer_id().to_string()
    }

    fn grant(&self, types: &[&str], until: Option<u64>) {
        self.vault
            .grant(
                &self.pid(),
                self.provider.public(),
                types.iter().map(|t| t.to_string()).collect(),
                until,
                "me",
            )
            .unwrap();
    }

    /// What the provider reads with a fetch of `types`.
    fn fetch(&self, types: &[&str]) -> Result<Vec<Value>, Refusal> {
        let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        let s = self.vault.serve_fetch(&self.pid(), &types)?;
        Ok(open_fetched(
            &self.provider,
            &self.pid(),
            self.vault.me(),
            s.no,
            &s.enc,
            &s.sealed,
            &s.records,
        )
        .unwrap())
    }

    fn append(&self, resource: &Value) -> Result<nodus_vault::vault::RecordInfo, Refusal> {
        let bytes = serde_json::to_vec(resource).unwrap();
        let sig = self
            .provider_id
            .sign(&append_message(self.vault.me(), &bytes))
            .unwrap();
        self.vault.accept_append(
            &self.pid(),
            &bytes,
            &self.provider_id.public().encode_protobuf(),
            &sig,
        )
    }
}

fn types_of(v: &[Value]) -> Vec<&str> {
    let mut t: Vec<&str> = v
        .iter()
        .map(|r| r["resourceType"].as_str().unwrap())
        .collect();
    t.sort();
    t.dedup();
    t
}

#[test]
fn a_carebundle_patient_imports_lists_and_exports_stably() {
    let s = Setup::new();
    let got = s.vault.import(PATIENT, "me").unwrap();
    let all = count(None);
    assert!(all > 40, "{all}");
    assert_eq!(got.created, all);
    assert_eq!(got.by_type["Observation"], count(Some("Observation")));
    assert_eq!(
        s.vault.list(Some("Condition")).unwrap().len(),
        count(Some("Condition"))
    );
    // The same bundle again changes nothing and logs nothing.
    let again = s.vault.import(PATIENT, "me").unwrap();
    assert_eq!((again.unchanged, again.entry), (all, None));
    let out = s.vault.export().unwrap();
    assert_eq!(s.vault.export().unwrap(), out);
    // An export imported elsewhere exports to the same bytes.
    let t = Setup::new();
    assert_eq!(t.vault.import(&out, "me").unwrap().created, all);
    assert_eq!(t.vault.export().unwrap(), out);
    // References inside the bundle were made Type/id and resolve in the vault.
    let cond = &s.vault.resources(Some("Condition")).unwrap()[0];
    let subject = cond["subject"]["reference"].as_str().unwrap();
    let (t, id) = subject.split_once('/').unwrap();
    assert_eq!(t, "Patient");
    assert!(s.vault.has(t, id).unwrap());
}

#[test]
fn an_invalid_bundle_is_refused_with_its_path_and_nothing_is_kept() {
    let s = Setup::new();
    let mut b: Value = serde_json::from_slice(PATIENT).unwrap();
    b["entry"][5]["resource"]["status"] = json!("done");
    let e = s
        .vault
        .import(&serde_json::to_vec(&b).unwrap(), "me")
        .unwrap_err();
    match e {
        VaultError::Invalid(i) => assert_eq!(i.path, "Bundle.entry[5].resource.status"),
        other => panic!("{other}"),
    }
    assert_eq!(s.vault.count().unwrap(), 0);
    assert_eq!(s.vault.head().unwrap().0, 0);
}

#[test]
fn providers_read_only_what_a_current_grant_covers() {
    let s = Setup::new();
    s.vault.import(PATIENT, "me").unwrap();
    // No grant.
    assert_eq!(s.fetch(&[]).unwrap_err(), Refusal::NoGrant);
    // A grant for Observations for a week.
    let week = s.now.load(Ordering::SeqCst) + 7 * DAY;
    s.grant(&["Observation"], Some(week));
    let got = s.fetch(&[]).unwrap();
    assert_eq!(got.len(), count(Some("Observation")));
    assert_eq!(types_of(&got), vec!["Observation"]);
    // Other types: refused, naming them.
    assert_eq!(
        s.fetch(&["Condition"]).unwrap_err(),
        Refusal::NotCovered {
            types: vec!["Condition".into()]
        }
    );
    // Expired.
    s.now.store(week, Ordering::SeqCst);
    assert_eq!(
        s.fetch(&[]).unwrap_err(),
        Refusal::Expired { until_ms: week }
    );
    // Every fetch, refused or not, is in the log.
    let log = s.vault.log(0, 100).unwrap();
    let fetches: Vec<&str> = log
        .iter()
        .filter(|e| e["subtype"][0]["code"] == "fetch")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(fetches, vec!["4", "0", "4", "4"]);
}

#[test]
fn a_revoked_provider_cannot_open_what_changed_after() {
    let s = Setup::new();
    s.vault.import(PATIENT, "me").unwrap();
    s.grant(&["Observation"], None);
    let before = s.vault.serve_fetch(&s.pid(), &[]).unwrap();
    let revoked = s.vault.revoke(&s.pid(), "me").unwrap();
    assert_eq!(revoked.rotated, count(Some("Observation")));
    assert_eq!(s.fetch(&[]).unwrap_err(), Refusal::NoGrant);
    // The patient updates an Observation; the provider kept the old grant key and the
    // old wraps, and gets hold of the new ciphertext (from a replica, say).
    let mut b: Value = serde_json::from_slice(PATIENT).unwrap();
    let entry = b["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["resource"]["resourceType"] == "Observation")
        .unwrap();
    entry["resource"]["status"] = json!("amended");
    let rid = format!(
        "Observation/{}",
        entry["fullUrl"]
            .as_str()
            .unwrap()
            .trim_start_matches("urn:uuid:")
    );
    assert_eq!(
        s.vault
            .import(&serde_json::to_vec(&b).unwrap(), "me")
            .unwrap()
            .updated,
        1
    );
    let row: store::RecordRow = {
        let r = s.vault.db().begin_read().unwrap();
        let t = r.open_table(store::RECORDS).unwrap();
        store::decode(t.get(rid.as_str()).unwrap().unwrap().value(), "record").unwrap()
    };
    assert!(row.wraps.is_empty(), "no grant covers it any more");
    let old = before
        .records
        .iter()
        .find(|w| format!("{}/{}", w.rtype, w.id) == rid)
        .unwrap();
    // With every key it ever had, the provider cannot open the new version.
    let mut newer = old.clone();
    newer.body = row.body.clone();
    newer.version = row.version;
    let r = open_fetched(
        &s.provider,
        &s.pid(),
        s.vault.me(),
        before.no,
        &before.enc,
        &before.sealed,
        &[newer],
    );
    assert!(matches!(r, Err(VaultError::Tampered(_))), "{r:?}");
    // The patient still reads it.
    assert_eq!(
        s.vault
            .show("Observation", rid.split('/').nth(1).unwrap())
            .unwrap()["status"],
        "amended"
    );
}

#[test]
fn a_provider_appends_its_own_observation_signed() {
    let s = Setup::new();
    s.vault.import(PATIENT, "me").unwrap();
    let patient_id = s.vault.list(Some("Patient")).unwrap()[0].id.clone();
    let obs = json!({
        "resourceType": "Observation",
        "id": "clinic-bp-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "valueString": "128/82"
    });
    // Without a grant: refused.
    assert_eq!(s.append(&obs).unwrap_err(), Refusal::NoGrant);
    s.grant(&["Observation"], None);
    let info = s.append(&obs).unwrap();
    assert_eq!(
        (info.version, info.author.as_deref()),
        (1, Some(s.pid().as_str()))
    );
    // The provider reads it back with the rest.
    assert!(
        s.fetch(&[])
            .unwrap()
            .iter()
            .any(|r| r["id"] == "clinic-bp-1")
    );
    // A Condition is outside the grant; a bad signature, a bad resource, a dangling
    // reference and the patient's own record are refused.
    let cond = json!({"resourceType": "Condition", "id": "c", "subject": {"reference": format!("Patient/{patient_id}")}});
    assert!(matches!(s.append(&cond), Err(Refusal::NotCovered { .. })));
    let bytes = serde_json::to_vec(&obs).unwrap();
    let r = s.vault.accept_append(
        &s.pid(),
        &bytes,
        &s.provider_id.public().encode_protobuf(),
        &s.provider_id.sign(b"something else").unwrap(),
    );
    assert_eq!(r.unwrap_err(), Refusal::BadSignature);
    let mut bad = obs.clone();
    bad["status"] = json!("done");
    assert!(
        matches!(s.append(&bad), Err(Refusal::Invalid { ref path, .. }) if path == "Observation.status")
    );
    let mut dangling = obs.clone();
    dangling["subject"]["reference"] = json!("Patient/nobody");
    assert!(
        matches!(s.append(&dangling), Err(Refusal::Invalid { ref path, .. }) if path == "Observation.subject.reference")
    );
    let theirs = s.vault.list(Some("Observation")).unwrap()[0].id.clone();
    let mut overwrite = obs.clone();
    overwrite["id"] = json!(theirs);
    assert!(matches!(
        s.append(&overwrite),
        Err(Refusal::NotYours { .. })
    ));
}

#[test]
fn a_tampered_record_or_log_entry_is_detected() {
    let s = Setup::new();
    s.vault.import(PATIENT, "me").unwrap();
    s.grant(&["Observation"], None);
    s.fetch(&[]).unwrap();
    let (entries, _) = s.vault.head().unwrap();
    assert_eq!(entries, 3);
    s.vault.verify_log().unwrap();
    let first = s.vault.list(Some("Observation")).unwrap()[0].clone();
    let rid = format!("Observation/{}", first.id);
    let w = s.vault.db().begin_write().unwrap();
    {
        let mut t = w.open_table(store::RECORDS).unwrap();
        let mut row: store::RecordRow =
            store::decode(t.get(rid.as_str()).unwrap().unwrap().value(), "record").unwrap();
        row.body[40] ^= 1;
        t.insert(rid.as_str(), store::encode(&row).as_slice())
            .unwrap();
        let mut log = w.open_table(store::LOG).unwrap();
        let mut entry: store::LogRow =
            store::decode(log.get(1).unwrap().unwrap().value(), "log").unwrap();
        entry.event = entry.event.replace_bytes("Observation", "Condition");
        log.insert(1, store::encode(&entry).as_slice()).unwrap();
    }
    w.commit().unwrap();
    assert!(matches!(
        s.vault.show("Observation", &first.id),
        Err(VaultError::Tampered(_))
    ));
    assert!(matches!(
        s.vault.verify_log(),
        Err(VaultError::LogBroken { entry: 1, .. })
    ));
}

trait Replace {
    fn replace_bytes(&self, from: &str, to: &str) -> Vec<u8>;
}

impl Replace for Vec<u8> {
    fn replace_bytes(&self, from: &str, to: &str) -> Vec<u8> {
        String::from_utf8(self.clone())
            .unwrap()
            .replace(from, to)
            .into_bytes()
    }
}

/// A vault kept at `dir`, with its key file there too (so another vault can share it).
fn vault_at(dir: &std::path::Path, me: &str) -> Vault {
    Vault::open(
        &dir.join("vault.redb"),
        Keys::load_or_create(&dir.join("vault.key")).unwrap(),
        me.into(),
        nodus_vault::vault::system_clock(),
    )
    .unwrap()
}

#[test]
fn a_replica_holds_what_changed_and_gives_back_a_vault_that_opens() {
    let (pd, rd, nd) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let patient = vault_at(pd.path(), "patient");
    let replica = vault_at(rd.path(), "replica");
    patient.import(PATIENT, "me").unwrap();
    patient.add_replica("replica").unwrap();
    // Not agreed to yet: refused.
    let (snap, chunks) = patient.changes_since(0).unwrap();
    assert_eq!(
        replica.hold("patient", snap.clone(), chunks.clone(), 1 << 30),
        Err(Refusal::NotHolding)
    );
    replica.hold_for("patient").unwrap();
    // Over the budget: refused, nothing kept.
    assert!(matches!(
        replica.hold("patient", snap.clone(), chunks.clone(), 1000),
        Err(Refusal::Full { .. })
    ));
    assert_eq!(replica.hold("patient", snap, chunks, 1 << 30), Ok(1));
    patient.set_acked("replica", 1).unwrap();
    // Then only what changed travels: a grant re-wraps every Observation.
    let provider = Keys::ephemeral();
    patient
        .grant(
            "clinic",
            provider.public(),
            vec!["Observation".into()],
            None,
            "me",
        )
        .unwrap();
    let (snap, chunks) = patient.changes_since(1).unwrap();
    let sent: usize = chunks.iter().map(|c| c.records.len()).sum();
    assert_eq!(sent, count(Some("Observation")));
    assert_eq!(snap.grants.len(), 1);
    assert_eq!(
        replica.hold("patient", snap.clone(), chunks.clone(), 1 << 30),
        Ok(2)
    );
    // The same again (an acknowledgement lost on the way) changes nothing.
    assert_eq!(replica.hold("patient", snap, chunks, 1 << 30), Ok(2));
    let held = &replica.holdings().unwrap()[0];
    assert_eq!((held.records as usize, held.entries), (count(None), 2));
    // The replica holds ciphertext only: no digest of the plaintext either.
    let (copy, copy_chunks) = replica.held("patient").unwrap();
    for (rid, bytes) in copy_chunks.iter().flat_map(|c| &c.records) {
        let row: store::RecordRow = store::decode(bytes, "record").unwrap();
        assert_eq!(row.digest, [0; 32], "{rid}");
    }
    // Restored into an empty vault with the patient's keys: the same vault.
    std::fs::copy(pd.path().join("vault.key"), nd.path().join("vault.key")).unwrap();
    let back = vault_at(nd.path(), "patient");
    let done = back.restore(copy.clone(), copy_chunks.clone()).unwrap();
    assert_eq!(
        (done.records, done.grants, done.entries),
        (count(None), 1, 2)
    );
    assert_eq!(back.export().unwrap(), patient.export().unwrap());
    back.verify_log().unwrap();
    assert_eq!(back.grants().unwrap(), patient.grants().unwrap());
    // With other keys, nothing opens: refused.
    let other = vault_at(tempfile::tempdir().unwrap().path(), "patient");
    assert!(matches!(
        other.restore(copy, copy_chunks),
        Err(VaultError::Restore(_))
    ));
}

#[test]
fn a_replica_refuses_a_history_that_does_not_chain_on() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let patient = vault_at(pd.path(), "patient");
    let replica = vault_at(rd.path(), "replica");
    replica.hold_for("patient").unwrap();
    patient.import(PATIENT, "me").unwrap();
    let (snap, chunks) = patient.changes_since(0).unwrap();
    replica.hold("patient", snap, chunks, 1 << 30).unwrap();
    // A second entry whose content was changed after it was hashed.
    patient
        .grant("clinic", Keys::ephemeral().public(), vec![], None, "me")
        .unwrap();
    let (snap, mut chunks) = patient.changes_since(1).unwrap();
    let entry = chunks
        .iter_mut()
        .flat_map(|c| c.log.iter_mut())
        .next()
        .unwrap();
    let mut row: store::LogRow = store::decode(&entry.1, "log").unwrap();
    row.event = row.event.replace_bytes("grant", "grunt");
    entry.1 = store::encode(&row);
    assert!(matches!(
        replica.hold("patient", snap, chunks, 1 << 30),
        Err(Refusal::Inconsistent(_))
    ));
    assert_eq!(replica.holdings().unwrap()[0].entries, 1);
}

/// A chain in memory: every transaction is mined at once in the next block.
#[derive(Default)]
struct MemoryChain {
    txs: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl nodus_vault::Anchor for MemoryChain {
    fn send(
        &self,
        payload: Vec<u8>,
    ) -> futures::future::BoxFuture<'_, Result<[u8; 32], nodus_vault::AnchorError>> {
        let mut txs = self.txs.lock().unwrap();
        txs.push(payload);
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&(txs.len() as u64).to_be_bytes());
        Box::pin(async move { Ok(h) })
    }

    fn find(
        &self,
        tx: [u8; 32],
    ) -> futures::future::BoxFuture<'_, Result<Option<nodus_vault::Mined>, nodus_vault::AnchorError>>
    {
        let n = u64::from_be_bytes(tx[..8].try_into().unwrap()) as usize;
        let found = self.txs.lock().unwrap().get(n - 1).cloned();
        Box::pin(async move {
            Ok(found.map(|payload| nodus_vault::Mined {
                payload,
                block: n as u64,
                from: "0xanchor".into(),
            }))
        })
    }

    fn account(&self) -> String {
        "0xanchor".into()
    }
}

/// Rewrites entry 1 of the log and every hash after it, as someone with the file and
/// time would: the chain holds together again, only the anchor tells.
fn rewrite_history(v: &Vault) {
    let w = v.db().begin_write().unwrap();
    {
        let mut log = w.open_table(store::LOG).unwrap();
        let rows: Vec<(u64, store::LogRow)> = log
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value(), store::decode(v.value(), "log").unwrap())
            })
            .collect();
        let mut prev = rows[0].1.hash;
        for (seq, mut row) in rows.into_iter().skip(1) {
            if seq == 1 {
                row.event = row.event.replace_bytes("Observation", "Condition");
            }
            row.prev = prev;
            row.hash = nodus_vault::log::entry_hash(&prev, seq, &row.event);
            prev = row.hash;
            log.insert(seq, store::encode(&row).as_slice()).unwrap();
        }
    }
    w.commit().unwrap();
}

#[tokio::test]
async fn a_rewritten_history_is_caught_by_its_anchor() {
    let s = Setup::new();
    s.vault.import(PATIENT, "me").unwrap();
    s.grant(&["Observation"], None);
    s.fetch(&[]).unwrap();
    let vault = Arc::new(s.vault);
    let chain: nodus_vault::SharedAnchor = Arc::new(MemoryChain::default());
    let state = std::sync::Mutex::new(Default::default());
    // One round sends the head, the next sees it mined.
    nodus_vault::anchor::round(&vault, &chain, &state).await;
    nodus_vault::anchor::round(&vault, &chain, &state).await;
    let v = nodus_vault::anchor::verify(&vault, Some(&chain), None)
        .await
        .unwrap();
    assert_eq!(
        (v.anchors_confirmed, v.last_anchor.map(|a| a.0)),
        (1, Some(2))
    );
    rewrite_history(&vault);
    // The hashes chain again; the stored anchor row disagrees with the log...
    let e = nodus_vault::anchor::verify(&vault, Some(&chain), None)
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::LogBroken { entry: 2, .. }), "{e}");
    // ...and when the anchor row is rewritten to match, the chain disagrees.
    let (_, head) = vault.head().unwrap();
    let (seq, mut row) = vault.anchors().unwrap().pop().unwrap();
    row.head = head;
    vault.put_anchor(seq, &row).unwrap();
    let e = nodus_vault::anchor::verify(&vault, Some(&chain), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("holds another head"), "{e}");
}

#[test]
fn a_stranger_asking_in_a_loop_is_logged_once_a_minute() {
    let s = Setup::new();
    s.vault.import(PATIENT, "me").unwrap();
    let fetches = |v: &Vault| {
        v.log(0, 1000)
            .unwrap()
            .iter()
            .filter(|e| e["subtype"][0]["code"] == "fetch")
            .count()
    };
    for _ in 0..50 {
        assert_eq!(s.fetch(&[]).unwrap_err(), Refusal::NoGrant);
    }
    assert_eq!(fetches(&s.vault), 1);
    s.now.fetch_add(61_000, Ordering::SeqCst);
    assert_eq!(s.fetch(&[]).unwrap_err(), Refusal::NoGrant);
    assert_eq!(fetches(&s.vault), 2);
    // A change of grants: the next refusal is logged whatever the time.
    s.grant(&["Observation"], None);
    s.vault.revoke(&s.pid(), "me").unwrap();
    assert_eq!(s.fetch(&[]).unwrap_err(), Refusal::NoGrant);
    assert_eq!(fetches(&s.vault), 3);
}

#[test]
fn a_resource_too_large_to_keep_is_refused_with_its_path() {
    let s = Setup::new();
    let big = json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueString": "a".repeat(3 << 20)}}]
    });
    match s.vault.import(&serde_json::to_vec(&big).unwrap(), "me") {
        Err(VaultError::Invalid(i)) => {
            assert_eq!(i.path, "Bundle.entry[0].resource");
            assert!(i.problem.contains("2 MiB"), "{}", i.problem);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.vault.count().unwrap(), 0);
}
