//! Tier 3: FHIR tooling nobody here wrote, against the vault. carebundle 0.5 makes one
//! synthetic patient per clinical profile; each is imported and exported, and the
//! exports, the audit trail's AuditEvents, a provider's fetch (as a Bundle) and the FHIR
//! API's answers are validated by fhir.resources 8 (R4B models); Python `requests`
//! reads the FHIR API with the node's token as a FHIR client does. A bundle broken on
//! purpose must fail the same validation, so the check can fail.
//! Needs `pip install -r interop/vault/requirements.txt`, which scripts/test does.

use std::path::{Path, PathBuf};
use std::process::Command;

use nodus_testnet::Testnet;
use nodus_vault::VaultHandle;
use serde_json::Value;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/vault/fhir_check.py")
}

async fn python(args: Vec<String>) -> Value {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script())
            .args(&args)
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fhir_check.py failed (scripts/test installs interop/vault/requirements.txt):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carebundle_patients_round_trip_and_validate_with_fhir_resources() {
    let tmp = tempfile::tempdir().unwrap();
    let generated = tmp.path().join("carebundle");
    std::fs::create_dir_all(&generated).unwrap();
    let made = python(vec!["generate".into(), generated.to_string_lossy().into()]).await;
    assert_eq!(made["ok"], true, "{made}");

    let net = Testnet::start(2, &tmp.path().join("net")).await.unwrap();
    let clinic = net.node(1).service::<VaultHandle>().unwrap().clone();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut files = Vec::new();
    let mut bundles: Vec<PathBuf> = std::fs::read_dir(&generated)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    bundles.sort();
    assert_eq!(bundles.len(), 5, "one patient per profile");
    // One node per patient would be truer; one vault holding five patients is what a
    // family's shared node holds, and exercises references across more records.
    let patient = net.node(0).service::<VaultHandle>().unwrap().clone();
    let mut total = 0;
    for b in &bundles {
        let got = patient.import(std::fs::read(b).unwrap()).await.unwrap();
        assert!(got.created > 40, "{}: {got:?}", b.display());
        total += got.created;
    }
    let export = patient.export().await.unwrap();
    files.push(write(&out, "export.json", &export));
    for (i, e) in patient.log(0, 10).await.unwrap().iter().enumerate() {
        files.push(write(
            &out,
            &format!("audit-{i}.json"),
            &serde_json::to_vec(e).unwrap(),
        ));
    }
    patient
        .grant(
            &clinic.id().card,
            vec!["Observation".into(), "Condition".into()],
            None,
        )
        .await
        .unwrap();
    let fetched = clinic
        .fetch(net.node(0).peer_id(), vec![])
        .await
        .unwrap()
        .records;
    files.push(write(
        &out,
        "fetched.json",
        &nodus_vault::fhir::bundle::export(&fetched),
    ));
    let checked = python([vec!["validate".to_string()], files.clone()].concat()).await;
    assert_eq!(checked["ok"], true, "{checked}");
    assert_eq!(checked["checked"], files.len());
    let exported: Value = serde_json::from_slice(&export).unwrap();
    assert_eq!(exported["entry"].as_array().unwrap().len(), total);

    // The validator can fail: the export with an Observation missing its status.
    let mut broken = exported.clone();
    let obs = broken["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["resource"]["resourceType"] == "Observation")
        .unwrap();
    obs["resource"].as_object_mut().unwrap().remove("status");
    let bad = write(&out, "broken.json", &serde_json::to_vec(&broken).unwrap());
    let refused = python(vec!["validate".into(), bad]).await;
    assert_eq!(refused["ok"], false, "{refused}");

    // A FHIR client reads the API with the token.
    let token = std::fs::read_to_string(net.data_dir(0).cookie_path()).unwrap();
    let base = format!("{}/fhir", net.node(0).api_url());
    let pid = patient.list(Some("Patient".into())).await.unwrap()[0]
        .id
        .clone();
    let read = python(vec!["read".into(), base, token.trim().into(), pid]).await;
    assert_eq!(read["ok"], true, "{read}");
    assert_eq!(read["read_equals_search"], true, "{read}");
    assert!(read["total"].as_u64().unwrap() > 10, "{read}");
    net.shutdown().await;
}
